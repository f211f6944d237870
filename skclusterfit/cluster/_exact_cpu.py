"""Exact Lloyd on the CPU: Yinyang k-means (Ding et al., ICML 2015) in numba.

Lloyd's E-step compares every point with every centre. After the first
iterations the centres move little, and the triangle inequality proves most
of those comparisons useless: if a point's distance to its centre is below a
lower bound on its distance to a whole group of other centres, no centre of
that group can take the point. Yinyang keeps, for every point, an upper bound
``ub`` on the distance to its centre and one lower bound per group of centres
(``lb``, the centres being clustered into ~K/10 groups once, at the start).
When the centres move by ``drift``, ``ub`` grows by the drift of the point's
centre and each group's bound shrinks by the largest drift in the group;
only the groups whose bound falls below ``ub`` are searched, exactly.

Exactness. Every distance the search compares is computed directly as
``sum((x - c)^2)`` in float32 (no cancellation), and a bound only skips a
group when it clears ``ub`` by a relative margin larger than the rounding of
those sums; so the labels are Lloyd's labels for the same centres, up to
ties within that margin (~1e-5 relative at d = 128). The first E-step is one
GEMM per block of rows, as in scikit-learn; its distances ``|x|^2 - 2 x.c +
|c|^2`` carry cancellation errors, so they only initialise the bounds, each
lowered by a proven bound on its rounding error, and the point's exact
nearest centre is then settled by the same group search (with zero drift).
The data are centred by the caller (as scikit-learn does), which keeps
those errors small for data far from the origin.

The M-step (``_common.update_centers``) recomputes the per-cluster sums in
float64, so the centres do not accumulate rounding over iterations.
"""

import math

import numba
import numpy as np

from ..runtime._progress import progress
from ._common import KMeansResult, half_squared_norms, inertia, small_kmeans, update_centers
from ._numba import njit
from ._parallel import map_chunks, single_threaded_blas, split

# Points per GEMM chunk of the first E-step: the chunk's K distances per row
# (float32) take about this many bytes, and stay in cache while scanned.
_GEMM_CHUNK_BYTES = 4 * 2**20
# Memory allowed for the per-point group bounds (n_rows x n_groups float32).
_BOUNDS_BYTES = 512 * 2**20
# Centres per group (Yinyang's K/10 groups).
_GROUP_SIZE = 10
_FLOAT32_UNIT = 2.0**-24
_FLOAT32_MAX = np.float32(np.finfo(np.float32).max)
# A point whose search would open more than this fraction of the groups is
# recomputed by GEMM instead (cheaper per distance than the direct search).
_HEAVY_FRACTION = 0.3
# Rows per task of the thread pool in the bounds search.
_TASK_ROWS = 8192


def rounding_margin(n_features):
    """Relative margin covering the float32 rounding of a computed distance.

    A sum of ``d`` non-negative float32 terms is within ``d * u`` (``u`` =
    2^-24) of the exact sum of those terms; each term carries 3u more from
    the difference and the square, and the square root halves the relative
    error. Bounds also lose a rounding per update. Four times that (and at
    least 1e-6) is the margin a bound must clear before it skips a group.
    """
    return max(1e-6, 4.0 * (n_features + 8) * _FLOAT32_UNIT)


# Reassociation lets LLVM vectorise the distance sums; no flag that assumes
# finite values (infinite bounds are meaningful here).
_FASTMATH = {"reassoc", "contract"}


@numba.njit(inline="always", fastmath=_FASTMATH)
def _sqdist(x, c):
    total = np.float32(0.0)
    for j in range(x.shape[0]):
        diff = x[j] - c[j]
        total += diff * diff
    return total


@numba.njit(inline="always", fastmath=True)
def _min_of(row, start, stop):
    # Full fast-math (no NaN or infinity can occur in GEMM scores) so that
    # LLVM vectorises the reduction.
    low = _FLOAT32_MAX
    for j in range(start, stop):
        low = min(low, row[j])
    return low


