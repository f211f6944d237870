"""torch.distributed in a few small functions: who am I, which rows are mine, gather.

A script that calls ``ClusterFit(...).fit(X)`` runs unchanged under
``torchrun --nproc_per_node=N script.py``: :func:`process_group` sees the
environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...),
initialises PyTorch's process group itself when the script has not (NCCL on
CUDA, gloo on the CPU) and returns a :class:`ProcessGroup`. A plain
``python script.py`` gets :data:`LOCAL`, the group of one process, whose
gathers and reductions are the identity, so the estimators read the same with
one process or many.

Every collective here is PyTorch's own (``all_gather``, ``broadcast``,
``all_reduce``); this module adds only the bookkeeping the estimators need:
contiguous shard bounds, all-gathers of arrays whose length differs by rank,
and numpy in and out.

Examples
--------
>>> from skclusterfit import runtime as distributed
>>> group = distributed.process_group("auto")  # plain python: one process
>>> group.rank, group.world_size
(0, 1)
>>> [distributed.shard_bounds(10, rank, 3) for rank in range(3)]
[(0, 3), (3, 6), (6, 10)]
>>> [distributed.shard_bounds(10, rank, 3, align=4) for rank in range(3)]
[(0, 4), (4, 8), (8, 10)]
"""

import atexit
import os
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

# What torchrun (torch.distributed.run) sets in every process it starts.
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def torchrun_environment():
    """Whether this process was started by torchrun (or srun/mpirun set the same
    variables) as one of several: ``RANK``, ``WORLD_SIZE`` (> 1), ``MASTER_ADDR``
    and ``MASTER_PORT`` are all set."""
    if not all(name in os.environ for name in _TORCHRUN_VARIABLES):
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


