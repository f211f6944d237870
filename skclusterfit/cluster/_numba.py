"""numba kernels of skclusterfit.cluster, cached outside the installed package.

numba's own ``cache=True`` writes compiled kernels next to the source file,
inside site-packages, which may be read-only or shared. Our kernels are
cached in ``$NUMBA_CACHE_DIR`` when the user set it, else in
``$XDG_CACHE_HOME/skclusterfit/numba`` (``~/.cache/skclusterfit/numba``);
when that directory cannot be written, they are compiled in each session
instead (a few seconds), never written elsewhere. The choice is made per
kernel, at definition: numba's global setting is restored at once, so the
user's own numba functions are not affected.
"""

import os
import tempfile

import numba


def cache_dir():
    """The directory our kernels are cached in, or None when it is not writable."""
    path = os.environ.get("NUMBA_CACHE_DIR")
    if not path:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = os.path.join(base, "skclusterfit", "numba")
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    return path


_CACHE_DIR = cache_dir()


def njit(**options):
    """``numba.njit(**options)``, cached in :func:`cache_dir` when there is one."""

    def decorate(function):
        if _CACHE_DIR is None:
            return numba.njit(**options)(function)
        previous = numba.config.CACHE_DIR
        numba.config.CACHE_DIR = _CACHE_DIR
        try:
            return numba.njit(cache=True, **options)(function)
        finally:
            numba.config.CACHE_DIR = previous

    return decorate


@numba.njit(inline="always", fastmath=True)
def dot(a, b):
    """Float32 dot product of two vectors, inlined into the kernels that call it.

    numba's cache does not notice a change here in the cached kernels of
    other modules that inline it: after editing it, empty :func:`cache_dir`.
    """
    total = numba.float32(0.0)
    for k in range(a.shape[0]):
        total += a[k] * b[k]
    return total
