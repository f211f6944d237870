"""Threads for the CPU engines: a pool of Python threads, no OpenMP.

The engines' work is numba kernels (compiled without ``parallel=True`` and
with ``nogil=True``) and single-threaded BLAS GEMMs (numpy's, which release
the GIL), run over chunks of rows by a pool of Python threads. Why not
numba's ``prange`` and torch's or BLAS's own threads: each of those brings an
OpenMP (or pthreads) runtime whose idle threads spin for a while after every
parallel region; alternating between two of them, as a GEMM-then-kernel loop
does, leaves one runtime's threads spinning while the other's work, and on a
loaded machine that halved the useful CPU time and tripled the wall time
(benchmarks/README.md). One pool, threads that block when idle, one BLAS
thread per worker: the work is divided once, by rows.

The number of threads is ``torch.get_num_threads()``: the one setting a
PyTorch user already has (``OMP_NUM_THREADS``, ``torch.set_num_threads``).
"""

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from threadpoolctl import threadpool_limits

_pools = {}
_lock = threading.Lock()


def n_threads():
    """Worker threads of the CPU engines: ``torch.get_num_threads()``."""
    return max(1, torch.get_num_threads())


def _pool(size):
    with _lock:
        pool = _pools.get(size)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="skclusterfit")
            _pools[size] = pool
        return pool


def map_chunks(function, n_items, chunk):
    """``[function(start, stop) for each chunk of range(n_items)]``, in threads.

    Results come back in chunk order. With one thread (or one chunk) the
    calls run in the caller's thread.
    """
    chunk = max(1, int(chunk))
    bounds = [(start, min(start + chunk, n_items)) for start in range(0, n_items, chunk)]
    size = min(n_threads(), len(bounds))
    if size <= 1:
        return [function(start, stop) for start, stop in bounds]
    futures = [_pool(size).submit(function, start, stop) for start, stop in bounds]
    return [future.result() for future in futures]


def split(n_items, parts=None):
    """About ``parts`` (default: the thread count) equal chunk bounds of ``range(n_items)``."""
    parts = parts or n_threads()
    return max(1, -(-n_items // max(1, parts)))


@contextlib.contextmanager
def single_threaded_blas():
    """One BLAS thread per call while the engines run (the pool does the dividing)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield
