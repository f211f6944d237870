"""What PyTorch's CUDA build adds to an environment (for the README's CPU-only install).

    python benchmarks/install_size.py > benchmarks/results/install-size.txt

Sums, in the running environment, the packages and files that only GPU code
uses: the ``nvidia-*`` distributions (CUDA, cuDNN, cuBLAS, NCCL...),
``triton`` (the GPU kernel compiler torch.compile uses) and torch's own CUDA
libraries (``torch/lib/*cuda*``, ``*nvrtc*``, ``*nvshmem*``), against the
size of the whole environment. PyTorch's CPU-only build has none of them.
"""

import os
import sys
import sysconfig
from importlib import metadata

from _conditions import header


def tree_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def distribution_bytes(dist):
    return sum(tree_bytes(os.path.join(dist.locate_file(""), f)) for f in dist.files or [])


def main():
    print("\n".join(f"# {line}" for line in header().splitlines()))
    rows = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"].lower()
        if name.startswith("nvidia-") or name == "triton":
            rows.append((name + " " + dist.version, distribution_bytes(dist)))
    import torch

    lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in sorted(os.listdir(lib)):
        if any(part in name for part in ("cuda", "nvrtc", "nvshmem")):
            rows.append((f"torch/lib/{name}", tree_bytes(os.path.join(lib, name))))
    gpu_only = sum(size for _, size in rows)
    environment = tree_bytes(sys.prefix)
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}; environment {sys.prefix}")
    for name, size in sorted(rows, key=lambda r: -r[1]):
        print(f"{size / 1e9:8.3f} GB  {name}")
    print(f"GPU-only files: {gpu_only / 1e9:.1f} GB of the environment's "
          f"{environment / 1e9:.1f} GB ({sysconfig.get_paths()['purelib']})")


if __name__ == "__main__":
    main()
