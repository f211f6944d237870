"""Hierarchical k-means: mesoclusters, each group clustered alone, then global refinement.

At K in the thousands a flat Lloyd iteration compares every row with K
centres. Hierarchical k-means (the scheme of SuperKMeans' default above 100k
rows, and of the multi-level curation k-means of Vo et al. 2024) splits the
problem first:

1. **Mesoclusters**: ``~sqrt(K)`` groups by Lloyd on a random sample of rows
   (``sqrt(K)`` centres: cheap), then every row is given its nearest group.
2. **Fine clusters**: each group is clustered alone into its share of K
   (proportional to its rows, at least one cluster, at most its rows), by
   k-means++ and a few Lloyd iterations over its own rows only: a row meets
   ``K / sqrt(K)`` centres instead of K. Groups are independent, so they run
   in parallel threads and, under ``torch.distributed``, on different ranks:
   each group's rows are sent to the rank that owns it (one all-to-all of the
   rows) and the fine centres are gathered once.
3. **Global refinement**: ``max_iter`` iterations of a Lloyd engine over all
   rows from the fine centres: the centroid-graph walk (``_ann``), the exact
   Yinyang engine (``_exact_cpu``), or, at a K where the centroid graph's
   ``K^2 d`` no longer pays, an inverted file over the mesoclusters
   (``refine="groups"``: a row compares itself with the fine centres of its
   ``N_PROBE`` nearest groups). The fine stage leaves rows near the border of
   two groups with a centre of their own group; refinement lets them cross.

The groups' rows are gathered in memory, at most ``FINE_ROWS_PER_CLUSTER``
rows per fine cluster (a random subset of a larger group, the same whatever
the sharding): with streamed rows (a memory map) that bounds what the fine
stage holds, and refinement streams every row by blocks like any engine.
"""

import math
import threading

import numpy as np

from ..runtime._progress import log, progress
from . import _ann, _exact_cpu, _exact_torch
from ._block_kmeans import gather_rows, greedy_seeds, lloyd_block
from ._common import (
    KMeansResult,
    _counting_order,
    inertia,
    squared_shift,
    update_centers,
)
from ._distributed import global_sample, shard_layout
from ._parallel import map_chunks, single_threaded_blas

# Mesocluster Lloyd runs on a sample of this many rows per group (at least
# all rows of a small data set): sqrt(K) centres are well placed by far fewer
# rows than the fine stage needs.
MESO_ROWS_PER_GROUP = 256
MESO_ITER = 10
# Lloyd iterations of every group's fine clustering. A group's clusters see
# only the group's rows, so they settle in few iterations; the global
# refinement does the rest.
FINE_ITER = 6
# Rows per fine cluster a group keeps for its fine clustering (faiss caps
# k-means samples at 256 rows per centre by default; the refinement sees every
# row anyway). Bounds the memory the fine stage holds when rows are streamed:
# 64 x 100,000 clusters x 64 features in float32 is 1.6 GB.
FINE_ROWS_PER_CLUSTER = 64
SEED_ROWS_PER_CLUSTER = 16
# Mesoclusters probed per row by the "groups" refinement.
N_PROBE = 3


def n_groups_for(n_clusters):
    """Mesoclusters for ``n_clusters``: ``round(sqrt(K))`` (at least 1)."""
    return max(1, int(round(math.sqrt(n_clusters))))


