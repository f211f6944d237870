"""Lloyd in torch (the GPU engine; it runs on the CPU too).

Distances are ``|c|^2 - 2 x.c`` (``|x|^2`` does not change the arg-min), one
GEMM per chunk of rows, so no ``n_samples x n_clusters`` matrix is ever held.
On a GPU the iterations may run their GEMMs in bfloat16 (``iteration_dtype``):
several times faster on tensor cores, accurate enough to move centres, not to
pick the labels returned; those come from one last assignment in full
precision, so they are the exact nearest centres of the returned centres.
The reduced precision is a cast of local tensors, never a process-wide torch
flag (TF32 is read, not written: when a user has allowed TF32 float32
products, the final pass runs in float64).

On a GPU the engine waits for the device once per iteration
(:func:`to_host`: the sums, counts and number of changed labels in one
go); nothing else in an iteration reads a device value on the host. Rows
that fit a stated share of the GPU's free memory (:data:`HOLD_SHARE`) are
uploaded once and stay there; larger data is streamed in pinned blocks whose
copies overlap the previous block's products.
"""

import numpy as np
import torch

from ..runtime._progress import progress
from ..runtime._torch_utils import check_deterministic, has_native_bf16
from ._common import KMeansResult, split_empty_clusters
from ._rows import ArrayRows, default_block_rows

# Bytes of distances one chunk may hold on the CPU: a few MB stay in cache;
# nothing ever holds an n_samples x n_clusters matrix.
_CHUNK_BYTES = 32 * 2**20
# On a GPU, chunks take this share of the free memory (after the rows are
# held), up to _CUDA_CHUNK_MAX: few, large products keep it busy.
_CUDA_CHUNK_SHARE = 0.25
_CUDA_CHUNK_MAX = 2 * 2**30
#: The share of a GPU's free memory the (float32) rows may take to be held
#: on it for the whole fit; larger data is streamed from the host.
HOLD_SHARE = 0.5


def free_device_memory(device):
    """Free bytes of the CUDA ``device``; None for other devices (no budget kept)."""
    if device is None or device.type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]


