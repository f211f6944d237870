"""
Clustering with a large K: what costs time, and what each shortcut costs
========================================================================

The paper clusters millions of feature vectors into thousands of clusters
(K = 1,500 to 30,000). :class:`skclusterfit.cluster.KMeans` has three
shortcuts for that regime; this example measures, on one CPU core, what each
saves and what it costs in inertia (the mean squared distance of a point to
its centre, lower is better):

- ``init_size``: draw the k-means++ seeds from a random subset of rows
  (by default ``max(3 * K, 10000)`` of them). Greedy k-means++ costs about
  ``rows * K * log(K)`` distances, more than the Lloyd iterations themselves
  when K is large and every row is a candidate.
- ``max_samples``: fit the centres on a random sample of rows, then assign
  every row to its nearest centre in one streaming pass.
- ``assign="ann"``: each point compares itself only with the centroids next
  to its current one (a walk on the centroid k-nearest-neighbour graph),
  so an iteration costs about the same whatever K. It is the default on the
  CPU from K = 4096.

The data stand in for teacher features: 24,000 vectors in 32 dimensions
around 50 broad modes (ClusterFit's regime: many more clusters than
classes). Timings are CPU seconds of this process, measured while this page
was built; they move with the machine, the ratios less so.
"""

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_blobs

from skclusterfit.cluster import KMeans

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, _ = make_blobs(n_samples=24_000, centers=50, n_features=32, cluster_std=3.0,
                  random_state=seed)
X = X.astype(np.float32)
X_unit = X / np.linalg.norm(X, axis=1, keepdims=True)  # KMeans L2-normalises rows


def fit(**params):
    """Fit KMeans; return it with the CPU seconds it took and its mean inertia."""
    start = time.process_time()
    km = KMeans(random_state=seed, **params).fit(X)
    seconds = time.process_time() - start
    inertia = float(((X_unit - km.cluster_centers_[km.labels_]) ** 2).sum(1).mean())
    return km, seconds, inertia


# %%
# Exact against approximate assignment, for growing K. Both start from the
# same centres (random rows, so that seeding costs nothing here) and run up
# to 20 Lloyd iterations. The exact engine computes only the point-to-centre
# distances it cannot rule out with bounds carried from one iteration to the
# next (Yinyang's method); the walk compares each point with the
# ``n_neighbors`` centroids next to its own.
KMeans(n_clusters=20, assign="ann").fit(X[:2000])  # compile the graph walk (numba) untimed
Ks = [300, 1000, 3000]
sweep = {"exact": [], "ann": []}
for K in Ks:
    init = X_unit[np.random.RandomState(K + seed).choice(len(X), K, replace=False)]
    for assign in sweep:
        km, seconds, inertia = fit(n_clusters=K, init=init, assign=assign)
        sweep[assign].append((seconds, inertia))
    (t_exact, i_exact), (t_ann, i_ann) = sweep["exact"][-1], sweep["ann"][-1]
    print(f"K={K:>5}: exact {t_exact:5.1f}s, ann {t_ann:5.1f}s (ann/exact {t_ann / t_exact:4.2f}); "
          f"inertia ann/exact {i_ann / i_exact:.4f}")

ratio = [a[0] / e[0] for a, e in zip(sweep["ann"], sweep["exact"])]
# The claims of the text below, checked on this run. Over seeds 0 to 2 with
# one and two torch threads (benchmarks/example_spread.py; a 2-core machine
# shared with other jobs) the walk took 1.5 to 2.1 times the exact engine's
# CPU time and its inertia was at most 0.3% above exact's: the bounds leave
# room on both.
assert min(ratio) > 1, "at these sizes the exact engine should be the faster one"
assert all(a[1] / e[1] < 1.01 for a, e in zip(sweep["ann"], sweep["exact"])), \
    "ann's inertia should stay within 1% of exact's"