@njit(nogil=True)
def _init_bounds(X, centers, scores, x_sq, x_norm, c_max_norm, offsets, gamma, labels, ub, lb):
    """Bounds from one GEMM chunk of scores ``|c|^2 - 2 x.c`` (float32, m x K).

    ``labels`` gets the GEMM's nearest centre, ``ub`` its exact distance and
    ``lb[i, g]`` a proven lower bound on the distance to every other centre
    of group ``g``: the GEMM's squared distance lowered by its rounding
    bound ``gamma * (|x| + max |c|)^2``.
    """
    n_groups = offsets.shape[0] - 1
    for i in range(scores.shape[0]):
        row = scores[i]
        best_value = _min_of(row, 0, row.shape[0])
        best = 0
        while row[best] != best_value:
            best += 1
        labels[i] = best
        ub[i] = math.sqrt(_sqdist(X[i], centers[best]))
        slack = x_norm[i] + c_max_norm
        shift = x_sq[i] - gamma * slack * slack
        for g in range(n_groups):
            start, stop = offsets[g], offsets[g + 1]
            if start <= best < stop:
                low = min(_min_of(row, start, best), _min_of(row, best + 1, stop))
            else:
                low = _min_of(row, start, stop)
            if low == _FLOAT32_MAX:
                lb[i, g] = np.inf  # the group holds the best centre only
            else:
                low += shift
                lb[i, g] = math.sqrt(low) if low > 0 else 0.0


@njit(fastmath=_FASTMATH, nogil=True)
def _yinyang_pass(
    X, centers, offsets, group_of, drift, group_drift, labels, ub, lb, margin, heavy_limit,
    heavy,
):
    """One exact E-step from bounds; updates labels, ub, lb; returns labels changed.

    ``drift[k]`` is how far centre k moved since the bounds were valid,
    ``group_drift[g]`` the largest drift in group g (both rounded up). A
    point with more than ``heavy_limit`` groups to search is not searched:
    ``heavy[i]`` is set and the caller recomputes it by GEMM.
    """
    n_groups = offsets.shape[0] - 1
    changed = 0
    for i in range(X.shape[0]):
        old = labels[i]
        upper = ub[i] + drift[old]
        global_low = np.inf
        for g in range(n_groups):
            value = lb[i, g] - group_drift[g]
            lb[i, g] = value
            if value < global_low:
                global_low = value
        if global_low >= upper * margin:
            ub[i] = upper
            continue
        x = X[i]
        best = old
        best_d = math.sqrt(_sqdist(x, centers[old]))
        if global_low >= best_d * margin:
            ub[i] = best_d
            continue
        n_open = 0
        for g in range(n_groups):
            if lb[i, g] < best_d * margin:
                n_open += 1
        if n_open > heavy_limit:
            ub[i] = best_d
            heavy[i] = 1
            continue
        for g in range(n_groups):
            if lb[i, g] >= best_d * margin:
                continue
            m1 = np.inf
            m1_index = -1
            m2 = np.inf
            for j in range(offsets[g], offsets[g + 1]):
                d = math.sqrt(_sqdist(x, centers[j]))
                if d < m1:
                    m2 = m1
                    m1 = d
                    m1_index = j
                elif d < m2:
                    m2 = d
            if m1 < best_d and m1_index != best:
                # The previous best becomes an ordinary centre of its group.
                previous_group = group_of[best]
                if previous_group != g and best_d < lb[i, previous_group]:
                    lb[i, previous_group] = best_d
                best = m1_index
                best_d = m1
                lb[i, g] = m2
            elif m1_index == best:
                lb[i, g] = m2
            else:
                lb[i, g] = m1
        ub[i] = best_d
        if best != old:
            labels[i] = best
            changed += 1
    return changed