def auto_chunk_size(n_clusters, chunk_size=None, device=None):
    """Rows per distance chunk: ~32 MB of distances on the CPU, a share of free memory on a GPU."""
    if chunk_size is not None:
        return int(chunk_size)
    free = free_device_memory(device)
    budget = _CHUNK_BYTES
    if free is not None:
        budget = max(budget, min(_CUDA_CHUNK_MAX, int(free * _CUDA_CHUNK_SHARE)))
    return max(64, budget // (4 * n_clusters))


def iteration_dtype_for(device):
    """GEMM dtype of the Lloyd iterations on ``device``: bfloat16 on a GPU that has it natively.

    bfloat16 on CUDA devices of compute capability 8.0 or more (A100, H100),
    float32 (None) elsewhere: pre-Ampere GPUs (V100, T4) only emulate bf16.
    The one switch between the GPU and CPU paths of this engine; tests
    replace it to run the reduced-precision iterations (and the exact final
    pass they imply) on the CPU, and ``benchmarks/kmeans.py`` to measure both.
    """
    if device.type == "cuda" and has_native_bf16(device):
        return torch.bfloat16
    return None


def _tf32_matmul_allowed():
    # The new API (torch >= 2.9) reads whichever API set the flag; reading the
    # legacy allow_tf32 after the new one was used raises.
    precision = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    if precision is not None:
        return precision == "tf32"
    return torch.backends.cuda.matmul.allow_tf32


def exact_dtype(device):
    """A dtype whose matrix products on ``device`` are full float32 or better."""
    if device.type == "cuda" and _tf32_matmul_allowed():
        return torch.float64
    return torch.float32


def to_host(tensors):
    """Host numpy copies of device ``tensors``: the engine's one wait for the device.

    On a GPU, every copy is queued into pinned memory first and the stream
    is waited for once, however many tensors there are.
    """
    if all(t.device.type == "cpu" for t in tensors):
        return [t.numpy() for t in tensors]
    host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
    for target, tensor in zip(host, tensors):
        target.copy_(tensor, non_blocking=True)
    torch.cuda.current_stream(tensors[0].device).synchronize()
    return [h.numpy() for h in host]


def to_device(array, device):
    """``array`` on ``device``; from pinned memory without waiting on a GPU."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def assign(X, centers, chunk_size, dtype=None):
    """Nearest centre (int64) of every row of the tensor ``X``.

    ``dtype``: the GEMM's dtype (None: ``X``'s own).
    """
    compute = dtype or X.dtype
    C = centers.to(compute)
    c_sq = (C * C).sum(1)
    labels = torch.empty(X.shape[0], dtype=torch.long, device=X.device)
    for start in range(0, X.shape[0], chunk_size):
        block = X[start : start + chunk_size].to(compute)
        scores = torch.addmm(c_sq, block, C.T, alpha=-2.0)
        labels[start : start + block.shape[0]] = scores.argmin(dim=1)
    return labels


class DeviceRows:
    """The rows as device tensors: held for the whole fit when they fit, else streamed.

    Held: in-memory rows on the CPU (a view, no copy), or any rows on a GPU
    when their float32 bytes are at most :data:`HOLD_SHARE` of its free
    memory (uploaded once, block by block). Streamed otherwise: each pass
    reads the blocks again; on a GPU through two pinned buffers, the copy of
    one block overlapping the products of the one before.
    """

    def __init__(self, rows, device):
        self.rows = rows
        self.device = device
        self.held = None
        free = free_device_memory(device)
        if free is None:
            if isinstance(rows, ArrayRows):
                self.held = torch.from_numpy(rows.array).to(device)
        elif 4 * rows.n_rows * rows.n_features <= HOLD_SHARE * free:
            self.held = torch.empty(
                (rows.n_rows, rows.n_features), dtype=torch.float32, device=device
            )
            for start, block in self._stream():
                self.held[start : start + block.shape[0]] = block

    def blocks(self):
        if self.held is not None:
            yield 0, self.held
            return
        yield from self._stream()

    def _stream(self):
        if self.device.type != "cuda":
            for start, block in self.rows.blocks():
                yield start, torch.from_numpy(block).to(self.device)
            return
        compute = torch.cuda.current_stream(self.device)
        copier = torch.cuda.Stream(self.device)
        buffers, copied = [None, None], [None, None]
        blocks = self.rows.blocks(default_block_rows(self.rows.n_features))
        for i, (start, block) in enumerate(blocks):
            slot = i % 2
            if copied[slot] is not None:
                copied[slot].synchronize()  # the copy out of this buffer is done
            if buffers[slot] is None or buffers[slot].shape[0] < block.shape[0]:
                buffers[slot] = torch.empty(block.shape, dtype=torch.float32, pin_memory=True)
            staged = buffers[slot][: block.shape[0]]
            staged.numpy()[...] = block
            with torch.cuda.stream(copier):
                on_device = staged.to(self.device, non_blocking=True)
                copied[slot] = torch.cuda.Event()
                copied[slot].record(copier)
            compute.wait_stream(copier)
            on_device.record_stream(compute)
            yield start, on_device


def _chunks(device_rows, chunk_size):
    """``(start, rows)`` pairs of at most ``chunk_size`` rows, over all blocks."""
    for start, block in device_rows.blocks():
        for offset in range(0, block.shape[0], chunk_size):
            yield start + offset, block[offset : offset + chunk_size]


def _sums(device_rows, labels, n_clusters, n_features, chunk_size, device):
    """Per-cluster float64 sums and int64 counts, left on the device.

    float64 sums (a float64 copy of one chunk at a time): the centres do not
    accumulate float32 rounding over millions of rows. The counts are an
    index_add of ones: ``torch.bincount`` waits for the device (it reads the
    largest label on the host) at every call.
    """
    sums = torch.zeros(n_clusters, n_features, dtype=torch.float64, device=device)
    counts = torch.zeros(n_clusters, dtype=torch.int64, device=device)
    ones = torch.ones(chunk_size, dtype=torch.int64, device=device)
    for start, chunk in _chunks(device_rows, chunk_size):
        chunk_labels = labels[start : start + chunk.shape[0]]
        sums.index_add_(0, chunk_labels, chunk.double())
        counts.index_add_(0, chunk_labels, ones[: chunk.shape[0]])
    return sums, counts


def _assign_all(device_rows, centers, n_rows, chunk_size, dtype, device):
    labels = torch.empty(n_rows, dtype=torch.long, device=device)
    for start, block in device_rows.blocks():
        labels[start : start + block.shape[0]] = assign(block, centers, chunk_size, dtype)
    return labels


def _inertia(device_rows, centers, labels, chunk_size):
    """The sum of squared distances, as a float64 device scalar (read with the labels)."""
    total = torch.zeros((), dtype=torch.float64, device=centers.device)
    for start, chunk in _chunks(device_rows, chunk_size):
        diff = chunk - centers[labels[start : start + chunk.shape[0]]]
        total += (diff.double() ** 2).sum()
    return total


def lloyd_torch(
    rows, centers_init, *, max_iter, tol, verbose=0, comm, device, chunk_size=None,
    iteration_dtype=None,
):
    """Lloyd with torch GEMMs on ``device``; the common engine signature.

    Parameters
    ----------
    rows : ArrayRows or StreamRows
        The (centred) data.
    centers_init : ndarray of shape (n_clusters, n_features)
        Initial centres.
    max_iter, tol, verbose, comm
        As for every engine (``_common.py``).
    device : torch.device
        Where the GEMMs run.
    chunk_size : int, default=None
        Rows per distance chunk; None sizes chunks to ~32 MB of distances on
        the CPU, to a share of the free memory on a GPU (:func:`auto_chunk_size`).
    iteration_dtype : torch.dtype, default=None
        GEMM dtype of the iterations (bfloat16 on a GPU); None: float32. The
        labels returned always come from a full-precision pass.

    Returns
    -------
    result : KMeansResult
    """
    n_clusters, n_features = centers_init.shape
    check_deterministic(device)
    device_rows = DeviceRows(rows, device)
    # Sized after the rows are held: the distances take a share of what is left.
    chunk = auto_chunk_size(n_clusters, chunk_size, device)
    centers = np.ascontiguousarray(centers_init, dtype=np.float32)
    previous = None
    strict = False
    n_empty = 0
    with progress(total=max_iter, desc="k-means", unit="iter", verbose=verbose) as bar:
        for iteration in range(max_iter):
            C = to_device(centers, device)
            labels = _assign_all(device_rows, C, rows.n_rows, chunk, iteration_dtype, device)
            if previous is None:
                changed = torch.full((), rows.n_rows, dtype=torch.int64, device=device)
            else:
                changed = (labels != previous).sum()
            sums, counts = _sums(device_rows, labels, n_clusters, n_features, chunk, device)
            sums, counts, changed = to_host([sums, counts, changed])
            changed = int(comm.all_reduce(np.array([changed]))[0])
            sums, counts = comm.all_reduce(sums), comm.all_reduce(counts)
            new = sums / np.maximum(counts, 1)[:, None]
            new[counts == 0] = centers[counts == 0]
            n_empty += split_empty_clusters(new, counts)
            new = new.astype(np.float32)
            shift = float(((new.astype(np.float64) - centers) ** 2).sum())
            centers = new
            previous = labels
            bar.update()
            bar.set_postfix_str(f"shift {shift:.3g}")
            if iteration > 0 and changed == 0 and iteration_dtype is None:
                strict = True  # the centres are the means of these labels already
                break
            if shift <= tol:
                break
    C = to_device(centers, device)
    if not strict:
        # Labels of the returned centres, in full precision.
        dtype = exact_dtype(device)
        labels = _assign_all(device_rows, C, rows.n_rows, chunk, dtype, device)
    labels, total = to_host([labels, _inertia(device_rows, C, labels, chunk)])
    total = float(comm.all_reduce(np.array([float(total)]))[0])
    return KMeansResult(centers, labels, total, iteration + 1, n_empty)
