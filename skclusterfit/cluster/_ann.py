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
the centroids (``CentroidGroups``). Before every E-step, the searches are
tried on a fixed random sample of rows whose nearest centres are computed by
GEMM, cheapest first: the walk alone; a restart from a wider search of the
inverted file (twice the probes each time, a point keeping the closer of its
two centres); the exact step, once the probes would cost about a quarter of
it. The first search that agrees with the exact labels on 99% of the sample
labels every row (``_WalkCheck``): data where the walk gets stuck pay for an
exact step, never for a walk thrown away.

The walk is a numba kernel (numba comes with pynndescent), compiled on first
use and cached on disk outside the package (``_numba.py``).
"""

import math

import numba
import numpy as np

from ..runtime._progress import progress
from ._centroid_graph import centroid_graph
from ._common import (
    KMeansResult,
    _counting_order,
    balanced_groups,
    half_squared_norms,
    inertia,
    squared_shift,
    update_centers,
)
from ._distributed import shard_layout
from ._exact_cpu import gemm_nearest
from ._numba import dot, njit
from ._parallel import map_chunks, n_threads, single_threaded_blas, split

# Hops allowed per point and assignment: a safety net, the walk stops as soon
# as no neighbour is closer (1-3 hops once the centres have settled).
MAX_HOPS = 64
# Rows searched at a time by the inverted file: enough that each probed
# group's GEMM has hundreds of rows, few enough that the rows' scores against
# the group centres stay small (65,536 x 1,000 groups in float32: 262 MB).
_SEARCH_ROWS = 65536
# Centroid groups probed per point by the first assignment (of ~sqrt(K) groups).
N_PROBE = 4
# A wider search probes at most this fraction of the groups: beyond it (about
# (1 + n_probe) / n_groups of the exact step's distances) the exact step is cheaper
# to trust.
MAX_PROBE_FRACTION = 0.25
# Before every E-step, each search is tried on this many random rows and
# compared with their exact nearest centres; below this agreement the search
# is not trusted for this step and a wider one (at last the exact step) is tried.
CHECK_ROWS = 2048
MIN_AGREEMENT = 0.99


@numba.njit(inline="always", fastmath=True)
def _dot4(x, a, b, c, d):
    """Four dot products in one pass over ``x``: four independent sums keep the
    FMA units busy where one sum waits on its own latency, and ``x`` is read
    once for four candidates."""
    sa = np.float32(0.0)
    sb = np.float32(0.0)
    sc = np.float32(0.0)
    sd = np.float32(0.0)
    for k in range(x.shape[0]):
        xk = x[k]
        sa += xk * a[k]
        sb += xk * b[k]
        sc += xk * c[k]
        sd += xk * d[k]
    return sa, sb, sc, sd


@njit(fastmath=True, nogil=True)
def _greedy_walk(X, order, centers, half_center_sq, graph, labels, best_score, max_hops):
    """Walk each point ``order[p]`` from ``labels[i]`` to a local nearest centre.

    Scores are ``|c|^2 / 2 - x.c`` (the squared distance minus |x|^2, halved),
    so one dot product per candidate. ``labels`` is updated in place.
    """
    n_neighbors = graph.shape[1]
    n_fours = n_neighbors - n_neighbors % 4
    for p in range(order.shape[0]):
        i = order[p]
        x = X[i]
        current = labels[i]
        best = current
        best_value = half_center_sq[current] - dot(x, centers[current])
        for _ in range(max_hops):
            neighbours = graph[current]
            for j in range(0, n_fours, 4):
                dots = _dot4(
                    x, centers[neighbours[j]], centers[neighbours[j + 1]],
                    centers[neighbours[j + 2]], centers[neighbours[j + 3]],
                )
                for t in range(4):
                    candidate = neighbours[j + t]
                    value = half_center_sq[candidate] - dots[t]
                    if value < best_value:
                        best_value = value
                        best = candidate
            for j in range(n_fours, n_neighbors):
                candidate = neighbours[j]
                value = half_center_sq[candidate] - dot(x, centers[candidate])
                if value < best_value:
                    best_value = value
                    best = candidate
            if best == current:
                break
            current = best
        labels[i] = best
        best_score[i] = best_value


@njit(fastmath=True, nogil=True)
def _keep_closer(X, centers, half_center_sq, labels, candidates):
    """``labels[i] = candidates[i]`` where that centre is closer to ``X[i]``."""
    for i in range(X.shape[0]):
        a = labels[i]
        b = candidates[i]
        if a != b and (half_center_sq[b] - dot(X[i], centers[b])
                       < half_center_sq[a] - dot(X[i], centers[a])):
            labels[i] = b


def keep_closer(X, centers, labels, candidates, half_center_sq=None):
    """Per row, the closer of ``labels`` and ``candidates`` (int32), into ``labels``."""
    if half_center_sq is None:
        half_center_sq = half_squared_norms(centers)
    map_chunks(
        lambda a, b: _keep_closer(
            X[a:b], centers, half_center_sq, labels[a:b], candidates[a:b]
        ),
        X.shape[0], max(1024, split(X.shape[0], 4 * n_threads())),
    )


class CentroidGroups:
    """An inverted file over the centroids: where a point's walk starts.

    The centroids are clustered into ~sqrt(K) groups of balanced sizes (a few
    exact Lloyd iterations over the K centroids, large groups split:
    ``balanced_groups``); a point probes its ``n_probe`` nearest
    groups (one small GEMM) and starts from the nearest centroid among their
    members. Starting from a few random "entry" centroids instead leaves the
    walk stuck in the wrong region when the data has separated modes (the
    centroid graph is then nearly disconnected): on blob data it cost 4% of
    inertia.
    """

    def __init__(self, centers, seed, n_probe=N_PROBE):
        n_clusters = centers.shape[0]
        n_groups = max(1, int(round(math.sqrt(n_clusters))))
        self.group_centers, groups = balanced_groups(centers, n_groups, seed)
        self.members = np.argsort(groups, kind="stable").astype(np.int32)
        counts = np.bincount(groups, minlength=len(self.group_centers))
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.n_probe = min(n_probe, len(self.group_centers))

    def nearest(self, X, centers, chunk_size=None):
        """Approximate nearest centre (int32) of every row of ``X``.

        One GEMM against the group centres picks each row's ``n_probe``
        groups; then, group by group (in parallel threads), the rows that
        probe a group are gathered and compared with its members in one GEMM
        (members contiguous): BLAS speed, where a per-row scan of scattered
        members would wait on memory. Each (row, probe) pair keeps its best
        member, and each row the best of its probes. ``chunk_size``: rows
        searched at a time (None: ``_SEARCH_ROWS``).
        """
        G = self.group_centers
        n_groups = len(G)
        n_probe = self.n_probe
        sorted_centers = np.ascontiguousarray(centers[self.members], dtype=np.float32)
        half_sorted = half_squared_norms(sorted_centers)
        half_group = half_squared_norms(G)
        labels = np.empty(X.shape[0], dtype=np.int32)
        step = max(1, int(chunk_size or _SEARCH_ROWS))
        for start in range(0, X.shape[0], step):
            block = np.ascontiguousarray(X[start : start + step], dtype=np.float32)
            scores = block @ G.T
            np.subtract(half_group, scores, out=scores)
            if n_probe == 1:
                probes = scores.argmin(1)[:, None]
            elif n_probe < n_groups:
                probes = _smallest(scores, n_probe)
            else:
                probes = np.broadcast_to(np.arange(n_groups), scores.shape)
            del scores
            # (row, probe) pairs by group: flat index row * n_probe + probe.
            pairs, pair_offsets = _counting_order(np.ascontiguousarray(probes).ravel(), n_groups)
            value = np.empty(pairs.shape[0], dtype=np.float32)
            member = np.empty(pairs.shape[0], dtype=np.int64)
            # One task per thread, each dealt every n-th group by size (balanced),
            # each gathering its groups' rows into one buffer of its largest.
            sizes = np.diff(pair_offsets)
            by_size = np.argsort(-sizes, kind="stable")
            n_tasks = min(n_threads(), n_groups)

            def task(t, _):
                groups = by_size[t::n_tasks]
                buffer = np.empty((int(sizes[groups].max()), block.shape[1]), np.float32)
                _search_groups(block, groups, pairs, pair_offsets, n_probe, sorted_centers,
                               half_sorted, self.offsets, value, member, buffer)

            with single_threaded_blas():
                map_chunks(task, n_tasks, 1)
            best = value.reshape(-1, n_probe).argmin(1)
            nearest_sorted = member.reshape(-1, n_probe)[np.arange(block.shape[0]), best]
            labels[start : start + block.shape[0]] = self.members[nearest_sorted]
        return labels


@njit(nogil=True)
def _smallest(scores, n_probe):
    """Column indices of the ``n_probe`` smallest scores of every row (in no set order).

    An insertion into a sorted list of ``n_probe`` per row: for a few probes
    among hundreds of columns, several times faster than ``np.argpartition``.
    """
    n_rows, n_columns = scores.shape
    out = np.empty((n_rows, n_probe), dtype=np.int64)
    best = np.empty(n_probe, dtype=scores.dtype)
    for i in range(n_rows):
        size = 0
        for j in range(n_columns):
            value = scores[i, j]
            if size == n_probe and value >= best[size - 1]:
                continue
            position = size if size < n_probe else n_probe - 1
            while position > 0 and best[position - 1] > value:
                if position < n_probe:
                    best[position] = best[position - 1]
                    out[i, position] = out[i, position - 1]
                position -= 1
            best[position] = value
            out[i, position] = j
            if size < n_probe:
                size += 1
    return out


@njit(nogil=True, fastmath=True)
def _search_groups(X, groups, pairs, pair_offsets, n_probe, sorted_centers, half_sorted,
                   member_offsets, value, member, buffer):
    """For the (row, probe) pairs of each of ``groups``: the best member of the group.

    ``pairs[pair_offsets[g]:pair_offsets[g + 1]]`` are the flat indices
    (``row * n_probe + probe``) of the pairs that probe group ``g``, whose
    members are ``sorted_centers[member_offsets[g]:member_offsets[g + 1]]``.
    Writes the best member's position in ``sorted_centers`` and its score
    (half squared distance less ``|x|^2 / 2``) at each pair's flat index.
    ``buffer`` holds a group's gathered rows (as many rows as the largest group's pairs).
    """
    for g in groups:
        first, last = member_offsets[g], member_offsets[g + 1]
        a, b = pair_offsets[g], pair_offsets[g + 1]
        if a == b:
            continue
        if first == last:  # a group without members: never the best
            for p in range(a, b):
                value[pairs[p]] = np.inf
                member[pairs[p]] = 0
            continue
        rows = buffer[: b - a]
        for p in range(a, b):
            rows[p - a] = X[pairs[p] // n_probe]
        scores = np.dot(rows, sorted_centers[first:last].T)
        for p in range(a, b):
            best = half_sorted[first] - scores[p - a, 0]
            arg = 0
            for j in range(1, last - first):
                v = half_sorted[first + j] - scores[p - a, j]
                if v < best:
                    best = v
                    arg = j
            value[pairs[p]] = best
            member[pairs[p]] = first + arg


def graph_assign(X, centers, graph, labels, max_hops=MAX_HOPS, half_center_sq=None):
    """Improve ``labels`` (int32, in place) by the greedy walk.

    Points are visited grouped by their current label, so the centroids a
    thread reads stay in cache. ``half_center_sq`` (``half_squared_norms``)
    may be passed by callers that walk many blocks with the same centres.
    """
    order = np.argsort(labels, kind="stable").astype(np.int64)
    if half_center_sq is None:
        half_center_sq = half_squared_norms(centers)
    score = np.empty(X.shape[0], dtype=np.float32)
    map_chunks(
        lambda a, b: _greedy_walk(
            X, order[a:b], centers, half_center_sq, graph, labels, score, max_hops
        ),
        order.shape[0], max(1024, split(order.shape[0], 4 * n_threads())),
    )


def _exact_all(rows, centers, labels):
    """The exact E-step for every block of rows, into ``labels``.

    Float32 GEMM labels, as scikit-learn's Lloyd computes them, without the
    exact engine's proof at near-ties (``nearest_centers``): the proof cost
    half as much again as the GEMM, and this engine's labels are approximate
    anyway.
    """
    for start, block in rows.blocks():
        labels[start : start + block.shape[0]] = gemm_nearest(block, centers)


def _search(X, centers, graph, labels, groups, half_center_sq, chunk_size):
    """One search of the rows ``X`` (an array); returns their labels.

    With ``labels`` (where the rows are now; not modified) the rows walk from
    there; with ``groups`` they also restart from its inverted-file search and
    walk, and each row keeps the closer of its two centres. Without ``labels``
    (the first E-step) only the restart is done.
    """
    restart = None
    if groups is not None:
        restart = groups.nearest(X, centers, chunk_size)
        graph_assign(X, centers, graph, restart, half_center_sq=half_center_sq)
    if labels is None:
        return restart
    walked = labels.copy()
    graph_assign(X, centers, graph, walked, half_center_sq=half_center_sq)
    if restart is not None:
        keep_closer(X, centers, walked, restart, half_center_sq)
    return walked


class _WalkCheck:
    """Chooses, before each E-step, the cheapest search the walk can be trusted with.

    The greedy walk cannot cross between well-separated groups of centroids
    (data with about one mode per cluster, seeds that miss modes), and a first
    assignment whose inverted-file search probed too few groups leaves points
    in the wrong region: there it keeps points on far centres. A fixed random
    sample of rows (the same global rows however the data are sharded) is
    labelled exactly, and the searches are tried on the sample first, cheapest
    first: the walk alone; then a restart from a wider inverted-file search
    (twice the probes each time) walked and kept where closer; at last the
    exact step, once the probes would reach ``MAX_PROBE_FRACTION`` of the
    groups. The first search that finds the exact nearest centre for
    ``MIN_AGREEMENT`` of the sample runs on every row. A row's search does
    not depend on the other rows (up to the rounding of GEMMs over other
    batches of rows), so the sample's agreement is the agreement the search
    will have on those rows in the full pass: no full pass is spent on a
    search that the check would reject.
    """

    def __init__(self, rows, seed, comm, chunk_size, first_groups=None):
        n_total, offset = shard_layout(comm, rows.n_rows)
        size = min(CHECK_ROWS, n_total)
        index = np.sort(np.random.RandomState(seed).choice(n_total, size, replace=False))
        self.local = index[(index >= offset) & (index < offset + rows.n_rows)] - offset
        self.sample = rows.take(self.local)
        self.comm = comm
        self.seed = seed
        self.chunk_size = chunk_size
        self.exact_passes = 0
        self.wider_passes = 0
        # The first wider search tried when the walk alone is not trusted: where
        # the last failed check found agreement (None: only the exact step did).
        self.rescue_probe = 2 * N_PROBE
        # The inverted file of the first E-step, when the caller has one (the
        # hierarchical engine's mesoclusters); else balanced groups are built.
        self.first_groups = first_groups

    def trusted(self, nearest, labels):
        """Whether the sample's ``labels`` agree with ``nearest``, its exact labels."""
        agree = int(np.count_nonzero(nearest == labels))
        counts = self.comm.all_reduce(np.array([agree, len(self.local)], dtype=np.int64))
        return counts[0] >= MIN_AGREEMENT * counts[1]

    def _choose(self, centers, graph, labels, half_center_sq):
        """The cheapest search trusted on the sample: the ``CentroidGroups`` to
        restart from (None: the walk alone), or ``"exact"``. ``labels``: every
        row's, or None before the first E-step."""
        # Float32 GEMM labels (scikit-learn's): a statistical check needs no proof.
        nearest = gemm_nearest(self.sample, centers)
        start = None if labels is None else labels[self.local]
        groups = None
        # The first E-step has no labels to walk from: its cheapest search
        # restarts every row from the narrowest inverted-file search.
        n_probe = N_PROBE if labels is None else None
        if labels is None and self.first_groups is not None:
            groups = self.first_groups
            n_probe = groups.n_probe
            self.rescue_probe = 2 * n_probe
        first = True
        while True:
            if n_probe is not None:
                if groups is None:
                    groups = CentroidGroups(centers, self.seed)
                groups.n_probe = min(n_probe, len(groups.group_centers))
            search = None if n_probe is None else groups
            found = _search(self.sample, centers, graph, start, search, half_center_sq,
                            self.chunk_size)
            if self.trusted(nearest, found):
                if not first:
                    self.rescue_probe = n_probe
                    self.wider_passes += 1
                return search
            # A failed check resumes at the search that last restored agreement
            # rather than climbing from the narrowest again: where only the exact
            # step helps, every later step would try every wider search first.
            n_probe = self.rescue_probe if first else 2 * n_probe
            first = False
            if n_probe is None:
                break
            if groups is None:
                groups = CentroidGroups(centers, self.seed)
            if n_probe > MAX_PROBE_FRACTION * len(groups.group_centers):
                break
        self.rescue_probe = None
        self.exact_passes += 1
        return "exact"

    def e_step(self, rows, centers, graph, labels):
        """Labels (int32) after the E-step, and how many changed.

        ``labels`` are the rows' current labels, updated in place, or None for
        the first E-step (then every row counts as changed).
        """
        half_center_sq = half_squared_norms(centers)
        search = self._choose(centers, graph, labels, half_center_sq)
        before = None if labels is None else labels.copy()
        if labels is None:
            labels = np.empty(rows.n_rows, dtype=np.int32)
        if isinstance(search, str):
            _exact_all(rows, centers, labels)
        else:
            for start, block in rows.blocks():
                stop = start + block.shape[0]
                labels[start:stop] = _search(
                    block, centers, graph, None if before is None else before[start:stop],
                    search, half_center_sq, self.chunk_size,
                )
        changed = rows.n_rows if before is None else int(np.count_nonzero(before != labels))
        return labels, changed


