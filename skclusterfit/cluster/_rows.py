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

from ._parallel import map_chunks, single_threaded_blas, split

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

    ``prepare(raw_block, shift, out)`` writes the preprocessed rows (PCA
    whitening, L2 normalisation) minus ``shift`` (a float32 vector or None:
    the centring of the engines) into the float32 array ``out``.
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

    def _finish(self, raw, out=None):
        """The prepared, centred block: slices of it prepared in the engines' threads.

        Every pass of an engine over streamed rows prepares every block again
        (a copy, a finiteness check, the centring: memory-bound), so it is
        one fused pass per slice, in the engines' threads.
        """
        if out is None:
            out = np.empty((raw.shape[0], self._n_features), dtype=np.float32)

        def work(start, stop):
            self.prepare(raw[start:stop], self.shift, out[start:stop])

        with single_threaded_blas():  # a whitening GEMM per slice, one thread each
            map_chunks(work, raw.shape[0], max(64, split(raw.shape[0])))
        return out

    def blocks(self, block_rows=None):
        """Yield ``(start, block)``; each block is valid until the next is yielded.

        One buffer serves every block of a pass: a fresh 64 MB array per block
        cost a page fault per 4 KB page, every pass (tens of seconds of system
        time in a 1M x 2048 fit). Engines use a block before they ask for the
        next; ``take`` returns arrays of their own.
        """
        step = self.block_rows if block_rows is None else max(1, int(block_rows))
        step = min(step, self.block_rows, max(self.n_rows, 1))
        buffer = np.empty((step, self._n_features), dtype=np.float32)
        for start in range(0, self.n_rows, step):
            raw = self.raw[start : start + step]
            yield start, self._finish(raw, out=buffer[: raw.shape[0]])

    def take(self, index):
        return self._finish(self.raw[np.asarray(index)])
