"""Why the K = 100,000 job's subsample lands 6% above flat Lloyd: the refinement, varied.

``kmeans_large.py`` compares its algorithm with flat exact Lloyd on a
200,000-row subsample of its data at K = 2,000 (the same rows per cluster),
with the large-K refinement forced there. This script makes the same kind of
data (the L2-normalised mixture of ``kmeans_large.write_data``: 10,000
modes, so five modes per cluster at K = 2,000) and varies what the
hierarchical engine's last stage does:

- the inverted-file refinement over mesoclusters (``engine_ == "groups"``,
  the default from K = 50,000) with 3, 6 and 10 probed groups and 2 (the
  default, ``max_iter="auto"``), 5, 10 and 20 iterations;
- the centroid-graph refinement (the default below K = 50,000) with 2, 5
  and 20 iterations.

Each line prints the inertia over flat exact Lloyd's (20 iterations, the
same seed) and the fit's wall seconds. Usage::

    python benchmarks/kmeans_large_refinement.py
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _conditions import header  # noqa: E402
from kmeans_large import write_data  # noqa: E402

from skclusterfit.cluster import KMeans, _hierarchical, _kmeans  # noqa: E402


def fit(X, **params):
    start = time.perf_counter()
    km = KMeans(2000, random_state=0, **params).fit(X)
    return km, time.perf_counter() - start


def main():
    print(header(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.npy")
        write_data(path, 200_000, 64, 10_000)
        X = np.asarray(np.load(path), dtype=np.float32)
    flat, seconds = fit(X, algorithm="lloyd", assign="exact")
    print(f"flat exact Lloyd, {flat.n_iter_} iterations: inertia {flat.inertia_:.1f}, "
          f"{seconds:.1f} s")
    default_probe = _hierarchical._groups_index.__defaults__
    groups_from = _kmeans._GROUPS_MIN_CLUSTERS
    try:
        _kmeans._GROUPS_MIN_CLUSTERS = 1  # the large-K refinement at this K
        for n_probe in (3, 6, 10):
            _hierarchical._groups_index.__defaults__ = (n_probe,)
            for max_iter in (2, 5, 10, 20):
                km, seconds = fit(X, algorithm="hierarchical", max_iter=max_iter)
                print(f"groups refinement, {n_probe} probed groups, {max_iter:2d} iterations: "
                      f"inertia / flat {km.inertia_ / flat.inertia_:.5f}, {seconds:.1f} s",
                      flush=True)
        _hierarchical._groups_index.__defaults__ = default_probe
        _kmeans._GROUPS_MIN_CLUSTERS = 10**12  # the centroid-graph refinement
        for max_iter in (2, 5, 20):
            km, seconds = fit(X, algorithm="hierarchical", max_iter=max_iter)
            print(f"graph refinement ({km.engine_}), {max_iter:2d} iterations: "
                  f"inertia / flat {km.inertia_ / flat.inertia_:.5f}, {seconds:.1f} s",
                  flush=True)
    finally:
        _hierarchical._groups_index.__defaults__ = default_probe
        _kmeans._GROUPS_MIN_CLUSTERS = groups_from
    return 0


if __name__ == "__main__":
    sys.exit(main())
