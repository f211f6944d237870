"""The paper's "prototype" baseline: one cluster per class, centred on the class mean."""

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.metrics import pairwise_distances_argmin
from sklearn.preprocessing import normalize as l2_normalize
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..storage._persistence import PersistenceMixin


class LabelsRequiredMixin:
    """Tags a clusterer whose ``fit(X, y)`` needs labels.

    ``target_tags.required`` is scikit-learn's own way of saying that ``y``
    is needed (its estimator checks then pass it); ClusterFit reads the same
    tag to decide whether to pass ``y`` to its clusterer.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def fit_predict(self, X, y):
        """Fit and return the cluster of each training sample.

        (scikit-learn's ``ClusterMixin.fit_predict`` would not pass ``y``.)

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, y).labels_


def preprocess_rows(X, normalize):
    """Float rows, L2-normalised when ``normalize`` (ClusterFit's k-means space)."""
    return l2_normalize(X) if normalize else X


class PrototypeClusterer(LabelsRequiredMixin, PersistenceMixin, ClusterMixin, BaseEstimator):
    """One cluster per class: the class means as centres, nearest prototype as label.

    The paper's "prototype" baseline (section 4, "Prototype alignment"):
    instead of clustering the teacher's features without labels, the
    labels of the data define the clusters. Each class's centre is the mean
    of its (L2-normalised) features, and every sample is assigned to its
    nearest centre, which may be another class's when its features sit
    closer to that class. It needs labels, so it measures what ClusterFit
    gains *without* them. As ClusterFit's ``clusterer`` it receives the ``y``
    given to ``ClusterFit.fit(X, y)``; ``K`` is not used (there are as many
    clusters as classes).

    Parameters
    ----------
    normalize : bool, default=True
        L2-normalise rows before averaging and assigning, as
        :class:`~skclusterfit.cluster.KMeans` does by default.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance between a sample and a prototype.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in fit; cluster ``i`` is the prototype of
        ``classes_[i]``.
    cluster_centers_ : ndarray of shape (n_classes, n_features)
        Class means (of the normalised rows when ``normalize``).
    labels_ : ndarray of shape (n_samples,)
        Index of the nearest prototype of each training sample.
    n_features_in_ : int
        Features seen in fit.

    See Also
    --------
    PerLabelKMeans : several clusters per label, by k-means inside each.
    KMeans : ClusterFit's clusterer, which uses no labels.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import PrototypeClusterer
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    >>> y = np.array(["a", "a", "b", "a"])  # the last label is wrong
    >>> proto = PrototypeClusterer().fit(X, y)
    >>> proto.labels_  # relabelled by its features: nearest to the "b" prototype
    array([0, 0, 1, 1])
    >>> proto.classes_[proto.predict([[0.1, 0.9]])]
    array(['b'], dtype='<U1')
    """

    _parameter_constraints = {
        "normalize": ["boolean"],
        "metric": [StrOptions({"euclidean", "cosine"})],
    }

    def __init__(self, *, normalize=True, metric="euclidean"):
        self.normalize = normalize
        self.metric = metric

    def fit(self, X, y):
        """Compute the class prototypes and assign every sample to the nearest.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (e.g. a teacher's).
        y : array-like of shape (n_samples,)
            Class labels (e.g. the noisy labels the teacher was trained on).

        Returns
        -------
        self : PrototypeClusterer
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        X = preprocess_rows(X, self.normalize)
        counts = np.bincount(y_index, minlength=len(self.classes_))
        sums = np.zeros((len(self.classes_), X.shape[1]), dtype=np.float64)
        np.add.at(sums, y_index, X)
        self.cluster_centers_ = (sums / counts[:, None]).astype(X.dtype)
        self.labels_ = self._nearest(X)
        return self

    def _nearest(self, X):
        return pairwise_distances_argmin(X, self.cluster_centers_, metric=self.metric).astype(
            np.int64
        )

    def predict(self, X):
        """Index of the nearest prototype of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Cluster indices; ``classes_[labels]`` are the classes.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._nearest(preprocess_rows(X, self.normalize))
