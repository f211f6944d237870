"""Initial centres: k-means++ in rounds (GEMM-shaped), and random rows.

k-means++ (Arthur & Vassilvitskii, 2007) picks each new centre among the rows
with probability proportional to the squared distance to the centres chosen
so far; its greedy form (scikit-learn's) draws ``2 + log(K)`` candidates per
centre and keeps the one that lowers the potential most. Chosen one centre
at a time, every step reads all rows to compare them with one or a few
candidates (a matrix-vector product: memory-bound). Here the candidates of
``batch`` consecutive centres are drawn together from the same distances and
compared with the rows in one GEMM; the centres of a round are then chosen
one after the other (each seeing the distances updated by the previous
ones), so ``batch=1`` is exactly k-means++ and a larger batch only changes
which distances the candidates are drawn from.

Cost: ``n_rows * n_clusters * n_trials * d`` multiply-adds, whatever the
batch. The estimator therefore seeds on a sample of rows whose size scales
with ``n_clusters`` (``init_size``), which is what keeps seeding a small part
of a fit at ClusterFit's K (benchmarks/README.md).
"""

import math

import numpy as np


def kmeans_plusplus(X, n_clusters, random_state, *, n_trials=None, batch=None):
    """k-means++ seeds among the rows of ``X`` (float32, C-contiguous).

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
        Candidate rows (a sample of the data).
    n_clusters : int
        Number of centres to choose (<= n_rows).
    random_state : numpy.random.RandomState
        Source of every draw.
    n_trials : int, default=None
        Candidates per centre; None: ``2 + int(log(n_clusters))`` (greedy).
    batch : int, default=None
        Centres whose candidates are drawn together; None: about 1/64 of
        ``n_clusters``, at least 1.

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float32
    """
    n_rows = X.shape[0]
    if n_trials is None:
        n_trials = 2 + int(math.log(n_clusters))
    if batch is None:
        batch = max(1, n_clusters // 64)
    # numpy, not torch: each centre is a few small array operations, and
    # small torch operations each start an OpenMP parallel region, whose
    # cost dominates on a loaded machine.
    X = np.ascontiguousarray(X, dtype=np.float32)
    x_sq = np.einsum("ij,ij->i", X, X)
    chosen = [int(random_state.randint(n_rows))]
    first = X[chosen[0]]
    closest = np.maximum(x_sq - 2 * (X @ first) + x_sq[chosen[0]], 0).astype(np.float64)
    while len(chosen) < n_clusters:
        size = min(batch, n_clusters - len(chosen))
        cumulative = np.cumsum(closest)
        total = cumulative[-1]
        if not total > 0:  # every row coincides with a centre: take unused rows
            unused = np.setdiff1d(np.arange(n_rows), chosen)
            chosen.extend(random_state.choice(unused, n_clusters - len(chosen), replace=False))
            break
        draws = random_state.uniform(0, total, size=size * n_trials)
        candidates = np.minimum(np.searchsorted(cumulative, draws), n_rows - 1)
        distances = X @ X[candidates].T
        distances *= -2
        distances += x_sq[:, None]
        distances += x_sq[candidates][None]
        np.maximum(distances, 0, out=distances)
        for slot in range(size):
            trial = distances[:, slot * n_trials : (slot + 1) * n_trials]
            updated = np.minimum(closest[:, None], trial)
            best = int(np.argmin(updated.sum(0)))
            index = int(candidates[slot * n_trials + best])
            if closest[index] == 0:
                continue  # already a centre (drawn twice in this round)
            chosen.append(index)
            closest = updated[:, best].astype(np.float64)
    return np.ascontiguousarray(X[np.asarray(chosen[:n_clusters])], dtype=np.float32)


def random_rows(X, n_clusters, random_state):
    """``n_clusters`` distinct rows of ``X`` drawn uniformly (faiss's seeding)."""
    index = np.sort(random_state.choice(X.shape[0], n_clusters, replace=False))
    return np.ascontiguousarray(X[index], dtype=np.float32)
