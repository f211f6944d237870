"""k-means of one in-memory block of rows on one thread: numba kernels without the GIL.

The hierarchical engine clusters ~sqrt(K) groups of a few thousand rows each
into ~sqrt(K) clusters. At that size a Lloyd iteration written as numpy calls
spends as long in the calls around its GEMM (argmin, sort by label, sums,
divisions) as in the GEMM itself, and greedy k-means++ spends most of its
time in Python between small products. Here each runs as one compiled
function: the GEMM through numba's ``np.dot`` (BLAS), the rest fused into
one pass over the rows; ``nogil`` lets groups run in parallel threads.

Random draws are made by the caller (numpy's ``RandomState``) and passed in,
so a group's result depends only on its rows and its seed, whatever thread
or process runs it.
"""

import math

import numpy as np

from ._common import _split_empty
from ._numba import njit

# Seeds whose k-means++ candidates are drawn together (one pass over the rows
# per round; ``greedy_kmeans_plusplus``).
SEED_BATCH = 8


@njit(nogil=True, fastmath=True)
def _assign_and_sum(X, scores, half_sq, labels, sums, counts):
    """``labels`` = argmin of ``half_sq - scores`` per row; float64 sums and counts per label."""
    n_rows, n_clusters = scores.shape
    n_features = X.shape[1]
    sums[:] = 0.0
    counts[:] = 0
    for i in range(n_rows):
        best = half_sq[0] - scores[i, 0]
        label = 0
        for j in range(1, n_clusters):
            value = half_sq[j] - scores[i, j]
            if value < best:
                best = value
                label = j
        labels[i] = label
        counts[label] += 1
        row = sums[label]
        x = X[i]
        for t in range(n_features):
            row[t] += x[t]


@njit(nogil=True)
def gather_rows(X, index, out):
    """``out[i] = X[index[i]]`` for every ``i`` (the fine stage's rows, gathered in its thread)."""
    for i in range(index.shape[0]):
        out[i] = X[index[i]]
    return out[: index.shape[0]]


@njit(nogil=True)
def lloyd_block(X, centers, n_iter, labels):
    """``n_iter`` Lloyd iterations of ``X`` (float32, C-contiguous) from ``centers``, in place.

    ``labels`` (int64, one per row) receives the last E-step's labels: the
    clusters whose means the returned centres are (before any split of an
    empty cluster). Empty clusters are re-seeded by splitting the largest,
    as in every engine. Returns the number of splits.
    """
    n_clusters, n_features = centers.shape
    sums = np.empty((n_clusters, n_features), dtype=np.float64)
    counts = np.empty(n_clusters, dtype=np.int64)
    half_sq = np.empty(n_clusters, dtype=np.float32)
    n_empty = 0
    for _ in range(n_iter):
        for j in range(n_clusters):
            total = 0.0
            for t in range(n_features):
                total += centers[j, t] * centers[j, t]
            half_sq[j] = 0.5 * total
        scores = np.dot(X, centers.T)
        _assign_and_sum(X, scores, half_sq, labels, sums, counts)
        for j in range(n_clusters):
            if counts[j] > 0:
                for t in range(n_features):
                    centers[j, t] = sums[j, t] / counts[j]
        n_empty += _split_empty(centers, counts)
    return n_empty


@njit(nogil=True)
def _draw(cumulative, u):
    """The first index whose cumulative weight exceeds ``u`` (weight > 0 unless none is)."""
    lo, hi = 0, cumulative.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cumulative[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(nogil=True)
def greedy_kmeans_plusplus(X, first, uniforms, batch):
    """Greedy k-means++ (scikit-learn's) by rounds: row indices of ``len(uniforms) + 1`` seeds.

    ``first`` is the first seed's row; ``uniforms`` (k - 1, n_trials) in
    [0, 1) draw each later seed's candidates in proportion to the squared
    distance to the seeds so far, and the candidate that lowers the
    potential most is kept. The candidates of ``batch`` consecutive seeds
    are drawn together and compared with the rows in one GEMM (one pass over
    the rows per round rather than per seed: the product is memory-bound
    with a handful of columns); the seeds of a round are then chosen one
    after the other, each seeing the distances the previous ones updated
    (``batch=1``: exactly greedy k-means++, as ``_seeding.kmeans_plusplus``).
    A seed whose every candidate is already a seed (drawn twice in a round),
    and every seed once all rows coincide with seeds, is left -1.
    """
    n_rows, n_features = X.shape
    n_more, n_trials = uniforms.shape
    x_sq = np.empty(n_rows, dtype=np.float64)
    for i in range(n_rows):
        total = 0.0
        for t in range(n_features):
            total += X[i, t] * X[i, t]
        x_sq[i] = total
    chosen = np.full(n_more + 1, -1, dtype=np.int64)
    chosen[0] = first
    closest = np.empty(n_rows, dtype=np.float64)
    for i in range(n_rows):
        total = 0.0
        for t in range(n_features):
            diff = X[i, t] - X[first, t]
            total += diff * diff
        closest[i] = total
    best_closest = np.empty(n_rows, dtype=np.float64)
    trial_closest = np.empty(n_rows, dtype=np.float64)
    for round_start in range(0, n_more, batch):
        size = min(batch, n_more - round_start)
        cumulative = np.cumsum(closest)
        potential = cumulative[-1]
        if not potential > 0:
            break
        candidates = np.empty(size * n_trials, dtype=np.int64)
        for c in range(size):
            for r in range(n_trials):
                u = uniforms[round_start + c, r] * potential
                candidates[c * n_trials + r] = _draw(cumulative, u)
        products = np.dot(X, X[candidates].T)
        for c in range(size):
            best_potential = np.inf
            best = -1
            for r in range(n_trials):
                column = c * n_trials + r
                q = candidates[column]
                if closest[q] == 0:
                    continue  # already a seed (drawn twice in this round)
                total = 0.0
                for i in range(n_rows):
                    distance = max(x_sq[i] + x_sq[q] - 2.0 * products[i, column], 0.0)
                    value = min(distance, closest[i])
                    trial_closest[i] = value
                    total += value
                if total < best_potential:
                    best_potential = total
                    best = q
                    best_closest[:] = trial_closest
            if best >= 0:
                chosen[round_start + c + 1] = best
                closest[:] = best_closest
                closest[best] = 0.0  # exactly, whatever the GEMM's rounding
    return chosen


def greedy_seeds(X, n_clusters, random_state):
    """Greedy k-means++ seeds (float32 copies of rows of ``X``), on this thread.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), float32, C-contiguous
        The candidate rows (``n_rows >= n_clusters``).
    n_clusters : int
    random_state : numpy.random.RandomState
        Every draw: ``2 + log(n_clusters)`` candidates per seed, as scikit-learn.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float32
    """
    n_trials = 2 + int(math.log(n_clusters))
    first = int(random_state.randint(X.shape[0]))
    uniforms = random_state.uniform(size=(n_clusters - 1, n_trials))
    chosen = greedy_kmeans_plusplus(X, first, uniforms, SEED_BATCH)
    missing = chosen < 0
    if missing.any():  # seeds left out (see the kernel): unused rows complete them
        unused = np.setdiff1d(np.arange(X.shape[0]), chosen[~missing])
        chosen[missing] = random_state.choice(unused, int(missing.sum()), replace=False)
    return np.ascontiguousarray(X[chosen], dtype=np.float32)
