"""The rows an engine clusters, served as float32 blocks.

Every k-means engine reads its data through one small interface: ``n_rows``,
``n_features``, ``blocks(block_rows)`` (``(start, block)`` pairs, each block a
C-contiguous float32 array) and ``take(index)``. Two implementations:

- :class:`ArrayRows` holds the rows in memory, already preprocessed and
  centred: blocks are views, nothing is copied;
- :class:`StreamRows` reads raw rows (a memory map of float32 or float16, or
  any array-like) a block at a time and preprocesses and centres each block on
  the fly, so that no float32 copy of all rows ever exists (out of core).
"""

import numpy as np

# Rows per block when streaming: 16384 x 2048 float32 is 128 MB.
STREAM_BLOCK_BYTES = 64 * 2**20


def default_block_rows(n_features, itemsize=4):
    """Rows per streamed block so that one float32 block holds ~64 MB."""
    return max(256, STREAM_BLOCK_BYTES // (itemsize * max(1, n_features)))


class ArrayRows:
    """Rows held in memory as one float32, C-contiguous array."""

    def __init__(self, X):
        if X.dtype != np.float32 or not X.flags.c_contiguous:
            raise ValueError("ArrayRows needs a C-contiguous float32 array.")
        self.array = X

    @property
    def n_rows(self):
        return self.array.shape[0]

    @property
    def n_features(self):
        return self.array.shape[1]

    def blocks(self, block_rows=None):
        """Yield ``(start, block)``; a single block (the array) unless ``block_rows``."""
        n = self.n_rows
        step = n if block_rows is None else max(1, int(block_rows))
        for start in range(0, max(n, 1), step):
            if start >= n:
                return
            yield start, self.array[start : start + step]

    def take(self, index):
        return self.array[index]


class StreamRows:
    """Raw rows read and prepared a block at a time (memory maps, out of core).

    ``prepare(raw_block) -> float32 block`` applies the preprocessing (PCA
    whitening, L2 normalisation); ``shift`` (a float32 vector or None) is
    then subtracted from every row (the centring of the engines).
    """

    def __init__(self, X, prepare, n_features, shift=None, block_rows=None):
        self.raw = X
        self.prepare = prepare
        self._n_features = int(n_features)
        self.shift = None if shift is None else np.asarray(shift, dtype=np.float32)
        self.block_rows = block_rows or default_block_rows(max(X.shape[1], n_features))

    @property
    def n_rows(self):
        return self.raw.shape[0]

    @property
    def n_features(self):
        return self._n_features

    def _finish(self, raw):
        block = np.ascontiguousarray(self.prepare(raw), dtype=np.float32)
        if not block.flags.writeable or np.shares_memory(block, self.raw):
            block = block.copy()
        if self.shift is not None:
            block -= self.shift
        return block

    def blocks(self, block_rows=None):
        step = self.block_rows if block_rows is None else max(1, int(block_rows))
        step = min(step, self.block_rows)
        for start in range(0, self.n_rows, step):
            yield start, self._finish(self.raw[start : start + step])

    def take(self, index):
        return self._finish(self.raw[np.asarray(index)])
