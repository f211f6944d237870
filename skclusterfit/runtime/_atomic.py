"""Atomic file writing: a file under its final name is always complete.

Checkpoints and saved models are written to a temporary name in the same
directory and renamed over the final name (``os.replace`` is atomic on POSIX
and Windows), so an interruption, even ``kill -9``, never leaves a
half-written file that looks finished.
"""

import contextlib
import glob
import os
import tempfile

_TEMPORARY_SUFFIX = ".tmp"


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file, then rename it to ``path``.

    A reader never sees a partial file under ``path``: an interruption (even
    KeyboardInterrupt) removes the temporary file and leaves any previous
    ``path`` untouched; SIGKILL leaves a ``.<name>.*.tmp`` file beside it,
    which :func:`remove_stale_temporaries` deletes.

    Parameters
    ----------
    path : str or path
        The final file name.
    write : callable
        Receives a binary file object open for writing.

    Examples
    --------
    >>> import os, tempfile
    >>> from skclusterfit.runtime._atomic import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "out.bin")
    >>> atomic_write(path, lambda file: file.write(b"done"))
    >>> open(path, "rb").read()
    b'done'
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=_TEMPORARY_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def remove_stale_temporaries(directory):
    """Delete the temporary files a process killed mid-write left in ``directory``."""
    pattern = os.path.join(glob.escape(os.fspath(directory)), f".*{_TEMPORARY_SUFFIX}")
    for tmp in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_directory(directory):
    # Makes the rename itself durable across a power loss; not possible everywhere.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
