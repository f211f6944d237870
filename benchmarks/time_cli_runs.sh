#!/usr/bin/env bash
# Wall time, CPU time and peak memory of the command-line demo on digits and
# MNIST, for docs/user_guide/time_and_hardware.rst. Run from the repository
# root; writes benchmarks/results/time-cli-runs.txt:
#
#     bash benchmarks/time_cli_runs.sh
#
# Each run is preceded by the load average (other processes on a shared
# machine inflate wall time; CPU time is less affected).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
OUT=benchmarks/results/time-cli-runs.txt
{
  echo "# bash benchmarks/time_cli_runs.sh"
  echo "# commit $(git describe --always --dirty 2>/dev/null || echo unknown); $(nproc) CPU cores; $($PYTHON -c 'import torch; print("torch", torch.__version__, "CUDA", torch.cuda.is_available())')"
  run() {  # label, environment, arguments...
    local label=$1 env=$2; shift 2
    echo
    echo "## $label: env $env $PYTHON -m skclusterfit $*"
    echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    env $env /usr/bin/time -f "wall %e s, user %U s, system %S s, max RSS %M KB" \
      "$PYTHON" -m skclusterfit "$@" 2>&1
  }
  run "digits, 1 thread" "OMP_NUM_THREADS=1" --dataset digits
  run "digits, default threads (one per core)" "-u OMP_NUM_THREADS" --dataset digits
  run "MNIST-5k, 1 thread" "OMP_NUM_THREADS=1" --dataset mnist
} | tee "$OUT"
