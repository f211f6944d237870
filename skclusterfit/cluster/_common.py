"""What every k-means engine shares: the result, the M-step, empty clusters.

An engine is a plain function with one signature (scikit-learn's
``_kmeans_single_lloyd`` shape)::

    engine(rows, centers_init, *, max_iter, tol, verbose, comm, **options)
        -> KMeansResult(centers, labels, inertia, n_iter, n_empty)

``rows`` serves the (preprocessed, centred) data by blocks (``_rows.py``);
``tol`` is already absolute (scikit-learn's ``tol`` times the mean feature
variance); ``comm`` is the fit's :class:`~skclusterfit.runtime.ProcessGroup`
(``_distributed.py``; a one-process fit passes ``LOCAL``, whose reductions
do nothing). The
M-step below is the only place where processes exchange data during the
iterations: per-cluster sums and counts, reduced before the new centres are
computed, so every process computes the same centres from the same numbers.
"""

from collections import namedtuple

import numpy as np

from ._numba import njit
from ._parallel import map_chunks, n_threads, split

# ``graph``: the centroid graph of the returned centres (the graph engine only).
KMeansResult = namedtuple(
    "KMeansResult", "centers labels inertia n_iter n_empty graph", defaults=(None,)
)

# faiss's split of an empty cluster: copy the largest one's centre and push the
# two apart by this relative amount so they separate at the next assignment.
SPLIT_EPS = 1.0 / 1024


@njit(nogil=True)
def _counting_order(labels, n_clusters):
    """Row indices sorted by label (stable) and the start of each label's run."""
    counts = np.zeros(n_clusters + 1, dtype=np.int64)
    for i in range(labels.shape[0]):
        counts[labels[i] + 1] += 1
    for k in range(n_clusters):
        counts[k + 1] += counts[k]
    offsets = counts.copy()
    order = np.empty(labels.shape[0], dtype=np.int64)
    for i in range(labels.shape[0]):
        label = labels[i]
        order[counts[label]] = i
        counts[label] += 1
    return order, offsets


@njit(nogil=True)
def _accumulate(X, order, offsets, sums, counts, first, last):
    """Add the rows of clusters ``first..last-1`` into ``sums`` (float64).

    Each thread owns a range of clusters, so each row of ``sums`` is written
    by one thread only: no per-thread copy of the K x d sums is needed
    (262 MB each at K = 16,000, d = 2048 in float64).
    """
    n_features = X.shape[1]
    for k in range(first, last):
        start, stop = offsets[k], offsets[k + 1]
        counts[k] += stop - start
        if stop == start:
            continue
        row = sums[k]
        for p in range(start, stop):
            x = X[order[p]]
            for j in range(n_features):
                row[j] += x[j]


def cluster_sums(rows, labels, n_clusters, comm):
    """Per-cluster sums (float64, K x d) and counts of ``rows``, reduced over ``comm``."""
    sums = np.zeros((n_clusters, rows.n_features), dtype=np.float64)
    counts = np.zeros(n_clusters, dtype=np.int64)
    for start, block in rows.blocks():
        block_labels = labels[start : start + block.shape[0]]
        order, offsets = _counting_order(block_labels, n_clusters)
        map_chunks(
            lambda first, last: _accumulate(block, order, offsets, sums, counts, first, last),
            n_clusters, split(n_clusters, 4 * n_threads()),
        )
    return comm.all_reduce(sums), comm.all_reduce(counts)


@njit(nogil=True)
def _split_empty(centers, counts):
    """The splits of :func:`split_empty_clusters`, compiled: also called inside
    the hierarchical engine's per-group Lloyd kernel (``_block_kmeans``).

    Each product ``base * (1 +- SPLIT_EPS)`` of two float32 numbers is exact in
    float64 and rounds once, so float32 centres get float32 arithmetic's result.
    """
    n_empty = 0
    counts = counts.copy()
    for j in range(centers.shape[0]):
        if counts[j] != 0:
            continue
        n_empty += 1
        largest = np.argmax(counts)
        for t in range(centers.shape[1]):
            sign = 1.0 if t % 2 == 0 else -1.0
            base = centers[largest, t]
            centers[j, t] = base * (1 + SPLIT_EPS * sign)
            centers[largest, t] = base * (1 - SPLIT_EPS * sign)
        counts[j] = counts[largest] // 2
        counts[largest] -= counts[j]
    return n_empty


def split_empty_clusters(centers, counts):
    """Re-seed every empty cluster by splitting the currently largest one (in place).

    Deterministic given ``centers`` and ``counts``: every process of a
    distributed fit makes the same splits. Returns the number of clusters
    that were empty.
    """
    if np.all(counts != 0):
        return 0
    return int(_split_empty(centers, np.asarray(counts)))


