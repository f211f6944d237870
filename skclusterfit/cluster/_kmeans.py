"""The KMeans estimator: validates, preprocesses, seeds, picks an engine, stores the fit.

The numerical work lives in one module per engine, each a plain function
with the signature of ``_common.py``:

- ``_exact_cpu.lloyd_exact_cpu``: exact Lloyd on the CPU (Yinyang bounds);
- ``_exact_torch.lloyd_torch``: exact Lloyd with torch GEMMs (the GPU engine);
- ``_ann.lloyd_graph``: approximate assignment by a walk on the centroid graph;
- ``_hierarchical.lloyd_hierarchical``: mesoclusters, each group clustered
  alone into its share of K, then global refinement by one of the above (or
  by a search of the nearest mesoclusters' centres at very large K).

Distributed fits (``_distributed.py``) use the same engines: only the
communicator passed to them changes.
"""

import functools
import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Hidden, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..runtime._progress import log
from ..runtime._torch_utils import resolve_device
from ..storage._persistence import PersistenceMixin
from . import _ann, _exact_cpu, _exact_torch, _hierarchical
from ._centroid_graph import centroid_graph
from ._common import feature_moments, fill_empty_clusters, squared_distances
from ._common import inertia as total_inertia
from ._distributed import global_sample, resolve_comm, shard_layout
from ._preprocessing import PCAWhitening, l2_normalize_rows, mean_and_covariance
from ._rows import ArrayRows, StreamRows
from ._seeding import kmeans_plusplus, random_rows

# From this many clusters assign="auto" uses the centroid-graph walk on the CPU
# (benchmarks/README.md: exact Lloyd costs grow with K, the walk's do not).
_ANN_MIN_CLUSTERS = 4096
# The default seeding sample: this many rows per cluster (at least
# _INIT_MIN_ROWS), so that k-means++ costs a fixed number of Lloyd passes
# over a sample rather than K passes over all rows (benchmarks/README.md).
_INIT_ROWS_PER_CLUSTER = 3
_INIT_MIN_ROWS = 10_000
_DEPRECATED = "deprecated"
# algorithm="auto" is hierarchical from this many clusters and rows (on the
# CPU, seeded by the estimator): there it reaches flat Lloyd's objective to
# within a fraction of a percent in a fraction of its time
# (benchmarks/README.md, "Hierarchical k-means"); below, flat Lloyd is cheap.
_HIERARCHICAL_MIN_CLUSTERS = 4000
_HIERARCHICAL_MIN_ROWS = 100_000
# max_iter="auto": Lloyd iterations of the flat algorithm, and global
# refinement iterations after the hierarchical stages (each group's clusters
# have already had their own Lloyd iterations; the time-to-quality table of
# benchmarks/README.md shows what each further iteration buys).
_LLOYD_MAX_ITER = 20
_HIERARCHICAL_MAX_ITER = 2
# From this K the hierarchical refinement (assign="auto") searches the fine
# centres of each row's nearest mesoclusters instead of walking the centroid
# graph, whose K^2 d cost per iteration grows faster than the rows' search.
_GROUPS_MIN_CLUSTERS = 50_000
# Rows in memory are copied once (float32, preprocessed, centred) when that
# copy takes at most this much; larger arrays, like memory maps, are prepared
# a block at a time on every pass (1M x 2048 float32 is 8 GB: no second copy).
_COPY_LIMIT_BYTES = 2**30


