"""k-means: exact Lloyd (scikit-learn's compiled iteration on CPU, torch GEMM on GPU)
or approximate (a walk on the centroid kNN graph) for large K."""

import contextlib
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
from . import _ann, _sklearn_lloyd
from ._preprocessing import PCAWhitening, l2_normalize_rows

# Bytes of distances one chunk may hold: a few MB stay in cache on a CPU and
# keep a GPU busy; nothing ever holds an n_samples x n_clusters matrix.
_CHUNK_BYTES = 32 * 2**20
# faiss's split of an empty cluster: copy the largest one's centre and push the
# two apart by this relative amount so they separate at the next assignment.
_SPLIT_EPS = 1.0 / 1024
# From this many clusters assign="auto" uses the centroid-graph walk on the CPU
# (benchmarks/README.md: it wins by far at K=4000, and exact Lloyd costs grow
# with K while the walk's do not).
_ANN_MIN_CLUSTERS = 4096
# Rows preprocessed and assigned at a time when streaming (max_samples, predict).
_STREAM_ROWS = 65536


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


def mean_variance(X, block_rows=65536):
    """Mean per-feature variance of ``X``, by blocks (``X.var`` would hold a
    float64 copy of the whole array: 2 GB at 1M x 256)."""
    total = np.zeros(X.shape[1])
    total_sq = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        block = X[start : start + block_rows].astype(np.float64)
        total += block.sum(0)
        total_sq += np.einsum("ij,ij->j", block, block)
    mean = total / X.shape[0]
    return float(np.maximum(total_sq / X.shape[0] - mean**2, 0).mean())


def squared_distances(X, centers, labels, block_rows=65536):
    """Squared distance of every row to its assigned centre (float32, by blocks)."""
    out = np.empty(X.shape[0], dtype=np.float32)
    for start in range(0, X.shape[0], block_rows):
        stop = start + block_rows
        diff = X[start:stop] - centers[labels[start:stop]]
        out[start:stop] = np.einsum("ij,ij->i", diff, diff)
    return out


@contextlib.contextmanager
def matmul_tf32(device, allowed):
    """Allow or forbid TF32 matrix products on a CUDA ``device`` for a block.

    TF32 keeps a 10-bit mantissa: several times faster GEMMs on Ampere and
    later GPUs, good enough to move centres, not to pick the final labels.
    A no-op elsewhere.
    """
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def torch_lloyd(X, centers, n_iter, tolerance, chunk_size, verbose=0):
    """Lloyd with torch tensors (any device); centers, labels, n_iter, n_empty.

    On a GPU the iterations use TF32 distances; the labels returned come from
    one last assignment in full float32, so they are exact for the centres.
    """
    with matmul_tf32(X.device, True):
        centers, labels, iteration, converged, n_empty = _lloyd_iterations(
            X, centers, n_iter, tolerance, chunk_size, verbose
        )
    if not converged or X.device.type == "cuda":
        with matmul_tf32(X.device, False):
            labels, _ = assign(X, centers, chunk_size)
    return centers, labels, iteration + 1, n_empty


def _lloyd_iterations(X, centers, n_iter, tolerance, chunk_size, verbose):
    """The Lloyd loop; the labels returned match the centres only if converged."""
    n_clusters = centers.shape[0]
    n_empty = 0
    previous = None
    converged = False
    for iteration in range(n_iter):
        labels, min_sq = assign(X, centers, chunk_size)
        if previous is not None and torch.equal(labels, previous):
            converged = True  # the centres are the means of these labels already
            break
        new_centers, counts = update_centers(X, labels, n_clusters)
        n_empty += split_empty_clusters(new_centers, counts)
        shift = float(((new_centers - centers) ** 2).sum())
        centers = new_centers
        previous = labels
        if verbose:
            print(
                f"[KMeans] iteration {iteration + 1}: inertia "
                f"{float(min_sq.sum()):.6g}, shift {shift:.3g}",
                flush=True,
            )
        if shift <= tolerance:
            break
    return centers, previous, iteration, converged, n_empty


