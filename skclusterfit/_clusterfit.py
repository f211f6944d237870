"""ClusterFit: teacher features -> clustering -> student trained on the clusters."""

import copy
import os
import time
import warnings
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory
from torch import nn

from . import _stages
from ._base import NetworkFeaturesMixin
from ._estimators import DefaultComponentsMixin, final_step, unfrozen
from ._progress import log
from ._torch_utils import draw_seed, resolve_device
from ._validation import validate_input
from .checkpoint import CLUSTERS, TEACHER_FEATURES, StageStore
from .features import FeatureExtractor
from .fingerprint import data_fingerprint, estimator_fingerprint, parameter_fingerprint
from .persistence import PersistenceMixin
from .training import NetClassifier

# Parameter names through which scikit-learn clusterers take the cluster count.
_K_PARAMETERS = ("n_clusters", "n_components")
# scikit-learn's type_of_target warns when a label vector has more distinct values
# than half its length; pseudo-labels with K close to n_samples are still classes.
_MANY_CLASSES_WARNING = "The number of unique classes is greater than 50%"


def _cached_teacher_features(fingerprint, teacher, X, verbose):
    """Module-level so joblib.Memory can cache it; ``fingerprint`` names the teacher."""
    return _stages.teacher_features(teacher, X, verbose=verbose)


