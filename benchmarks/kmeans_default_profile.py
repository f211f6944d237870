"""Where our default KMeans spends its time after the hierarchical stages (issue 25).

Two measurements on the peers jobs' data (``kmeans.py``):

1. At 200,000 x 128, K = 4000 (K/10 modes): the share of a fixed sample of
   rows whose exact nearest centre each first-E-step search finds, from the
   stages' centres: the walk from the nearest centre of the row's nearest
   mesocluster, then restarts from 2 and 4 probed mesoclusters (each walked).
   The walk check (``_ann._WalkCheck``) runs a search on every row only when
   it finds 99% of them.
2. At 1,000,000 x 256, K = 16,000: a cProfile of ``KMeans(16000,
   random_state=0).fit(X)`` with every default, the functions that take the
   most cumulative time (the profiler adds some overhead).

Usage (from the repository root)::

    python benchmarks/kmeans_default_profile.py
"""

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _conditions import header  # noqa: E402
from kmeans import make_data, normalize_rows  # noqa: E402

from skclusterfit.cluster import KMeans, _ann, _hierarchical  # noqa: E402
from skclusterfit.cluster._centroid_graph import centroid_graph  # noqa: E402
from skclusterfit.cluster._exact_cpu import gemm_nearest  # noqa: E402
from skclusterfit.cluster._rows import ArrayRows  # noqa: E402
from skclusterfit.runtime import LOCAL  # noqa: E402


def first_step_agreement():
    X = normalize_rows(make_data(200_000, 128, 400))
    X -= X.mean(0)
    centers, meso, group_of = _hierarchical.hierarchical_centers(
        ArrayRows(X), 4000, comm=LOCAL, seed=0
    )
    sample = X[:: 100]
    exact = gemm_nearest(sample, centers)
    graph = centroid_graph(centers, 32)
    print("\n200000 x 128, K = 4000, K/10 modes; 2000 sample rows; share of exact labels found")
    print("| first E-step search | share |")
    print("|---|---|")
    for n_probe in (1, 2, 4):
        groups = _hierarchical._groups_index(meso, group_of, n_probe=n_probe)
        found = groups.nearest(sample, centers)
        restart = float(np.mean(found == exact))
        _ann.graph_assign(sample, centers, graph, found)
        print(f"| {n_probe} probed mesocluster(s), restart only | {restart:.4f} |")
        print(f"| {n_probe} probed mesocluster(s), then walked | {np.mean(found == exact):.4f} |")


def profile_default_fit():
    X = normalize_rows(make_data(1_000_000, 256, 1600))
    KMeans(200, random_state=0).fit(X[:5000])  # compile/load the kernels, not profiled
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    KMeans(16000, random_state=0).fit(X)
    profiler.disable()
    print(f"\n1000000 x 256, K = 16000: KMeans(16000, random_state=0).fit(X) under cProfile: "
          f"{time.perf_counter() - start:.2f} s wall")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(r"skclusterfit", 30)
    print(out.getvalue())


if __name__ == "__main__":
    print(header(), flush=True)
    first_step_agreement()
    profile_default_fit()