def graph_lloyd(X, centers, n_iter, tolerance, n_neighbors, rng, chunk_size, verbose=0):
    """Lloyd whose assignment is the greedy centroid-graph walk (CPU, numpy in/out)."""
    n_clusters = centers.shape[0]
    X_t = torch.from_numpy(X)
    labels = _ann.entry_labels(X, centers, rng, chunk_size)
    previous = None
    n_empty = 0
    converged = False
    for iteration in range(n_iter):
        graph = _ann.centroid_graph(centers, n_neighbors)
        min_sq = _ann.graph_assign(X, centers, graph, labels)
        if previous is not None and np.array_equal(labels, previous):
            converged = True
            break
        new_centers, counts = update_centers(
            X_t, torch.from_numpy(labels.astype(np.int64)), n_clusters
        )
        n_empty += split_empty_clusters(new_centers, counts)
        new_centers = new_centers.numpy()
        shift = float(((new_centers - centers).astype(np.float64) ** 2).sum())
        centers = new_centers
        previous = labels.copy()
        if verbose:
            print(
                f"[KMeans] iteration {iteration + 1}: inertia "
                f"{float(min_sq.sum(dtype=np.float64)):.6g}, shift {shift:.3g}",
                flush=True,
            )
        if shift <= tolerance:
            break
    if not converged:
        graph = _ann.centroid_graph(centers, n_neighbors)
        _ann.graph_assign(X, centers, graph, labels)
    return centers, labels, iteration + 1, n_empty


