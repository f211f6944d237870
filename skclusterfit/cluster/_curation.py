"""Data curation by hierarchical k-means and balanced sampling (Vo et al., 2024).

Uncurated (web) data is long-tailed: a few concepts fill most of it. k-means
on such data spends its centres on the dense head. Vo et al. ("Automatic
data curation for self-supervised learning: a clustering-based approach",
TMLR 2024; facebookresearch/ssl-data-curation) cluster the data, cluster the
centres again, for several levels, and then draw the curated set top-down so
that every cluster of the top level gets the same share, each share split
evenly among the cluster's children, down to the rows. Written here from the
paper's description and the facts of its reference code, on levels of
:class:`~skclusterfit.cluster.KMeans`.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from .._components import ComponentsMixin
from ..storage._persistence import PersistenceMixin


def balanced_shares(sizes, target, rng):
    """How many of ``target`` draws each group gets: as even as ``sizes`` allow.

    Water-filling: the largest integer cut ``c`` with ``sum(min(c, sizes)) <=
    target`` gives every group ``min(c, size)``; the draws left over go, one
    each, to groups chosen at random among those larger than ``c``. A group
    never gets more than its size, and the shares sum to ``min(target,
    sum(sizes))``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.sum() <= target:
        return sizes.copy()
    low, high = 0, int(sizes.max())  # sum(min(low)) <= target < sum(min(high))
    while high - low > 1:
        middle = (low + high) // 2
        if np.minimum(middle, sizes).sum() <= target:
            low = middle
        else:
            high = middle
    shares = np.minimum(low, sizes)
    left = int(target - shares.sum())
    if left:
        larger = np.flatnonzero(sizes > low)
        shares[rng.choice(larger, size=left, replace=False)] += 1
    return shares


