"""
Swapping the clusterer
======================

The clustering step is a parameter: ``clusterer="kmeans"`` is skclusterfit's
own k-means, and any scikit-learn estimator with ``fit_predict`` (or
``labels_`` after ``fit``) can replace it. ClusterFit sets ``K`` on a clone
as ``n_clusters`` or ``n_components``, on the last step when the clusterer is
a :class:`~sklearn.pipeline.Pipeline`.

This example runs the same teacher and student with three clusterers and
compares the pseudo-labels and the resulting students.
"""

# %%
# One teacher for all three runs, trained on digits with 80% wrong labels.
# ``memory`` caches its features so that they are extracted once.
import os
from tempfile import mkdtemp

import matplotlib.pyplot as plt
import numpy as np
from joblib import Memory
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skclusterfit import ClusterFit, NetClassifier
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
memory = Memory(mkdtemp(), verbose=0)

# %%
# The three clusterers. The Gaussian mixture works on 32 PCA components with
# diagonal covariances: a full-covariance mixture of 100 components in the
# teacher's 128 dimensions would have more parameters than there are images.
clusterers = {
    "skclusterfit KMeans": "kmeans",
    "MiniBatchKMeans": MiniBatchKMeans(n_init=3, batch_size=256),
    "GaussianMixture\n(PCA 32, diagonal)": make_pipeline(
        PCA(n_components=32, random_state=seed),
        GaussianMixture(covariance_type="diag", max_iter=100),
    ),
}

runs = {}
for name, clusterer in clusterers.items():
    cf = ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=100,
        clusterer=clusterer,
        student=NetClassifier(max_epochs=30),
        memory=memory,
        random_state=seed,
    ).fit(X_train)
    runs[name] = {
        "sizes": np.sort(np.bincount(cf.labels_, minlength=100))[::-1],
        "nmi": normalized_mutual_info_score(y_train, cf.labels_),
        "probe": linear_probe(X_train, y_train, X_test, y_test, transformer=cf),
    }
    print(f"{name.splitlines()[0]:>20}: NMI {runs[name]['nmi']:.3f}, "
          f"probe {runs[name]['probe']:.3f}")

pre = linear_probe(X_train, y_train, X_test, y_test, transformer=teacher)
print(f"{'teacher':>20}: probe {pre:.3f}")

# %%
# Left: how the three spread 1,257 images over 100 clusters. Middle: how well
# the pseudo-labels agree with the digits (NMI). Right: what the student
# learned from them, against the teacher's own features (dashed).
names = list(runs)
colors = ["tab:blue", "tab:orange", "tab:green"]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
for name, color in zip(names, colors):
    axes[0].plot(runs[name]["sizes"], color=color, label=name.replace("\n", " "))
axes[0].set(xlabel="clusters, largest first", ylabel="images", title="Cluster sizes")
axes[0].legend(fontsize=8)
short = [n.split("\n")[0].replace("skclusterfit ", "") for n in names]
axes[1].bar(short, [runs[n]["nmi"] for n in names], color=colors)
axes[1].set(ylabel="NMI", title="Pseudo-labels vs true digits", ylim=(0, 1))
probe = [100 * runs[n]["probe"] for n in names]
axes[2].bar(short, probe, color=colors)
axes[2].axhline(100 * pre, color="tab:red", linestyle="--")
axes[2].annotate("teacher", (-0.4, 100 * pre), xytext=(0, 3),
                 textcoords="offset points", color="tab:red", fontsize=8)
axes[2].set(ylabel="linear-probe accuracy (%)", title="Student features",
            ylim=(min(probe + [100 * pre]) - 3, 100))
for ax in axes[1:]:
    ax.tick_params(axis="x", labelsize=8)
plt.show()

# %%
# The three clusterings differ in their sizes more than in their agreement
# with the digits, and the students end up within about two points of each
# other, and well above their teacher: ClusterFit needs the clusters to
# group similar images, not to be a particular algorithm's optimum. The
# built-in k-means is the default because it scales: it runs on the GPU when
# there is one, assigns approximately through a graph of nearby centroids
# when ``K`` is in the thousands, fits on a sample when the data is huge
# (``max_samples``), and re-seeds empty clusters instead of leaving
# pseudo-labels unused.
nmi_values = [runs[n]["nmi"] for n in names]
probe_values = [runs[n]["probe"] for n in names]
print(f"NMI spread {max(nmi_values) - min(nmi_values):.3f}, student probe spread "
      f"{100 * (max(probe_values) - min(probe_values)):.1f} points, weakest student "
      f"{100 * (min(probe_values) - pre):+.1f} points from the teacher")
# The claims above, checked on this run. Over seeds 0 to 2 with one torch
# thread (benchmarks/example_spread.py) the NMI spread was 0.013 to 0.034,
# the students' spread 0.7 to 1.7 points and the weakest student 4.2 to 4.8
# points above the teacher: the bounds lie outside those ranges.
assert max(nmi_values) - min(nmi_values) <= 0.06, "the clusterings should agree with the digits alike"
assert max(probe_values) - min(probe_values) <= 0.025, "the students should be within about two points"
assert min(probe_values) - pre >= 0.02, "every student should be well above its teacher"