class KMeans(PersistenceMixin, ClusterMixin, BaseEstimator):
    """k-means (Lloyd) for clustering teacher features, exact or approximate.

    Three engines, picked by ``device``, ``backend`` and ``assign``:

    - exact on the CPU: scikit-learn's compiled Lloyd iteration (cache-sized
      chunks, BLAS GEMM fused with the arg-min), driven by our loop;
    - exact in torch (the GPU engine, or ``backend="torch"``): GEMM distances
      with precomputed norms in chunks of rows, so no
      ``n_samples x n_clusters`` matrix is held;
    - approximate (``assign="ann"``, the default on the CPU from
      ``n_clusters >= 4096``): each point compares itself only with the
      ``n_neighbors`` nearest centroids of its current centre and walks to
      the best one (a greedy search on the exact centroid kNN graph).

    Empty clusters are re-seeded, not left empty (scikit-learn's engine moves
    them onto far points; the torch and graph engines split the largest
    cluster, as faiss does). Before clustering, rows may be PCA-whitened
    (``whiten``) and L2-normalised (``normalize``), as DeepCluster and VISSL
    do. For data too big to iterate over, ``max_samples`` fits the centres on
    a random sample and then assigns every row by streaming blocks.

    Read more in :ref:`components` (the clusterer).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (ClusterFit's K).
    n_iter : int, default=20
        Maximum Lloyd iterations.
    init : {"k-means++", "random"} or ndarray of shape (n_clusters, n_features), default="k-means++"
        Seeding. An array gives the initial centres (in the preprocessed
        space: whitened and/or normalised when those are on).
    normalize : bool, default=True
        L2-normalise rows (after whitening) before clustering and predicting.
    tol : float, default=1e-4
        Stop when the summed squared centre shift falls below ``tol`` times
        the mean feature variance (scikit-learn's criterion); Lloyd also
        stops when no label changes.
    chunk_size : int, default=None
        Rows per distance chunk of the torch engine (and of the entry search
        of the graph engine); None sizes chunks to ~32 MB of distances.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and the samples drawn.
    verbose : int, default=0
        Print a line per iteration when > 0.
    assign : {"auto", "exact", "ann"}, default="auto"
        "exact" computes every point-centre distance; "ann" walks the
        centroid kNN graph (runs on the CPU whatever ``device``); "auto" is
        "ann" on the CPU when ``n_clusters >= 4096``, else "exact". The walk
        cannot cross between well-separated groups of centroids: on data
        with about one mode per cluster and seeds that miss modes it can be
        markedly worse than exact (benchmarks/README.md); ClusterFit's
        regime (K well above the number of classes) is the one it suits.
    backend : {"auto", "sklearn", "torch"}, default="auto"
        Engine for exact assignment. "auto": scikit-learn's compiled Lloyd on
        the CPU (the fastest we measured there), torch on a GPU.
    n_neighbors : int, default=32
        Centroid neighbours compared per walk step when ``assign="ann"``.
        More is slower and closer to exact.
    max_samples : int or float, default=None
        Fit the centres on a random sample of this many rows (a float: this
        fraction of the rows), then assign all rows by streaming blocks. None
        fits on every row.
    init_size : int, default=None
        Draw the k-means++ (or random) seeds from a random subset of this many
        rows instead of all of them: greedy k-means++ costs
        ``n_samples * n_clusters * log(n_clusters)`` distances.
    whiten : int, default=None
        PCA-whiten to this many components before clustering (fitted on the
        rows the centres are fitted on). None: no whitening.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features_out)
        Centres, in the preprocessed space.
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample (every sample, also with
        ``max_samples``).
    inertia_ : float
        Sum of squared distances of the samples to their assigned centre.
    n_iter_ : int
        Lloyd iterations run.
    n_empty_splits_ : int
        Empty clusters re-seeded over the whole fit.
    engine_ : str
        The engine that ran: "sklearn", "torch" or "graph".
    whitener_ : PCAWhitening or None
        The fitted whitening, when ``whiten`` is set.
    centroid_graph_ : ndarray of shape (n_clusters, n_neighbors) or None
        Nearest centroids of each centre, with the graph engine.
    n_features_in_ : int
        Features seen in fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import KMeans
    >>> X = np.array([[1, 0], [1.1, 0], [0, 1], [0, 1.1]])
    >>> km = KMeans(n_clusters=2, normalize=False, random_state=0).fit(X)
    >>> sorted(np.bincount(km.labels_).tolist())
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
        "assign": [StrOptions({"auto", "exact", "ann"})],
        "backend": [StrOptions({"auto", "sklearn", "torch"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
            None,
        ],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
        "whiten": [Interval(Integral, 1, None, closed="left"), None],
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
        assign="auto",
        backend="auto",
        n_neighbors=32,
        max_samples=None,
        init_size=None,
        whiten=None,
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
        self.assign = assign
        self.backend = backend
        self.n_neighbors = n_neighbors
        self.max_samples = max_samples
        self.init_size = init_size
        self.whiten = whiten

    # -- preprocessing -------------------------------------------------------

    def _preprocess(self, X):
        """Whiten and/or L2-normalise rows; float32, C-contiguous, writable."""
        if self.whitener_ is not None:
            return self.whitener_.transform(X)  # a new float32 array, normalised if asked
        if self.normalize:
            # C order: the engines need rows contiguous, whatever X's layout.
            return np.ascontiguousarray(l2_normalize_rows(X))
        X = np.asarray(X, dtype=np.float32, order="C")
        return X if X.flags.writeable else X.copy()

    def _preprocess_blocks(self, X):
        """Yield ``(slice, preprocessed rows)``, a block at a time (streaming)."""
        for start in range(0, X.shape[0], _STREAM_ROWS):
            rows = slice(start, min(start + _STREAM_ROWS, X.shape[0]))
            yield rows, self._preprocess(X[rows])

    # -- choices -------------------------------------------------------------

    def _resolve_engine(self, device):
        use_graph = self.assign == "ann" or (
            self.assign == "auto"
            and device.type == "cpu"
            and self.n_clusters >= _ANN_MIN_CLUSTERS
        )
        if use_graph:
            return "graph"
        if self.backend == "torch" or (self.backend == "auto" and device.type != "cpu"):
            return "torch"
        if self.backend == "sklearn" and device.type != "cpu":
            raise ValueError(
                f"backend='sklearn' runs on the CPU only; got device={self.device!r}."
            )
        return "sklearn" if _sklearn_lloyd.available() else "torch"

    def _sample_size(self, n_samples):
        if self.max_samples is None:
            return n_samples
        if isinstance(self.max_samples, Integral):
            size = min(self.max_samples, n_samples)
        else:
            size = int(math.ceil(self.max_samples * n_samples))
        if size < self.n_clusters:
            raise ValueError(
                f"max_samples={self.max_samples} gives {size} samples, fewer than "
                f"n_clusters={self.n_clusters}."
            )
        return size

    def _initial_centers(self, X, rng):
        """Seeds from the preprocessed fit rows ``X`` (numpy float32)."""
        if not isinstance(self.init, str):
            init = np.asarray(self.init, dtype=np.float32)
            if init.shape != (self.n_clusters, X.shape[1]):
                raise ValueError(
                    f"init has shape {init.shape}; expected (n_clusters, n_features) "
                    f"= ({self.n_clusters}, {X.shape[1]})."
                )
            return init.copy()
        if self.init_size is not None and self.init_size < X.shape[0]:
            if self.init_size < self.n_clusters:
                raise ValueError(
                    f"init_size={self.init_size} must be >= n_clusters={self.n_clusters}."
                )
            X = X[np.sort(rng.choice(X.shape[0], self.init_size, replace=False))]
        generator = torch.Generator().manual_seed(int(rng.randint(2**31 - 1)))
        if self.init == "random":
            chosen = torch.randperm(X.shape[0], generator=generator)[: self.n_clusters]
            return X[np.sort(chosen.numpy())].copy()
        X_t = torch.from_numpy(X)
        return kmeans_plusplus(X_t, self.n_clusters, generator, (X_t * X_t).sum(1)).numpy()

    # -- fit / predict -------------------------------------------------------

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
        X = validate_data(self, X, dtype=[np.float32, np.float64])
        n_samples = X.shape[0]
        if self.n_clusters > n_samples:
            raise ValueError(
                f"n_clusters={self.n_clusters} must be <= n_samples={n_samples}."
            )
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        engine = self._resolve_engine(device)
        sample_size = self._sample_size(n_samples)
        streaming = sample_size < n_samples
        fit_rows = (
            X[np.sort(rng.choice(n_samples, sample_size, replace=False))]
            if streaming
            else X
        )
        self.whitener_ = None
        if self.whiten is not None:
            self.whitener_ = PCAWhitening(self.whiten, normalize=self.normalize)
            self.whitener_.fit(fit_rows)
        fit_X = self._preprocess(fit_rows)
        del fit_rows
        centers = self._initial_centers(fit_X, rng)
        # scikit-learn's tolerance: tol times the mean per-feature variance.
        tolerance = mean_variance(fit_X) * self.tol
        chunk = auto_chunk_size(self.n_clusters, self.chunk_size)
        if engine == "sklearn":
            centers, labels, n_iter, n_empty = _sklearn_lloyd.lloyd(
                fit_X, centers, self.n_iter, tolerance, self.verbose
            )
        elif engine == "graph":
            centers, labels, n_iter, n_empty = graph_lloyd(
                fit_X, centers, self.n_iter, tolerance, self.n_neighbors, rng, chunk,
                self.verbose,
            )
        else:
            X_t = as_tensor(fit_X, device)
            centers_t, labels_t, n_iter, n_empty = torch_lloyd(
                X_t, torch.from_numpy(centers).to(device), self.n_iter, tolerance,
                chunk, self.verbose,
            )
            del X_t
            centers, labels = centers_t.cpu().numpy(), labels_t.cpu().numpy()
        self.engine_ = engine
        self.cluster_centers_ = np.ascontiguousarray(centers, dtype=np.float32)
        self.centroid_graph_ = (
            _ann.centroid_graph(self.cluster_centers_, self.n_neighbors)
            if engine == "graph"
            else None
        )
        self.n_iter_ = n_iter
        self.n_empty_splits_ = n_empty
        if streaming:
            del fit_X
            self.labels_, self.inertia_ = self._assign_stream(X, device, rng)
        else:
            self.labels_ = labels.astype(np.int64)
            self.inertia_ = float(
                squared_distances(fit_X, self.cluster_centers_, labels).sum(dtype=np.float64)
            )
        return self

    def _assign_prepared(self, X, device, rng):
        """Labels (int64) of preprocessed rows with the fitted engine."""
        centers = self.cluster_centers_
        chunk = auto_chunk_size(self.n_clusters, self.chunk_size)
        if self.engine_ == "graph":
            labels = _ann.entry_labels(X, centers, rng, chunk)
            _ann.graph_assign(X, centers, self.centroid_graph_, labels)
        elif self.engine_ == "sklearn":
            labels = _sklearn_lloyd.predict(X, centers)
        else:
            labels_t, _ = assign(
                as_tensor(X, device), torch.from_numpy(centers).to(device), chunk
            )
            labels = labels_t.cpu().numpy()
        return labels.astype(np.int64)

    def _assign_stream(self, X, device, rng):
        """Labels of all rows of raw ``X`` and the inertia, a block at a time."""
        labels = np.empty(X.shape[0], dtype=np.int64)
        inertia = 0.0
        for rows, block in self._preprocess_blocks(X):
            labels[rows] = self._assign_prepared(block, device, rng)
            inertia += float(
                squared_distances(block, self.cluster_centers_, labels[rows]).sum(
                    dtype=np.float64
                )
            )
        return labels, inertia

    def predict(self, X):
        """Index of the nearest centre for each sample (approximate with "ann").

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
        # A fixed seed: the entry centroids of the graph walk, so predict is
        # deterministic.
        rng = np.random.RandomState(0)
        labels, _ = self._assign_stream(X, resolve_device(self.device), rng)
        return labels

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