class HierarchicalCuration(PersistenceMixin, ComponentsMixin, BaseEstimator):
    """Curate a dataset by hierarchical k-means and balanced sampling (Vo et al., 2024).

    ``fit`` clusters the rows of ``X`` (e.g. a teacher's features) into
    ``n_clusters[0]`` groups, clusters those centres into ``n_clusters[1]``
    groups, and so on: a tree whose top level has ``n_clusters[-1]`` nodes.
    It then selects ``n_samples`` rows top-down: every top-level cluster
    gets an even share (a cluster smaller than its share gives all its rows
    and the rest is spread over the others), each share is split evenly over
    the cluster's children the same way, and the rows of each first-level
    cluster are drawn at random. Dense concepts are thinned and rare ones
    kept whole, so the selection is close to uniform over the data's
    support rather than over its rows. ``sample_indices_`` holds the
    selection; :meth:`fit_resample` returns the selected rows, as the
    samplers of imbalanced-learn do.

    As ``ClusterFit(curation=...)`` it selects the rows the student trains
    on (the student draws its epochs from them), from the teacher's
    features.

    Levels after the first (clusters of centres) run Vo et al.'s resampling:
    ``n_resampling_steps`` times, k-means is refitted on up to
    ``resample_size`` random members of each cluster and every point is
    assigned to the new centres, which moves centres from dense regions
    towards sparse ones. (The reference code draws the members closest to
    the centre by default, and can split first-level clusters further;
    neither is done here.)

    Read more in :ref:`curation`.

    Parameters
    ----------
    n_clusters : int or sequence of int, default=(100, 10)
        Clusters of each level, from the first (clusters of rows) to the top
        (an int: one level).
        Each level has at most as many clusters as the one below it; the
        first at most ``n_samples_in``. Vo et al. use four levels on web
        images (10M, 500k, 50k and 10k clusters for 743M images).
    n_samples : int or float, default=0.5
        Size of the curated set: a number of rows, or a fraction of the rows
        of ``X`` (rounded). At most all of them.
    kmeans : estimator or None, default=None
        The k-means of every level: cloned, given ``n_clusters`` and a seed;
        it must set ``labels_`` and ``cluster_centers_`` and have
        ``predict``. None means :class:`~skclusterfit.cluster.KMeans`
        (L2-normalised rows). Its parameters can be set through this
        estimator: ``set_params(kmeans__max_iter=50)``.
    n_resampling_steps : int, default=10
        Resampling steps of each level after the first (0: none).
    resample_size : int or None, default=None
        Members drawn from each cluster per resampling step. None: half the
        level's mean cluster size (the reference code's rule of thumb); a
        level whose clusters hold fewer than 4 points on average is not
        resampled.
    random_state : int, RandomState instance or None, default=None
        Seeds the k-means of every level and the draws.

    Attributes
    ----------
    levels_ : list of estimator
        The fitted k-means of each level: ``levels_[0]`` on the rows,
        ``levels_[l]`` on the centres of ``levels_[l - 1]``.
    labels_ : ndarray of shape (n_samples_in, n_levels)
        The cluster of every row at every level (column ``l``: level ``l``).
    cluster_sizes_ : list of ndarray
        Rows in each cluster of each level.
    sample_indices_ : ndarray of shape (n_selected,)
        The rows of ``X`` selected, sorted.
    n_features_in_ : int
        Features seen in fit.

    See Also
    --------
    KMeans : the k-means of each level.
    skclusterfit.NetClassifier : ``sampler="balanced"``, the other answer to
        unequal clusters (balances the student's epochs over pseudo-labels).

    References
    ----------
    H. V. Vo, V. Khalidov, T. Darcet, T. Moutakanni, N. Smetanin, M. Szafraniec,
    H. Touvron, C. Couprie, M. Oquab, A. Joulin, H. Jégou, P. Labatut,
    P. Bojanowski. "Automatic Data Curation for Self-Supervised Learning: A
    Clustering-Based Approach." TMLR, 2024.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import HierarchicalCuration
    >>> rng = np.random.RandomState(0)
    >>> head = rng.normal(0, 1, size=(900, 2))        # one dense concept ...
    >>> tail = rng.normal(8, 1, size=(100, 2))        # ... and a rare one
    >>> X = np.vstack([head, tail]).astype(np.float32)
    >>> curation = HierarchicalCuration(
    ...     n_clusters=(20, 2), n_samples=200, random_state=0,
    ... ).set_params(kmeans__normalize=False).fit(X)
    >>> len(curation.sample_indices_)
    200
    >>> int(np.sum(curation.sample_indices_ >= 900))  # the tail: 10% of X
    100
    """

    _parameter_constraints = {
        "n_clusters": [Interval(Integral, 1, None, closed="left"), "array-like"],
        "n_samples": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
        ],
        "kmeans": [HasMethods(["fit", "predict"]), None],
        "n_resampling_steps": [Interval(Integral, 0, None, closed="left")],
        "resample_size": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    }
    _component_parameters = ("kmeans",)

    def __init__(
        self,
        n_clusters=(100, 10),
        *,
        n_samples=0.5,
        kmeans=None,
        n_resampling_steps=10,
        resample_size=None,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.n_samples = n_samples
        self.kmeans = kmeans
        self.n_resampling_steps = n_resampling_steps
        self.resample_size = resample_size
        self.random_state = random_state

    def _default_component(self, name):
        from ._kmeans import KMeans

        return KMeans()

    def _check_levels(self, n_rows):
        levels = np.atleast_1d(self.n_clusters)
        if (
            levels.ndim != 1
            or len(levels) == 0
            or levels.dtype.kind not in "iu"
            or np.any(levels < 1)
        ):
            raise ValueError(
                f"n_clusters={self.n_clusters!r} must be a positive int or a non-empty "
                "sequence of them (clusters of each level, first level first)."
            )
        if levels[0] > n_rows:
            raise ValueError(
                f"n_clusters={self.n_clusters!r}: the first level's {levels[0]} "
                f"clusters need at least as many rows, but X has {n_rows} "
                f"sample{'s' if n_rows != 1 else ''}."
            )
        if np.any(np.diff(levels) > 0):
            raise ValueError(
                f"n_clusters={self.n_clusters!r} must not increase from one level to "
                "the next: each level clusters the centres of the one below."
            )
        return [int(k) for k in levels]

    def _target_size(self, n_rows):
        if isinstance(self.n_samples, Real) and not isinstance(self.n_samples, Integral):
            return max(1, int(round(self.n_samples * n_rows)))
        return min(int(self.n_samples), n_rows)

    def fit(self, X, y=None):
        """Cluster ``X`` level by level and select the curated rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of the rows to curate (e.g. a teacher's).
        y : None
            Ignored.

        Returns
        -------
        self : HierarchicalCuration
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        levels = self._check_levels(len(X))
        rng = check_random_state(self.random_state)
        template = self._component("kmeans")
        points = X
        self.levels_, labels, parents = [], [], []
        for level, k in enumerate(levels):
            kmeans = self._fit_level(template, points, k, level, rng)
            self.levels_.append(kmeans)
            assigned = np.asarray(kmeans.labels_, dtype=np.int64)
            parents.append(assigned)
            labels.append(assigned if level == 0 else assigned[labels[-1]])
            points = np.asarray(kmeans.cluster_centers_)
        self.labels_ = np.stack(labels, axis=1)
        self.cluster_sizes_ = [
            np.bincount(self.labels_[:, level], minlength=k) for level, k in enumerate(levels)
        ]
        self.sample_indices_ = self._select(parents, self._target_size(len(X)), rng)
        return self

    def _fit_level(self, template, points, k, level, rng):
        """One level's k-means on ``points``, with Vo et al.'s resampling after level 0."""
        def seeded():
            return clone(template).set_params(
                n_clusters=k, random_state=int(rng.randint(2**31 - 1))
            )

        kmeans = seeded().fit(points)
        if level == 0 or self.n_resampling_steps == 0:
            return kmeans
        size = self.resample_size
        if size is None:
            size = len(points) // (2 * k)
            if size < 2:  # fewer than 4 points per cluster: nothing to even out
                return kmeans
        for _ in range(self.n_resampling_steps):
            labels = np.asarray(kmeans.labels_)
            pool = np.concatenate([
                rng.permutation(np.flatnonzero(labels == c))[:size] for c in np.unique(labels)
            ])
            if len(pool) < k:
                break
            resampled = seeded().fit(points[pool])
            # Every point goes to its nearest resampled centre.
            resampled.labels_ = np.asarray(resampled.predict(points), dtype=np.int64)
            kmeans = resampled
        return kmeans

    def _select(self, parents, target, rng):
        """The curated rows: balanced shares from the top level down to the rows."""
        n_levels = len(parents)
        # children[l][c]: the level-(l-1) clusters (level 0: rows) under cluster c of level l.
        children = [_groups(assigned) for assigned in parents]
        sizes = self.cluster_sizes_
        top = len(sizes[-1])
        nodes = np.arange(top)
        shares = balanced_shares(sizes[-1], target, rng)
        for level in range(n_levels - 1, 0, -1):
            next_nodes, next_shares = [], []
            for node, share in zip(nodes, shares):
                below = children[level][node] if node < len(children[level]) else []
                if share == 0 or len(below) == 0:
                    continue
                next_nodes.append(below)
                next_shares.append(balanced_shares(sizes[level - 1][below], share, rng))
            nodes = np.concatenate(next_nodes)
            shares = np.concatenate(next_shares)
        selected = [
            rng.choice(children[0][node], size=share, replace=False)
            for node, share in zip(nodes, shares)
            if share > 0
        ]
        return np.sort(np.concatenate(selected)).astype(np.int64)

    def fit_resample(self, X, y=None):
        """Fit, and return the curated rows of ``X`` (and of ``y``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of the rows to curate.
        y : array-like of shape (n_samples,) or None, default=None
            Labels to select alongside (not used for curation).

        Returns
        -------
        X_curated : ndarray of shape (n_selected, n_features)
        y_curated : ndarray of shape (n_selected,)
            Only when ``y`` is given.
        """
        self.fit(X)
        X_curated = np.asarray(X)[self.sample_indices_]
        if y is None:
            return X_curated
        return X_curated, np.asarray(y)[self.sample_indices_]

    def predict(self, X):
        """The cluster of each row of ``X`` at every level.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples, n_levels)
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        columns = [np.asarray(self.levels_[0].predict(X), dtype=np.int64)]
        for kmeans in self.levels_[1:]:
            columns.append(np.asarray(kmeans.labels_, dtype=np.int64)[columns[-1]])
        return np.stack(columns, axis=1)


def _groups(assigned):
    """``groups[c]``: the indices ``i`` with ``assigned[i] == c``, for c < max + 1."""
    order = np.argsort(assigned, kind="stable")
    bounds = np.cumsum(np.bincount(assigned))
    return np.split(order, bounds[:-1])
