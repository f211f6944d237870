"""Teacher features that do not fit in memory: a ``.npy`` file on disk, read as a memory map.

``FeatureStorage.allocate(n, d)`` is the ``out=`` of
:func:`skclusterfit._stages.transform_in_chunks`: an in-memory array while the
features fit in ``budget`` bytes, else a :class:`NpyWriter` that appends rows
to a ``.npy`` file with ordinary writes (no memory map while writing: the
pages written go to the page cache, not into this process's resident memory)
and hands back a read-only memory map when done. The clusterer then streams
over the map in blocks.

A plain memory map keeps every page it has read mapped into the process: a
clusterer that sweeps 8 GB of features each iteration would end with 8 GB
resident (reclaimable, but counted in its RSS and by job schedulers). The map
handed back is a :class:`StreamingMap`: reading a block of rows gives an
in-memory copy and lets go of the mapped pages (they stay in the kernel's
page cache, so the next sweep still reads from memory when it fits).
"""

import contextlib
import mmap
import os
import re
import shutil
import tempfile
from numbers import Integral, Real

import numpy as np

_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]I?)?B?\s*$", re.IGNORECASE)


def parse_bytes(value, name="feature_budget"):
    """Bytes from an int or a size such as ``"2GB"``, ``"512MiB"`` or ``"1.5G"``.

    Examples
    --------
    >>> from skclusterfit.runtime._out_of_core import parse_bytes
    >>> parse_bytes("2GB"), parse_bytes("1MiB"), parse_bytes(4096)
    (2000000000, 1048576, 4096)
    """
    if isinstance(value, Integral) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{name}={value!r} must be >= 0 bytes.")
        return int(value)
    if isinstance(value, Real) and not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be an int (bytes) or a size such as '2GB'.")
    match = _SIZE.match(str(value))
    if match is None:
        raise ValueError(
            f"{name}={value!r} is not a size: use bytes (an int) or a string such as "
            "'512MB', '2GB' or '1.5GiB'."
        )
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").upper()])


# Rows of a fancy-indexed read taken at a time by StreamingMap.
_TAKE_ROWS = 1024


class StreamingMap(np.memmap):
    """A read-only memory map whose pages are let go after each read.

    Indexing returns an in-memory copy of the rows (a plain ndarray) and then
    advises the kernel that the mapping's pages are not needed
    (``MADV_DONTNEED``), so the process's resident memory stays at about one
    block however much of the file it reads. Everything else (shape, dtype,
    ``isinstance(x, np.memmap)``) is a memory map's.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skclusterfit.runtime._out_of_core import StreamingMap
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(6.0).reshape(3, 2))
    >>> X = StreamingMap.open(path)
    >>> X[1:3]
    array([[2., 3.],
           [4., 5.]])
    >>> type(X[1:3]).__name__
    'ndarray'
    """

    @classmethod
    def open(cls, path):
        """The ``.npy`` file at ``path``, mapped read-only."""
        return np.load(path, mmap_mode="r").view(cls)

    def __getitem__(self, index):
        if isinstance(index, list):
            index = np.asarray(index)
        if (isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu"
                and len(index) > _TAKE_ROWS):
            # Scattered rows fault in their neighbours too (the kernel maps
            # pages around each fault): a sample spread over the file would
            # map all of it at once. Take and let go a bounded run at a time.
            return np.concatenate(
                [self[index[start : start + _TAKE_ROWS]]
                 for start in range(0, len(index), _TAKE_ROWS)]
            )
        rows = super().__getitem__(index)
        if not isinstance(rows, np.ndarray) or rows.ndim == 0:
            return rows
        copy = np.array(rows)  # a plain ndarray, detached from the mapping
        self._release()
        return copy

    def _release(self):
        mapping = getattr(self, "_mmap", None)
        if mapping is not None and hasattr(mapping, "madvise"):
            with contextlib.suppress(OSError, ValueError):
                mapping.madvise(mmap.MADV_DONTNEED)


class NpyWriter:
    """Rows written in order into a ``.npy`` file, then read back as a memory map.

    Supports ``writer[start:stop] = rows`` for consecutive slices (what
    :func:`~skclusterfit._stages.transform_in_chunks` does) and :meth:`finish`.

    Parameters
    ----------
    path : str
        The file to create (its header is written at once).
    shape : tuple of int
    dtype : numpy dtype
        Rows are cast to it (e.g. float16 halves the file).
    """

    def __init__(self, path, shape, dtype):
        self.path = os.fspath(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._next = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in finish()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype),
                  "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._file, header)

    def __len__(self):
        return self.shape[0]

    def __setitem__(self, index, rows):
        if not isinstance(index, slice) or index.start != self._next:
            raise ValueError(f"NpyWriter writes consecutive row slices; got {index!r} "
                             f"after row {self._next}.")
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or index.stop - index.start != len(rows):
            raise ValueError(f"rows of shape {rows.shape} do not fit {index!r} of "
                             f"an array of shape {self.shape}.")
        self._file.write(rows.tobytes())
        self._next = index.stop

    def finish(self):
        """Close the file (flushed to disk) and return it as a :class:`StreamingMap`."""
        if self._next != self.shape[0]:
            raise ValueError(f"only {self._next} of {self.shape[0]} rows were written "
                             f"to {self.path!r}.")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return StreamingMap.open(self.path)

    def abort(self):
        """Close and delete an unfinished file."""
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class FeatureStorage:
    """Where the teacher features of one fit live: memory, or a file when too big.

    Parameters
    ----------
    budget : int
        Bytes of features held in memory; above it they go to disk.
    dtype : numpy dtype
        The dtype the features are kept in (memory or disk).
    directory : str or None
        Where the file goes (e.g. ``checkpoint_dir``); None: a temporary
        folder, deleted on :meth:`close`.
    name : str, default="teacher_features.npy"
        The final name of the file; it is written under a temporary name
        (``.<name>.<pid>.tmp``), which the checkpoint renames when it keeps
        the features (:class:`skclusterfit.storage.ArrayStage`) and
        :meth:`close` removes otherwise.
    """

    def __init__(self, budget, dtype, directory=None, name="teacher_features.npy"):
        self.budget = int(budget)
        self.dtype = np.dtype(dtype)
        self.name = name
        self._owned = directory is None
        self.directory = directory
        self._writer = None

    def fits_in_memory(self, n_samples, n_features):
        return n_samples * n_features * self.dtype.itemsize <= self.budget

    def allocate(self, n_samples, n_features):
        """The array to fill: in memory under the budget, else a :class:`NpyWriter`."""
        if self.fits_in_memory(n_samples, n_features):
            return np.empty((n_samples, n_features), dtype=self.dtype)
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="skclusterfit-features-")
        os.makedirs(self.directory, exist_ok=True)
        # The temporary-file pattern of skclusterfit.runtime._atomic: a killed fit's
        # leftover is removed by the next fit on the same checkpoint_dir.
        path = os.path.join(self.directory, f".{self.name}.{os.getpid()}.tmp")
        self._writer = NpyWriter(path, (n_samples, n_features), self.dtype)
        return self._writer

    def close(self):
        """Remove what this storage wrote that nobody kept."""
        if self._writer is not None and self._writer.path.endswith(".tmp"):
            self._writer.abort()
        if self._owned and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