def is_initialized():
    """Whether torch.distributed is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_process_group(device=None, timeout=None):
    """Initialise torch.distributed from torchrun's environment (``env://``).

    NCCL when ``device`` is a CUDA device (or None and CUDA is available),
    gloo otherwise. On CUDA each process takes GPU ``LOCAL_RANK`` as its
    current device, so ``device="cuda"`` means "this rank's GPU". The group
    is destroyed when the interpreter exits. A no-op when a group exists.

    Parameters
    ----------
    device : str, torch.device or None, default=None
        The device the fit runs on.
    timeout : float or None, default=None
        Seconds a collective may wait for the other processes (PyTorch's
        default when None).

    Returns
    -------
    initialised : bool
        True if this call created the group.
    """
    if dist.is_initialized():
        return False
    if not torchrun_environment():
        raise RuntimeError(
            "torch.distributed cannot be initialised from the environment: launch "
            "with torchrun (e.g. torchrun --nproc_per_node=2 script.py), which sets "
            f"{', '.join(_TORCHRUN_VARIABLES)}."
        )
    use_cuda = _wants_cuda(device)
    kwargs = {}
    if timeout is not None:
        kwargs["timeout"] = timedelta(seconds=timeout)
    if use_cuda:
        local_rank = _local_rank()
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"this process has LOCAL_RANK={local_rank}, but only "
                f"{torch.cuda.device_count()} CUDA device(s) are visible to it: start at "
                "most as many processes per node as GPUs (torchrun "
                "--nproc_per_node), check CUDA_VISIBLE_DEVICES, or fit on the CPU "
                "(device='cpu', the gloo backend)."
            )
        torch.cuda.set_device(local_rank)
        kwargs["device_id"] = torch.device("cuda", local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://",
                            **kwargs)
    atexit.register(_destroy)
    return True


def _local_rank():
    return int(os.environ.get("LOCAL_RANK", 0))


def check_device(group, device):
    """Refuse a ``device`` that cannot work with the processes of ``group``.

    Under torchrun each process owns GPU ``LOCAL_RANK``: ``device="cuda"``
    means that one, while ``"cuda:N"`` would put every process on GPU N. The
    NCCL backend moves only CUDA tensors, so a fit on the CPU needs gloo.
    """
    if not group.is_distributed:
        return
    device = torch.device(device)
    local_rank = _local_rank()
    if device.type == "cuda" and device.index is not None and device.index != local_rank:
        raise ValueError(
            f"device={str(device)!r} under torchrun would put every process on GPU "
            f"{device.index}; use device='cuda', which means GPU LOCAL_RANK "
            f"(={local_rank} here) in each process, or choose the GPUs with "
            "CUDA_VISIBLE_DEVICES."
        )
    if device.type != "cuda" and dist.get_backend() == "nccl":
        raise ValueError(
            f"device={str(device)!r}, but torch.distributed was initialised with the "
            "NCCL backend, which only moves CUDA tensors; fit on device='cuda', or "
            "initialise the group with backend='gloo' for a CPU fit."
        )


def _wants_cuda(device):
    if device is None or str(device) == "auto":
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def _destroy():
    if dist.is_initialized():
        dist.destroy_process_group()


def process_group(distributed="auto", device=None):
    """The processes a fit runs on, from an estimator's ``distributed`` parameter.

    Parameters
    ----------
    distributed : "auto" or bool, default="auto"
        "auto": distributed when torch.distributed is initialised with more
        than one process, or when the torchrun environment is present (the
        group is then initialised here); one process otherwise. True: the
        same, but an error when there is no such environment. False: one
        process, whatever the environment (each process fits on its own).
    device : str, torch.device or None, default=None
        Picks the backend when the group is initialised here.

    Returns
    -------
    group : ProcessGroup
        :data:`LOCAL` when the fit runs in one process.
    """
    if distributed is False:
        return LOCAL
    if is_initialized() or (dist.is_available() and torchrun_environment()):
        init_process_group(device)  # a no-op when the group exists
        group = ProcessGroup(dist.get_rank(), dist.get_world_size())
        if device is not None and str(device) != "auto":
            check_device(group, device)
        return group
    if distributed is True:
        raise ValueError(
            "distributed=True, but torch.distributed is not initialised and this "
            "process was not started by torchrun; launch with torchrun "
            "--nproc_per_node=N, or use distributed='auto' (one process here)."
        )
    return LOCAL


def shard_bounds(n_samples, rank, world_size, align=1):
    """Rows ``[start, stop)`` of the contiguous shard of ``rank``.

    Shards are disjoint, in rank order, cover every row once (no padding, no
    row lost when ``n_samples`` is not divisible) and differ in size by at
    most ``align`` rows. With ``align`` (e.g. the teacher's batch size) every
    shard but the last starts and ends on a multiple of it, so each rank's
    batches are the batches one process would run. ``align`` falls back to 1
    when there are fewer blocks than processes.

    Parameters
    ----------
    n_samples : int
    rank : int
    world_size : int
    align : int, default=1

    Returns
    -------
    start, stop : int
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size}).")
    if n_samples < world_size:
        raise ValueError(
            f"n_samples={n_samples} cannot be split over {world_size} processes: "
            "every process needs at least one sample."
        )
    align = max(1, int(align))
    n_blocks = -(-n_samples // align)
    if n_blocks < world_size:
        align, n_blocks = 1, n_samples
    first, last = n_blocks * rank // world_size, n_blocks * (rank + 1) // world_size
    return min(first * align, n_samples), min(last * align, n_samples)


class ProcessGroup:
    """This process's place among those of a fit, and the collectives it uses.

    With ``world_size == 1`` (:data:`LOCAL`) no collective touches
    torch.distributed: a gather returns its input. Every method that
    communicates must be called by every process, in the same order.

    Parameters
    ----------
    rank : int
    world_size : int
    """

    def __init__(self, rank=0, world_size=1):
        self.rank = int(rank)
        self.world_size = int(world_size)

    def __repr__(self):
        return f"ProcessGroup(rank={self.rank}, world_size={self.world_size})"

    @property
    def is_distributed(self):
        return self.world_size > 1

    @property
    def is_writer(self):
        """Whether this process writes shared files (checkpoints, saved models)."""
        return self.rank == 0

    def shard(self, n_samples, align=1):
        """This process's rows ``[start, stop)``: :func:`shard_bounds`."""
        return shard_bounds(n_samples, self.rank, self.world_size, align)

    def _device(self):
        # NCCL moves only CUDA tensors; gloo only CPU ones.
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def all_gather_rows(self, array):
        """Concatenate every process's rows in rank order (lengths may differ).

        For small arrays (labels, samples of rows): the result is held whole on
        every process.
        """
        array = np.ascontiguousarray(array)
        if not self.is_distributed:
            return array
        device = self._device()
        lengths = self.all_gather_objects(len(array))
        longest = max(lengths)
        local = torch.from_numpy(array).to(device)
        padded = torch.zeros((longest, *array.shape[1:]), dtype=local.dtype, device=device)
        padded[: len(array)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return np.concatenate(
            [part[:length].cpu().numpy() for part, length in zip(parts, lengths)]
        )

    def exchange_rows(self, rows, groups, destination):
        """Send each row, with its group number, to process ``destination[i]``.

        One all-to-all (every row crosses the network once: the hierarchical
        k-means' fine stage, where each process clusters the groups it owns).
        Returns ``(rows, groups)`` received, in the senders' rank order and,
        from each sender, in its row order; in one process, the input.
        """
        if not self.is_distributed:
            return rows, groups
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n_features = rows.shape[1]
        order = np.argsort(destination, kind="stable")
        rows, groups = rows[order], np.ascontiguousarray(groups[order], dtype=np.int64)
        send = np.bincount(destination, minlength=self.world_size).astype(np.int64)
        matrix = self.all_gather_rows(send[None])  # matrix[r, s]: rows r sends to s
        receive = matrix[:, self.rank]
        received_rows = self._all_to_all(rows.ravel(), send * n_features, receive * n_features)
        received_groups = self._all_to_all(groups, send, receive)
        return received_rows.reshape(-1, n_features), received_groups

    def _all_to_all(self, flat, send, receive):
        """``all_to_all_single`` of a flat array: ``send[r]`` items to process r."""
        device = self._device()
        output = torch.empty(int(receive.sum()), dtype=torch.from_numpy(flat[:0]).dtype,
                             device=device)
        dist.all_to_all_single(
            output, torch.from_numpy(np.ascontiguousarray(flat)).to(device),
            output_split_sizes=[int(x) for x in receive],
            input_split_sizes=[int(x) for x in send],
        )
        return output.cpu().numpy()

    def all_gather_objects(self, obj):
        """Every process's ``obj`` (picklable), as a list in rank order."""
        if not self.is_distributed:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, array, src=0):
        """Process ``src``'s numpy array on every process (all pass the same
        shape and dtype): what one process decides, e.g. initial centres."""
        array = np.asarray(array)
        if not self.is_distributed:
            return array
        tensor = torch.from_numpy(np.array(array, copy=True)).to(self._device())
        dist.broadcast(tensor, src=src)
        return tensor.cpu().numpy()

    def all_reduce(self, array, op="sum"):
        """Element-wise ``"sum"``, ``"max"`` or ``"min"`` of a numpy array over processes."""
        array = np.asarray(array)
        if not self.is_distributed:
            return array
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        tensor = torch.from_numpy(np.array(array, copy=True)).to(self._device())
        dist.all_reduce(tensor, op=ops[op])
        return tensor.cpu().numpy()

    def broadcast_tensors(self, tensors, src=0):
        """Overwrite each tensor (in place) with process ``src``'s (e.g. a network's buffers)."""
        if not self.is_distributed:
            return
        device = self._device()
        with torch.no_grad():
            for tensor in tensors:
                on_device = tensor.detach().to(device)
                dist.broadcast(on_device, src=src)
                if on_device is not tensor:
                    tensor.copy_(on_device)

    def barrier(self):
        """Wait until every process gets here."""
        if self.is_distributed:
            dist.barrier()


#: The group of one process: a plain ``python script.py``, or ``distributed=False``.
LOCAL = ProcessGroup(0, 1)


__all__ = [
    "LOCAL",
    "ProcessGroup",
    "check_device",
    "init_process_group",
    "is_initialized",
    "process_group",
    "shard_bounds",
    "torchrun_environment",
]
