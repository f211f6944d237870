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
    which :func:`remove_stale_temporaries` deletes. The file's mode follows
    the user's umask (0644 under the usual 022), as ``open`` would give it.

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
        # mkstemp makes the file private (0600); the final file gets the mode any
        # other program's would, 0666 less the user's umask.
        with contextlib.suppress(AttributeError, OSError):
            os.fchmod(fd, 0o666 & ~_umask())
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


def _umask():
    """The process's umask: from /proc on Linux, else read by setting it (POSIX has
    no getter; setting it briefly could race with another thread creating files)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
