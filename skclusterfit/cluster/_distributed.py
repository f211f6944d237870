"""k-means across processes with ``torch.distributed`` (DeepCluster-v2's recipe).

Each process (rank) holds a contiguous shard of the rows, in rank order. The
engines call five collective operations, all on small arrays:

- ``allreduce_sum`` of the M-step's per-cluster sums and counts (and of a few
  scalars: rows, moments, labels changed, inertia), so that every rank
  computes the same centres from the same numbers;
- ``broadcast`` of what one rank decides (the initial centres, a seed);
- ``allgather_rows`` of the seeding sample, so the initial centres are chosen
  on one rank from rows drawn from all ranks;
- ``exchange_rows`` (the hierarchical engine only): one all-to-all that sends
  each mesocluster's rows to the rank that clusters it.

``LocalComm`` (``_common.py``) is the one-process version, whose operations do
nothing. Arrays go through CPU tensors under gloo and CUDA tensors under NCCL.
"""

import numpy as np
import torch

from ._common import LocalComm


class TorchComm:
    """Collectives of the default ``torch.distributed`` process group on numpy arrays."""

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        backend = str(dist.get_backend()).lower()
        if "nccl" in backend:
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")

    def _tensor(self, array):
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    @staticmethod
    def _numpy(tensor, like):
        return tensor.cpu().numpy().astype(like.dtype, copy=False).reshape(like.shape)

    def allreduce_sum(self, array):
        array = np.asarray(array)
        tensor = self._tensor(array)
        self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM)
        return self._numpy(tensor, array)

    def broadcast(self, array, src=0):
        """``src``'s array on every rank (all ranks pass the same shape and dtype)."""
        array = np.asarray(array)
        tensor = self._tensor(array)
        self.dist.broadcast(tensor, src=src)
        return self._numpy(tensor, array)

    def allgather_rows(self, array):
        """The rows of every rank, concatenated in rank order (sizes may differ)."""
        array = np.ascontiguousarray(array)
        sizes = self.allgather_sizes(array.shape[0])
        padded = np.zeros((max(sizes),) + array.shape[1:], dtype=array.dtype)
        padded[: array.shape[0]] = array
        tensor = self._tensor(padded)
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self.dist.all_gather(gathered, tensor)
        parts = [g.cpu().numpy()[:size] for g, size in zip(gathered, sizes)]
        return np.concatenate(parts).astype(array.dtype, copy=False)

    def exchange_rows(self, rows, groups, destination):
        """Send each row, with its group number, to rank ``destination[i]``.

        One all-to-all (every row crosses the network once: the hierarchical
        engine's fine stage, where each rank clusters the groups it owns).
        Returns ``(rows, groups)`` received, in the senders' rank order and,
        from each sender, in its row order.
        """
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        n_features = rows.shape[1]
        order = np.argsort(destination, kind="stable")
        rows, groups = rows[order], np.ascontiguousarray(groups[order], dtype=np.int64)
        send = np.bincount(destination, minlength=self.world_size).astype(np.int64)
        matrix = self.allgather_rows(send[None])  # matrix[r, s]: rows r sends to s
        receive = matrix[:, self.rank]
        received_rows = self._all_to_all(rows.ravel(), send * n_features, receive * n_features)
        received_groups = self._all_to_all(groups, send, receive)
        return received_rows.reshape(-1, n_features), received_groups

    def _all_to_all(self, flat, send, receive):
        """``all_to_all_single`` of a flat array: ``send[r]`` items to rank r."""
        output = torch.empty(int(receive.sum()), dtype=torch.from_numpy(flat[:0]).dtype,
                             device=self.device)
        self.dist.all_to_all_single(
            output, self._tensor(flat),
            output_split_sizes=[int(x) for x in receive],
            input_split_sizes=[int(x) for x in send],
        )
        return output.cpu().numpy()

    def allgather_sizes(self, size):
        """Every rank's ``size`` (an int), as a list in rank order."""
        tensor = self._tensor(np.array([size], dtype=np.int64))
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self.dist.all_gather(gathered, tensor)
        return [int(g.cpu()[0]) for g in gathered]


def _distributed_world():
    """World size of the initialised default process group, else 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def resolve_comm(distributed):
    """The communicator for ``KMeans(distributed=...)``.

    ``"auto"``: the default process group when ``torch.distributed`` is
    initialised with more than one process, else a one-process fit.
    ``False``: always one process (each rank clusters its own rows).
    ``True``: the process group, which must be initialised.
    """
    if distributed is False:
        return LocalComm()
    world = _distributed_world()
    if distributed is True and world == 1:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "distributed=True needs an initialised torch.distributed process "
                "group (torch.distributed.init_process_group, e.g. under torchrun); "
                "use distributed='auto' to fall back to one process."
            )
    if world > 1:
        return TorchComm()
    return LocalComm()


def shard_layout(comm, n_local):
    """``(n_total, offset)``: the global row count and where this rank's rows start."""
    if comm.world_size == 1:
        return n_local, 0
    sizes = comm.allgather_sizes(n_local)
    return int(sum(sizes)), int(sum(sizes[: comm.rank]))
