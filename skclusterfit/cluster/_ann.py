"""Approximate assignment for large K: a greedy walk on the centroids' kNN graph.

Exact assignment costs ``n_samples * K * n_features`` per Lloyd iteration.
Between two iterations a point's nearest centre is almost always its current
one or one of that centre's near neighbours, so each point only compares
itself with the ``n_neighbors`` nearest centroids of its current centre, moves
to the best one, and repeats until nothing is closer (a greedy search on the
centroid k-nearest-neighbour graph, the idea behind graph ANN indexes such as
pynndescent's). Per iteration that is ``n_samples * n_neighbors * hops``
distances instead of ``n_samples * K``, plus ``K^2 * n_features`` for the
exact centroid graph, one GEMM.

Points without a current centre (the first assignment, ``predict``) start
from the nearest centroid among a few probed groups of an inverted file over
the centroids (``CentroidGroups``). After every walk, the walk's labels of a
fixed random sample of rows are compared with their nearest centres by GEMM;
when they agree on fewer than 99% of them (data where the walk gets stuck),
the step is redone exactly (``_WalkCheck``).

The walk is a numba kernel (numba comes with pynndescent), compiled on first
use and cached on disk outside the package (``_numba.py``).
"""

import math

import numba
import numpy as np

from .._progress import progress
from ._common import KMeansResult, inertia, small_kmeans, update_centers
from ._distributed import shard_layout
from ._exact_cpu import gemm_nearest, nearest_centers
from ._numba import njit
from ._parallel import map_chunks, n_threads, single_threaded_blas, split

# Hops allowed per point and assignment: a safety net, the walk stops as soon
# as no neighbour is closer (1-3 hops once the centres have settled).
MAX_HOPS = 64
# Rows of centroid-centroid distances computed per GEMM when building the graph.
_GRAPH_BLOCK = 1024
# Centroid groups probed per point by the first assignment (of ~sqrt(K) groups).
N_PROBE = 4
# After every walk, the walk's labels of this many random rows are compared
# with their exact nearest centres; below this agreement the walk is not
# trusted for this data and the E-step is redone exactly for all rows.
CHECK_ROWS = 2048
MIN_AGREEMENT = 0.99


@numba.njit(inline="always", fastmath=True)
def _dot(a, b):
    total = np.float32(0.0)
    for k in range(a.shape[0]):
        total += a[k] * b[k]
    return total


@njit(fastmath=True, nogil=True)
def _greedy_walk(X, order, centers, half_center_sq, graph, labels, best_score, max_hops):
    """Walk each point ``order[p]`` from ``labels[i]`` to a local nearest centre.

    Scores are ``|c|^2 / 2 - x.c`` (the squared distance minus |x|^2, halved),
    so one dot product per candidate. ``labels`` is updated in place.
    """
    n_neighbors = graph.shape[1]
    for p in range(order.shape[0]):
        i = order[p]
        x = X[i]
        current = labels[i]
        best = current
        best_value = half_center_sq[current] - _dot(x, centers[current])
        for _ in range(max_hops):
            for j in range(n_neighbors):
                candidate = graph[current, j]
                value = half_center_sq[candidate] - _dot(x, centers[candidate])
                if value < best_value:
                    best_value = value
                    best = candidate
            if best == current:
                break
            current = best
        labels[i] = best
        best_score[i] = best_value


def centroid_graph(centers, n_neighbors):
    """The ``n_neighbors`` nearest other centroids of every centroid (exact, GEMM).

    Returns an int32 array of shape (n_clusters, min(n_neighbors, n_clusters - 1)),
    each row in no particular order.
    """
    n_clusters = centers.shape[0]
    n_neighbors = min(n_neighbors, n_clusters - 1)
    graph = np.empty((n_clusters, n_neighbors), dtype=np.int32)
    if n_neighbors == 0:
        return graph
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    sq = np.einsum("ij,ij->i", centers, centers)
    minus_two_ct = np.ascontiguousarray(-2.0 * centers.T)

    def work(start, stop):
        distances = centers[start:stop] @ minus_two_ct
        distances += sq
        rows = np.arange(stop - start)
        distances[rows, rows + start] = np.inf  # a centre is not its own neighbour
        graph[start:stop] = np.argpartition(distances, n_neighbors - 1, axis=1)[:, :n_neighbors]

    with single_threaded_blas():
        map_chunks(work, n_clusters, _GRAPH_BLOCK)
    return graph


