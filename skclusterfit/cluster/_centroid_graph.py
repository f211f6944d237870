"""The centroids' k-nearest-neighbour graph that the approximate walk follows.

Built anew every iteration from all K x K centroid distances: one GEMM of
``K^2 * n_features`` multiply-adds, the largest cost of a fit at the paper's
dimension (16,000^2 x 2048: 5.2 x 10^11 per iteration), by blocks of rows,
each block's ``k`` smallest distances picked by a threshold scan.
"""

import numpy as np

from ._common import half_squared_norms
from ._numba import njit
from ._parallel import map_chunks, single_threaded_blas

# Rows of centroid-centroid distances computed per float32 GEMM (256 x 16,000
# float32: 16 MB per thread, at the K of a 1M-row fit).
_GRAPH_BLOCK = 256


@njit(nogil=True)
def _smallest_k(distances, k, out):
    """Columns of the ``k`` smallest values of each row, into ``out`` (unordered).

    One pass per row against the current k-th smallest: at K in the thousands
    and k = 32 almost every value is rejected by one comparison, where
    ``np.argpartition`` moves every value (at d = 256 it cost more than the
    GEMM).
    """
    values = np.empty(k, dtype=distances.dtype)
    for r in range(distances.shape[0]):
        row = distances[r]
        for j in range(k):
            values[j] = row[j]
            out[r, j] = j
        worst = 0
        for j in range(1, k):
            if values[j] > values[worst]:
                worst = j
        for column in range(k, row.shape[0]):
            value = row[column]
            if value < values[worst]:
                values[worst] = value
                out[r, worst] = column
                worst = 0
                for j in range(1, k):
                    if values[j] > values[worst]:
                        worst = j


def centroid_graph(centers, n_neighbors):
    """The ``n_neighbors`` nearest other centroids of every centroid (exact, GEMM).

    Returns an int32 array of shape (n_clusters, min(n_neighbors, n_clusters - 1)),
    each row in no particular order.
    """
    n_clusters = centers.shape[0]
    n_neighbors = min(n_neighbors, n_clusters - 1)
    graph = np.empty((n_clusters, n_neighbors), dtype=np.int32)
    if n_neighbors == 0:
        return graph
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    half_sq = half_squared_norms(centers)

    def work(start, stop):
        # |c'|^2 / 2 - c.c': half the squared distance less |c|^2, the same for
        # the whole row. The product reads centers.T in place: a scaled
        # transposed copy would be another K x d array (131 MB at 16,000 x 2048)
        # at every iteration.
        distances = centers[start:stop] @ centers.T
        np.subtract(half_sq, distances, out=distances)
        rows = np.arange(stop - start)
        distances[rows, rows + start] = np.inf  # a centre is not its own neighbour
        _smallest_k(distances, n_neighbors, graph[start:stop])

    with single_threaded_blas():
        map_chunks(work, n_clusters, _GRAPH_BLOCK)
    return graph