def update_centers(rows, labels, centers, comm):
    """The M-step: new float32 centres, the number of empty clusters re-seeded.

    A cluster left empty keeps no stale centre: it is re-seeded by splitting
    the largest one (faiss's rule, as DeepCluster does).
    """
    n_clusters = centers.shape[0]
    sums, counts = cluster_sums(rows, labels, n_clusters, comm)
    new = sums  # divided in place: one K x d float64 array at a time
    new /= np.maximum(counts, 1)[:, None]
    new[counts == 0] = centers[counts == 0]
    n_empty = split_empty_clusters(new, counts)
    return new.astype(np.float32), n_empty


def half_squared_norms(centers):
    """``|c|^2 / 2`` of every centre (float32): the per-centre constant of scores
    ``|c|^2 / 2 - x.c`` (half the squared distance less ``|x|^2``)."""
    return (0.5 * np.einsum("ij,ij->i", centers, centers)).astype(np.float32)


def squared_shift(new, old, block_rows=1024):
    """``sum((new - old)^2)`` in float64, by blocks of rows.

    The whole difference in float64 would be three K x d float64
    temporaries (0.8 GB at K = 16,000, d = 2048) at the peak of a fit.
    """
    total = 0.0
    for start in range(0, new.shape[0], block_rows):
        diff = new[start : start + block_rows].astype(np.float64)
        diff -= old[start : start + block_rows]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def feature_moments(rows, comm):
    """Global row count, per-feature mean and mean per-feature variance (float64)."""
    total = np.zeros(rows.n_features)
    total_sq = np.zeros(rows.n_features)
    for _, block in rows.blocks():

        def work(a, b, block=block):
            part = block[a:b]
            # float32 products, float64 sums: exact enough for a mean and a tolerance.
            return part.sum(0, dtype=np.float64), (part * part).sum(0, dtype=np.float64)

        for sums, squares in map_chunks(work, block.shape[0], 4096):
            total += sums
            total_sq += squares
    n_rows = comm.all_reduce(np.array([rows.n_rows], dtype=np.int64))[0]
    total = comm.all_reduce(total)
    total_sq = comm.all_reduce(total_sq)
    mean = total / max(n_rows, 1)
    variance = np.maximum(total_sq / max(n_rows, 1) - mean**2, 0).mean()
    return int(n_rows), mean, float(variance)


@njit(fastmath={"reassoc", "contract"}, nogil=True)
def _squared_distances(X, centers, labels, out):
    for i in range(X.shape[0]):
        x = X[i]
        c = centers[labels[i]]
        total = np.float32(0.0)
        for j in range(X.shape[1]):
            diff = x[j] - c[j]
            total += diff * diff
        out[i] = total


def squared_distances(X, centers, labels):
    """Squared distance of every row of ``X`` to its assigned centre (float32)."""
    out = np.empty(X.shape[0], dtype=np.float32)
    X = np.ascontiguousarray(X, dtype=np.float32)
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    map_chunks(
        lambda a, b: _squared_distances(X[a:b], centers, labels[a:b], out[a:b]),
        X.shape[0], 16384,
    )
    return out


def inertia(rows, centers, labels, comm):
    """Sum of squared distances of the rows to their assigned centres, over ``comm``."""
    total = 0.0
    for start, block in rows.blocks():
        distances = squared_distances(block, centers, labels[start : start + len(block)])
        total += float(distances.sum(dtype=np.float64))
    return float(comm.all_reduce(np.array([total]))[0])


