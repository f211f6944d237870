"""k-means in torch: GEMM distances in chunks, CPU or GPU, empty clusters split."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .._torch_utils import resolve_device
from ..persistence import PersistenceMixin

# Bytes of distances one chunk may hold: a few MB stay in cache on a CPU and
# keep a GPU busy; nothing ever holds an n_samples x n_clusters matrix.
_CHUNK_BYTES = 32 * 2**20
# faiss's split of an empty cluster: copy the largest one's centre and push the
# two apart by this relative amount so they separate at the next assignment.
_SPLIT_EPS = 1.0 / 1024


def auto_chunk_size(n_clusters, chunk_size=None):
    """Rows per distance chunk so that one chunk of distances stays ~32 MB."""
    if chunk_size is not None:
        return int(chunk_size)
    return max(64, _CHUNK_BYTES // (4 * n_clusters))


def as_tensor(X, device):
    """A float32 tensor view of ``X`` on ``device`` (copied only when it must be)."""
    X = np.asarray(X, dtype=np.float32)
    if not X.flags.writeable or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X).copy()
    return torch.from_numpy(X).to(device)


def l2_normalize(X):
    return torch.nn.functional.normalize(X, dim=1)


def assign(X, centers, chunk_size):
    """Nearest centre of every row of ``X`` and the squared distance to it.

    Distances are ``||x||^2 - 2 x.c + ||c||^2``, the cross term one GEMM per
    chunk of rows.
    """
    n_samples = X.shape[0]
    center_sq = (centers * centers).sum(1)
    labels = torch.empty(n_samples, dtype=torch.long, device=X.device)
    min_sq = torch.empty(n_samples, dtype=X.dtype, device=X.device)
    for start in range(0, n_samples, chunk_size):
        block = X[start : start + chunk_size]
        distances = torch.addmm(center_sq, block, centers.T, alpha=-2.0)
        best, best_index = distances.min(dim=1)
        stop = start + len(block)
        labels[start:stop] = best_index
        min_sq[start:stop] = best + (block * block).sum(1)
    return labels, min_sq.clamp_(min=0)


def update_centers(X, labels, n_clusters):
    """Mean of each cluster, and the cluster sizes."""
    counts = torch.bincount(labels, minlength=n_clusters)
    sums = torch.zeros(n_clusters, X.shape[1], dtype=X.dtype, device=X.device)
    sums.index_add_(0, labels, X)
    centers = sums / counts.clamp(min=1).unsqueeze(1).to(X.dtype)
    return centers, counts


def split_empty_clusters(centers, counts):
    """Re-seed every empty cluster by splitting the currently largest one.

    Returns the number of clusters that were empty.
    """
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if not empty:
        return 0
    counts = counts.clone()
    sign = torch.ones(centers.shape[1], dtype=centers.dtype, device=centers.device)
    sign[1::2] = -1
    for j in empty:
        largest = int(torch.argmax(counts))
        base = centers[largest].clone()
        centers[j] = base * (1 + _SPLIT_EPS * sign)
        centers[largest] = base * (1 - _SPLIT_EPS * sign)
        counts[j] = counts[largest] // 2
        counts[largest] -= counts[j]
    return len(empty)


def kmeans_plusplus(X, n_clusters, generator, x_sq):
    """Greedy k-means++ seeding (as scikit-learn: 2 + log(k) local trials)."""
    n_samples = X.shape[0]
    n_trials = 2 + int(math.log(n_clusters))
    centers = torch.empty(n_clusters, X.shape[1], dtype=X.dtype, device=X.device)
    first = int(torch.randint(n_samples, (1,), generator=generator))
    centers[0] = X[first]

    def sq_dist_to(points):
        cross = X @ points.T
        return (x_sq[:, None] - 2 * cross + (points * points).sum(1)[None]).clamp_(min=0)

    closest = sq_dist_to(X[first : first + 1])[:, 0].double()
    potential = closest.sum()
    for c in range(1, n_clusters):
        draws = torch.rand(n_trials, generator=generator, dtype=torch.float64)
        targets = (draws.to(X.device) * potential)
        candidates = torch.searchsorted(torch.cumsum(closest, 0), targets)
        candidates.clamp_(max=n_samples - 1)
        trial = torch.minimum(closest[:, None], sq_dist_to(X[candidates]).double())
        potentials = trial.sum(0)
        best = int(torch.argmin(potentials))
        closest = trial[:, best].contiguous()
        potential = potentials[best]
        centers[c] = X[candidates[best]]
    return centers


class KMeans(PersistenceMixin, ClusterMixin, BaseEstimator):
    """k-means (Lloyd) in torch on CPU or GPU, for clustering teacher features.

    Distances are computed by GEMM in chunks of rows, so no
    ``n_samples x n_clusters`` matrix is held; empty clusters are re-seeded by
    splitting the largest one (as faiss does) rather than left empty. With
    ``normalize=True`` rows are L2-normalised first, as VISSL and DeepCluster
    do before clustering features.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (ClusterFit's K).
    n_iter : int, default=20
        Maximum Lloyd iterations.
    init : {"k-means++", "random"} or ndarray of shape (n_clusters, n_features), default="k-means++"
        Seeding. An array gives the initial centres (in the normalised space
        when ``normalize=True``).
    normalize : bool, default=True
        L2-normalise rows before clustering (and before ``predict``).
    tol : float, default=1e-4
        Stop when the squared centre shift falls below ``tol`` times the mean
        feature variance (scikit-learn's criterion).
    chunk_size : int, default=None
        Rows per distance chunk; None sizes chunks to ~32 MB of distances.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation.
    verbose : int, default=0
        Print the inertia of each iteration when > 0.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres (in the normalised space when ``normalize=True``).
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample.
    inertia_ : float
        Sum of squared distances of samples to their centre.
    n_iter_ : int
        Lloyd iterations run.
    n_empty_splits_ : int
        Empty clusters re-seeded over the whole fit.
    n_features_in_ : int
        Features seen in fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import KMeans
    >>> X = np.array([[1, 0], [1.1, 0], [0, 1], [0, 1.1]])
    >>> km = KMeans(n_clusters=2, normalize=False, random_state=0).fit(X)
    >>> sorted(np.bincount(km.labels_))
    [2, 2]
    >>> km.predict([[0.9, 0.1]]) == km.labels_[0]
    array([ True])
    """

    _parameter_constraints = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "normalize": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        n_iter=20,
        init="k-means++",
        normalize=True,
        tol=1e-4,
        chunk_size=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.n_iter = n_iter
        self.init = init
        self.normalize = normalize
        self.tol = tol
        self.chunk_size = chunk_size
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _prepare(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        X_t = as_tensor(X, resolve_device(self.device))
        return l2_normalize(X_t) if self.normalize else X_t

    def _initial_centers(self, X, generator):
        if isinstance(self.init, str) and self.init == "random":
            chosen = torch.randperm(X.shape[0], generator=generator)[: self.n_clusters]
            return X[chosen.to(X.device)].clone()
        if isinstance(self.init, str):
            return kmeans_plusplus(X, self.n_clusters, generator, (X * X).sum(1))
        init = np.asarray(self.init, dtype=np.float32)
        if init.shape != (self.n_clusters, X.shape[1]):
            raise ValueError(
                f"init has shape {init.shape}; expected (n_clusters, n_features) = "
                f"({self.n_clusters}, {X.shape[1]})."
            )
        return torch.from_numpy(init.copy()).to(X.device)

    def fit(self, X, y=None):
        """Cluster ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features to cluster.
        y : None
            Ignored.

        Returns
        -------
        self : KMeans
        """
        self._validate_params()
        X = self._prepare(X, reset=True)
        n_samples = X.shape[0]
        if self.n_clusters > n_samples:
            raise ValueError(
                f"n_clusters={self.n_clusters} must be <= n_samples={n_samples}."
            )
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        generator = torch.Generator().manual_seed(seed)
        chunk = auto_chunk_size(self.n_clusters, self.chunk_size)
        centers = self._initial_centers(X, generator)
        tolerance = float(X.var(dim=0).mean()) * self.tol
        self.n_empty_splits_ = 0
        for iteration in range(self.n_iter):
            labels, min_sq = assign(X, centers, chunk)
            new_centers, counts = update_centers(X, labels, self.n_clusters)
            self.n_empty_splits_ += split_empty_clusters(new_centers, counts)
            shift = float(((new_centers - centers) ** 2).sum())
            centers = new_centers
            if self.verbose:
                print(
                    f"[KMeans] iteration {iteration + 1}: inertia "
                    f"{float(min_sq.sum()):.6g}, shift {shift:.3g}",
                    flush=True,
                )
            if shift <= tolerance:
                break
        # A last assignment so that labels_ and inertia_ match cluster_centers_.
        labels, min_sq = assign(X, centers, chunk)
        self.cluster_centers_ = centers.cpu().numpy()
        self.labels_ = labels.cpu().numpy()
        self.inertia_ = float(min_sq.double().sum())
        self.n_iter_ = iteration + 1
        return self

    def predict(self, X):
        """Index of the nearest centre for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._prepare(X, reset=False)
        centers = torch.from_numpy(self.cluster_centers_).to(X.device)
        labels, _ = assign(X, centers, auto_chunk_size(self.n_clusters, self.chunk_size))
        return labels.cpu().numpy()

    def fit_predict(self, X, y=None):
        """Cluster ``X`` and return the label of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X).labels_
