"""
ClusterFit on videos: clip-based 3-D CNNs as teacher and student
================================================================

The paper's largest gains are on videos (section 4.1.2): an R(2+1)D network
pre-trained on hashtags of 19M videos, then ClusterFit with per-video
features averaged over clips. No video data ships with this package, so here
the videos are *moving digits*: each is a short clip of one of scikit-learn's
8x8 digits drifting across a 16x16 frame, and its label is the digit.

Videos are arrays of shape ``(n, T, C, H, W)``, frames first. A torchvision
video network (``r3d_18``, ``mc3_18``, ``r2plus1d_18``) sees them through
:class:`~skclusterfit.networks.VideoModel`, which sets the clip length and the
number of clips: in training one clip per video at a random start (temporal
jittering), in inference the features of clips spread uniformly over the
video, averaged. Everything else is the image pipeline: a teacher trained on
noisy labels, ClusterFit on its features, a linear and a kNN probe on clean
labels. Networks and data are tiny so that this runs on a laptop CPU in
about a minute; the numbers below measure that the path works, not the
paper's effect sizes.
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# 400 videos of 8 frames; each row below is one video.
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import add_label_noise, make_moving_digits
from skclusterfit.evaluation import knn_probe, linear_probe
from skclusterfit.networks import VideoModel

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

start = time.perf_counter()
X, y = make_moving_digits(360, n_frames=8, size=24, digit_scale=2, random_state=seed)
print(f"videos {X.shape} {X.dtype} (n, T, C, H, W)")
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)

fig, axes = plt.subplots(3, 8, figsize=(7, 2.9), layout="constrained")
for row, video, label in zip(axes, X_train[:3], y_train[:3]):
    for t, ax in enumerate(row):
        ax.imshow(video[t, 0], cmap="gray_r", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(f"digit {label}")
for t, ax in enumerate(axes[0]):
    ax.set_title(f"t={t}", fontsize=8)
plt.show()

# %%
# The teacher: an R3D-18 trained on labels of which half were replaced by
# another digit, the analogue of the paper's hashtags. It sees clips of 4
# frames; its per-video features average 2 clips.
clips = dict(clip_length=4, n_clips=2)
y_noisy = add_label_noise(y_train, 0.5, random_state=seed)
recipe = dict(max_epochs=4, batch_size=16, lr=0.01)
teacher = NetClassifier(VideoModel("r3d_18", **clips), **recipe, random_state=seed).fit(
    X_train, y_noisy
)

# %%
# ClusterFit: the teacher's 512-d per-video features are clustered into
# ``K=40`` groups, and a student -- an MC3-18, another torchvision video
# network -- is trained from scratch on the cluster ids. No label is used.
cf = ClusterFit(
    teacher=FrozenEstimator(teacher),
    K=40,
    student=NetClassifier(VideoModel("mc3_18", **clips), **recipe),
    random_state=seed,
).fit(X_train)
print(f"{len(np.unique(cf.labels_))} clusters; student features {cf.transform(X_test).shape}")


# %%
# Both networks' features, judged on clean labels of the held-out videos by
# a linear probe and by a weighted k-nearest-neighbour vote on L2-normalised
# features (:func:`~skclusterfit.evaluation.knn_probe`, DINO's protocol,
# k=20). The kNN vote needs no training, so it shows how the features are
# arranged as they are.
scores = {}
for name, network in (("teacher N_pre (R3D-18)", teacher), ("ClusterFit N_cf (MC3-18)", cf)):
    train, test = network.transform(X_train), network.transform(X_test)
    scores[name] = {
        "linear": linear_probe(train, y_train, test, y_test),
        "kNN": knn_probe(train, y_train, test, y_test, k=20),
    }
    print(f"{name:>26}: linear {scores[name]['linear']:.3f}  kNN {scores[name]['kNN']:.3f}")
print(f"teacher's accuracy on its noisy training labels: {teacher.score(X_train, y_noisy):.3f}")
print(f"total {time.perf_counter() - start:.0f} s")

# %%
fig, ax = plt.subplots(figsize=(6.5, 2.8), layout="constrained")
names = list(scores)
width = 0.38
for i, probe in enumerate(("linear", "kNN")):
    values = [100 * scores[name][probe] for name in names]
    bars = ax.barh(np.arange(2) + (i - 0.5) * width, values, width, label=f"{probe} probe")
    ax.bar_label(bars, fmt="%.1f%%", padding=3)
ax.set_yticks(np.arange(2), names)
ax.set(xlim=(0, 110), xlabel="accuracy on clean held-out labels (%)",
       title="Videos: teacher on 50% noisy labels vs ClusterFit")
ax.invert_yaxis()
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %%
# What this shows, and what it does not. The video path runs end to end:
# 5-D arrays in, clip-based 3-D CNNs trained on random clips, per-video
# features averaged over clips for clustering and probing, and a student of
# another architecture than its teacher. At this size the teacher, trained
# for four epochs on labels half of which are wrong, still fits most of its
# noise poorly, and ClusterFit's student lands near it, not above it. The
# numbers printed above are this build's; over seeds 0 and 1 and one or two
# torch threads on a 2-core Intel Xeon the teacher's linear probe ranged
# from 0.31 to 0.35 and the student's from 0.25 to 0.34, and the teacher was
# ahead on the kNN probe in every run (0.19-0.28 against 0.16-0.18;
# ``benchmarks/results/example_spread/``). A few hundred 8-frame videos and
# four epochs are far from the 19M videos and the 3-6 point gains of the
# paper's Table 5, and this page does not claim to reproduce them. The
# control experiment on images, where N_cf's lead grows with the label noise,
# is in :ref:`paper_results`.