class CentroidGroups:
    """An inverted file over the centroids: where a point's walk starts.

    The centroids are clustered into ~sqrt(K) groups (a few exact Lloyd
    iterations over the K centroids); a point probes its ``n_probe`` nearest
    groups (one small GEMM) and starts from the nearest centroid among their
    members. Starting from a few random "entry" centroids instead leaves the
    walk stuck in the wrong region when the data has separated modes (the
    centroid graph is then nearly disconnected): on blob data it cost 4% of
    inertia.
    """

    def __init__(self, centers, seed, n_probe=N_PROBE):
        n_clusters = centers.shape[0]
        n_groups = max(1, int(round(math.sqrt(n_clusters))))
        self.group_centers, groups = small_kmeans(centers, n_groups, seed, n_iter=10)
        self.members = np.argsort(groups, kind="stable").astype(np.int32)
        counts = np.bincount(groups, minlength=len(self.group_centers))
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.n_probe = min(n_probe, len(self.group_centers))

    def nearest(self, X, centers, chunk_size):
        """Approximate nearest centre (int32) of every row of ``X``.

        Per chunk of rows: one GEMM against the group centres picks each
        row's ``n_probe`` groups; then, group by group, one GEMM of the rows
        that probe it against its members (rows gathered, members
        contiguous): BLAS speed, where a per-row scan of scattered members
        would wait on memory.
        """
        G = self.group_centers
        n_groups = len(G)
        minus_two_gt = np.ascontiguousarray(-2.0 * G.T)
        group_sq = np.einsum("ij,ij->i", G, G)
        sorted_centers = np.ascontiguousarray(centers[self.members])
        sorted_sq = np.einsum("ij,ij->i", sorted_centers, sorted_centers)
        labels = np.empty(X.shape[0], dtype=np.int32)
        n_probe = self.n_probe

        def work(start, stop):
            block = X[start:stop]
            distances = block @ minus_two_gt
            distances += group_sq
            if n_probe < n_groups:
                probes = np.argpartition(distances, n_probe - 1, axis=1)[:, :n_probe]
            else:
                probes = np.broadcast_to(np.arange(n_groups), distances.shape)
            flat = probes.ravel()
            order = np.argsort(flat, kind="stable")
            rows = (order // probes.shape[1]).astype(np.int64)
            bounds = np.searchsorted(flat[order], np.arange(n_groups + 1))
            best = np.full(block.shape[0], np.inf, dtype=np.float32)
            best_label = np.zeros(block.shape[0], dtype=np.int32)
            for g in range(n_groups):
                first, last = self.offsets[g], self.offsets[g + 1]
                if bounds[g] == bounds[g + 1] or first == last:
                    continue
                index = rows[bounds[g] : bounds[g + 1]]
                scores = block[index] @ sorted_centers[first:last].T
                scores *= -2.0
                scores += sorted_sq[first:last]
                nearest = scores.argmin(1)
                value = scores[np.arange(len(index)), nearest]
                better = value < best[index]
                best[index[better]] = value[better]
                best_label[index[better]] = self.members[first + nearest[better]]
            labels[start:stop] = best_label

        with single_threaded_blas():
            map_chunks(work, X.shape[0], 4096)
        return labels


def entry_labels(X, centers, seed, chunk_size, n_probe=N_PROBE):
    """Start of the walk for points with no current centre (see CentroidGroups)."""
    groups = CentroidGroups(centers, seed, n_probe)
    return groups.nearest(X, centers, chunk_size)


def graph_assign(X, centers, graph, labels, max_hops=MAX_HOPS):
    """Improve ``labels`` (int32, in place) by the greedy walk.

    Points are visited grouped by their current label, so the centroids a
    thread reads stay in cache.
    """
    order = np.argsort(labels, kind="stable").astype(np.int64)
    half_center_sq = (0.5 * np.einsum("ij,ij->i", centers, centers)).astype(np.float32)
    score = np.empty(X.shape[0], dtype=np.float32)
    map_chunks(
        lambda a, b: _greedy_walk(
            X, order[a:b], centers, half_center_sq, graph, labels, score, max_hops
        ),
        order.shape[0], max(1024, split(order.shape[0], 4 * n_threads())),
    )


def _walk_all(rows, centers, graph, labels):
    """The walk for every block of rows; returns the number of labels changed."""
    changed = 0
    for start, block in rows.blocks():
        block_labels = labels[start : start + block.shape[0]]
        before = block_labels.copy()
        graph_assign(block, centers, graph, block_labels)
        changed += int(np.count_nonzero(before != block_labels))
    return changed


def _exact_all(rows, centers, labels):
    """The exact E-step for every block of rows; returns the number of labels changed."""
    changed = 0
    for start, block in rows.blocks():
        block_labels = labels[start : start + block.shape[0]]
        exact = nearest_centers(block, centers).astype(block_labels.dtype)
        changed += int(np.count_nonzero(exact != block_labels))
        block_labels[:] = exact
    return changed


def _entry_all(rows, centers, seed, chunk_size):
    labels = np.empty(rows.n_rows, dtype=np.int32)
    groups = CentroidGroups(centers, seed)
    for start, block in rows.blocks():
        labels[start : start + block.shape[0]] = groups.nearest(block, centers, chunk_size)
    return labels


class _WalkCheck:
    """Measures, after each walk, how often the walk found the exact nearest centre.

    The greedy walk cannot cross between well-separated groups of centroids
    (data with about one mode per cluster, seeds that miss modes): there it
    keeps points on far centres. A fixed random sample of rows (the same
    global rows however the data are sharded) is labelled exactly; when the
    walk agrees on fewer than ``MIN_AGREEMENT`` of them, the E-step is redone
    exactly, and the next walks start from those labels.
    """

    def __init__(self, rows, seed, comm):
        n_total, offset = shard_layout(comm, rows.n_rows)
        size = min(CHECK_ROWS, n_total)
        index = np.sort(np.random.RandomState(seed).choice(n_total, size, replace=False))
        self.local = index[(index >= offset) & (index < offset + rows.n_rows)] - offset
        self.sample = rows.take(self.local)
        self.comm = comm
        self.exact_passes = 0

    def trusted(self, centers, labels):
        # Float32 GEMM labels (scikit-learn's): a statistical check needs no proof.
        agree = int(np.count_nonzero(gemm_nearest(self.sample, centers) == labels[self.local]))
        counts = self.comm.allreduce_sum(np.array([agree, len(self.local)], dtype=np.int64))
        return counts[0] >= MIN_AGREEMENT * counts[1]

    def e_step(self, rows, centers, graph, labels):
        """The walk, redone exactly when it is not trusted; returns labels changed."""
        before = labels.copy()
        _walk_all(rows, centers, graph, labels)
        if not self.trusted(centers, labels):
            self.exact_passes += 1
            _exact_all(rows, centers, labels)
        return int(np.count_nonzero(before != labels))


def lloyd_graph(
    rows, centers_init, *, max_iter, tol, verbose=0, comm, n_neighbors=32, seed=0,
    chunk_size=4096,
):
    """Lloyd whose E-step is the greedy centroid-graph walk; the common engine signature.

    Parameters
    ----------
    rows : ArrayRows or StreamRows
        The (centred) data.
    centers_init : ndarray of shape (n_clusters, n_features)
        Initial centres.
    max_iter, tol, verbose, comm
        As for every engine (``_common.py``).
    n_neighbors : int, default=32
        Neighbours per centroid in the graph.
    seed : int, default=0
        Seeds the inverted file of the first assignment.
    chunk_size : int, default=4096
        Rows per GEMM chunk of the first assignment.

    Returns
    -------
    result : KMeansResult
        The labels are the walk's for the returned centres (approximate).
    """
    centers = np.ascontiguousarray(centers_init, dtype=np.float32)
    labels = _entry_all(rows, centers, seed, chunk_size)
    check = _WalkCheck(rows, seed, comm)
    n_empty = 0
    strict = False
    with progress(total=max_iter, desc="k-means (ann)", unit="iter", verbose=verbose) as bar:
        for iteration in range(max_iter):
            graph = centroid_graph(centers, n_neighbors)
            changed = check.e_step(rows, centers, graph, labels)
            changed = int(comm.allreduce_sum(np.array([changed]))[0])
            if iteration > 0 and changed == 0:
                strict = True  # the centres are the means of these labels already
                break
            new_centers, empty = update_centers(rows, labels, centers, comm)
            n_empty += empty
            shift = float(((new_centers.astype(np.float64) - centers) ** 2).sum())
            centers = new_centers
            bar.update()
            bar.set_postfix_str(f"shift {shift:.3g}, exact passes {check.exact_passes}")
            if shift <= tol:
                break
    if not strict:
        check.e_step(rows, centers, centroid_graph(centers, n_neighbors), labels)
    total = inertia(rows, centers, labels, comm)
    return KMeansResult(centers, labels.astype(np.int64), total, iteration + 1, n_empty)