def lloyd_graph(
    rows, centers_init, *, max_iter, tol, verbose=0, comm, n_neighbors=32, seed=0,
    chunk_size=None, first_groups=None,
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
    chunk_size : int, default=None
        Rows searched at a time by the inverted file (None: 65,536).
    first_groups : CentroidGroups, default=None
        The inverted file (over ``centers_init``) where the first E-step's
        walks start; None: balanced groups of the initial centres.

    Returns
    -------
    result : KMeansResult
        The labels are the walk's for the returned centres (approximate).
    """
    centers = np.ascontiguousarray(centers_init, dtype=np.float32)
    del centers_init  # freed after the first M-step when the caller kept no reference
    check = _WalkCheck(rows, seed, comm, chunk_size, first_groups)
    labels = None
    n_empty = 0
    strict = False
    with progress(total=max_iter, desc="k-means (ann)", unit="iter", verbose=verbose) as bar:
        for iteration in range(max_iter):
            graph = centroid_graph(centers, n_neighbors)
            labels, changed = check.e_step(rows, centers, graph, labels)
            changed = int(comm.all_reduce(np.array([changed]))[0])
            if iteration > 0 and changed == 0:
                strict = True  # the centres are the means of these labels already
                break
            new_centers, empty = update_centers(rows, labels, centers, comm)
            n_empty += empty
            shift = squared_shift(new_centers, centers)
            centers = new_centers
            bar.update()
            bar.set_postfix_str(
                f"shift {shift:.3g}, wider searches {check.wider_passes}, "
                f"exact passes {check.exact_passes}"
            )
            if shift <= tol:
                break
    if not strict:
        graph = centroid_graph(centers, n_neighbors)
        labels, _ = check.e_step(rows, centers, graph, labels)
    # ``graph`` is the final centres' graph either way (a strict stop left them
    # unchanged): the estimator keeps it for predict.
    total = inertia(rows, centers, labels, comm)
    return KMeansResult(centers, labels.astype(np.int64), total, iteration + 1, n_empty, graph)