class ClusterFit(
    PersistenceMixin,
    DefaultComponentsMixin,
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
    teacher : FeatureExtractor, str, nn.Module or FrozenEstimator, default="resnet50"
        The pre-trained network N_pre; ClusterFit never trains it. A
        :class:`FeatureExtractor`; a model name or an ``nn.Module``, which
        means ``FeatureExtractor(teacher)`` (a torchvision name gets its
        default pretrained weights, a module keeps its own, a built-in name
        such as ``"mlp"`` is random: ClusterFit warns about a random
        teacher); or any fitted transformer wrapped in
        ``sklearn.frozen.FrozenEstimator`` (e.g. a :class:`NetClassifier`
        trained on labels, a :class:`~skclusterfit.pretext.RotNet`).
    K : int, default=16000
        Number of clusters, i.e. of pseudo-labels. The paper uses an order of
        magnitude more than the pre-training label count.
    clusterer : "kmeans" or estimator, default="kmeans"
        "kmeans" is :class:`skclusterfit.cluster.KMeans` (L2-normalised
        features). Any estimator with ``fit_predict`` or ``labels_`` works
        (scikit-learn's KMeans, MiniBatchKMeans, GaussianMixture, a Pipeline
        ending in one); ``K`` is set on a clone as ``n_clusters`` or
        ``n_components``.
    student : NetClassifier, str, nn.Module or None, default=None
        The network N_cf trained on the pseudo-labels. None: the teacher's
        architecture with fresh weights (for a frozen NetClassifier teacher,
        its training settings too). A str or module is wrapped in a
        :class:`NetClassifier` with default settings. A student whose
        ``preprocess`` is "auto" (the default) takes the teacher's input
        preprocessing. Nested parameters work with every default, e.g.
        ``set_params(student__max_epochs=90, clusterer__max_samples=0.5)``:
        the default component is built first, then changed.
    memory : str, joblib.Memory or None, default=None
        Caches the teacher features, so that a grid search over ``K`` extracts
        them once per fold.
    device : str, default="auto"
        Unless "auto", pushed onto the teacher (a frozen teacher runs on a
        copy), the clusterer and the student.
    random_state : int, RandomState instance or None, default=None
        Seeds everything ClusterFit builds: a teacher built from a name or
        module, the clusterer and the student (seeds pushed onto their
        clones). With an int, two fits on the CPU give identical
        pseudo-labels and student features.
    checkpoint_dir : str, path or None, default=None
        Directory where each completed stage (teacher features, cluster
        assignment, every student epoch) is saved atomically. Fitting again
        with the same data and parameters resumes from the last completed
        stage or epoch, with the same result as an uninterrupted fit; a
        checkpoint of other data or parameters is refused. One directory
        per fit: in a grid search leave it None (``memory`` shares the teacher
        features). See :mod:`skclusterfit.checkpoint`.
    verbose : int, default=0
        > 0: a line per stage and progress bars over the teacher's samples,
        the clusterer's iterations (``verbose`` is pushed onto it) and the
        student's epochs; > 1: also a line per epoch.

    Attributes
    ----------
    teacher_ : estimator
        The fitted teacher (a clone, or the FrozenEstimator given).
    clusterer_ : estimator
        The fitted clusterer.
    student_ : NetClassifier
        The student trained on the pseudo-labels.
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
        counts the time to read it.

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
        "teacher": [str, nn.Module, HasMethods(["transform"])],
        "K": [Interval(Integral, 2, None, closed="left")],
        "clusterer": [StrOptions({"kmeans"}), HasMethods(["fit"])],
        "student": [NetClassifier, str, nn.Module, callable, None],
        "memory": [None, str, HasMethods(["cache"])],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "checkpoint_dir": [None, str, os.PathLike],
        "verbose": ["verbose"],
    }
    _component_parameters = ("teacher", "clusterer", "student")

    def __init__(
        self,
        teacher="resnet50",
        K=16000,
        *,
        clusterer="kmeans",
        student=None,
        memory=None,
        device="auto",
        random_state=None,
        checkpoint_dir=None,
        verbose=0,
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

    def _log(self, message):
        log("ClusterFit", message, self.verbose)

    # -- the default components (one rule for fit and for nested set_params) --
    def _default_component(self, name):
        if name == "teacher":
            return _teacher_from(self.teacher)
        if name == "clusterer":
            from .cluster import KMeans  # imported on use: numba kernels

            return KMeans()
        return _student_from(self.student, self.teacher)

    def fit(self, X, y=None):
        """Extract teacher features, cluster them, train the student on the clusters.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Images (n, C, H, W), (n, H, W, C), (n, H, W) or vectors (n, d).
            No labels are needed.
        y : None
            Ignored.

        Returns
        -------
        self : ClusterFit
        """
        self._validate_params()
        X = validate_input(self, X, reset=True)
        n_samples = len(X)
        if self.K > n_samples:
            raise ValueError(
                f"K={self.K} clusters need at least as many samples, but "
                f"n_samples={n_samples}."
            )
        if self.device != "auto":
            resolve_device(self.device)
        rng = check_random_state(self.random_state)
        clusterer_seed, student_seed, teacher_seed = (draw_seed(rng) for _ in range(3))
        clusterer = self._make_clusterer(clusterer_seed)
        # The clusterer's own rule on how many rows it needs (e.g. max_samples),
        # checked before hours of feature extraction rather than after.
        check_fit_size = getattr(final_step(clusterer), "_check_fit_size", None)
        if check_fit_size is not None:
            check_fit_size(n_samples)
        self.teacher_ = self._fit_teacher(X, teacher_seed)
        store = self._open_store(X)

        start = time.perf_counter()
        features = store.stage(TEACHER_FEATURES, lambda: self._teacher_features(X))
        self.stage_seconds_ = {"teacher features": time.perf_counter() - start}
        self._log(
            f"teacher features {features.shape} in "
            f"{self.stage_seconds_['teacher features']:.1f}s"
        )

        start = time.perf_counter()
        self.labels_, self.cluster_centers_, self.clusterer_ = store.stage(
            CLUSTERS, lambda: _cluster(clusterer, features)
        )
        self.stage_seconds_["clustering"] = time.perf_counter() - start
        self._log(
            f"{len(np.unique(self.labels_))} clusters in "
            f"{self.stage_seconds_['clustering']:.1f}s"
        )

        start = time.perf_counter()
        self.student_ = self._make_student(student_seed)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_MANY_CLASSES_WARNING)
                self.student_.fit(X, self.labels_, checkpoint=store.epochs())
        except KeyboardInterrupt:
            if self.checkpoint_dir is not None:
                self._log(f"interrupted; fit again to resume from {self.checkpoint_dir!r}")
            raise
        self.n_features_out_ = self.student_.n_features_out_
        self.stage_seconds_["student"] = time.perf_counter() - start
        self._log(f"student trained in {self.stage_seconds_['student']:.1f}s")
        return self

    def _open_store(self, X):
        """Where the stages keep their results: ``checkpoint_dir``, or nowhere."""
        if self.checkpoint_dir is None:
            return StageStore(log=self._log)
        parameters = parameter_fingerprint(self)
        # A teacher given by name or file: its fitted state, not its name, defines
        # the features.
        parameters["teacher_"] = estimator_fingerprint(self.teacher_)
        fingerprint = {"data": data_fingerprint(X), "parameters": parameters}
        return StageStore(self.checkpoint_dir, fingerprint, log=self._log)

    def _fit_teacher(self, X, seed):
        teacher = self.teacher
        if isinstance(teacher, FrozenEstimator):
            check_is_fitted(teacher)
            return self._frozen_on_device(teacher)
        if isinstance(teacher, (str, nn.Module)):
            teacher = _teacher_from(teacher)
        elif isinstance(teacher, FeatureExtractor):
            teacher = clone(teacher)
        else:
            raise TypeError(
                f"teacher={teacher!r} would have to be trained, and ClusterFit never "
                "trains its teacher: pass a FeatureExtractor, a torchvision model "
                "name, an nn.Module, or a fitted transformer wrapped in "
                "sklearn.frozen.FrozenEstimator."
            )
        updates = {}
        if self.device != "auto":
            updates["device"] = self.device
        if self.random_state is not None:
            updates["random_state"] = seed
        teacher = teacher.set_params(**updates).fit(X)
        if teacher.random_init_:
            warnings.warn(
                f"teacher={self.teacher!r} has randomly initialised weights (a "
                "built-in or callable network without weights=): ClusterFit on the "
                "features of a random network is rarely what you want. Pass a "
                "trained teacher, e.g. FeatureExtractor(model, weights='file.pth') "
                "or FrozenEstimator(fitted_estimator).",
                UserWarning,
                stacklevel=3,
            )
        return teacher

    def _frozen_on_device(self, teacher):
        """The frozen teacher, on a copy set to ``device`` when it must move."""
        inner = teacher.estimator
        if self.device == "auto" or "device" not in inner.get_params(deep=False):
            return teacher
        if inner.get_params(deep=False)["device"] == self.device:
            return teacher
        # A copy: the user's fitted teacher keeps its own device setting.
        return FrozenEstimator(copy.deepcopy(inner).set_params(device=self.device))

    def _teacher_features(self, X):
        memory = check_memory(self.memory)
        extract = memory.cache(_cached_teacher_features, ignore=["teacher", "verbose"])
        fingerprint = estimator_fingerprint(self.teacher_) if self.memory is not None else None
        return extract(fingerprint, self.teacher_, X, self.verbose)

    def _make_clusterer(self, seed):
        if isinstance(self.clusterer, str):
            clusterer = self._default_component("clusterer")
        else:
            clusterer = clone(self.clusterer)
        target = final_step(clusterer)
        params = target.get_params(deep=False)
        k_name = next((name for name in _K_PARAMETERS if name in params), None)
        if k_name is None:
            raise ValueError(
                f"clusterer={self.clusterer!r} has no n_clusters or n_components "
                f"parameter to receive K={self.K}."
            )
        updates = {k_name: self.K}
        if "random_state" in params and self.random_state is not None:
            updates["random_state"] = seed
        if "device" in params and self.device != "auto":
            updates["device"] = self.device
        if "verbose" in params:
            updates["verbose"] = self.verbose
        target.set_params(**updates)
        return clusterer

    def _make_student(self, seed):
        student = _student_from(self.student, self.teacher_)
        updates = {"verbose": self.verbose}
        if self.random_state is not None:
            updates["random_state"] = seed
        if self.device != "auto":
            updates["device"] = self.device
        if student.preprocess == "auto":
            spec = getattr(unfrozen(self.teacher_), "_preprocess_spec", None)
            updates["preprocess"] = spec() if spec is not None else None
        return student.set_params(**updates)

    def transform(self, X):
        """Student penultimate features of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Inputs shaped like those seen in fit.

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        check_is_fitted(self, "student_")
        X = validate_input(self, X, reset=False)
        return self.student_.transform(X)


def _cluster(clusterer, features):
    """The cluster stage's result: ``(labels, centers, fitted clusterer)``."""
    labels = _stages.cluster_labels(clusterer, features)
    return labels, _stages.cluster_centers(clusterer, features, labels), clusterer


def _teacher_from(teacher):
    """The teacher a name or module stands for: ``FeatureExtractor(teacher)``."""
    if isinstance(teacher, (str, nn.Module)):
        return FeatureExtractor(teacher)
    return teacher


def _student_from(student, teacher):
    """The student ``student`` stands for (a new NetClassifier), given ``teacher``."""
    if isinstance(student, NetClassifier):
        return clone(student)
    if student is not None:
        return NetClassifier(model=student)
    # The teacher's architecture, re-initialised (the paper's N_cf): each
    # teacher class says what a student like it is.
    inner = unfrozen(_teacher_from(teacher))
    template = getattr(inner, "_student_template", None)
    if template is None:
        raise ValueError(
            f"student=None copies the teacher's architecture, but teacher="
            f"{teacher!r} does not say what its architecture is (no "
            "_student_template()); pass student= explicitly (a NetClassifier, a "
            "model name or an nn.Module)."
        )
    return template()
