"""
Preprocessing the teacher's features before k-means
===================================================

The public implementations of ClusterFit and DeepCluster do not cluster raw
features: they L2-normalise them, and often PCA-whiten them to a few hundred
dimensions first. Normalising makes k-means compare directions (cosine
similarity) instead of magnitudes; whitening gives every principal direction
the same variance, so that a few dominant directions do not decide every
cluster alone.

This example clusters the same teacher features four ways and shows what
each does to the pseudo-labels and to the student trained on them.
"""

# sphinx_gallery_thumbnail_number = 2

# %%
# A teacher trained on digits with 80% wrong labels.
import os
import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import Normalizer

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.cluster import KMeans
from skclusterfit.data import add_label_noise, load_digits_images
from skclusterfit.evaluation import linear_probe

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)
teacher = NetClassifier(max_epochs=40, random_state=seed).fit(
    X_train, add_label_noise(y_train, 0.8, random_state=seed)
)
features = teacher.transform(X_train)

# %%
# Why whitening: the spectrum of the teacher's features. A handful of
# directions carry most of the variance; k-means on these features is mostly
# k-means on those few directions.
pca = PCA().fit(Normalizer().fit_transform(features))
fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
ax.semilogy(np.arange(1, len(pca.explained_variance_ratio_) + 1),
            pca.explained_variance_ratio_, ".-")
ax.axvline(32, color="gray", linestyle=":")
ax.annotate("32 components kept\nwhen whitening", (32, pca.explained_variance_ratio_[31]),
            xytext=(10, 20), textcoords="offset points", color="gray")
ax.set(xlabel="principal component", ylabel="fraction of variance",
       title="Spectrum of the L2-normalised teacher features")
plt.show()

# %%
# Four clusterers, all k-means with ``K=100``: on the raw features, on
# L2-normalised features (the default), PCA-whitened to 32 dimensions, and
# whitened then L2-normalised (DeepCluster's recipe). Both steps are options
# of :class:`skclusterfit.cluster.KMeans`; the whitening is fitted on the
# features being clustered.
clusterers = {
    "raw": KMeans(normalize=False),
    "L2": KMeans(),
    "whiten": KMeans(whiten_dim=32, normalize=False),
    "whiten + L2": KMeans(whiten_dim=32),
}
results = {}
for name, clusterer in clusterers.items():
    cf = ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=100,
        clusterer=clusterer,
        student=NetClassifier(max_epochs=30),
        random_state=seed,
    ).fit(X_train)
    results[name] = (
        normalized_mutual_info_score(y_train, cf.labels_),
        linear_probe(X_train, y_train, X_test, y_test, transformer=cf),
    )
    print(f"{name:>17}: NMI {results[name][0]:.3f}, probe {results[name][1]:.3f}")
pre = linear_probe(X_train, y_train, X_test, y_test, transformer=teacher)

# %%
# Pseudo-label quality (NMI with the digits, left) and the student's
# linear-probe accuracy (right), against the teacher's (dashed).
names = list(results)
nmi = [results[n][0] for n in names]
probe = [100 * results[n][1] for n in names]
colors = plt.cm.viridis(np.linspace(0.15, 0.85, len(names)))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
ax1.barh(names, nmi, color=colors)
ax1.set(xlabel="NMI with the true digits", title="Pseudo-labels", xlim=(0, 1))
ax2.barh(names, probe, color=colors)
ax2.axvline(100 * pre, color="tab:red", linestyle="--", label="teacher")
ax2.set(xlabel="linear-probe accuracy (%)", title="Student features",
        xlim=(min(probe + [100 * pre]) - 3, 100))
ax2.legend(loc="upper right")
for ax in (ax1, ax2):
    ax.invert_yaxis()
plt.show()

# %%
# What this run shows. Whitening gives pseudo-labels slightly closer to the
# digits (over seeds 0 to 4, the better whitened option's NMI was 0.03 to
# 0.07 above the better unwhitened one's), but the four students end within
# a few points of each other (0.9 to 3.0 over those seeds), about as far as
# one option's student moves between seeds on 540 test images (the L2 student's probe ranged over
# 2.2 points across those seeds), and which option leads changes with the
# seed. On these 128-dimensional features of a small CNN, none of the
# options matters much to the student, and the default -- L2 normalisation,
# the cosine geometry the public implementations use -- has no special claim
# to being the best. Its rank in this run:
ranking = sorted(results, key=lambda n: results[n][1], reverse=True)
print("students, best probe first:", " > ".join(ranking))
print(f"the default (L2) ranks {ranking.index('L2') + 1} of {len(ranking)}")
spread = 100 * (max(r[1] for r in results.values()) - min(r[1] for r in results.values()))
print(f"spread of the students' probes: {spread:.1f} points")
nmi_spread = max(r[0] for r in results.values()) - min(r[0] for r in results.values())
print(f"spread of the pseudo-labels' NMI: {nmi_spread:.3f}")
whitened = max(results["whiten"][0], results["whiten + L2"][0])
unwhitened = max(results["raw"][0], results["L2"][0])
print(f"NMI of the better whitened option minus the better other one: {whitened - unwhitened:+.3f}")
# The claims above, checked on this run. Over seeds 0 to 4 with one torch
# thread (benchmarks/example_spread.py) the students' spread was 0.9
# to 3.0 points, the NMI spread 0.05 to 0.09, whitening's NMI lead 0.03 to
# 0.07: the bounds lie outside those ranges.
assert spread <= 4.0, "the four students should be within a few points"
assert nmi_spread <= 0.12, "the four pseudo-labellings should differ by a few NMI points"
assert whitened - unwhitened >= 0.01, "whitening should lead on NMI"

# %%
# Whitening earns its place on larger features: on 2048-dimensional ResNet
# features a few directions dominate far more than here (the spectrum
# above), and the public implementations whiten to about 256 dimensions
# before clustering. Any other preprocessing can be put in front of a
# clusterer with a :class:`~sklearn.pipeline.Pipeline`; ClusterFit sets
# ``K`` on its last step, e.g.
# ``make_pipeline(Normalizer(), PCA(64, whiten=True), KMeans(normalize=False))``.
