"""k-means across processes with ``torch.distributed`` (DeepCluster-v2's recipe).

Each process (rank) holds a contiguous shard of the rows, in rank order. The
engines call the collective operations of the package's one communicator,
:class:`skclusterfit.runtime.ProcessGroup`:

- ``all_reduce`` of the M-step's per-cluster sums and counts (and of a few
  scalars: rows, moments, labels changed, inertia), so that every rank
  computes the same centres from the same numbers;
- ``broadcast`` of what one rank decides (the initial centres, a seed);
- ``all_gather_rows`` of the seeding sample, so the initial centres are chosen
  on one rank from rows drawn from all ranks;
- ``exchange_rows`` (the hierarchical engine only): one all-to-all that sends
  each mesocluster's rows to the rank that clusters it.

A one-process fit gets :data:`~skclusterfit.runtime.LOCAL`, whose operations
do nothing.
"""

import numpy as np
import torch.distributed as dist

from ..runtime._distributed import LOCAL, ProcessGroup, is_initialized


def resolve_comm(distributed):
    """The process group of ``KMeans(distributed=...)``.

    ``"auto"``: the default process group when ``torch.distributed`` is
    initialised with more than one process, else a one-process fit.
    ``False``: always one process (each rank clusters its own rows).
    ``True``: the process group, which must be initialised.
    """
    if distributed is False:
        return LOCAL
    if is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size())
    if distributed is True and not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "distributed=True needs an initialised torch.distributed process "
            "group (torch.distributed.init_process_group, e.g. under torchrun); "
            "use distributed='auto' to fall back to one process."
        )
    return LOCAL


def shard_layout(comm, n_local):
    """``(n_total, offset)``: the global row count and where this rank's rows start."""
    if comm.world_size == 1:
        return n_local, 0
    sizes = comm.all_gather_objects(int(n_local))
    return int(sum(sizes)), int(sum(sizes[: comm.rank]))


def global_sample(rows, size, rng, comm):
    """``(sample, seed)``: ``size`` rows drawn from all ranks' rows, on every rank.

    The rows are picked by global row number, drawn alike on every process,
    so the sample does not depend on how the rows are sharded. ``seed`` is
    drawn from ``rng`` right after, for whatever rank 0 does with the sample.
    """
    n_total, offset = shard_layout(comm, rows.n_rows)
    size = min(size, n_total)
    index = np.sort(rng.choice(n_total, size, replace=False)) if size < n_total else None
    seed = int(rng.randint(2**31 - 1))
    if index is None:
        local = np.arange(rows.n_rows)
    else:
        local = index[(index >= offset) & (index < offset + rows.n_rows)] - offset
    return comm.all_gather_rows(rows.take(local)), seed