# %%
# Seeding and sampling, at K = 3,000 with the exact engine: k-means++ over
# all 24,000 rows, the default seeding sample (``max(3K, 10000)`` = 10,000
# rows), and the default seeding with the centres fitted on a half or a
# quarter of the rows (``max_samples``).
K = 3000
runs = {
    "k-means++ on all rows\n(init_size=24000)": dict(init_size=len(X)),
    "default\n(init_size=10000)": dict(),
    "default,\nmax_samples=0.5": dict(max_samples=0.5),
    "default,\nmax_samples=0.25": dict(max_samples=0.25),
}
results = {}
for name, params in runs.items():
    km, seconds, inertia = fit(n_clusters=K, assign="exact", **params)
    results[name] = (seconds, inertia)
    print(f"{name.replace(chr(10), ' '):<38} {seconds:5.1f}s  inertia {inertia:.5f}")

(t_all, i_all), (t_init, i_init) = list(results.values())[:2]
print(f"seeding from 10,000 rows: {t_all / t_init:.1f}x faster than from all rows, "
      f"inertia {100 * (i_init / i_all - 1):+.2f}%")
# Checked below with margins over what seeds 0 to 2 gave: the seeding sample
# took 0.33 to 0.47 of the time of seeding from all rows, for 1.0% to 1.25%
# more inertia, and each halving of max_samples raised the inertia by 9.7%
# to 12.3%.
assert t_init < 0.8 * t_all, "a seeding sample should cut the time of a fit at this K"
inertias = [inertia for _, inertia in results.values()]
assert inertias[1] < inertias[2] < inertias[3], "smaller samples should cost more inertia"
assert i_init < 1.02 * i_all, "seeds from a sample should cost under 2% of inertia"

# %%
# Time against quality. Left: CPU seconds of the Lloyd iterations against K.
# Right: each option at K = 3,000, placed by its time and its inertia
# relative to seeding from all rows.
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
for assign, marker in zip(sweep, "os"):
    ax1.plot(Ks, [t for t, _ in sweep[assign]], marker=marker, label=f'assign="{assign}"')
ax1.set(xscale="log", xlabel="K", ylabel="CPU seconds (20 iterations at most)",
        title="Exact against graph-walk assignment")
ax1.set_xticks(Ks, [str(k) for k in Ks])
ax1.minorticks_off()
ax1.legend()
ax1.grid(alpha=0.3)
for name, (seconds, inertia) in results.items():
    ax2.scatter(seconds, 100 * (inertia / i_all - 1), s=40)
    ax2.annotate(name, (seconds, 100 * (inertia / i_all - 1)), xytext=(5, 4),
                 textcoords="offset points", fontsize=8)
ax2.axhline(0, color="gray", linewidth=0.8)
ax2.set(xlabel="CPU seconds (seeding + iterations + assignment)",
        ylabel="inertia above k-means++ on all rows (%)", title=f"Shortcuts at K = {K:,}")
ax2.margins(x=0.35, y=0.25)
ax2.grid(alpha=0.3)
plt.show()

# %%
# What the numbers say, at this size:
#
# - **init_size** is the cheap win, and the default already takes it: at
#   K = 3,000 k-means++ over every row dominates the fit, and seeding from
#   a sample of 10,000 rows cuts the fit's time by the factor printed above
#   for an inertia within 2% (checked when this page is built). For K in the
#   tens of thousands, keep the sample at a few rows per cluster or more.
# - **max_samples** costs inertia -- the fewer rows per cluster in the
#   sample, the noisier the centres (the printed inertias grow as the sample
#   shrinks) -- and at 24,000 rows it saves little time, because the
#   iterations on all rows are cheap here. It is for data too large to
#   iterate over: in the paper's regime (millions of rows) a sample of a
#   couple of million keeps hundreds of rows per cluster.
# - **assign="ann"** keeps its inertia within 1% of exact here, but at
#   these sizes the exact engine is the faster one (the printed ann/exact
#   CPU-time ratios are above 1, checked when this page is built): its
#   bounds skip most distances once the centres settle. The walk pays off
#   with more rows and clusters: ``benchmarks/README.md`` measures it at
#   0.15x scikit-learn's CPU time and 0.38x the exact engine's at
#   200,000 x 128 with K = 4,000 (inertia +0.08%), which is why
#   ``assign="auto"`` switches to it only from K = 4096 on the CPU. On a
#   GPU, exact distances are cheap and ``device="cuda"`` is the better
#   choice.
#
# In ClusterFit, pass the options through your own clusterer:
# ``ClusterFit(clusterer=KMeans(init_size=50_000, max_samples=2_000_000), K=16000)``.
