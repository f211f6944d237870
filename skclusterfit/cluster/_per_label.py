"""Per-label clustering (paper section 5.2): k-means inside each label."""

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .._components import ComponentsMixin
from ..storage._persistence import PersistenceMixin
from ._prototype import LabelsRequiredMixin


def sqrt_allocation(counts, n_clusters):
    """Clusters per label, proportional to ``sqrt(count)``, summing to ``n_clusters``.

    Every label gets at least one cluster and at most one per sample; the
    rounding goes to the labels furthest below their share (largest
    remainders), so the result is deterministic.

    Parameters
    ----------
    counts : array-like of int, shape (n_labels,)
        Samples per label, all positive.
    n_clusters : int
        Total number of clusters, between ``n_labels`` and ``sum(counts)``.

    Returns
    -------
    k : ndarray of int, shape (n_labels,)

    Examples
    --------
    >>> from skclusterfit.cluster._per_label import sqrt_allocation
    >>> sqrt_allocation([100, 25, 4], 17).tolist()
    [10, 5, 2]
    """
    counts = np.asarray(counts, dtype=np.int64)
    if not counts.sum() >= n_clusters >= len(counts):
        raise ValueError(
            f"n_clusters={n_clusters} must lie between the number of labels "
            f"({len(counts)}) and the number of samples ({counts.sum()})."
        )
    share = n_clusters * np.sqrt(counts) / np.sqrt(counts).sum()
    k = np.clip(np.floor(share).astype(np.int64), 1, counts)
    # At most n_labels steps either way: the floor is within 1 of each share
    # and the clipping moves each label by less than its share.
    while k.sum() < n_clusters:
        room = np.where(k < counts, share - k, -np.inf)
        k[np.argmax(room)] += 1
    while k.sum() > n_clusters:
        excess = np.where(k > 1, k - share, -np.inf)
        k[np.argmax(excess)] -= 1
    return k


class PerLabelKMeans(
    LabelsRequiredMixin, PersistenceMixin, ComponentsMixin, ClusterMixin, BaseEstimator
):
    """k-means inside each label, ``k_l`` proportional to ``sqrt(n_l)`` clusters.

    The paper's per-label clustering (section 5.2): the samples of each label
    ``l`` are clustered into ``k_l`` groups, ``k_l`` proportional to the
    square root of the label's size ``n_l``, with ``sum(k_l) = n_clusters``.
    Every cluster stays inside one label, so the labels' semantics (and
    their noise) are kept, which ClusterFit's unsupervised clustering
    discards. As ClusterFit's ``clusterer`` it receives the ``y`` given to
    ``ClusterFit.fit(X, y)`` and ``K`` as ``n_clusters``.

    Parameters
    ----------
    n_clusters : int, default=8
        Total number of clusters; at least the number of labels and at most
        the number of samples.
    kmeans : estimator or None, default=None
        The k-means run inside each label: cloned, given ``n_clusters=k_l``
        and a seed, fitted on that label's rows; it must set ``labels_`` and
        ``cluster_centers_``. None means
        :class:`~skclusterfit.cluster.KMeans` with its defaults
        (L2-normalised rows). Its parameters can be set through this
        estimator either way: ``set_params(kmeans__normalize=False)``.
    random_state : int, RandomState instance or None, default=None
        Seeds each label's k-means.

    Attributes
    ----------
    classes_ : ndarray of shape (n_labels,)
        The labels seen in fit.
    n_clusters_per_label_ : ndarray of shape (n_labels,)
        ``k_l`` of each label of ``classes_``.
    cluster_label_ : ndarray of shape (n_clusters,)
        Index into ``classes_`` of the label each cluster belongs to.
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres, label by label, in the space of the inner k-means (e.g.
        normalised rows).
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample; clusters ``sum(k[:l])`` to
        ``sum(k[:l+1]) - 1`` belong to label ``classes_[l]``.
    n_features_in_ : int
        Features seen in fit.

    See Also
    --------
    PrototypeClusterer : one cluster per label.
    KMeans : ClusterFit's clusterer, which uses no labels.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import PerLabelKMeans
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(120, 4)
    >>> y = np.repeat([0, 1], [100, 20])
    >>> per_label = PerLabelKMeans(n_clusters=12, random_state=0).fit(X, y)
    >>> per_label.n_clusters_per_label_.tolist()  # about sqrt(100):sqrt(20)
    [8, 4]
    >>> bool(np.all(per_label.cluster_label_[per_label.labels_] == y))
    True
    """

    _parameter_constraints = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "kmeans": [HasMethods(["fit"]), None],
        "random_state": ["random_state"],
    }
    _component_parameters = ("kmeans",)

    def __init__(self, n_clusters=8, *, kmeans=None, random_state=None):
        self.n_clusters = n_clusters
        self.kmeans = kmeans
        self.random_state = random_state

    def _default_component(self, name):
        from ._kmeans import KMeans

        return KMeans()

    def fit(self, X, y):
        """Cluster the rows of each label separately.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (e.g. a teacher's).
        y : array-like of shape (n_samples,)
            Labels (e.g. the noisy labels the teacher was trained on).

        Returns
        -------
        self : PerLabelKMeans
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        counts = np.bincount(y_index, minlength=len(self.classes_))
        k = sqrt_allocation(counts, self.n_clusters)
        rng = check_random_state(self.random_state)
        template = self._component("kmeans")
        labels = np.empty(len(X), dtype=np.int64)
        centers = []
        offset = 0
        for label, k_l in enumerate(k):
            rows = np.flatnonzero(y_index == label)
            kmeans = clone(template).set_params(
                n_clusters=int(k_l), random_state=int(rng.randint(2**31 - 1))
            )
            kmeans.fit(X[rows])
            labels[rows] = offset + np.asarray(kmeans.labels_, dtype=np.int64)
            centers.append(np.asarray(kmeans.cluster_centers_))
            offset += int(k_l)
        self.n_clusters_per_label_ = k
        self.cluster_label_ = np.repeat(np.arange(len(k)), k)
        self.cluster_centers_ = np.concatenate(centers).astype(X.dtype, copy=False)
        self.labels_ = labels
        return self