def n_groups_for(n_rows, n_clusters):
    """Yinyang's K/10 groups, fewer if the n x groups bounds would exceed the budget."""
    budget = max(1, _BOUNDS_BYTES // (4 * max(n_rows, 1)))
    return int(max(1, min(n_clusters // _GROUP_SIZE, budget)))


def _drifts(new, old):
    """Per-centre movement (float32, rounded up) and squared total shift (float64)."""
    diff = new.astype(np.float64) - old.astype(np.float64)
    sq = np.einsum("ij,ij->i", diff, diff)
    drift = np.sqrt(sq) * (1 + 1e-6) + 1e-30
    return drift.astype(np.float32), float(sq.sum())


def _group_max(values, offsets):
    return np.maximum.reduceat(values, offsets[:-1]).astype(np.float32)


class _Bounds:
    """The per-point state of the search: labels, upper and group lower bounds."""

    def __init__(self, n_rows, n_groups):
        self.labels = np.empty(n_rows, dtype=np.int64)
        self.ub = np.empty(n_rows, dtype=np.float32)
        self.lb = np.empty((n_rows, n_groups), dtype=np.float32)


class _Gemm:
    """The GEMM-based E-step for a set of rows: labels and fresh bounds."""

    def __init__(self, centers, offsets, group_of, margin):
        n_clusters, n_features = centers.shape
        self.centers, self.offsets, self.group_of = centers, offsets, group_of
        self.margin = np.float32(1.0 + margin)
        c_sq = np.einsum("ij,ij->i", centers, centers)
        self.c_sq = c_sq.astype(np.float32)
        self.c_max_norm = np.float32(np.sqrt(c_sq.max()))
        # -2 C^T: scaling by a power of two rounds nothing.
        self.minus_two_ct = np.ascontiguousarray(-2.0 * centers.T, dtype=np.float32)
        # The GEMM's rounding: each of |x|^2, x.c and |c|^2 is a float32 sum
        # of d terms (within d*u of exact, relative to the sum of
        # magnitudes), plus the two additions.
        self.gamma = np.float32(2.0 * (n_features + 4) * _FLOAT32_UNIT)
        self.chunk = max(16, _GEMM_CHUNK_BYTES // (4 * n_clusters))
        self.zero = np.zeros(n_clusters, dtype=np.float32)
        self.zero_groups = np.zeros(len(offsets) - 1, dtype=np.float32)
        self.no_heavy = np.zeros(0, dtype=np.uint8)

    def rows(self, X, labels, ub, lb):
        """Exact labels of the rows ``X`` and their bounds, written in place (one thread)."""
        for offset in range(0, X.shape[0], self.chunk):
            part = X[offset : offset + self.chunk]
            rows = slice(offset, offset + part.shape[0])
            scores = part @ self.minus_two_ct
            scores += self.c_sq
            x_sq = np.einsum("ij,ij->i", part, part)
            _init_bounds(
                part, self.centers, scores, x_sq, np.sqrt(x_sq), self.c_max_norm,
                self.offsets, self.gamma, labels[rows], ub[rows], lb[rows],
            )
            # The GEMM's nearest centre may be wrong by its rounding: settle it.
            _yinyang_pass(
                part, self.centers, self.offsets, self.group_of, self.zero,
                self.zero_groups, labels[rows], ub[rows], lb[rows], self.margin,
                lb.shape[1], self.no_heavy,
            )

    def __call__(self, X, labels, ub, lb):
        """:meth:`rows` over the pool's threads."""

        def work(start, stop):
            self.rows(X[start:stop], labels[start:stop], ub[start:stop], lb[start:stop])

        map_chunks(work, X.shape[0], max(self.chunk, min(_TASK_ROWS, split(X.shape[0]))))


def _initial_e_step(rows, gemm, bounds):
    for start, block in rows.blocks():
        stop = start + block.shape[0]
        gemm(block, bounds.labels[start:stop], bounds.ub[start:stop], bounds.lb[start:stop])


def _e_step(rows, gemm, drift, bounds, margin):
    """One E-step from the bounds; returns the number of labels changed."""
    group_drift = _group_max(drift, gemm.offsets)
    n_groups = len(gemm.offsets) - 1
    heavy_limit = int(_HEAVY_FRACTION * n_groups)
    scale = np.float32(1.0 + margin)
    changed = 0
    for offset, block in rows.blocks():
        stop = offset + block.shape[0]
        labels, ub, lb = bounds.labels[offset:stop], bounds.ub[offset:stop], bounds.lb[offset:stop]

        def work(a, b):
            heavy = np.zeros(b - a, dtype=np.uint8)
            changed = _yinyang_pass(
                block[a:b], gemm.centers, gemm.offsets, gemm.group_of, drift, group_drift,
                labels[a:b], ub[a:b], lb[a:b], scale, heavy_limit, heavy,
            )
            index = np.flatnonzero(heavy)
            if index.size:
                # Too many groups to search: one GEMM row is cheaper.
                new_labels = np.empty(index.size, dtype=np.int64)
                new_ub = np.empty(index.size, dtype=np.float32)
                new_lb = np.empty((index.size, n_groups), dtype=np.float32)
                gemm.rows(np.ascontiguousarray(block[a:b][index]), new_labels, new_ub, new_lb)
                changed += int(np.count_nonzero(new_labels != labels[a:b][index]))
                labels[a:b][index] = new_labels
                ub[a:b][index] = new_ub
                lb[a:b][index] = new_lb
            return changed

        changed += sum(map_chunks(work, block.shape[0], _TASK_ROWS))
    return changed


def lloyd_exact_cpu(rows, centers_init, *, max_iter, tol, verbose=0, comm, seed=0):
    """Exact Lloyd from ``centers_init``; see the module docstring.

    Parameters
    ----------
    rows : ArrayRows or StreamRows
        The (centred) data.
    centers_init : ndarray of shape (n_clusters, n_features)
        Initial centres (centred like the rows).
    max_iter : int
        Maximum number of iterations.
    tol : float
        Absolute tolerance on the summed squared centre shift.
    verbose : int
        Log one line per iteration when > 0.
    comm : ProcessGroup
        Reduces the M-step's sums over processes.
    seed : int
        Seeds the grouping of the centres.

    Returns
    -------
    result : KMeansResult
        Centres (float32), int64 labels, inertia, iterations run and empty
        clusters re-seeded. The labels are those of the returned centres.
    """
    with single_threaded_blas():
        return _lloyd(rows, centers_init, max_iter, tol, verbose, comm, seed)


def _lloyd(rows, centers_init, max_iter, tol, verbose, comm, seed):
    n_clusters, n_features = centers_init.shape
    n_groups = n_groups_for(rows.n_rows, n_clusters)
    # Each group's centres are made contiguous: the search then scans slices.
    _, groups = small_kmeans(centers_init, n_groups, seed)
    groups = comm.broadcast(groups)  # the same groups on every rank
    permutation = np.argsort(groups, kind="stable")
    counts = np.bincount(groups, minlength=n_groups)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    offsets = offsets[np.concatenate([[True], counts > 0])]  # drop empty groups
    group_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)).astype(np.int64)
    centers = np.ascontiguousarray(centers_init[permutation], dtype=np.float32)
    margin = rounding_margin(n_features)

    bounds = _Bounds(rows.n_rows, len(offsets) - 1)
    _initial_e_step(rows, _Gemm(centers, offsets, group_of, margin), bounds)
    n_empty = 0
    strict = False
    drift = changed = None  # set by the first M-step, before any use
    with progress(total=max_iter, desc="k-means", unit="iter", verbose=verbose) as bar:
        for iteration in range(max_iter):
            if iteration > 0:
                gemm = _Gemm(centers, offsets, group_of, margin)
                changed = _e_step(rows, gemm, drift, bounds, margin)
                changed = int(comm.all_reduce(np.array([changed]))[0])
            new_centers, empty = update_centers(rows, bounds.labels, centers, comm)
            n_empty += empty
            drift, shift = _drifts(new_centers, centers)
            centers = new_centers
            bar.update()
            bar.set_postfix_str(f"shift {shift:.3g}")
            if iteration > 0 and changed == 0:
                strict = True  # the centres are the means of these labels already
                break
            if shift <= tol:
                break
    if not strict:
        _e_step(rows, _Gemm(centers, offsets, group_of, margin), drift, bounds, margin)
    total = inertia(rows, centers, bounds.labels, comm)
    # Back to the caller's order of the centres.
    out_centers = np.empty_like(centers)
    out_centers[permutation] = centers
    labels = permutation[bounds.labels]
    return KMeansResult(out_centers, labels, total, iteration + 1, n_empty)


def nearest_centers(X, centers):
    """Exact nearest centre (int64) of every row of ``X`` (float32, C-contiguous).

    One GEMM per chunk, then the proven check of the first E-step: the
    centres are split into consecutive groups of ten, and only the groups
    holding a centre within the GEMM's rounding of the best one are compared
    directly (a few rows, a few groups).
    """
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    n_clusters, n_features = centers.shape
    offsets = np.append(np.arange(0, n_clusters, _GROUP_SIZE), n_clusters).astype(np.int64)
    group_of = np.arange(n_clusters, dtype=np.int64) // _GROUP_SIZE
    gemm = _Gemm(centers, offsets, group_of, rounding_margin(n_features))
    labels = np.empty(X.shape[0], dtype=np.int64)

    def work(start, stop):
        # Bounds for one task's rows only: n_rows x K/10 floats would not fit.
        ub = np.empty(stop - start, dtype=np.float32)
        lb = np.empty((stop - start, len(offsets) - 1), dtype=np.float32)
        gemm.rows(X[start:stop], labels[start:stop], ub, lb)

    with single_threaded_blas():
        map_chunks(work, X.shape[0], max(gemm.chunk, min(_TASK_ROWS, split(X.shape[0]))))
    return labels


def gemm_nearest(X, centers):
    """Nearest centre (int64) by float32 GEMM alone, as scikit-learn computes it.

    Not proven exact near ties (see :func:`nearest_centers`); cheap.
    """
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    half_sq = half_squared_norms(centers)
    labels = np.empty(X.shape[0], dtype=np.int64)

    def work(start, stop):
        # |c|^2 / 2 - x.c: half of |c|^2 - 2 x.c, rounded alike (halving is
        # exact), with centers.T read in place: a scaled transposed copy would
        # be another K x d array (131 MB at 16,000 x 2048) per call.
        scores = X[start:stop] @ centers.T
        np.subtract(half_sq, scores, out=scores)
        labels[start:stop] = scores.argmin(1)

    chunk = max(16, _GEMM_CHUNK_BYTES // (4 * centers.shape[0]))
    with single_threaded_blas():
        map_chunks(work, X.shape[0], chunk)
    return labels
