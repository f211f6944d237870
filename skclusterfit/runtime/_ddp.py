"""The training loop across processes: DistributedDataParallel and each process's batches.

With one process every function here is the identity (the order, the
network, the seed), so :class:`~skclusterfit.NetClassifier` trains exactly
as without torch.distributed.

The epoch order (a shuffle, or the class-balanced draw) is drawn from the
same seeded generator on every process (:func:`shared_random_state` when
the user gave no seed); each global step takes the next ``batch_size``
positions of it (the global batch, as in one process) and gives each of the
``world_size`` processes its own ``batch_size // world_size``
(:func:`local_batch_size`), so the processes see disjoint samples in every
epoch and take as many steps of the same size as one process would: the
learning rate of the one-process recipe stays right, whatever the number of
processes. Every process runs the same number of steps (a
collective all-reduce per step would otherwise wait forever): a last, short
global batch is split evenly, or dropped when a process would get fewer
than two samples (BatchNorm cannot train on one).
"""

import numpy as np
import torch

from ._distributed import LOCAL, is_initialized, process_group, shard_bounds
from ._torch_utils import draw_seed


def local_batch_size(batch_size, group, min_batch=1):
    """This process's share of the global ``batch_size``: ``batch_size // world_size``.

    ``min_batch``: the fewest samples a process may train on per step (2 for
    a network with BatchNorm).
    """
    local = batch_size // group.world_size
    if local >= min_batch:
        return local
    why = "the network has BatchNorm layers, which cannot train on one sample"
    if group.is_distributed:
        raise ValueError(
            f"batch_size={batch_size} is the global batch, split over "
            f"{group.world_size} processes: each would train on {local} sample(s) "
            f"per step, and {why if min_batch > 1 else 'needs at least one'}; use "
            f"batch_size >= {min_batch * group.world_size}."
        )
    raise ValueError(f"batch_size={batch_size} is too small: {why}; use batch_size >= 2.")


def shared_random_state(random_state, group=None):
    """``random_state``, or for None in a distributed fit one seed of process 0 for all.

    Without it each process would draw its own epoch orders (the "disjoint"
    shares would overlap) and its own initial weights. ``group`` None: the
    initialised torch.distributed group if any (every process must call this
    then), else one process.
    """
    if random_state is not None:
        return random_state
    if group is None:
        group = process_group("auto") if is_initialized() else LOCAL
    if not group.is_distributed:
        return None
    return int(group.broadcast(np.array([draw_seed(None)], dtype=np.int64))[0])


def epoch_share(order, batch_size, group):
    """The positions of ``order`` this process trains on in one epoch, in step order.

    ``batch_size``: this process's per-step batch (:func:`local_batch_size`).
    """
    if not group.is_distributed:
        return order
    world, rank = group.world_size, group.rank
    step = batch_size * world
    n_full = len(order) // step
    full = order[: n_full * step].reshape(n_full, world, batch_size)[:, rank].ravel()
    rest = order[n_full * step :]
    if len(rest) // world < 2:
        return full
    start, stop = shard_bounds(len(rest), rank, world)
    return np.concatenate([full, rest[start:stop]])


def steps_per_epoch(n_samples, batch_size, group):
    """Optimizer steps per epoch on every process (the schedule's unit)."""
    if not group.is_distributed:
        return -(-n_samples // batch_size)
    step = batch_size * group.world_size
    n_full, rest = divmod(n_samples, step)
    return n_full + (1 if rest // group.world_size >= 2 else 0)


def process_seed(seed, group):
    """The seed of this process's augmentation generator: ``seed`` on process 0,
    an independent one derived from ``(seed, rank)`` on the others."""
    if group.rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, group.rank]).generate_state(1)[0] >> 1)


def wrap(network, device, group):
    """``network`` under DistributedDataParallel when distributed, else itself.

    Gradients are averaged over processes at every backward; DDP also
    broadcasts process 0's buffers (BatchNorm statistics) at every forward.
    """
    if not group.is_distributed:
        return network
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)


def end_epoch(network, loss_sum, seen, seconds, group):
    """Agree on the epoch's figures and state: ``(mean loss, seconds)``.

    The loss is the mean over all processes' samples and the time the
    slowest process's; process 0's buffers (BatchNorm running statistics,
    which each process updated from its own last batch) are copied to all,
    so every process holds the same network, as the checkpoint does.
    """
    if not group.is_distributed:
        return float(loss_sum) / max(seen, 1), seconds
    totals = group.all_reduce(np.array([float(loss_sum), float(seen)]), op="sum")
    seconds = float(group.all_reduce(np.array([seconds]), op="max")[0])
    group.broadcast_tensors(list(network.buffers()))
    return float(totals[0]) / max(totals[1], 1.0), seconds