def _group_means(P, groups, counts):
    """Means (float32) of the rows of ``P`` in each non-empty group, in group order.

    float32 rows summed in float64 by ``np.add.reduceat`` over the rows sorted
    by group (stable), without a float64 copy of ``P``.
    """
    filled = counts > 0
    order = np.argsort(groups, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[filled]
    sums = np.add.reduceat(P[order], starts, axis=0, dtype=np.float64)
    return (sums / counts[filled, None]).astype(np.float32)


def small_kmeans(points, n_groups, seed, n_iter=5):
    """A few Lloyd iterations over a few thousand points (e.g. the centres).

    Used to group the centres (Yinyang's groups, the walk's inverted file).
    Returns ``(group_centres float32, group of each point int64)``;
    deterministic given ``seed``.
    """
    P = np.ascontiguousarray(points, dtype=np.float32)
    n_points = P.shape[0]
    if n_groups <= 1:
        return P.mean(0, keepdims=True), np.zeros(n_points, dtype=np.int64)
    rng = np.random.RandomState(seed)
    G = P[np.sort(rng.choice(n_points, n_groups, replace=False))]

    def nearest(G):
        return (np.einsum("ij,ij->i", G, G)[None] - 2 * (P @ G.T)).argmin(1)

    for _ in range(n_iter):
        groups = nearest(G)
        counts = np.bincount(groups, minlength=n_groups)
        G = G.copy()
        G[counts > 0] = _group_means(P, groups, counts)
    return np.ascontiguousarray(G), nearest(G).astype(np.int64)


def balanced_groups(points, n_groups, seed, n_iter=10):
    """About ``n_groups`` groups of the points, none above twice the mean size.

    :func:`small_kmeans`, then every group above twice the mean size is split
    by k-means of its own points (in consecutive slices if k-means cannot
    tell them apart) until none is. Why balance: a group that k-means left
    with many points has its centre near the middle of unrelated points (in
    high dimension, near the origin), so it is among the nearest groups of
    almost every query; an inverted file over the centroids then compares
    every point with that group's many members. On 16,000 centroids of the
    benchmarks' 2048-d mixture, one such group was among the probed groups
    of almost every point, and the first assignment took about three times longer
    than with balanced groups.

    Returns ``(group_centres float32, group of each point int64)``: no group
    empty, each centre the mean of its points; deterministic given ``seed``.
    """
    P = np.ascontiguousarray(points, dtype=np.float32)
    n_points = P.shape[0]
    n_groups = max(1, min(int(n_groups), n_points))
    _, groups = small_kmeans(P, n_groups, seed, n_iter)
    _, groups = np.unique(groups, return_inverse=True)  # no empty group
    groups = groups.ravel().astype(np.int64)
    target = -(-n_points // n_groups)
    n_total = int(groups.max()) + 1
    while True:
        counts = np.bincount(groups, minlength=n_total)
        large = np.flatnonzero(counts > 2 * target)
        if large.size == 0:
            break
        for group in large:
            members = np.flatnonzero(groups == group)
            parts = -(-members.size // target)
            _, part = small_kmeans(P[members], parts, seed + int(group) + 1, n_iter)
            if np.bincount(part).max() == members.size:  # not told apart: slices
                part = np.arange(members.size) // target
            _, part = np.unique(part, return_inverse=True)
            part = part.ravel()
            # Part 0 keeps the group's number, the others take new ones.
            groups[members] = np.where(part == 0, group, n_total + part - 1)
            n_total += int(part.max())
    centres = _group_means(P, groups, np.bincount(groups, minlength=n_total))
    return np.ascontiguousarray(centres), groups


def fill_empty_clusters(rows, centers, labels, comm):
    """Give every cluster left empty by the final labels one row (in place).

    The M-step re-seeds empty clusters, but the labels computed after the last
    M-step may leave a cluster empty again (its rows found closer centres).
    ClusterFit trains on the clusters: an empty one is a class without an
    example. Each such centre moves onto one of the rows farthest from their
    own centre (over all processes), which takes that label: the row's
    distance falls to zero and no other row's grows, so the inertia drops.
    Deterministic, the same on every rank. Returns the number of clusters filled.
    """
    n_clusters = centers.shape[0]
    counts = comm.all_reduce(np.bincount(labels, minlength=n_clusters).astype(np.int64))
    empty = np.flatnonzero(counts == 0)
    if empty.size == 0:
        return 0
    m = int(empty.size)
    # Each rank's m farthest rows, then the m farthest of all (ties: rank, row).
    distances = np.empty(rows.n_rows, dtype=np.float32)
    for start, block in rows.blocks():
        stop = start + block.shape[0]
        distances[start:stop] = squared_distances(block, centers, labels[start:stop])
    local = np.argsort(-distances, kind="stable")[:m]
    candidates = np.zeros((m, 3), dtype=np.float64)  # distance, rank, local row
    candidates[: local.size, 0] = distances[local]
    candidates[: local.size, 1] = comm.rank
    candidates[: local.size, 2] = local
    candidates[local.size :, 0] = -1.0
    everyone = comm.all_gather_rows(candidates)
    order = np.lexsort((everyone[:, 2], everyone[:, 1], -everyone[:, 0]))[:m]
    chosen = everyone[order]
    taken = []
    for j, (_, rank, row) in zip(empty, chosen):
        if int(rank) == comm.rank:
            row = int(row)
            labels[row] = j
            taken.append(rows.take(np.array([row]))[0])
        else:
            taken.append(np.zeros(centers.shape[1], dtype=np.float32))
    # The owning rank's row reaches every rank: a sum where the others add zeros.
    centers[empty] = comm.all_reduce(np.asarray(taken, dtype=np.float32))
    return m
