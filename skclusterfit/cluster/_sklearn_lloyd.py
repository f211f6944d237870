"""Exact Lloyd on the CPU through scikit-learn's compiled iteration.

scikit-learn's ``lloyd_iter_chunked_dense`` fuses, per chunk of 256 rows
that stays in cache, one single-threaded BLAS GEMM with the arg-min and the
centre sums, and spreads chunks over OpenMP threads. On the CPU it beat our
torch GEMM loop about 2x (benchmarks/README.md), so we delegate to it rather
than re-implement it; the loop around it (tolerance, strict convergence,
empty-cluster count, verbosity) stays ours. It is a private scikit-learn
function: ``available()`` is False if it moves, and KMeans then falls back to
the torch engine.
"""

import numpy as np

try:  # private API, present from scikit-learn 1.0 to at least 1.9
    from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
except ImportError:  # pragma: no cover - depends on the installed scikit-learn
    lloyd_iter_chunked_dense = None

from threadpoolctl import threadpool_limits


def available():
    return lloyd_iter_chunked_dense is not None


def _buffers(X, n_clusters):
    return (
        np.ones(X.shape[0], dtype=X.dtype),  # sample weights
        np.zeros(n_clusters, dtype=X.dtype),  # weight in clusters
        np.zeros(n_clusters, dtype=X.dtype),  # centre shifts
    )


def lloyd(X, centers, n_iter, tolerance, verbose=0):
    """Run Lloyd from ``centers``; return centers, int32 labels, n_iter, n_empty.

    Stops after ``n_iter`` iterations, when no label changes, or when the
    summed squared centre shift is <= ``tolerance``. The returned labels are
    those of the returned centres (a last E-step runs when needed).
    """
    n_samples, n_clusters = X.shape[0], centers.shape[0]
    n_threads = _openmp_effective_n_threads()
    sample_weight, weight_in_clusters, center_shift = _buffers(X, n_clusters)
    centers = np.array(centers, dtype=X.dtype, order="C")
    centers_new = np.zeros_like(centers)
    labels = np.full(n_samples, -1, dtype=np.int32)
    labels_old = labels.copy()
    n_empty = 0
    strict = False
    # One BLAS thread per OpenMP thread, as scikit-learn's KMeans.fit does:
    # nested threading oversubscribes the cores (and OpenBLAS warns about it).
    with threadpool_limits(limits=1, user_api="blas"):
        for iteration in range(n_iter):
            lloyd_iter_chunked_dense(
                X, sample_weight, centers, centers_new, weight_in_clusters,
                labels, center_shift, n_threads,
            )
            # scikit-learn re-seeds empty clusters on the farthest points
            # inside the iteration; count them from the labels.
            n_empty += int(np.count_nonzero(np.bincount(labels, minlength=n_clusters) == 0))
            centers, centers_new = centers_new, centers
            shift = float((center_shift.astype(np.float64) ** 2).sum())
            if verbose:
                print(
                    f"[KMeans] iteration {iteration + 1}: shift {shift:.3g}", flush=True
                )
            if np.array_equal(labels, labels_old):
                strict = True  # the centres are the means of these labels already
                break
            if shift <= tolerance:
                break
            labels_old[:] = labels
        if not strict:
            predict(X, centers, labels=labels, n_threads=n_threads)
    return centers, labels, iteration + 1, n_empty


def predict(X, centers, labels=None, n_threads=None):
    """Exact nearest centre of every row (int32), scikit-learn's E-step."""
    if n_threads is None:
        n_threads = _openmp_effective_n_threads()
    if labels is None:
        labels = np.empty(X.shape[0], dtype=np.int32)
    sample_weight, weight_in_clusters, center_shift = _buffers(X, centers.shape[0])
    centers = np.ascontiguousarray(centers, dtype=X.dtype)
    with threadpool_limits(limits=1, user_api="blas"):
        lloyd_iter_chunked_dense(
            X, sample_weight, centers, centers, weight_in_clusters, labels,
            center_shift, n_threads, update_centers=False,
        )
    return labels
