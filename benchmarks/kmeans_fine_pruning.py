"""How much of the fine stage's distance work bounds could skip (issue 25).

Our hierarchical default spends most of its fine stage in GEMMs of each
group's rows against the group's ~sqrt(K) centres. SuperKMeans does the same
stage in less time; the known ways to skip distance work are bounds carried
from one Lloyd iteration to the next (Hamerly: one lower bound per row;
Elkan: one per row and centre) and pruning within a distance (ADSampling /
PDX: stop summing the dimensions of a centre once it cannot win).

This script runs the fine stage of ``KMeans``' hierarchical engine unchanged
(same centres, same quality) with every distance computed, and counts, at
each Lloyd iteration after the first, what the bounds would have skipped.
The bounds are made exact again after every iteration (a real
implementation carries looser ones, and skips less) and neither method's
centre-to-centre test is applied (with it, both skip more): the counts show
the scale of what each kind of bound can skip, not an implementation's.

- Hamerly: the share of rows whose upper bound (distance to its centre plus
  that centre's shift) exceeds its lower bound (distance to the second
  nearest centre minus the largest shift): rows whose distances must be
  computed again.
- Elkan: the share of (row, other centre) pairs whose lower bound (last
  distance minus the centre's shift) is below the row's upper bound.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/kmeans_fine_pruning.py
"""

import sys
import threading
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _conditions import header  # noqa: E402
from kmeans import SIZES, make_data, normalize_rows  # noqa: E402

from skclusterfit.cluster import _hierarchical  # noqa: E402
from skclusterfit.cluster._common import half_squared_norms  # noqa: E402
from skclusterfit.cluster._rows import ArrayRows  # noqa: E402
from skclusterfit.runtime import LOCAL  # noqa: E402


class Counts:
    """Per-iteration tallies, added to by the engine's worker threads (one group each)."""

    def __init__(self, n_iter):
        self.rows = np.zeros(n_iter)
        self.hamerly = np.zeros(n_iter)
        self.pairs = np.zeros(n_iter)
        self.elkan = np.zeros(n_iter)
        self._lock = threading.Lock()

    def add(self, it, rows, hamerly, pairs, elkan):
        with self._lock:
            self.rows[it] += rows
            self.hamerly[it] += hamerly
            self.pairs[it] += pairs
            self.elkan[it] += elkan


def counting_lloyd(counts, engine_lloyd):
    """The engine's ``lloyd_block`` with the bounds counted beside it (same centres)."""

    def lloyd(X, centers, n_iter, labels):
        if centers.shape[0] < 2:
            return engine_lloyd(X, centers, n_iter, labels)
        x_sq = np.einsum("ij,ij->i", X, X)
        previous = None
        n_empty = 0
        for it in range(n_iter):
            d2 = x_sq[:, None] + 2 * (half_squared_norms(centers)[None] - X @ centers.T)
            distance = np.sqrt(np.maximum(d2, 0))
            nearest = distance.argmin(1)
            if previous is not None:
                old_labels, old_distance, shift = previous
                rows = np.arange(X.shape[0])
                upper = old_distance[rows, old_labels] + shift[old_labels]
                second = np.partition(old_distance, 1, axis=1)[:, 1]
                lower = second - shift.max()
                pair_lower = old_distance - shift[None]
                pair_lower[rows, old_labels] = np.inf
                counts.add(
                    it, X.shape[0], np.count_nonzero(upper > lower),
                    X.shape[0] * (centers.shape[0] - 1),
                    np.count_nonzero(pair_lower < upper[:, None]),
                )
            before = centers.copy()
            n_empty += engine_lloyd(X, centers, 1, labels)  # one iteration, in place
            shift = np.sqrt(((centers - before) ** 2).sum(1))
            previous = nearest, distance, shift
        return n_empty

    return lloyd


def main():
    print(header(), flush=True)
    engine_lloyd = _hierarchical.lloyd_block
    n_iter = _hierarchical.FINE_ITER
    print(f"fine Lloyd iterations per group: {n_iter}; iteration 1 computes every distance")
    print("\n| data | iteration | rows to recompute (Hamerly) | row-centre pairs left (Elkan) |")
    print("|---|---|---|---|")
    for name in ("peers-200k-m4", "peers-200k", "peers-200k-m100"):
        n_samples, n_features, n_clusters, _, options = SIZES[name]
        modes = options.get("modes", max(1, n_clusters // 10))
        X = normalize_rows(make_data(n_samples, n_features, modes))
        X -= X.mean(0)
        counts = Counts(n_iter)
        counted = counting_lloyd(counts, engine_lloyd)
        engine_meso = _hierarchical._mesoclusters

        def mesoclusters(*args):
            # The mesoclusters' Lloyd (on a sample) is not the fine stage: not counted.
            _hierarchical.lloyd_block = engine_lloyd
            try:
                return engine_meso(*args)
            finally:
                _hierarchical.lloyd_block = counted

        _hierarchical.lloyd_block = counted
        _hierarchical._mesoclusters = mesoclusters
        try:
            _hierarchical.hierarchical_centers(ArrayRows(X), n_clusters, comm=LOCAL, seed=0)
        finally:
            _hierarchical.lloyd_block = engine_lloyd
            _hierarchical._mesoclusters = engine_meso
        for it in range(1, n_iter):
            print(f"| {n_samples} x {n_features}, K = {n_clusters}, {modes} modes | {it + 1} | "
                  f"{counts.hamerly[it] / counts.rows[it]:.3f} | "
                  f"{counts.elkan[it] / counts.pairs[it]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
