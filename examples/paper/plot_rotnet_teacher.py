"""
A self-supervised teacher: RotNet, improved by ClusterFit
=========================================================

ClusterFit does not need labels anywhere. In the paper (section 4.2) the
teacher is trained by a *pretext* task, such as predicting by how much an
image was rotated (RotNet, Gidaris et al., 2018). Such a network learns
whatever helps tell rotations apart, and its last layers specialise in that
task; ClusterFit keeps the grouping of its features and trains a fresh
network on it.

Here the whole chain uses no labels: RotNet on the digits, ClusterFit on its
features. Labels appear only in the linear probe that judges the result.
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# The pretext task: each image is shown at 0, 90, 180 and 270 degrees, and
# the network predicts which.
import os
import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import load_digits_images
from skclusterfit.evaluation import linear_probe
from skclusterfit.pretext import RotNet

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)

fig, axes = plt.subplots(3, 4, figsize=(4.5, 3.6), layout="constrained")
for row, image in zip(axes, X_train[:3]):
    for k, ax in enumerate(row):
        ax.imshow(np.rot90(image[0], k), cmap="gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
for k, ax in enumerate(axes[0]):
    ax.set_title(f"{90 * k} deg", fontsize=9)
fig.suptitle("RotNet's task: which rotation is this?")
plt.show()

# %%
# Train RotNet on the unlabelled training images, then ClusterFit with
# ``K=100`` on its features. The student is the same small CNN, trained from
# scratch on the cluster ids.
rotnet = RotNet(NetClassifier(max_epochs=15), random_state=seed).fit(X_train)
cf = ClusterFit(
    teacher=FrozenEstimator(rotnet),
    K=100,
    student=NetClassifier(max_epochs=30),
    random_state=seed,
).fit(X_train)

# %%
# Three representations, judged by a linear probe on the clean labels: a
# network with random weights (the floor any trained network should beat),
# RotNet's penultimate features, and the ClusterFit student's.
random_net = FeatureExtractor("cnn", random_state=seed).fit(X_train)
scores = {
    "random CNN": linear_probe(X_train, y_train, X_test, y_test, transformer=random_net),
    "RotNet teacher": linear_probe(X_train, y_train, X_test, y_test, transformer=rotnet),
    "ClusterFit on RotNet": linear_probe(X_train, y_train, X_test, y_test, transformer=cf),
}
for name, score in scores.items():
    print(f"{name:>22}: {score:.3f}")

# %%
fig, ax = plt.subplots(figsize=(6.5, 3), layout="constrained")
values = [100 * s for s in scores.values()]
bars = ax.barh(list(scores), values, color=["tab:gray", "tab:orange", "tab:blue"])
ax.bar_label(bars, fmt="%.1f%%", padding=3)
ax.set(xlim=(min(values) - 10, 100), xlabel="linear-probe accuracy on clean labels (%)",
       title="No labels until the probe")
ax.invert_yaxis()
plt.show()

# %%
# What the three bars say. On 8x8 digits a network with *random* weights is
# a strong floor: 128 random convolutional features are nearly linearly
# separable by digit. RotNet's penultimate features fall *below* that floor
# -- the last layer of a rotation predictor keeps what tells 0 from 90
# degrees, not what tells a 3 from an 8, which is the paper's point about
# pretext tasks. ClusterFit on those features, still without a single
# label, gives a student above its RotNet teacher. It does not clearly beat
# the random network: the two are within about two points, a handful of
# the 540 test images, and which one is ahead changes with the seed.
n_test = len(y_test)
diff = {name: round((scores[name] - scores["RotNet teacher"]) * n_test) for name in scores}
print(f"test images gained over the RotNet teacher: {diff}")
# The claims above, checked on this run. Over seeds 0 to 2 with one and two
# torch threads (benchmarks/example_spread.py) RotNet was 1.9 to 5.5 points
# below the random network, the student 1.7 to 5.2 points above RotNet, and
# the student within 1.3 points of the random network (above it on one seed
# of three): the bounds lie outside those ranges.
assert scores["RotNet teacher"] < scores["random CNN"], "RotNet below the random floor"
assert scores["ClusterFit on RotNet"] > scores["RotNet teacher"], "the student above RotNet"
assert abs(scores["ClusterFit on RotNet"] - scores["random CNN"]) <= 0.025, \
    "the student within about two points of the random network"

# %%
# The paper's RotNet and Jigsaw teachers on ImageNet show the student ahead
# of its teacher by several points (its Table 6); the
# :ref:`layer-wise probe <sphx_glr_auto_examples_paper_plot_layerwise_probe.py>`
# shows where in a network teacher and student differ.