class KMeans(PersistenceMixin, ClusterMixin, BaseEstimator):
    """k-means (Lloyd) for clustering teacher features, exact or approximate.

    Two algorithms (``algorithm``): flat Lloyd from seeds; and hierarchical
    k-means (the default from ``n_clusters >= 4000`` on ``>= 100,000`` rows on
    the CPU): Lloyd into ``~sqrt(n_clusters)`` mesoclusters on a sample, then
    each mesocluster's rows clustered alone (k-means++ and a few Lloyd
    iterations) into its share of the clusters, then ``max_iter`` global
    Lloyd iterations by one of the engines below. Under ``torch.distributed``
    the mesoclusters are spread over the processes.

    Three engines run Lloyd's iterations, picked by ``device``, ``backend`` and ``assign``:

    - exact on the CPU (``backend="yinyang"``): Yinyang k-means (Ding et al.,
      2015), Lloyd's algorithm that skips the point-centre distances the
      triangle inequality proves useless; its labels are Lloyd's;
    - exact in torch (the GPU engine, or ``backend="torch"``): GEMM
      distances in chunks of rows, bfloat16 iterations on a GPU and a final
      full-precision labelling;
    - approximate (``assign="ann"``, the default on the CPU from
      ``n_clusters >= 4096``): each point compares itself only with the
      ``n_neighbors`` nearest centroids of its current centre and walks to
      the best one (a greedy search on the exact centroid kNN graph).

    The data are centred before clustering (as scikit-learn does), so data
    far from the origin lose no precision. Empty clusters are re-seeded by
    splitting the largest one (faiss's rule). Before clustering, rows may be
    PCA-whitened (``whiten_dim``) and L2-normalised (``normalize``), as
    DeepCluster and VISSL do. For data too big to iterate over,
    ``max_samples`` fits the centres on a random sample and then assigns
    every row by streaming blocks. The rows clustered are copied once
    (float32, preprocessed, centred) when that copy fits in 1 GiB; a
    :class:`numpy.memmap` ``X`` (float32 or float16), or a larger array, is
    read and prepared a block at a time on every pass, never copied whole.

    Under ``torch.distributed`` (``distributed="auto"`` and a process group
    of more than one process) each process passes its own shard of the rows
    (contiguous, in rank order): the initial centres are chosen on rank 0
    from a sample drawn from all shards and broadcast, every iteration sums
    the per-cluster sums and counts over the processes, and every process
    ends with the same ``cluster_centers_``; ``labels_`` holds the labels of
    the process's own rows.

    Read more in :ref:`components` (the clusterer).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (ClusterFit's K).
    max_iter : int or "auto", default="auto"
        Maximum Lloyd iterations; with the hierarchical algorithm, the global
        refinement iterations after the per-group clustering. "auto": 20
        (flat), 2 (hierarchical). 0 (hierarchical only): no global
        iteration, SuperKMeans' default scheme: each row is labelled with the
        nearest fine centre of its mesocluster (``engine_ == "groups"``). On
        the benchmarks' mixtures (K = 4000 to 16,000) it took 0.40-0.58x the
        default's time and ended 0.2-1.6% above its objective
        (``benchmarks/README.md``).
    init : {"k-means++", "random"} or ndarray of shape (n_clusters, n_features), default="k-means++"
        Seeding. "k-means++" is k-means++ on a random sample of ``init_size``
        rows (greedy, as scikit-learn's, for the exact engines; one candidate
        per centre with ``assign="ann"``); "random" draws rows uniformly. An array gives
        the initial centres (in the preprocessed space: whitened and/or
        normalised when those are on).
    normalize : bool, default=True
        L2-normalise rows (after whitening) before clustering and predicting.
    tol : float, default=1e-4
        Stop when the summed squared centre shift falls below ``tol`` times
        the mean feature variance (scikit-learn's criterion); Lloyd also
        stops when no label changes.
    chunk_size : int, default=None
        Rows per distance chunk of the torch engine (None sizes chunks to
        ~32 MB), and rows searched at a time by the inverted file of the
        graph and groups engines (None: 65,536).
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and the samples drawn.
    verbose : int, default=0
        A progress bar over the iterations when > 0.
    assign : {"auto", "exact", "ann"}, default="auto"
        "exact" computes every point-centre distance that could matter;
        "ann" walks the centroid kNN graph (runs on the CPU whatever
        ``device``); "auto" is "ann" on the CPU when ``n_clusters >= 4096``,
        else "exact".
    backend : {"auto", "yinyang", "torch"}, default="auto"
        Engine for exact assignment. "auto": Yinyang on the CPU, torch on a
        GPU.
    n_neighbors : int, default=32
        Centroid neighbours compared per walk step when ``assign="ann"``.
        More is slower and closer to exact.
    max_samples : int or float, default=None
        Fit the centres on a random sample of this many rows (a float: this
        fraction of the rows, rounded up), then assign all rows by streaming
        blocks. None fits on every row.
    init_size : int, default=None
        Rows of the random sample the seeds are drawn from. None:
        ``max(3 * n_clusters, 10000)`` (all rows when fewer): greedy
        k-means++ costs ``init_size * n_clusters * log(n_clusters)``
        distances.
    whiten_dim : int, default=None
        PCA-whiten to this many dimensions before clustering (fitted on the
        rows the centres are fitted on). None: no whitening.
    algorithm : {"auto", "lloyd", "hierarchical"}, default="auto"
        "lloyd": flat Lloyd from the seeds of ``init``. "hierarchical":
        mesoclusters, per-group k-means++ and Lloyd, then ``max_iter`` global
        iterations (``init`` must be a string: the groups are seeded by the
        engine). With ``assign="auto"`` the global iterations walk the
        centroid graph, or search the nearest mesoclusters' centres from
        ``n_clusters >= 50000``. "auto": hierarchical on the CPU when
        ``n_clusters >= 4000``, the rows fitted on number at least 100,000
        and ``init`` is not an array; else "lloyd".
    distributed : "auto" or bool, default="auto"
        "auto": cluster across the processes of ``torch.distributed`` when
        it is initialised with more than one process, each passing its own
        rows; False: this process's rows only; True: across processes, and
        an error if no process group is initialised.
    n_iter : int
        Deprecated alias of ``max_iter`` (removed in the next release).
    whiten : int
        Deprecated alias of ``whiten_dim`` (removed in the next release).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features_out)
        Centres, in the preprocessed space.
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample (every sample, also with
        ``max_samples``; this process's samples in a distributed fit).
    inertia_ : float
        Sum of squared distances of the samples (of all processes) to their
        assigned centre.
    n_iter_ : int
        Lloyd iterations run.
    n_empty_splits_ : int
        Empty clusters re-seeded over the whole fit.
    algorithm_ : str
        The algorithm that ran: "lloyd" or "hierarchical".
    engine_ : str
        The engine of the (refinement) iterations: "yinyang", "torch",
        "graph", or "groups" (the hierarchical search of the nearest
        mesoclusters' centres; ``predict`` is then exact).
    whitener_ : PCAWhitening or None
        The fitted whitening, when ``whiten_dim`` is set.
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
        "max_iter": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "init": [StrOptions({"k-means++", "random"}), "array-like"],
        "normalize": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "assign": [StrOptions({"auto", "exact", "ann"})],
        "backend": [StrOptions({"auto", "yinyang", "torch"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="right"),
            None,
        ],
        "init_size": [Interval(Integral, 1, None, closed="left"), None],
        "whiten_dim": [Interval(Integral, 1, None, closed="left"), None],
        "algorithm": [StrOptions({"auto", "lloyd", "hierarchical"})],
        "distributed": [StrOptions({"auto"}), "boolean"],
        "n_iter": [Interval(Integral, 1, None, closed="left"), Hidden(StrOptions({_DEPRECATED}))],
        "whiten": [
            Interval(Integral, 1, None, closed="left"),
            None,
            Hidden(StrOptions({_DEPRECATED})),
        ],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        max_iter="auto",
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
        whiten_dim=None,
        algorithm="auto",
        distributed="auto",
        n_iter=_DEPRECATED,
        whiten=_DEPRECATED,
    ):
        self.n_clusters = n_clusters
        self.max_iter = max_iter
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
        self.whiten_dim = whiten_dim
        self.algorithm = algorithm
        self.distributed = distributed
        self.n_iter = n_iter
        self.whiten = whiten

    # -- parameters ------------------------------------------------------------

    def _max_iter(self, algorithm):
        if self.n_iter != _DEPRECATED:
            warnings.warn(
                "KMeans(n_iter=...) is deprecated and will be removed in the next "
                f"release; use max_iter={self.n_iter} instead.",
                FutureWarning,
                stacklevel=3,
            )
            return self.n_iter
        if self.max_iter == "auto":
            return _HIERARCHICAL_MAX_ITER if algorithm == "hierarchical" else _LLOYD_MAX_ITER
        return self.max_iter

    def _whiten_dim(self):
        if self.whiten != _DEPRECATED:
            warnings.warn(
                "KMeans(whiten=...) is deprecated and will be removed in the next "
                f"release; use whiten_dim={self.whiten} instead.",
                FutureWarning,
                stacklevel=3,
            )
            return self.whiten
        return self.whiten_dim

    def _check_fit_size(self, n_samples):
        """The number of rows the centres are fitted on; a ValueError if below K.

        The one place of the rule: with ``max_samples`` a fraction, the sample
        is ``ceil(max_samples * n_samples)`` rows; with an int, at most
        ``max_samples`` rows. :class:`skclusterfit.ClusterFit` calls it before
        extracting any feature.

        Parameters
        ----------
        n_samples : int
            Rows that ``fit`` will receive (over all processes when distributed).

        Returns
        -------
        n_fit : int
            Rows the centres will be fitted on.
        """
        self._validate_params()
        if self.max_samples is None:
            n_fit = n_samples
        elif isinstance(self.max_samples, Integral):
            n_fit = min(int(self.max_samples), n_samples)
        else:
            # Round up; the rounding to 9 digits first keeps 0.07 * 100 at 7.
            n_fit = min(math.ceil(round(self.max_samples * n_samples, 9)), n_samples)
        if n_fit < self.n_clusters:
            if self.max_samples is None:
                raise ValueError(
                    f"n_clusters={self.n_clusters} must be <= n_samples={n_samples}."
                )
            raise ValueError(
                f"max_samples={self.max_samples!r} keeps {n_fit} of the {n_samples} "
                f"samples, fewer than n_clusters={self.n_clusters}; raise "
                "max_samples or lower n_clusters."
            )
        return n_fit

    def _resolve_algorithm(self, n_fit, device):
        if self.algorithm == "hierarchical":
            if not isinstance(self.init, str):
                raise ValueError(
                    "algorithm='hierarchical' seeds every mesocluster itself; got an "
                    "array as init. Use algorithm='lloyd' to start from given centres."
                )
            return "hierarchical"
        if self.algorithm == "lloyd":
            return "lloyd"
        large = (
            self.n_clusters >= _HIERARCHICAL_MIN_CLUSTERS and n_fit >= _HIERARCHICAL_MIN_ROWS
        )
        if large and isinstance(self.init, str) and device.type == "cpu":
            return "hierarchical"
        return "lloyd"

    def _resolve_engine(self, device, algorithm="lloyd"):
        if algorithm == "hierarchical" and self.assign == "auto" and device.type == "cpu":
            # The refinement starts from good centres: the walk pays there
            # below K = 4096 too, and at very large K the mesoclusters'
            # inverted file replaces the centroid graph.
            return "groups" if self.n_clusters >= _GROUPS_MIN_CLUSTERS else "graph"
        use_graph = self.assign == "ann" or (
            self.assign == "auto"
            and device.type == "cpu"
            and self.n_clusters >= _ANN_MIN_CLUSTERS
        )
        if use_graph:
            return "graph"
        if self.backend == "torch" or (self.backend == "auto" and device.type != "cpu"):
            return "torch"
        if self.backend == "yinyang" and device.type != "cpu":
            raise ValueError(
                f"backend='yinyang' runs on the CPU only; got device={self.device!r}."
            )
        return "yinyang"

    # -- data ------------------------------------------------------------------

    def _validate_rows(self, X, reset):
        """Validated X; a memory map is checked without being copied."""
        if isinstance(X, np.memmap):
            validate_data(self, X, reset=reset, skip_check_array=True)
            if X.ndim != 2 or X.dtype.kind != "f":
                raise ValueError(
                    f"a memory-mapped X must be a 2-D float array; got shape "
                    f"{X.shape} and dtype {X.dtype}."
                )
            return X
        return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])

    def _prepare(self, X, shift=None, out=None, check_finite=True):
        """Whitened and/or L2-normalised rows minus ``shift``: float32, C-contiguous.

        Written into ``out`` when given (a new array otherwise). Without
        whitening or normalisation the copy and the centring are one pass
        (streamed rows are prepared again at every pass of an engine).
        """
        if self.whitener_ is not None:
            prepared = self.whitener_._transform_rows(X)  # normalised if asked
        elif self.normalize:
            prepared = np.array(X, dtype=np.float32, order="C", copy=True)
            l2_normalize_rows(prepared, out=prepared)
        else:
            prepared = X
        if out is None and prepared is not X and shift is None:
            out = prepared
        elif out is None:
            out = np.empty(prepared.shape, dtype=np.float32)
        if shift is not None:
            np.subtract(prepared, shift, out=out, casting="same_kind")
        elif out is not prepared:
            np.copyto(out, prepared, casting="same_kind")
        if check_finite and not np.isfinite(out).all():
            raise ValueError("Input X contains NaN or infinity.")
        return out

    def _rows(self, X, shift, checked=True):
        """Rows for an engine: a prepared copy in memory, or streamed by blocks.

        ``checked``: whether ``X`` passed ``validate_data``'s finiteness check
        (a sample of a memory map, in memory, did not).
        """
        n_features = X.shape[1] if self.whitener_ is None else self.whitener_.whitening_.shape[1]
        if isinstance(X, np.memmap) or 4 * X.shape[0] * n_features > _COPY_LIMIT_BYTES:
            # validate_data checked an in-memory X; a memory map is checked here.
            prepare = functools.partial(self._prepare, check_finite=isinstance(X, np.memmap))
            return StreamRows(X, prepare, n_features, shift=shift)
        # Whitening or L2 normalisation of finite rows is finite: rows that
        # validate_data checked are not checked again (a full pass, with a
        # boolean array as large as X).
        return ArrayRows(self._prepare(X, shift, check_finite=not checked))

    def _fit_whitener(self, X, whiten_dim, comm):
        if whiten_dim is None:
            return None
        if whiten_dim > X.shape[1]:
            raise ValueError(
                f"whiten_dim={whiten_dim} must be <= n_features={X.shape[1]}."
            )
        mean, covariance, n_rows = mean_and_covariance(X, comm.all_reduce)
        if n_rows < 2:
            raise ValueError(f"whiten_dim needs at least 2 samples; got {n_rows}.")
        whitener = PCAWhitening(whiten_dim, normalize=self.normalize)
        return whitener._fit_moments(mean, covariance, whiten_dim)

    # -- seeding ---------------------------------------------------------------

    def _initial_centers(self, rows, shift, rng, comm, engine):
        """Initial (centred) centres, the same on every process.

        k-means++ is greedy (2 + log K candidates per centre) for the exact
        engines; for the graph walk (K in the thousands) it takes one
        candidate per centre: the greedy trials would cost more than the whole
        approximate fit (benchmarks/README.md).
        """
        n_features = rows.n_features
        if not isinstance(self.init, str):
            init = np.asarray(self.init, dtype=np.float32)
            if init.shape != (self.n_clusters, n_features):
                raise ValueError(
                    f"init has shape {init.shape}; expected (n_clusters, n_features) "
                    f"= ({self.n_clusters}, {n_features})."
                )
            return np.ascontiguousarray(init - shift)
        if self.init_size is not None:
            if self.init_size < self.n_clusters:
                raise ValueError(
                    f"init_size={self.init_size} must be >= n_clusters={self.n_clusters}."
                )
            size = self.init_size
        else:
            size = max(_INIT_ROWS_PER_CLUSTER * self.n_clusters, _INIT_MIN_ROWS)
        # Global row numbers: the sample (and so the centres) does not depend
        # on how the rows are sharded.
        sample, seed = global_sample(rows, size, rng, comm)
        centers = np.empty((self.n_clusters, n_features), dtype=np.float32)
        if comm.rank == 0:
            seeding_rng = np.random.RandomState(seed)
            if self.init == "random":
                centers = random_rows(sample, self.n_clusters, seeding_rng)
            else:
                trials = 1 if engine == "graph" else None
                centers = kmeans_plusplus(sample, self.n_clusters, seeding_rng, n_trials=trials)
        return comm.broadcast(centers)

    def _random_state(self, comm):
        rng = check_random_state(self.random_state)
        if comm.world_size > 1 and self.random_state is None:
            # Every process must draw the same samples: rank 0's seed for all.
            seed = comm.broadcast(np.array([rng.randint(2**31 - 1)], dtype=np.int64))
            rng = np.random.RandomState(int(seed[0]))
        return rng

    # -- fit / predict ---------------------------------------------------------

    def fit(self, X, y=None):
        """Cluster ``X`` (this process's rows when distributed).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features to cluster; a :class:`numpy.memmap` is streamed.
        y : None
            Ignored.

        Returns
        -------
        self : KMeans
        """
        self._validate_params()
        whiten_dim = self._whiten_dim()
        X = self._validate_rows(X, reset=True)
        comm = resolve_comm(self.distributed)
        n_local = X.shape[0]
        n_total, offset = shard_layout(comm, n_local)
        n_fit = self._check_fit_size(n_total)
        device = resolve_device(self.device)
        algorithm = self._resolve_algorithm(n_fit, device)
        max_iter = self._max_iter(algorithm)
        engine = self._resolve_engine(device, algorithm)
        if max_iter == 0:
            if algorithm != "hierarchical":
                raise ValueError(
                    "max_iter=0 (the hierarchical stages without a global iteration) "
                    f"needs the hierarchical algorithm; algorithm={self.algorithm!r} runs "
                    f"flat Lloyd here ({n_fit} rows, n_clusters={self.n_clusters}). Pass "
                    "algorithm='hierarchical', or max_iter >= 1."
                )
            engine = "groups"  # each row's search among its mesocluster's centres
        rng = self._random_state(comm)
        sampled = n_fit < n_total
        fit_rows = X
        if sampled:
            index = np.sort(rng.choice(n_total, n_fit, replace=False))
            local = index[(index >= offset) & (index < offset + n_local)] - offset
            fit_rows = X[local]  # the sample only, in memory
        self.whitener_ = self._fit_whitener(fit_rows, whiten_dim, comm)
        rows = self._rows(fit_rows, shift=None, checked=not isinstance(X, np.memmap))
        # Centre the data (scikit-learn does too): distances computed as
        # |x|^2 - 2 x.c + |c|^2 lose the digits of a large common offset.
        _, mean, variance = feature_moments(rows, comm)
        shift = mean.astype(np.float32)
        if isinstance(rows, ArrayRows):
            rows.array -= shift
        else:
            rows.shift = shift
        tolerance = self.tol * variance
        # Handed to the engine, not kept here (``pop`` below): the graph engine
        # lets the initial centres go after its first M-step, a K x d array
        # (131 MB at 16,000 x 2048) less at the peak of a large fit.
        if algorithm == "hierarchical":
            initial = [None]  # the engine seeds every mesocluster
        else:
            initial = [self._initial_centers(rows, shift, rng, comm, engine)]
        seed = int(rng.randint(2**31 - 1))
        log("KMeans", f"{algorithm}, {engine} engine, {n_total} rows, K={self.n_clusters}",
            self.verbose)
        if algorithm == "hierarchical":
            result = _hierarchical.lloyd_hierarchical(
                rows, initial.pop(), max_iter=max_iter, tol=tolerance, verbose=self.verbose,
                comm=comm, n_clusters=self.n_clusters, seed=seed, refine=engine,
                n_neighbors=self.n_neighbors, chunk_size=self.chunk_size, device=device,
            )
        elif engine == "yinyang":
            result = _exact_cpu.lloyd_exact_cpu(
                rows, initial.pop(), max_iter=max_iter, tol=tolerance, verbose=self.verbose,
                comm=comm, seed=seed,
            )
        elif engine == "graph":
            result = _ann.lloyd_graph(
                rows, initial.pop(), max_iter=max_iter, tol=tolerance, verbose=self.verbose,
                comm=comm, n_neighbors=self.n_neighbors, seed=seed, chunk_size=self.chunk_size,
            )
        else:
            result = _exact_torch.lloyd_torch(
                rows, initial.pop(), max_iter=max_iter, tol=tolerance, verbose=self.verbose,
                comm=comm, device=device, chunk_size=self.chunk_size,
                iteration_dtype=_exact_torch.iteration_dtype_for(device),
            )
        self.algorithm_ = algorithm
        self.engine_ = engine
        self._center_shift = shift
        self.cluster_centers_ = np.ascontiguousarray(result.centers + shift, dtype=np.float32)
        self.centroid_graph_ = result.graph if engine == "graph" else None
        self.n_iter_ = result.n_iter
        self.n_empty_splits_ = result.n_empty
        if sampled:
            del rows  # the sample's prepared copy, before every row is assigned
            self.labels_, inertia = self._assign(X, device, return_inertia=True)
            self.inertia_ = float(comm.all_reduce(np.array([inertia]))[0])
        else:
            labels = np.asarray(result.labels, dtype=np.int64)
            if fill_empty_clusters(rows, result.centers, labels, comm):
                self.cluster_centers_ = np.ascontiguousarray(result.centers + shift)
                if engine == "graph":  # predict walks the graph of the moved centres
                    self.centroid_graph_ = centroid_graph(result.centers, self.n_neighbors)
                result = result._replace(
                    inertia=total_inertia(rows, result.centers, labels, comm)
                )
            self.labels_ = labels
            self.inertia_ = result.inertia
        log("KMeans", f"{self.n_iter_} iterations, inertia {self.inertia_:.6g}", self.verbose)
        return self

    def _assign(self, X, device, return_inertia=False):
        """Labels (int64) of raw rows ``X`` with the fitted engine, a block at a time."""
        centers = np.ascontiguousarray(self.cluster_centers_ - self._center_shift)
        rows = self._rows(X, shift=self._center_shift)
        labels = np.empty(rows.n_rows, dtype=np.int64)
        inertia = 0.0
        chunk = _exact_torch.auto_chunk_size(self.n_clusters, self.chunk_size, device)
        if self.engine_ not in ("graph", "yinyang"):
            centers_on_device = _exact_torch.to_device(centers, device)  # once, not per block
        if self.engine_ == "graph":
            # Where the walk starts; a fixed seed, so predict is deterministic.
            # Built once: grouping K centroids costs as much as many blocks' walks.
            entry = _ann.CentroidGroups(centers, seed=0)
        blocks = rows.blocks(65536) if isinstance(rows, ArrayRows) else rows.blocks()
        for start, block in blocks:
            rows_slice = slice(start, start + block.shape[0])
            if self.engine_ == "graph":
                block_labels = entry.nearest(block, centers, self.chunk_size)
                _ann.graph_assign(block, centers, self.centroid_graph_, block_labels)
            elif self.engine_ in ("yinyang", "groups"):
                block_labels = _exact_cpu.nearest_centers(block, centers)
            else:
                block_labels = _exact_torch.assign(
                    torch.from_numpy(block).to(device), centers_on_device,
                    chunk, _exact_torch.exact_dtype(device),
                ).cpu().numpy()
            labels[rows_slice] = block_labels
            if return_inertia:
                inertia += float(
                    squared_distances(block, centers, block_labels).sum(dtype=np.float64)
                )
        return (labels, inertia) if return_inertia else labels

    def predict(self, X):
        """Index of the nearest centre for each sample (approximate with "ann").

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to label; a :class:`numpy.memmap` is streamed.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate_rows(X, reset=False)
        return self._assign(X, resolve_device(self.device))

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
