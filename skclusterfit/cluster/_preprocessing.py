"""Feature preprocessing before k-means: PCA-whitening and L2 normalisation.

DeepCluster (Caron et al. 2018) clusters teacher features after PCA to ~256
dimensions, whitening (each component scaled by 1/sqrt(eigenvalue)) and L2
normalisation of the rows; VISSL's ClusterFit L2-normalises. Both are here.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted, validate_data

from ._rows import default_block_rows


def l2_normalize_rows(X, out=None):
    """Rows of ``X`` scaled to unit L2 norm (zero rows stay zero); float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    norms[norms == 0] = 1.0
    if out is None:
        return (X / norms[:, None]).astype(np.float32, copy=False)
    np.divide(X, norms[:, None].astype(np.float32), out=out)
    return out


def _column_sums(X):
    """Row count and float64 column sums of ``X``, by blocks."""
    total = np.zeros(X.shape[1])
    step = default_block_rows(X.shape[1])
    for start in range(0, X.shape[0], step):
        total += np.asarray(X[start : start + step]).sum(axis=0, dtype=np.float64)
    return X.shape[0], total


def _scatter(X, mean):
    """Float64 scatter matrix of ``X`` about ``mean``, by blocks."""
    scatter = np.zeros((X.shape[1], X.shape[1]))
    mean32 = mean.astype(np.float32)
    step = default_block_rows(X.shape[1])
    for start in range(0, X.shape[0], step):
        # One float32 temporary per block, whatever X's dtype.
        block = np.subtract(X[start : start + step], mean32, dtype=np.float32)
        # float32 GEMM per block (fast), summed in float64 (accurate over many blocks).
        scatter += block.T @ block
    return scatter


def mean_and_covariance(X, allreduce_sum=None):
    """Column means and covariance of ``X`` in float64, accumulated by blocks.

    ``allreduce_sum`` (optional) sums arrays over processes, each holding a
    shard of the rows: the result is then the moments of all shards.
    """
    reduce = allreduce_sum or (lambda array: array)
    n_rows, total = _column_sums(X)
    n_rows = int(reduce(np.array([n_rows], dtype=np.int64))[0])
    mean = reduce(total) / max(n_rows, 1)
    scatter = reduce(_scatter(X, mean))
    return mean, scatter / max(n_rows - 1, 1), n_rows


class PCAWhitening(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """PCA-whitening, then optionally L2 normalisation: DeepCluster's preprocessing.

    Rows are centred, projected on the leading ``n_components`` principal
    axes and each coordinate is divided by the square root of its eigenvalue,
    so the output has identity covariance on the training data (real
    whitening, unlike a plain PCA projection). With ``normalize=True`` the
    whitened rows are then scaled to unit L2 norm, as DeepCluster does before
    k-means.

    Parameters
    ----------
    n_components : int, default=None
        Principal components kept; None keeps ``n_features``.
    normalize : bool, default=True
        L2-normalise rows after whitening.
    eps : float, default=1e-8
        Added to every eigenvalue before the inverse square root, so that
        (numerically) zero-variance directions do not blow up.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Training mean.
    components_ : ndarray of shape (n_components, n_features)
        Principal axes, by decreasing variance.
    explained_variance_ : ndarray of shape (n_components,)
        Eigenvalues of the training covariance for those axes.
    whitening_ : ndarray of shape (n_features, n_components)
        The float32 matrix applied to centred rows: ``components_.T`` scaled
        by ``1 / sqrt(explained_variance_ + eps)``.
    n_features_in_ : int
        Features seen in fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import PCAWhitening
    >>> X = np.random.RandomState(0).normal(size=(500, 5)) * [10, 5, 1, 1, 0.1]
    >>> Z = PCAWhitening(n_components=3, normalize=False).fit_transform(X)
    >>> np.allclose(np.cov(Z, rowvar=False), np.eye(3), atol=1e-4)
    True
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "normalize": ["boolean"],
        "eps": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, n_components=None, *, normalize=True, eps=1e-8):
        self.n_components = n_components
        self.normalize = normalize
        self.eps = eps

    def fit(self, X, y=None):
        """Learn the mean and the whitening matrix of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : PCAWhitening
        """
        self._validate_params()
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        n_features = X.shape[1]
        n_components = n_features if self.n_components is None else self.n_components
        if n_components > n_features:
            raise ValueError(
                f"n_components={self.n_components} must be <= n_features={n_features}."
            )
        if X.shape[0] < 2:
            raise ValueError(
                f"PCAWhitening needs at least 2 samples; got n_samples={X.shape[0]}."
            )
        mean, covariance, _ = mean_and_covariance(X)
        return self._fit_moments(mean, covariance, n_components)

    def _fit_moments(self, mean, covariance, n_components):
        """Set the fitted attributes from the data's mean and covariance."""
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        keep = np.argsort(eigenvalues)[::-1][:n_components]
        eigenvalues = np.clip(eigenvalues[keep], 0, None)
        components = eigenvectors[:, keep].T
        # eigh's eigenvectors have arbitrary signs: fix them (largest |entry|
        # positive) so that refits give the same output.
        signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(1)])
        components *= signs[:, None]
        self.mean_ = mean
        self.components_ = components
        self.explained_variance_ = eigenvalues
        self.whitening_ = (components.T / np.sqrt(eigenvalues + self.eps)).astype(np.float32)
        self._n_features_out = n_components
        self.n_features_in_ = len(mean)
        return self

    def transform(self, X):
        """Whiten (and L2-normalise) ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components), float32
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        return self._transform_rows(X)

    def _transform_rows(self, X):
        """``transform`` without validation, for any 2-D array-like (a memory map)."""
        out = np.empty((X.shape[0], self.whitening_.shape[1]), dtype=np.float32)
        mean32 = self.mean_.astype(np.float32)
        step = default_block_rows(X.shape[1])
        for start in range(0, X.shape[0], step):
            block = np.subtract(X[start : start + step], mean32, dtype=np.float32)
            np.matmul(block, self.whitening_, out=out[start : start + len(block)])
        if self.normalize:
            l2_normalize_rows(out, out=out)
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
