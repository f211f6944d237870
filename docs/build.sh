#!/usr/bin/env bash
# Build the HTML documentation, executing every examples/**/plot_*.py.
#
#   bash docs/build.sh            # from the repository root
#
# Fails on any Sphinx warning (-W) or example error. Needs the `docs` extra:
#   pip install -e '.[docs]'
# Output: docs/_build/html/index.html. No network is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
# One torch/BLAS thread per example process: on a small CPU, oversubscribed
# threads make the small networks of the gallery many times slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# numba ignores OMP_NUM_THREADS, and its OpenMP threading layer, if anything
# starts it, resets the whole process's OpenMP thread count to its own.
export NUMBA_NUM_THREADS="${NUMBA_NUM_THREADS:-1}"
# With more than one thread (OMP_NUM_THREADS=2 bash docs/build.sh), waiting
# OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning
# cost one label-noise run 485 CPU-seconds against 50 (same bits either way;
# benchmarks/results/example_spread/label_noise_seeds_omp2_active_wait.txt).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export MPLBACKEND=Agg
# Examples run in parallel processes, one per core (at most 4).
CORES="$("$PYTHON" -c 'import os; print(len(os.sched_getaffinity(0)))')"
export SKCLUSTERFIT_DOCS_JOBS="${SKCLUSTERFIT_DOCS_JOBS:-$(( CORES < 4 ? CORES : 4 ))}"
rm -rf docs/_build docs/auto_examples docs/gen_modules docs/generated
exec "$PYTHON" -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
