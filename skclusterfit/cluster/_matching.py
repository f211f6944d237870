"""Cluster ids that persist: match a new clustering's ids to a previous one's.

k-means numbers its clusters arbitrarily, so cluster 17 of one fit and
cluster 17 of the next (another round, another K, more data) are unrelated.
DeepCluster's users asked for ids that persist (facebookresearch/deepcluster#81).
The new clusters are matched one-to-one to the previous ones by the Hungarian
algorithm (``scipy.optimize.linear_sum_assignment``), on the distances between
centres when both live in one feature space, or on the overlap of the labels
of the rows both clusterings share.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment


def match_cluster_ids(previous, current, *, on="centers"):
    """A renumbering of the ``current`` clusters that keeps the ids of ``previous``.

    Parameters
    ----------
    previous : ndarray
        The reference clustering: centres of shape (k_previous, n_features)
        when ``on="centers"``, labels of shape (n_rows,) when ``on="labels"``.
    current : ndarray
        The clustering to renumber, of the same kind: centres of shape
        (k, n_features), or labels (ids from 0 to k - 1) of the same rows as
        ``previous`` (e.g. the rows of a first fit, leading the rows of a
        refit on more data).
    on : {"centers", "labels"}, default="centers"
        Match centres by squared Euclidean distance (the same feature space
        on both sides: same teacher and preprocessing), or labels by the
        number of rows two clusters share.

    Returns
    -------
    mapping : ndarray of shape (k,)
        A permutation of ``range(k)``: current cluster ``i`` becomes cluster
        ``mapping[i]``, so ``mapping[labels]`` renumbers labels and
        ``centers[np.argsort(mapping)]`` reorders centres. Each current
        cluster matched to a previous cluster ``j < k`` gets id ``j``; the
        others (more clusters than before, or matched to an id that no
        longer exists with fewer clusters) take the ids left, in order.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import match_cluster_ids
    >>> previous = np.array([0, 0, 1, 1, 2, 2])
    >>> current = np.array([2, 2, 0, 0, 1, 1])          # same clusters, new ids
    >>> mapping = match_cluster_ids(previous, current, on="labels")
    >>> mapping[current].tolist()
    [0, 0, 1, 1, 2, 2]
    """
    previous, current = np.asarray(previous), np.asarray(current)
    if on == "centers":
        if previous.ndim != 2 or current.ndim != 2 or previous.shape[1] != current.shape[1]:
            raise ValueError(
                f"on='centers' needs two 2-D arrays of centres with as many features; "
                f"got shapes {previous.shape} and {current.shape}."
            )
        a, b = current.astype(np.float64), previous.astype(np.float64)
        cost = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
        k = len(current)
    elif on == "labels":
        if previous.ndim != 1 or previous.shape != current.shape:
            raise ValueError(
                f"on='labels' needs two label arrays of the same rows; got shapes "
                f"{previous.shape} and {current.shape}."
            )
        for name, labels in (("previous", previous), ("current", current)):
            if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
                raise ValueError(f"{name} labels must be non-negative ints (cluster ids).")
        k = int(current.max()) + 1 if current.size else 0
        k_previous = int(previous.max()) + 1 if previous.size else 0
        overlap = np.zeros((k, k_previous), dtype=np.int64)
        np.add.at(overlap, (current, previous), 1)
        cost = -overlap
    else:
        raise ValueError(f"on={on!r} must be 'centers' or 'labels'.")
    rows, columns = linear_sum_assignment(cost)
    mapping = np.full(k, -1, dtype=np.int64)
    keep = columns < k
    mapping[rows[keep]] = columns[keep]
    free = np.setdiff1d(np.arange(k), mapping[mapping >= 0])
    mapping[mapping < 0] = free
    return mapping
