"""CPU time of one label-noise run under the current thread settings.

For docs/user_guide/troubleshooting.rst: on a small or shared CPU, more torch
threads than free cores make small networks many times slower, and a
different thread count gives (slightly) different numbers. Compare:

    OMP_NUM_THREADS=1 python benchmarks/threads_label_noise.py
    python benchmarks/threads_label_noise.py          # torch's default: one thread per core

Raw output of a run: benchmarks/results/threads-label-noise.txt.
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs"))
from scripts.label_noise_seeds import load_digits_images, run  # noqa: E402

X, y = load_digits_images()
start, cpu = time.perf_counter(), time.process_time()
result = run(0, 0.0, X, y)
print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}: "
      f"N_pre {result['n_pre']:.4f}, N_cf {result['n_cf']:.4f}, "
      f"{time.process_time() - cpu:.1f} CPU s, {time.perf_counter() - start:.1f} s wall")