def _fine_clusters(X, k, seed, n_iter):
    """``k`` centres of one group's rows ``X``: greedy k-means++ then Lloyd."""
    rng = np.random.RandomState(seed)
    if k >= X.shape[0]:
        # As many clusters as rows (or, when a group's hashed subset came out
        # smaller than its share, more): every row a centre, repeated if need
        # be; the global iterations split the duplicates apart.
        return np.array(X[np.arange(k) % max(X.shape[0], 1)], dtype=np.float32)
    # Seeding on at most SEED_ROWS_PER_CLUSTER rows per centre: greedy
    # k-means++ costs ``rows * k * log(k)`` distances, Lloyd ``rows * k`` per
    # iteration.
    size = min(X.shape[0], SEED_ROWS_PER_CLUSTER * k)
    sample = X if size == X.shape[0] else X[np.sort(rng.choice(X.shape[0], size, replace=False))]
    centers = greedy_seeds(np.ascontiguousarray(sample, dtype=np.float32), k, rng)
    if n_iter > 0:
        lloyd_block(X, centers, n_iter, np.empty(X.shape[0], dtype=np.int64))
    return centers


def allocate(counts, n_clusters):
    """Fine clusters per group: proportional to ``counts``, summing to ``n_clusters``.

    Largest remainders, then every non-empty group gets at least one cluster
    and no group more clusters than rows (so no fine cluster starts empty).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = counts.sum()
    if total < n_clusters:
        raise ValueError(f"n_clusters={n_clusters} must be <= n_samples={int(total)}.")
    share = counts * (n_clusters / total)
    k = np.floor(share).astype(np.int64)
    k = np.minimum(np.maximum(k, (counts > 0).astype(np.int64)), counts)
    # Hand out (or take back) the difference, by remainder, within [1, count].
    while k.sum() != n_clusters:
        gap = n_clusters - int(k.sum())
        if gap > 0:
            room = np.flatnonzero(k < counts)
            order = room[np.argsort(-(share[room] - k[room]), kind="stable")]
            k[order[:gap]] += 1
        else:
            room = np.flatnonzero(k > 1)
            order = room[np.argsort(share[room] - k[room], kind="stable")]
            k[order[: -gap]] -= 1
    return k


def _owners(cost, world_size):
    """Rank of every group: largest cost first, to the least loaded rank."""
    owner = np.zeros(len(cost), dtype=np.int64)
    load = np.zeros(world_size)
    for g in np.argsort(-np.asarray(cost, dtype=np.float64), kind="stable"):
        rank = int(np.argmin(load))
        owner[g] = rank
        load[rank] += cost[g]
    return owner


def _keep(global_index, keep_fraction, seed):
    """Whether each row (by global index) is in its group's fine-stage subset.

    A hash of the global row number, not a draw: the subset is the same
    however the rows are sharded, and no array of n_total draws is made.
    """
    h = (global_index.astype(np.uint64) + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(31)
    u = (h >> np.uint64(11)).astype(np.float64) / float(2**53)
    return u < keep_fraction


def _mesoclusters(rows, n_groups, rng, comm):
    """``n_groups`` group centres (float32), the same on every rank."""
    sample, seed = global_sample(rows, max(MESO_ROWS_PER_GROUP * n_groups, 10_000), rng, comm)
    centers = np.empty((n_groups, rows.n_features), dtype=np.float32)
    if comm.rank == 0:
        # Seeded on the whole sample (not SEED_ROWS_PER_CLUSTER rows per group):
        # the groups decide which centres a row can reach in the fine stage.
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        with single_threaded_blas():
            centers = greedy_seeds(sample, n_groups, np.random.RandomState(seed))
            lloyd_block(sample, centers, MESO_ITER, np.empty(sample.shape[0], np.int64))
    return comm.broadcast(centers)


def _group_rows(rows, meso, n_clusters, seed, comm):
    """Every rank's groups with their rows (at most FINE_ROWS_PER_CLUSTER per cluster).

    Returns ``(k, owner, pieces, fetch)``: ``k`` the fine clusters of
    every group (global), ``owner`` the rank of every group, ``pieces`` this
    rank's groups as ``(group, first, stop)``: the positions of their rows
    among this rank's kept rows (by group, then global row order);
    ``fetch(first, stop, buffer)`` returns those rows (float32, C-contiguous),
    either a view of the gathered rows or, for rows in memory in a
    one-process fit, gathered into ``buffer`` (at least ``stop - first``
    rows) by the calling thread: the fine stage's threads gather their own
    groups' rows, in parallel, and no copy of the data is made.
    """
    n_groups = meso.shape[0]
    _, offset = shard_layout(comm, rows.n_rows)
    labels = np.empty(rows.n_rows, dtype=np.int64)
    for start, block in rows.blocks():
        labels[start : start + block.shape[0]] = _exact_cpu.gemm_nearest(block, meso)
    counts = comm.all_reduce(np.bincount(labels, minlength=n_groups).astype(np.int64))
    k = allocate(counts, n_clusters)
    used = np.minimum(counts, FINE_ROWS_PER_CLUSTER * np.maximum(k, 1))
    owner = _owners(used * k, comm.world_size)
    keep_fraction = np.where(counts > 0, used / np.maximum(counts, 1), 0.0)
    X = None
    if comm.world_size == 1:
        keep = None
        if np.any(used < counts):
            keep = _keep(np.arange(rows.n_rows), keep_fraction[labels], seed)
            labels = np.where(keep, labels, -1)
        kept = labels >= 0
        groups = labels[kept]
        order, _ = _counting_order(groups, n_groups)  # stable: by group, then row
        row_of = order if keep is None else np.flatnonzero(kept)[order]
        if not hasattr(rows, "array"):
            # Streamed rows written straight to their place: one copy of the kept rows.
            position = np.empty(rows.n_rows, dtype=np.int64)
            position[np.flatnonzero(kept)[order]] = np.arange(order.size)
            X = np.empty((order.size, rows.n_features), dtype=np.float32)
            for start, block in rows.blocks():
                stop = start + block.shape[0]
                mask = kept[start:stop]
                X[position[start:stop][mask]] = block[mask]
            del position
        groups = groups[order]
        del labels, order, kept
    else:
        # One pass: the kept rows of every block, then one all-to-all to their ranks.
        kept_rows, kept_groups = [], []
        for start, block in rows.blocks():
            block_labels = labels[start : start + block.shape[0]]
            global_index = np.arange(start, start + block.shape[0]) + offset
            keep = np.flatnonzero(_keep(global_index, keep_fraction[block_labels], seed))
            kept_rows.append(np.array(block[keep]))  # a copy: a streamed block is reused
            kept_groups.append(block_labels[keep])
        del labels
        X = np.concatenate(kept_rows) if kept_rows else np.empty((0, rows.n_features), np.float32)
        groups = np.concatenate(kept_groups) if kept_groups else np.empty(0, np.int64)
        del kept_rows, kept_groups
        X, groups = comm.exchange_rows(X, groups, owner[groups])
        order = np.argsort(groups, kind="stable")  # by group, then global row order
        X, groups = X[order], groups[order]
    bounds = np.searchsorted(groups, np.arange(n_groups + 1))
    pieces = [
        (g, bounds[g], bounds[g + 1])
        for g in range(n_groups)
        if owner[g] == comm.rank and k[g] > 0
    ]
    if X is None:
        def fetch(first, stop, buffer):
            return gather_rows(rows.array, row_of[first:stop], buffer)
    else:
        def fetch(first, stop, buffer):
            return X[first:stop]
    return k, owner, pieces, fetch


def hierarchical_centers(rows, n_clusters, *, comm, seed, n_groups=None, fine_iter=None,
                         verbose=0):
    """Stages 1 and 2: the fine centres (float32, K x d) in group order.

    Returns ``(centers, meso, group_of_center)``: the K centres (the same on
    every rank), the mesocluster centres and the mesocluster of each centre.
    """
    rng = np.random.RandomState(seed)
    fine_iter = FINE_ITER if fine_iter is None else fine_iter
    n_groups = min(n_groups or n_groups_for(n_clusters), n_clusters)
    meso = _mesoclusters(rows, n_groups, rng, comm)
    fine_seed = int(rng.randint(2**31 - 1))
    k, owner, pieces, fetch = _group_rows(rows, meso, n_clusters, fine_seed, comm)
    log("KMeans", f"hierarchical: {n_groups} mesoclusters, {len(pieces)} on this rank, "
        f"fine clusters per group {int(k.min())}-{int(k.max())}", verbose)
    # Largest groups first, so the threads end together.
    pieces.sort(key=lambda piece: -(piece[2] - piece[1]) * k[piece[0]])
    results = {}
    most_rows = max((stop - first for _, first, stop in pieces), default=0)
    buffers = threading.local()  # each thread's rows of its current group

    def work(a, b):
        if not hasattr(buffers, "rows"):
            buffers.rows = np.empty((most_rows, rows.n_features), dtype=np.float32)
        for g, first, stop in pieces[a:b]:
            X = fetch(first, stop, buffers.rows)
            results[g] = _fine_clusters(X, int(k[g]), fine_seed + g, fine_iter)

    with single_threaded_blas():
        map_chunks(work, len(pieces), 1)
    mine = [g for g in range(n_groups) if g in results]
    local = (
        np.concatenate([results[g] for g in mine])
        if mine else np.empty((0, rows.n_features), np.float32)
    )
    if comm.world_size > 1:
        # Ranks own interleaved groups: gather, then put the centres in group order.
        gathered = comm.all_gather_rows(local)
        ranks_groups = [np.flatnonzero((owner == r) & (k > 0)) for r in range(comm.world_size)]
        group_of = np.concatenate([np.repeat(gs, k[gs]) for gs in ranks_groups])
        order = np.argsort(group_of, kind="stable")
        centers, group_of = gathered[order], group_of[order]
    else:
        centers = local
        group_of = np.repeat(np.arange(n_groups), k)
    return np.ascontiguousarray(centers, dtype=np.float32), meso, group_of


def _groups_index(meso, group_of, n_probe=N_PROBE):
    """A :class:`_ann.CentroidGroups` whose groups are the mesoclusters."""
    groups = _ann.CentroidGroups.__new__(_ann.CentroidGroups)
    groups.group_centers = np.ascontiguousarray(meso, dtype=np.float32)
    groups.members = np.argsort(group_of, kind="stable").astype(np.int32)
    counts = np.bincount(group_of, minlength=len(meso))
    groups.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    groups.n_probe = min(n_probe, len(meso))
    return groups


def lloyd_groups(rows, centers_init, *, max_iter, tol, verbose=0, comm, groups, chunk_size=None):
    """Lloyd whose E-step searches the fine centres of a row's nearest mesoclusters.

    ``groups`` (:func:`_groups_index`) keeps each centre in the mesocluster it
    was made in; a row compares itself with the group centres, then with the
    members of its ``groups.n_probe`` nearest groups. Cost per row:
    ``sqrt(K) + n_probe * sqrt(K)`` distances, whatever K: the refinement for
    K where the centroid graph's ``K^2 d`` would dominate.
    """
    centers = np.ascontiguousarray(centers_init, dtype=np.float32)
    labels = np.empty(rows.n_rows, dtype=np.int64)
    n_empty = 0
    iteration = 0

    def e_step(centers):
        changed = 0
        for start, block in rows.blocks():
            new = groups.nearest(block, centers, chunk_size)
            changed += int(np.count_nonzero(labels[start : start + len(new)] != new))
            labels[start : start + len(new)] = new
        return int(comm.all_reduce(np.array([changed]))[0])

    with progress(total=max_iter, desc="k-means (groups)", unit="iter", verbose=verbose) as bar:
        e_step(centers)
        for iteration in range(max_iter):
            new_centers, empty = update_centers(rows, labels, centers, comm)
            n_empty += empty
            shift = squared_shift(new_centers, centers)
            centers = new_centers
            changed = e_step(centers)
            bar.update()
            bar.set_postfix_str(f"shift {shift:.3g}, changed {changed}")
            if shift <= tol or changed == 0:
                break
    total = inertia(rows, centers, labels, comm)
    return KMeansResult(centers, labels, total, min(iteration + 1, max_iter), n_empty)


def lloyd_hierarchical(
    rows, centers_init, *, max_iter, tol, verbose=0, comm, n_clusters, seed=0, refine="graph",
    n_neighbors=32, chunk_size=None, n_groups=None, fine_iter=None, device=None,
):
    """Hierarchical k-means then ``max_iter`` global Lloyd iterations; the engine signature.

    Parameters
    ----------
    rows : ArrayRows or StreamRows
        The (centred) data.
    centers_init : None
        Unused: the engine seeds each group itself (k-means++ within it).
    max_iter, tol, verbose, comm
        As for every engine (``_common.py``); ``max_iter`` and ``tol`` apply to
        the global refinement. ``max_iter=0``: none; each row is labelled by
        the nearest fine centre of its nearest mesocluster.
    n_clusters : int
        K.
    seed : int, default=0
        Seeds the samples, the seeding of every group and the refinement.
    refine : {"graph", "yinyang", "torch", "groups"}, default="graph"
        The refinement engine: the centroid-graph walk, exact Yinyang Lloyd,
        exact torch Lloyd (on ``device``), or the search of the nearest
        mesoclusters' centres.
    n_neighbors : int, default=32
        Centroid-graph neighbours (``refine="graph"``).
    chunk_size : int, default=None
        Rows searched at a time by the inverted file (None: 65,536).
    n_groups : int, default=None
        Mesoclusters; None: ``round(sqrt(n_clusters))``.
    fine_iter : int, default=None
        Lloyd iterations within each group; None: ``FINE_ITER``.
    device : torch.device, default=None
        Where ``refine="torch"`` runs.

    Returns
    -------
    result : KMeansResult
    """
    del centers_init
    centers, meso, group_of = hierarchical_centers(
        rows, n_clusters, comm=comm, seed=seed, n_groups=n_groups, fine_iter=fine_iter,
        verbose=verbose,
    )
    refine_seed = int(np.random.RandomState(seed).randint(2**31 - 1))
    if max_iter == 0:
        # No global iteration: every row takes the nearest fine centre of its
        # nearest mesocluster, as the fine stage left it (SuperKMeans' default).
        return lloyd_groups(
            rows, centers, max_iter=0, tol=tol, verbose=verbose, comm=comm,
            groups=_groups_index(meso, group_of, n_probe=1), chunk_size=chunk_size,
        )
    if refine == "torch":
        return _exact_torch.lloyd_torch(
            rows, centers, max_iter=max_iter, tol=tol, verbose=verbose, comm=comm,
            device=device, chunk_size=chunk_size,
            iteration_dtype=_exact_torch.iteration_dtype_for(device),
        )
    if refine == "yinyang":
        return _exact_cpu.lloyd_exact_cpu(
            rows, centers, max_iter=max_iter, tol=tol, verbose=verbose, comm=comm,
            seed=refine_seed,
        )
    if refine == "groups":
        return lloyd_groups(
            rows, centers, max_iter=max_iter, tol=tol, verbose=verbose, comm=comm,
            groups=_groups_index(meso, group_of), chunk_size=chunk_size,
        )
    # The walks of the first E-step start from the nearest centre of each row's
    # nearest mesocluster (where the fine stage left it), not from an inverted
    # file built anew over the K centres.
    first = _groups_index(meso, group_of, n_probe=1)
    return _ann.lloyd_graph(
        rows, centers, max_iter=max_iter, tol=tol, verbose=verbose, comm=comm,
        n_neighbors=n_neighbors, seed=refine_seed, chunk_size=chunk_size, first_groups=first,
    )
