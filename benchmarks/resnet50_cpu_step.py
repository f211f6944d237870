"""Training throughput of a ResNet-50 student on this CPU (images per second).

For docs/user_guide/time_and_hardware.rst: why a ResNet-50 student is a GPU
job. Trains NetClassifier("resnet50") for one epoch on random 224x224 RGB
images and reports images/s with the thread count and load average:

    python benchmarks/resnet50_cpu_step.py [n_images]
"""

import os
import sys
import time

import numpy as np
import torch

from skclusterfit import NetClassifier

n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
rng = np.random.RandomState(0)
X = rng.rand(n, 3, 224, 224).astype(np.float32)
y = np.arange(n) % 10
clf = NetClassifier("resnet50", max_epochs=1, batch_size=16, random_state=0, device="cpu")
start, cpu = time.perf_counter(), time.process_time()
clf.fit(X, y)
wall = time.perf_counter() - start
print(f"NetClassifier('resnet50'), 1 epoch of {n} images 224x224, batch 16, CPU, "
      f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.2f}: "
      f"{wall:.1f} s wall, {time.process_time() - cpu:.1f} s CPU, {n / wall:.2f} images/s")
print(f"90 epochs of 1,000,000 images at this rate: {90e6 / (n / wall) / 86400 / 365:.1f} years")
