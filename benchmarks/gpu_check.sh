#!/usr/bin/env bash
# The GPU run of skclusterfit, in one script (sized for under 10 minutes on one GPU).
#
#   bash benchmarks/gpu_check.sh              # one GPU
#   bash benchmarks/gpu_check.sh --gpus 2     # also a 2-GPU DDP fit (NCCL)
#   bash benchmarks/gpu_check.sh --dry-run    # every step on the CPU, small sizes
#
# Run from the repository root, with skclusterfit installed (pip install -e
# ".[dev,bench,bench-gpu]" on the GPU machine; bench-gpu's faiss must match
# the CUDA major of torch, which step 1 prints). Prints everything to stdout
# and to benchmarks/results/gpu_check-<date>.txt; each step ends with its exit
# status and seconds, and the script goes on after a failed step. What each
# step runs is described in docs/user_guide/gpu.rst and benchmarks/README.md.

set -u
cd "$(dirname "$0")/.."

DRY=0
GPUS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --gpus) GPUS="$2"; shift ;;
        --gpus=*) GPUS="${1#--gpus=}" ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (use --dry-run, --gpus N)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    export CUDA_VISIBLE_DEVICES=""
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
else
    DEVICE=cuda
fi
export SKCF_CHECK_DEVICE="$DEVICE" SKCF_CHECK_DRY="$DRY"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

mkdir -p benchmarks/results
LOG="benchmarks/results/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)$([ "$DRY" = 1 ] && echo -dry-run).txt"
exec > >(tee "$LOG") 2>&1

FAILED=()
step() {
    local name="$1"; shift
    echo
    echo "### $name"
    echo "\$ $*"
    local start=$SECONDS
    "$@"
    local rc=$?
    echo "### $name: exit $rc, $((SECONDS - start)) s"
    [ $rc -eq 0 ] || FAILED+=("$name")
}

echo "gpu_check: device=$DEVICE dry_run=$DRY gpus=$GPUS, $(date -u), commit $(git rev-parse --short HEAD 2>/dev/null)"

# 1. The machine.
step "machine" python - <<'EOF'
import os, platform, torch
print(f"CPU: {os.cpu_count()} logical CPUs, {platform.processor() or platform.machine()}, "
      f"load {os.getloadavg()[0]:.2f}; Python {platform.python_version()}")
print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
      f"cuDNN {torch.backends.cudnn.version()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"GPU {i}: {p.name}, compute capability {p.major}.{p.minor}, "
          f"{p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs")
if not torch.cuda.is_available():
    print("no CUDA device visible" + (" (dry run)" if os.environ["SKCF_CHECK_DRY"] == "1" else ""))
try:
    import faiss
    print(f"faiss {faiss.__version__}, sees {faiss.get_num_gpus()} GPU(s)")
except ImportError:
    print("faiss: not installed")
try:
    import importlib.metadata as md
    print(f"fastkmeans {md.version('fastkmeans')}")
except Exception:
    print("fastkmeans: not installed")
EOF
command -v nvidia-smi >/dev/null && step "nvidia-smi" nvidia-smi

# 2. Tests: the gpu-marked ones on the GPU, and the suite pinned to the CPU
#    (tests/conftest.py hides CUDA from it). The dry run takes one file of it.
step "pytest -m gpu" python -m pytest -q -m gpu -p no:randomly -rs
if [ "$DRY" = 1 ]; then
    step "CPU-pinned suite (dry run: tests/test_hardware.py)" \
        python -m pytest -q -p no:randomly tests/test_hardware.py
else
    step "CPU-pinned suite" python -m pytest -q -p no:randomly -n 8
fi

# 3. ClusterFit on images with AMP on the device: teacher -> k-means ->
#    student, saved, loaded on the CPU (CUDA hidden) and compared in float32.
step "ClusterFit on the device, saved, loaded on the CPU" python benchmarks/_gpu_check_fit.py

# 4. A video teacher and a video student on the device, and channels_last_3d
#    against torch's default layout for a Conv3d network.
step "video networks on the device" python benchmarks/_gpu_check_video.py

# 5. k-means: the torch engine against faiss and fastkmeans.
if [ "$DRY" = 1 ]; then
    step "k-means (dry run: gpu-smoke on the CPU)" \
        python benchmarks/kmeans.py --device cpu --sizes gpu-smoke
else
    step "k-means on the GPU" python benchmarks/kmeans.py --device cuda --sizes gpu-1m,gpu-2048
fi

# 6. The training and extraction loops against bare PyTorch (images/s).
if [ "$DRY" = 1 ]; then
    step "loops vs bare PyTorch (dry run)" \
        python benchmarks/loops.py --device cpu --n-samples 512 --epochs 1 --repeats 1
else
    step "loops vs bare PyTorch" \
        python benchmarks/loops.py --device cuda --n-samples 50000 --epochs 2 \
            --batch-size 256 --extract-batch-size 1024 --repeats 3
fi
# The model-library adapters (timm, Hugging Face, open_clip, hub; ViT-S/14 at
# 224 px) against bare loops (the dev extra installs the libraries).
if [ "$DRY" = 1 ]; then
    step "model-library adapters vs bare loops (dry run)" \
        python benchmarks/loops.py --libraries --device cpu --n-samples 32 \
            --large-samples 2 --extract-batch-size 16 --repeats 1
else
    step "model-library adapters vs bare loops" \
        python benchmarks/loops.py --libraries --device cuda --n-samples 4096 \
            --large-samples 1024 --extract-batch-size 256 --repeats 3
fi

# 7. Several GPUs: the distributed tests and a DDP fit of ClusterFit (NCCL),
#    against the same fit in one process.
#    The dry run takes one of the two test files (CI runs both with -m slow).
if [ "$GPUS" -gt 1 ]; then
    if [ "$DRY" = 1 ]; then
        step "tests/test_distributed_hardware.py (dry run, gloo)" \
            python -m pytest -q -m slow -p no:randomly tests/test_distributed_hardware.py
    else
        step "tests/test_distributed*.py (gloo, CPU-pinned)" \
            python -m pytest -q -m slow -p no:randomly -n 2 tests/test_distributed.py \
                tests/test_distributed_hardware.py
    fi
    step "DDP ClusterFit fit on $GPUS processes" python benchmarks/_gpu_check_ddp.py "$GPUS"
fi

echo
if [ ${#FAILED[@]} -eq 0 ]; then
    echo "gpu_check: every step passed; output in $LOG"
else
    echo "gpu_check: FAILED steps: ${FAILED[*]}; output in $LOG"
    exit 1
fi
