"""ClusterFit: teacher features -> clustering -> student trained on the clusters."""

import os
import time
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.frozen import FrozenEstimator
from sklearn.utils import get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import column_or_1d
from torch import nn

from . import _stages
from ._base import NetworkFeaturesMixin
from ._components import push_settings
from .runtime._estimators import final_step, unfrozen
from .runtime._out_of_core import FeatureStorage, parse_bytes
from .runtime._progress import log
from ._teachers import TeacherStudentMixin, teacher_from
from .runtime._torch_utils import draw_seed
from .storage._checkpoint import CLUSTERS, StageStore, features_stage
from .runtime._distributed import process_group
from .storage._fingerprint import data_fingerprint, estimator_fingerprint, parameter_fingerprint
from ._multi_teacher import ConcatTeachers
from .storage._persistence import PersistenceMixin
from ._training import NetClassifier

# Parameter names through which scikit-learn clusterers take the cluster count.
_K_PARAMETERS = ("n_clusters", "n_components")
# scikit-learn's type_of_target warns when a label vector has more distinct values
# than half its length; pseudo-labels with K close to n_samples are still classes.
_MANY_CLASSES_WARNING = "The number of unique classes is greater than 50%"


class ClusterFit(
    TeacherStudentMixin,
    PersistenceMixin,
    NetworkFeaturesMixin,
    TransformerMixin,
    BaseEstimator,
):
    """ClusterFit (Yan et al., CVPR 2020) as a scikit-learn transformer.

    ``fit`` extracts the teacher's features for ``X``, clusters them into
    ``K`` groups, and trains a student network from scratch with the cluster
    ids as labels. ``transform`` returns the student's penultimate features,
    which transfer better than the teacher's when the teacher was trained on
    a noisy or proxy objective.

    Read more in the :ref:`user guide <what_is_clusterfit>`; the gallery
    examples using ClusterFit are listed at the end of its reference page.

    Parameters
    ----------
    teacher : FeatureExtractor, str, nn.Module, FrozenEstimator or list, default="resnet50"
        The pre-trained network N_pre; ClusterFit never trains it. A
        :class:`FeatureExtractor`; a model name or an ``nn.Module``, which
        means ``FeatureExtractor(teacher)`` (a torchvision name gets its
        default pretrained weights, a module keeps its own, a built-in name
        such as ``"mlp"`` is random: ClusterFit warns about a random
        teacher); or any fitted transformer wrapped in
        ``sklearn.frozen.FrozenEstimator`` (e.g. a :class:`NetClassifier`
        trained on labels, a :class:`~skclusterfit.pretext.RotNet`). A list
        of teachers (the paper's multi-task ClusterFit) means
        ``ConcatTeachers(teacher)``: their features, each L2-normalised, are
        concatenated before clustering; ``student=None`` then takes the
        first teacher's architecture.
    K : int or "auto", default="auto"
        Number of clusters, i.e. of pseudo-labels. "auto": ten times the
        teacher's number of classes when the teacher is a classifier (has
        ``classes_``, e.g. a frozen :class:`NetClassifier`), the paper's "an
        order of magnitude more than the pre-training label count" and the
        best single choice of ``benchmarks/noisy_teacher_study.py``;
        otherwise the paper's 16,000 for large data, at most one cluster per
        20 samples. Never more than ``n_samples``.
    clusterer : "kmeans" or estimator, default="kmeans"
        "kmeans" is :class:`skclusterfit.cluster.KMeans` (L2-normalised
        features). Any estimator with ``fit_predict`` or ``labels_`` works
        (scikit-learn's KMeans, MiniBatchKMeans, GaussianMixture, a Pipeline
        ending in one); ``K`` is set on a clone as ``n_clusters`` or
        ``n_components``. A clusterer that requires labels (tagged
        ``target_tags.required``, e.g. the paper's baselines
        :class:`~skclusterfit.cluster.PrototypeClusterer`, which takes no
        ``K``, and :class:`~skclusterfit.cluster.PerLabelKMeans`) gets the
        ``y`` of ``fit(X, y)``.
    student : NetClassifier, str, nn.Module or None, default=None
        The network N_cf trained on the pseudo-labels. None: the teacher's
        architecture with fresh weights (for a frozen NetClassifier teacher,
        its training settings too). A str or module is wrapped in a
        :class:`NetClassifier` with default settings. A student whose
        ``preprocess`` is "auto" (the default) takes the teacher's input
        preprocessing. Nested parameters work with every default, e.g.
        ``set_params(student__max_epochs=90, clusterer__max_samples=0.5)``:
        they are kept (``get_params(deep=True)`` lists them) and applied to
        the component ``fit`` builds, from the parameters of that moment.
    memory : str, joblib.Memory or None, default=None
        Caches the teacher features, so that a grid search over ``K`` extracts
        them once per fold.
    device : str, default="auto"
        Unless "auto", pushed onto the teacher (a frozen teacher runs on a
        copy), the clusterer and the student. Like ``random_state``,
        ``verbose`` and ``distributed``, it goes only onto a component that
        left that parameter at its default: a setting given to the component
        itself wins.
    random_state : int, RandomState instance or None, default=None
        Seeds everything ClusterFit builds: the teacher, the clusterer and
        the student (seeds drawn from it, pushed onto their clones unless
        they have their own). With an int, two fits on the CPU give identical
        pseudo-labels and student features.
    checkpoint_dir : str, path or None, default=None
        Directory where each completed stage (teacher features, cluster
        assignment, every student epoch) is saved atomically. Fitting again
        with the same data and parameters resumes from the last completed
        stage or epoch, with the same result as an uninterrupted fit; a
        checkpoint of other data or parameters is refused. One directory
        per fit: in a grid search leave it None (``memory`` shares the teacher
        features). See :mod:`skclusterfit.storage`.
    verbose : int, default=0
        > 0: a line per stage and progress bars over the teacher's samples,
        the clusterer's iterations (``verbose`` is pushed onto it) and the
        student's epochs; > 1: also a line per epoch.
    distributed : "auto" or bool, default="auto"
        Under ``torchrun --nproc_per_node=N`` (or with torch.distributed
        initialised) every stage is spread over the processes: each extracts
        the teacher features of its own contiguous rows of ``X`` (they stay
        there), the clusterer fits on those shards together, and the student
        trains with DistributedDataParallel; afterwards every process holds
        the same fitted ClusterFit, and only process 0 writes
        ``checkpoint_dir`` and ``save`` files. Every process passes the same
        ``X``. "auto": distributed when launched so, one process otherwise
        (the process group is initialised from torchrun's environment: NCCL
        on CUDA, gloo on the CPU); False: one process whatever the
        environment; True: an error unless launched so. Read more in
        :ref:`scaling`.
    feature_budget : int or str, default="2GB"
        Bytes of teacher features a process holds in memory (an int, or a
        size such as "512MB" or "16GiB"). Above it the features are written
        to a disk memory map (in ``checkpoint_dir``, else a temporary folder
        removed after clustering) and the clusterer streams over it.
    feature_dtype : {"float32", "float16"}, default="float32"
        The dtype the teacher features are kept in, in memory or on disk.
        "float16" halves their memory, disk and I/O (k-means computes in
        float32 either way).
    n_rounds : int, default=1
        Rounds of ClusterFit: the student of round ``r`` is the (frozen)
        teacher of round ``r + 1``, whose clusters train a new student from
        scratch, as DeepCluster iterates (the paper runs one round). Each
        round has the same clusterer and student settings; with
        ``checkpoint_dir`` round ``r > 1`` keeps its stages in the
        subdirectory ``round<r>``.
    curation : estimator or None, default=None
        Selects the rows the student trains on, from the teacher's features:
        fitted (a clone, seeded) on them, it sets ``sample_indices_``, and
        each student epoch draws its rows from those (repeats count twice).
        E.g. :class:`~skclusterfit.cluster.HierarchicalCuration` (Vo et al.,
        2024), which keeps rare concepts and thins frequent ones. The
        clusters are still those of every row. One process only. Read more
        in :ref:`curation`.
    persistent_ids : bool or array-like, default=False
        Renumber the clusters so that their ids persist
        (:func:`~skclusterfit.cluster.match_cluster_ids`, Hungarian
        matching). True matches the first round's clusters to the centres of
        this estimator's previous fit when there is one (a refit, e.g. on
        more data); an array of shape (n_clusters, n_features) to those
        centres (e.g. another fit's ``cluster_centers_``); an int array of
        shape (n_samples,) to those previous cluster ids of the rows of
        ``X`` (-1: a row without one), by the rows the clusters share.
        Either way each later round's clusters are matched to the round
        before by the rows they share. The student learns the renumbered
        ids.

    Attributes
    ----------
    teacher_ : estimator
        The fitted teacher (a clone, or the FrozenEstimator given).
    clusterer_ : estimator
        The fitted clusterer.
    student_ : NetClassifier
        The student trained on the pseudo-labels.
    K_ : int
        The number of clusters used (``K``, or what "auto" stood for).
    labels_ : ndarray of shape (n_samples,)
        Pseudo-label (cluster id) of each training sample.
    cluster_centers_ : ndarray of shape (n_clusters, n_teacher_features)
        Cluster centres from the clusterer (``cluster_centers_`` or
        ``means_``), else the mean teacher feature of each cluster.
    input_shape_ : tuple
        Shape of one sample seen in fit.
    n_features_in_ : int
        ``X.shape[1]`` seen in fit (array input).
    n_features_out_ : int
        Dimension of the student features.
    stage_seconds_ : dict of str to float
        Wall-clock seconds of this fit's stages ("teacher features",
        "clustering", "student"); a stage restored from ``checkpoint_dir``
        counts the time to read it. Summed over rounds; in a distributed
        fit, the slowest process's (the same on every process).
    rounds_ : list of dict
        One entry per round: ``"labels"``, its pseudo-labels, ``"centers"``,
        its cluster centres, and ``"student"``, its student (the last one is
        ``student_``, and ``labels_``, ``cluster_centers_`` and
        ``clusterer_`` are the last round's).
    curation_ : estimator
        The fitted ``curation`` (the last round's), when one is given.
    cluster_id_map_ : ndarray of shape (n_clusters,)
        With ``persistent_ids``: the clusterer's cluster ``i`` is ClusterFit's
        cluster ``cluster_id_map_[i]`` (``clusterer_`` keeps its own ids).

    See Also
    --------
    FeatureExtractor : a frozen teacher (and the N_pre baseline).
    NetClassifier : the training loop of the student.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
    >>> X = load_digits().data.astype("float32")
    >>> cf = ClusterFit(
    ...     teacher=FeatureExtractor("mlp", random_state=0),
    ...     K=20,
    ...     student=NetClassifier(max_epochs=2),
    ...     random_state=0,
    ... ).fit(X)
    >>> cf.transform(X).shape
    (1797, 128)
    >>> len(set(cf.labels_))
    20
    """

    _parameter_constraints = {
        "teacher": [str, nn.Module, HasMethods(["transform"]), list, tuple],
        "K": [Interval(Integral, 2, None, closed="left"), StrOptions({"auto"})],
        "clusterer": [StrOptions({"kmeans"}), HasMethods(["fit"])],
        "student": [NetClassifier, str, nn.Module, callable, None],
        "memory": [None, str, HasMethods(["cache"])],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "checkpoint_dir": [None, str, os.PathLike],
        "verbose": ["verbose"],
        "distributed": [StrOptions({"auto"}), "boolean"],
        "feature_budget": [Interval(Integral, 0, None, closed="left"), str],
        "feature_dtype": [StrOptions({"float32", "float16"})],
        "n_rounds": [Interval(Integral, 1, None, closed="left")],
        "curation": [HasMethods(["fit"]), None],
        "persistent_ids": ["boolean", "array-like"],
    }
    _component_parameters = ("teacher", "clusterer", "student")

    def __init__(
        self,
        teacher="resnet50",
        K="auto",
        *,
        clusterer="kmeans",
        student=None,
        memory=None,
        device="auto",
        random_state=None,
        checkpoint_dir=None,
        verbose=0,
        distributed="auto",
        feature_budget="2GB",
        feature_dtype="float32",
        n_rounds=1,
        curation=None,
        persistent_ids=False,
    ):
        self.teacher = teacher
        self.K = K
        self.clusterer = clusterer
        self.student = student
        self.memory = memory
        self.device = device
        self.random_state = random_state
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose
        self.distributed = distributed
        self.feature_budget = feature_budget
        self.feature_dtype = feature_dtype
        self.n_rounds = n_rounds
        self.curation = curation
        self.persistent_ids = persistent_ids

    def _log(self, message):
        log("ClusterFit", message, self.verbose)

    # -- what the specifications stand for (skclusterfit._components) --
    def _default_component(self, name):
        if name == "teacher":
            return teacher_from(self._teacher_spec())
        if name == "clusterer":
            from .cluster import KMeans  # imported on use: numba kernels

            return KMeans()
        return self._default_student()

    def _teacher_spec(self):
        """The teacher parameter, a list of teachers made one ConcatTeachers."""
        if isinstance(self.teacher, (list, tuple)):
            return ConcatTeachers(list(self.teacher))
        return self.teacher

    def fit(self, X, y=None):
        """Extract teacher features, cluster them, train the student on the clusters.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Images (n, C, H, W), (n, H, W, C), (n, H, W) or vectors (n, d).
            No labels are needed.
        y : array-like of shape (n_samples,) or None, default=None
            Labels, used only by a clusterer that requires them (scikit-learn's
            ``target_tags.required`` tag, e.g.
            :class:`~skclusterfit.cluster.PrototypeClusterer` and
            :class:`~skclusterfit.cluster.PerLabelKMeans`, the paper's
            baselines that use labels); ignored otherwise.

        Returns
        -------
        self : ClusterFit
        """
        X, rng = self._start_fit(X)
        budget = parse_bytes(self.feature_budget)
        n_samples = len(X)
        _stages.check_memory_location(self.memory)
        # One process, or this one among torchrun's: every stage below is
        # written for both (a group of one gathers nothing).
        group = process_group(self.distributed, self.device)
        if group.is_distributed:
            self._log(f"process {group.rank} of {group.world_size}")
        clusterer_seed, student_seed, teacher_seed = (draw_seed(rng) for _ in range(3))
        self.K_ = self._resolve_K(n_samples)
        clusterer = self._make_clusterer(clusterer_seed, group)
        if _k_parameter(clusterer) is not None and self.K_ > n_samples:
            raise ValueError(
                f"K={self.K} clusters need at least as many samples, but "
                f"n_samples={n_samples}."
            )
        y = self._clusterer_labels(clusterer, y, n_samples)
        # The clusterer's own rule on how many rows it needs (e.g. max_samples),
        # checked before hours of feature extraction rather than after.
        check_fit_size = getattr(final_step(clusterer), "_check_fit_size", None)
        if check_fit_size is not None:
            check_fit_size(n_samples)
        if self.curation is not None and group.is_distributed:
            raise ValueError(
                f"curation={self.curation!r} needs every row's teacher features in one "
                "process; use ClusterFit(distributed=False) or no curation."
            )
        reference = self._id_reference()  # the previous fit's, before it is overwritten
        self.teacher_ = self._fit_teacher(self._component("teacher"), X, teacher_seed)
        self.rounds_ = []
        self.stage_seconds_ = dict.fromkeys(("teacher features", "clustering", "student"), 0.0)
        teacher = self.teacher_
        for round_index in range(self.n_rounds):
            if round_index:  # DeepCluster's iteration: the last student teaches
                teacher = FrozenEstimator(self.student_)
                clusterer_seed, student_seed = draw_seed(rng), draw_seed(rng)
                clusterer = self._make_clusterer(clusterer_seed, group)
                self._log(f"round {round_index + 1} of {self.n_rounds}")
            # Drawn only when used: fits without curation keep their seeds.
            curation_seed = None if self.curation is None else draw_seed(rng)
            store = self._open_store(X, y, teacher, group, round_index)
            self._fit_round(X, y, teacher, clusterer, student_seed, store, group, budget,
                            reference, curation_seed)
            reference = ("labels", self.labels_)
            self.rounds_.append({"labels": self.labels_, "centers": self.cluster_centers_,
                                 "student": self.student_})
        self.n_features_out_ = self.student_.n_features_out_
        self.stage_seconds_ = _stages.slowest(self.stage_seconds_, group)
        return self

    def _fit_round(self, X, y, teacher, clusterer, student_seed, store, group, budget,
                   reference=None, curation_seed=None):
        """The three stages: teacher features, clusters, a student on them."""
        stage = features_stage(group.rank, group.world_size, budget)
        storage = FeatureStorage(budget, self.feature_dtype, store.directory, stage.filename)
        with storage:  # a temporary disk map of the features lives until clustered
            start = time.perf_counter()
            features = store.stage(stage, lambda: _stages.teacher_features(
                teacher, X, group, storage, memory=self.memory, verbose=self.verbose,
                dtype=self.feature_dtype,
            ))
            seconds = time.perf_counter() - start
            self.stage_seconds_["teacher features"] += seconds
            self._log(
                f"teacher features {features.shape} in {seconds:.1f}s"
                + (" (on disk)" if isinstance(features, np.memmap) else "")
            )

            start = time.perf_counter()
            self.labels_, self.cluster_centers_, self.clusterer_ = store.stage(
                CLUSTERS, lambda: _stages.clusters(clusterer, features, group, y)
            )
            seconds = time.perf_counter() - start
            self.stage_seconds_["clustering"] += seconds
            if not (isinstance(self.persistent_ids, (bool, np.bool_))
                    and not self.persistent_ids):
                self.labels_, self.cluster_centers_, self.cluster_id_map_ = (
                    _stages.persist_ids(self.labels_, self.cluster_centers_, reference))
            fit_params = {}
            if self.curation is not None:
                self.curation_, fit_params["sample_weight"], spent = _stages.curate(
                    self.curation, features,
                    curation_seed if self.random_state is not None else None)
                self.stage_seconds_["curation"] = self.stage_seconds_.get("curation", 0) + spent
                self._log(f"curation kept {np.count_nonzero(fit_params['sample_weight'])} "
                          f"of {len(features)} rows in {spent:.1f}s")
            features = None  # let go of them before the student trains
        self._log(f"{len(np.unique(self.labels_))} clusters in {seconds:.1f}s")

        start = time.perf_counter()
        self.student_ = self._make_student(student_seed, group)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_MANY_CLASSES_WARNING)
                self.student_.fit(X, self.labels_, checkpoint=store.epochs(), **fit_params)
        except KeyboardInterrupt:
            if self.checkpoint_dir is not None:
                self._log(f"interrupted; fit again to resume from {self.checkpoint_dir!r}")
            raise
        seconds = time.perf_counter() - start
        self.stage_seconds_["student"] += seconds
        self._log(f"student trained in {seconds:.1f}s")

    def _id_reference(self):
        """What the first round's cluster ids are matched to (None: nothing)."""
        if isinstance(self.persistent_ids, (bool, np.bool_)):
            rounds = getattr(self, "rounds_", None) if self.persistent_ids else None
            return ("centers", np.asarray(rounds[0]["centers"])) if rounds else None
        reference = np.asarray(self.persistent_ids)
        if reference.ndim == 1:  # previous ids of the rows
            return ("labels", reference.astype(np.int64))
        return ("centers", reference.astype(np.float64))

    def _open_store(self, X, y, teacher, group, round_index=0):
        """Where a round's stages keep their results: ``checkpoint_dir`` (round
        ``r > 1`` in its subdirectory ``round<r>``), or nowhere."""
        if self.checkpoint_dir is None:
            return StageStore(log=self._log, group=group)
        parameters = parameter_fingerprint(self)
        # A teacher given by name or file: its fitted state, not its name, defines
        # the features (in later rounds, the previous round's student).
        parameters["teacher_"] = estimator_fingerprint(teacher)
        data = data_fingerprint(X)
        if y is not None:  # labels the clusterer uses are data too
            data += "+labels:" + data_fingerprint(np.asarray(y).astype(str))
        fingerprint = {"data": data, "parameters": parameters}
        directory = self.checkpoint_dir
        if round_index:
            directory = os.path.join(directory, f"round{round_index + 1}")
        return StageStore(directory, fingerprint, log=self._log, group=group)

    def _resolve_K(self, n_samples):
        """``K``, or the number of clusters "auto" stands for with this teacher."""
        if self.K != "auto":
            return self.K
        classes = getattr(unfrozen(self._teacher_spec()), "classes_", None)
        if classes is not None:
            return max(2, min(10 * len(classes), n_samples))
        return max(2, min(16000, n_samples // 20, n_samples))

    def _make_clusterer(self, seed, group):
        clusterer = self._component("clusterer")
        k_name = _k_parameter(clusterer)
        if k_name is not None:
            final_step(clusterer).set_params(**{k_name: self.K_})
        elif not _needs_labels(clusterer):
            # A clusterer defined by the labels (one cluster per class) takes no K.
            raise ValueError(
                f"clusterer={self.clusterer!r} has no n_clusters or n_components "
                f"parameter to receive K={self.K_}."
            )
        push_settings(
            clusterer,
            verbose=self.verbose,
            device=None if self.device == "auto" else self.device,
            random_state=self._seed(seed),
            # It fits on this process's rows, together with the others, or alone.
            distributed="auto" if group.is_distributed else False,
        )
        _stages.check_distributable(clusterer, group)
        return clusterer

    def _clusterer_labels(self, clusterer, y, n_samples):
        """``y`` checked, for a clusterer that needs labels; else None (not used)."""
        shape = None if y is None else np.asarray(y).shape
        n_labels = None if shape is None else shape[0] if shape else 1
        if n_labels is not None and n_labels != n_samples:
            # Refused even when unused: labels of other samples are a mistake upstream.
            raise ValueError(f"y has {n_labels} labels but X has {n_samples} samples.")
        if not _needs_labels(clusterer):
            return None
        if y is None:
            raise ValueError(
                f"clusterer={self.clusterer!r} clusters with labels: call fit(X, y) "
                "with the labels of X."
            )
        y = column_or_1d(y, warn=True)
        if len(y) != n_samples:
            raise ValueError(f"y has {len(y)} labels but X has {n_samples} samples.")
        return y


def _k_parameter(clusterer):
    """The name under which the clusterer takes K, or None."""
    params = final_step(clusterer).get_params(deep=False)
    return next((name for name in _K_PARAMETERS if name in params), None)


def _needs_labels(clusterer):
    """Whether the clusterer's fit needs y (scikit-learn's ``target_tags.required``)."""
    return get_tags(final_step(clusterer)).target_tags.required
