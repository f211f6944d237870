"""Progress reporting for long stages: a tqdm bar when verbose, nothing when not.

Every long loop (extraction batches, k-means iterations, training epochs)
goes through :func:`progress`, so one ``verbose`` switch controls them all
and a quiet fit never imports tqdm. Bars go to stderr; one-line messages
(:func:`log`) go to stdout, written through tqdm so they do not tear a bar.
"""

import sys


class _SilentBar:
    """The no-op stand-in for a tqdm bar when ``verbose`` is off."""

    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n=1):
        pass

    def set_postfix_str(self, text, refresh=True):
        pass

    def close(self):
        pass


def progress(iterable=None, *, total=None, desc=None, unit="it", verbose=0, initial=0):
    """A tqdm bar over ``iterable`` (or a manual one with ``total``) when ``verbose``.

    Parameters
    ----------
    iterable : iterable, default=None
        Iterated through the bar; None for a bar advanced with ``update``.
    total : int, default=None
        Expected number of steps (taken from ``len(iterable)`` when it has one).
    desc : str, default=None
        Label shown before the bar, e.g. ``"teacher features"``.
    unit : str, default="it"
        Name of one step ("batch", "epoch", "iter").
    verbose : int or bool, default=0
        No bar at all when false.
    initial : int, default=0
        Steps already done (a resumed training loop).

    Returns
    -------
    bar : tqdm or a silent stand-in with the same ``update``/``close`` methods

    Examples
    --------
    >>> from skclusterfit.runtime._progress import progress
    >>> sum(progress(range(3), desc="quiet", verbose=0))
    3
    """
    if not verbose:
        return _SilentBar(iterable)
    from tqdm import tqdm

    return tqdm(
        iterable, total=total, desc=desc, unit=unit, initial=initial,
        file=sys.stderr, dynamic_ncols=True, leave=True,
    )


def log(prefix, message, verbose):
    """Print ``[prefix] message`` on stdout when ``verbose`` (without tearing bars)."""
    if not verbose:
        return
    from tqdm import tqdm

    tqdm.write(f"[{prefix}] {message}", file=sys.stdout)
    sys.stdout.flush()
