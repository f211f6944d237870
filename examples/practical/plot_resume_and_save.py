"""
Resuming an interrupted fit, and saving a model built on your own network
=========================================================================

A real ClusterFit fit runs for hours: a teacher pass over the data, a
k-means, then many epochs of the student. Two things keep that work from
being lost:

- ``checkpoint_dir`` writes each completed stage (teacher features,
  clusters, every student epoch) to a directory, so that calling ``fit``
  again after a crash, ``Ctrl-C`` or a pre-empted job resumes where it
  stopped -- and ends with exactly the model an uninterrupted fit gives;
- :func:`skclusterfit.save` / :func:`skclusterfit.load` store the fitted
  model in one file without pickle. Code is never stored, so a network
  class of your own is handed back when loading, with ``custom_objects``.

Both are shown here on digits with a student network defined in this
script.
"""

# %%
# A student network of our own: any ``nn.Module`` whose last layer is an
# ``nn.Linear`` works (NetClassifier resizes that layer to the number of
# clusters). The teacher is the usual small CNN trained on digits with 80% of
# the labels wrong.
import os
import tempfile

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from torch import nn

import skclusterfit
from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import random_shift
from skclusterfit.data import add_label_noise, load_digits_images


# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

class TinyNet(nn.Module):
    """Two convolutions, global pooling, and a linear classifier."""

    def __init__(self, width=16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x):
        return self.fc(self.features(x))


X, y = load_digits_images()
teacher = NetClassifier(max_epochs=20, random_state=seed).fit(
    X, add_label_noise(y, 0.8, random_state=seed)
)
torch.manual_seed(seed)
my_net = TinyNet()

# %%
# An interruption we can schedule. In real life it is ``Ctrl-C``, a killed
# job or a power cut (``kill -9`` works too: every file is written under a
# temporary name and renamed, so a half-written checkpoint never looks
# complete). Here the student's augmentation raises ``KeyboardInterrupt``
# -- what ``Ctrl-C`` raises -- at the 40th training batch of this session,
# and does ordinary random shifts otherwise. With 1,797 images in batches of
# 128 an epoch has 15 batches, so the 40th falls in the student's third
# epoch.


class ShiftOrInterrupt:
    """Random shifts of one pixel; raises KeyboardInterrupt at batch 40, once.

    The batch count lives on the class, not the object: ClusterFit trains
    a copy of the student it is given, with copies of its parameters.
    """

    batches = 0

    def __call__(self, batch, generator):
        type(self).batches += 1
        if type(self).batches == 40:
            raise KeyboardInterrupt
        return random_shift(batch, 1, generator)


def make_clusterfit(checkpoint_dir=None, verbose=0):
    return ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=50,
        student=NetClassifier(my_net, max_epochs=6, batch_size=128, augment=ShiftOrInterrupt()),
        random_state=seed,
        checkpoint_dir=checkpoint_dir,
        verbose=verbose,  # 1: one line per stage
    )


# %%
# The first fit stops in epoch 3 of 6. The directory holds what was
# completed: the teacher features, the clusters, and the student after its
# second epoch.
checkpoint_dir = tempfile.mkdtemp()
try:
    make_clusterfit(checkpoint_dir).fit(X)
except KeyboardInterrupt:
    print("-- interrupted --")
print("saved so far:", sorted(os.listdir(checkpoint_dir)))
saved_epochs = torch.load(os.path.join(checkpoint_dir, "student.pt"), weights_only=True)["epoch"]
print("student epochs completed and saved:", saved_epochs)
assert saved_epochs == 2

# %%
# Fitting again with the same data and parameters resumes: the teacher
# features and the clusters are read back, and the student continues from
# the end of its second epoch, with its optimizer, learning-rate schedule
# and random generators as they were. ``verbose=1`` reports each stage.
resumed = make_clusterfit(checkpoint_dir, verbose=1).fit(X)

# %%
# The resumed model is the one an uninterrupted fit gives, bit for bit (on
# the CPU; on a GPU some kernels are not deterministic).
uninterrupted = make_clusterfit().fit(X)
same = np.array_equal(resumed.transform(X), uninterrupted.transform(X))
print("resumed == uninterrupted:", same)
assert same, "a resumed fit must give the features of an uninterrupted one"

# %%
# Saving. One safetensors file holds the weights, the cluster assignment and
# every parameter (as JSON). Loading never unpickles, so opening a model
# file from someone else cannot run code.
path = os.path.join(tempfile.mkdtemp(), "clusterfit-digits.skcf")
resumed.save(path)
print(f"{os.path.getsize(path) / 1e6:.2f} MB")
metadata = skclusterfit.storage.read_metadata(path)  # the JSON header, no weights read
print(f"format {metadata['format']!r}, version {metadata['version']}")

# %%
# Because code is not stored, the two objects we wrote ourselves -- the
# network class and the augmentation -- must be given back. Without them,
# ``load`` says what it needs:
try:
    skclusterfit.load(path)
except ValueError as error:
    print(error)

# %%
# Given back by class name (a parameter path such as ``"student.model"``
# works too). The network object only provides the architecture: its weights
# are read from the file.
loaded = skclusterfit.load(
    path,
    custom_objects={"TinyNet": TinyNet(), "ShiftOrInterrupt": ShiftOrInterrupt()},
)
same = np.array_equal(loaded.transform(X), resumed.transform(X))
print("loaded == saved:", same, "| pseudo-labels equal:",
      np.array_equal(loaded.labels_, resumed.labels_))
assert same and np.array_equal(loaded.labels_, resumed.labels_)

# %%
# The loaded model is an ordinary fitted ClusterFit: it transforms, sits in
# a Pipeline, and can be saved again. ``skclusterfit.load(path,
# device="cpu")`` runs a model saved on a GPU machine on one without.
import matplotlib.pyplot as plt

history = [epoch["loss"] for epoch in resumed.student_.history_]
fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
ax.plot(range(1, len(history) + 1), history, "o-")
ax.axvspan(saved_epochs + 0.5, len(history) + 0.5, color="tab:orange", alpha=0.15,
           label="after resuming")
ax.set(xlabel="student epoch", ylabel="mean training loss",
       title="One student, trained in two sittings")
ax.legend()
plt.show()
