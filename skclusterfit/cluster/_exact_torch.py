"""Lloyd in torch (the GPU engine; it runs on the CPU too).

Distances are ``|c|^2 - 2 x.c`` (``|x|^2`` does not change the arg-min), one
GEMM per chunk of rows, so no ``n_samples x n_clusters`` matrix is ever held.
On a GPU the iterations may run their GEMMs in bfloat16 (``iteration_dtype``):
several times faster on tensor cores, accurate enough to move centres, not to
pick the labels returned; those come from one last assignment in full
precision, so they are the exact nearest centres of the returned centres.
The reduced precision is a cast of local tensors, never a process-wide torch
flag (``torch.backends.cuda.matmul.allow_tf32`` is read, not written: when a
user has allowed TF32 float32 products, the final pass runs in float64).
"""

import numpy as np
import torch

from ..runtime._progress import progress
from ._common import KMeansResult, split_empty_clusters
from ._rows import ArrayRows

# Bytes of distances one chunk may hold: a few MB stay in cache on a CPU and
# keep a GPU busy; nothing ever holds an n_samples x n_clusters matrix.
_CHUNK_BYTES = 32 * 2**20


def auto_chunk_size(n_clusters, chunk_size=None):
    """Rows per distance chunk so that one chunk of distances stays ~32 MB."""
    if chunk_size is not None:
        return int(chunk_size)
    return max(64, _CHUNK_BYTES // (4 * n_clusters))


def iteration_dtype_for(device):
    """GEMM dtype of the Lloyd iterations on ``device``: bfloat16 on CUDA, else float32.

    The one switch between the GPU and CPU paths of this engine; tests
    replace it to run the reduced-precision iterations (and the exact final
    pass they imply) on the CPU.
    """
    return torch.bfloat16 if device.type == "cuda" else None


def exact_dtype(device):
    """A dtype whose matrix products on ``device`` are full float32 or better."""
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return torch.float64
    return torch.float32


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


class _DeviceRows:
    """The rows as device tensors: held once when they fit in memory, else streamed."""

    def __init__(self, rows, device):
        self.rows = rows
        self.device = device
        self.held = None
        if isinstance(rows, ArrayRows):
            self.held = torch.from_numpy(rows.array).to(device)

    def blocks(self):
        if self.held is not None:
            yield 0, self.held
            return
        for start, block in self.rows.blocks():
            yield start, torch.from_numpy(block).to(self.device)


def _chunks(device_rows, chunk_size):
    """``(start, rows)`` pairs of at most ``chunk_size`` rows, over all blocks."""
    for start, block in device_rows.blocks():
        for offset in range(0, block.shape[0], chunk_size):
            yield start + offset, block[offset : offset + chunk_size]


def _sums(device_rows, labels, n_clusters, n_features, chunk_size, device):
    # float64 sums (a float64 copy of one chunk at a time): the centres do
    # not accumulate float32 rounding over millions of rows.
    sums = torch.zeros(n_clusters, n_features, dtype=torch.float64, device=device)
    counts = torch.zeros(n_clusters, dtype=torch.int64, device=device)
    for start, chunk in _chunks(device_rows, chunk_size):
        chunk_labels = labels[start : start + chunk.shape[0]]
        sums.index_add_(0, chunk_labels, chunk.double())
        counts += torch.bincount(chunk_labels, minlength=n_clusters)
    return sums.cpu().numpy(), counts.cpu().numpy()


def _assign_all(device_rows, centers, n_rows, chunk_size, dtype, device):
    labels = torch.empty(n_rows, dtype=torch.long, device=device)
    for start, block in device_rows.blocks():
        labels[start : start + block.shape[0]] = assign(block, centers, chunk_size, dtype)
    return labels


def _inertia(device_rows, centers, labels, chunk_size):
    total = 0.0
    for start, chunk in _chunks(device_rows, chunk_size):
        diff = chunk - centers[labels[start : start + chunk.shape[0]]]
        total += float((diff.double() ** 2).sum())
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
        Rows per distance chunk; None sizes chunks to ~32 MB of distances.
    iteration_dtype : torch.dtype, default=None
        GEMM dtype of the iterations (bfloat16 on a GPU); None: float32. The
        labels returned always come from a full-precision pass.

    Returns
    -------
    result : KMeansResult
    """
    n_clusters, n_features = centers_init.shape
    chunk = auto_chunk_size(n_clusters, chunk_size)
    device_rows = _DeviceRows(rows, device)
    centers = np.ascontiguousarray(centers_init, dtype=np.float32)
    previous = None
    strict = False
    n_empty = 0
    with progress(total=max_iter, desc="k-means", unit="iter", verbose=verbose) as bar:
        for iteration in range(max_iter):
            C = torch.from_numpy(centers).to(device)
            labels = _assign_all(device_rows, C, rows.n_rows, chunk, iteration_dtype, device)
            changed = rows.n_rows if previous is None else int((labels != previous).sum())
            changed = int(comm.all_reduce(np.array([changed]))[0])
            sums, counts = _sums(device_rows, labels, n_clusters, n_features, chunk, device)
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
    C = torch.from_numpy(centers).to(device)
    if not strict:
        # Labels of the returned centres, in full precision.
        dtype = exact_dtype(device)
        labels = _assign_all(device_rows, C, rows.n_rows, chunk, dtype, device)
    total = _inertia(device_rows, C, labels, chunk)
    total = float(comm.all_reduce(np.array([total]))[0])
    return KMeansResult(centers, labels.cpu().numpy(), total, iteration + 1, n_empty)
