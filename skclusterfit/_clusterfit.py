"""ClusterFit: teacher features -> clustering -> student trained on the clusters."""

import copy
import os
import time
from numbers import Integral, Real

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_memory
from torch import nn

from ._base import NetworkFeaturesMixin
from ._torch_utils import resolve_device
from ._validation import validate_input
from .backbones import reset_parameters
from .checkpoint import (
    FitCheckpoint,
    data_fingerprint,
    fitted_fingerprint,
    parameter_fingerprint,
)
from .cluster import KMeans
from .features import FeatureExtractor
from .persistence import PersistenceMixin
from .training import NetClassifier

# Parameter names through which scikit-learn clusterers take the cluster count.
_K_PARAMETERS = ("n_clusters", "n_components")


def _extract_teacher_features(fingerprint, teacher, X):
    """Module-level so joblib.Memory can cache it; ``fingerprint`` names the teacher."""
    return np.asarray(teacher.transform(X), dtype=np.float32)


def teacher_cache_key(teacher):
    """The feature cache's key for ``teacher``: its class, parameters and fitted state.

    Networks count by their weights, never as pickled objects, so the key is
    stable across fits that build the same network and differs between two
    teachers with equal parameters but other training.
    """
    inner = teacher.estimator if isinstance(teacher, FrozenEstimator) else teacher
    return joblib.hash(
        (type(inner).__qualname__, parameter_fingerprint(inner), fitted_fingerprint(inner))
    )


class ClusterFit(
    PersistenceMixin, NetworkFeaturesMixin, TransformerMixin, BaseEstimator
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
        :class:`FeatureExtractor`; a torchvision model name (built with its
        default pretrained weights, ``weights="DEFAULT"``); an ``nn.Module``
        used with its current weights; or any fitted transformer wrapped in
        ``sklearn.frozen.FrozenEstimator`` (e.g. a :class:`NetClassifier`
        trained on labels).
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
        :class:`NetClassifier` with default settings.
    memory : str, joblib.Memory or None, default=None
        Caches the teacher features, so that a grid search over ``K`` extracts
        them once per fold.
    device : str, default="auto"
        Pushed onto the teacher, clusterer and student clones unless "auto".
    random_state : int, RandomState instance or None, default=None
        Seeds the clusterer and the student (pushed onto their clones). With
        an int, two fits on the CPU give identical pseudo-labels and student
        features.
    checkpoint_dir : str, path or None, default=None
        Directory where each completed stage (teacher features, cluster
        assignment, every student epoch) is saved atomically. Fitting again
        with the same data and parameters resumes from the last completed
        stage or epoch, with the same result as an uninterrupted fit; a
        checkpoint of other data or parameters is refused. One directory
        per fit: in a grid search leave it None (``memory`` shares the teacher
        features). See :mod:`skclusterfit.checkpoint`.
    verbose : int, default=0
        Report each stage (and, > 1, each student epoch).

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
        if self.verbose:
            print(f"[ClusterFit] {message}", flush=True)

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
        clusterer_seed, student_seed = rng.randint(2**31 - 1, size=2)

        start = time.perf_counter()
        self.teacher_ = self._fit_teacher(X)
        checkpoint = self._open_checkpoint(X)
        features = checkpoint.load_features() if checkpoint is not None else None
        if features is None:
            features = self._teacher_features(X)
            if checkpoint is not None:
                checkpoint.save_features(features)
        self.stage_seconds_ = {"teacher features": time.perf_counter() - start}
        self._log(
            f"teacher features {features.shape} in {self.stage_seconds_['teacher features']:.1f}s"
        )

        start = time.perf_counter()
        self.clusterer_ = self._make_clusterer(int(clusterer_seed))
        check_subsample(self.clusterer_, len(features), self.K)
        stored = checkpoint.load_clusters() if checkpoint is not None else None
        if stored is not None:
            self.labels_, self.cluster_centers_, self.clusterer_ = stored
        else:
            self.labels_ = cluster_labels(self.clusterer_, features)
            self.cluster_centers_ = cluster_centers(
                self.clusterer_, features, self.labels_
            )
            if checkpoint is not None:
                checkpoint.save_clusters(self.labels_, self.cluster_centers_, self.clusterer_)
        self.stage_seconds_["clustering"] = time.perf_counter() - start
        self._log(
            f"{len(np.unique(self.labels_))} clusters in "
            f"{self.stage_seconds_['clustering']:.1f}s"
        )

        start = time.perf_counter()
        self.student_ = self._make_student(int(student_seed))
        # Only with a checkpoint: a student class of the user's may not take the argument.
        fit_params = {} if checkpoint is None else {"checkpoint": checkpoint.student()}
        try:
            self.student_.fit(X, self.labels_, **fit_params)
        except KeyboardInterrupt:
            if checkpoint is not None:
                self._log(
                    f"interrupted; fit again to resume from {self.checkpoint_dir!r}"
                )
            raise
        self.n_features_out_ = self.student_.n_features_out_
        self.stage_seconds_["student"] = time.perf_counter() - start
        self._log(f"student trained in {self.stage_seconds_['student']:.1f}s")
        return self

    def _open_checkpoint(self, X):
        """The :class:`FitCheckpoint` of this fit, or None without checkpoint_dir."""
        if self.checkpoint_dir is None:
            return None
        parameters = parameter_fingerprint(self)
        # A teacher given by name or file: its weights, not its name, define the features.
        parameters["teacher_ weights"] = fitted_fingerprint(self.teacher_)
        fingerprint = {"data": data_fingerprint(X), "parameters": parameters}
        return FitCheckpoint(self.checkpoint_dir, fingerprint, log=self._log)

    def _fit_teacher(self, X):
        teacher = self.teacher
        if isinstance(teacher, FrozenEstimator):
            check_is_fitted(teacher)
            return teacher
        if isinstance(teacher, FeatureExtractor):
            teacher = clone(teacher)
        elif isinstance(teacher, (str, nn.Module)):
            weights = "DEFAULT" if isinstance(teacher, str) else None
            teacher = FeatureExtractor(teacher, weights=weights)
        else:
            raise TypeError(
                f"teacher={teacher!r} would have to be trained, and ClusterFit never "
                "trains its teacher: pass a FeatureExtractor, a torchvision model "
                "name, an nn.Module, or a fitted transformer wrapped in "
                "sklearn.frozen.FrozenEstimator."
            )
        if self.device != "auto":
            teacher.set_params(device=self.device)
        return teacher.fit(X)

    def _teacher_features(self, X):
        memory = check_memory(self.memory)
        extract = memory.cache(_extract_teacher_features, ignore=["teacher"])
        fingerprint = teacher_cache_key(self.teacher_) if self.memory is not None else None
        features = extract(fingerprint, self.teacher_, X)
        if features.ndim != 2 or len(features) != len(X):
            raise ValueError(
                f"the teacher returned features of shape {features.shape} for "
                f"{len(X)} samples; it must return (n_samples, n_features)."
            )
        if not np.isfinite(features).all():
            raise ValueError(
                "the teacher produced NaN or inf features; check its weights "
                "and the input scaling before clustering."
            )
        return features

    def _make_clusterer(self, seed):
        if isinstance(self.clusterer, str):
            device = self.device
            return KMeans(n_clusters=self.K, device=device, random_state=seed)
        if not (
            hasattr(self.clusterer, "fit_predict") or hasattr(self.clusterer, "fit")
        ):
            raise TypeError(
                f"clusterer={self.clusterer!r} has neither fit_predict nor fit."
            )
        clusterer = clone(self.clusterer)
        target = clusterer.steps[-1][1] if isinstance(clusterer, Pipeline) else clusterer
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
        target.set_params(**updates)
        return clusterer

    def _make_student(self, seed):
        student = self.student
        if student is None:
            student = self._student_like_teacher()
        elif isinstance(student, NetClassifier):
            student = clone(student)
        else:
            student = NetClassifier(model=student)
        updates = {}
        if self.random_state is not None:
            updates["random_state"] = seed
        if self.device != "auto":
            updates["device"] = self.device
        if self.verbose > 1:
            updates["verbose"] = self.verbose - 1
        return student.set_params(**updates)

    def _student_like_teacher(self):
        """The teacher's architecture, re-initialised (the paper's N_cf)."""
        teacher = self.teacher_
        if isinstance(teacher, FrozenEstimator):
            teacher = teacher.estimator
        if isinstance(teacher, NetClassifier):
            return clone(teacher)
        model = teacher.get_params().get("model") if hasattr(teacher, "get_params") else None
        if model is None:
            raise ValueError(
                f"student=None copies the teacher's architecture, but teacher="
                f"{self.teacher!r} has no 'model'; pass student= explicitly "
                "(a NetClassifier, a model name or an nn.Module)."
            )
        if isinstance(model, nn.Module):
            model = reset_parameters(copy.deepcopy(model))
        return NetClassifier(model=model)

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


def check_subsample(clusterer, n_samples, K):
    """Refuse a clusterer whose ``max_samples`` subsample has fewer than K points."""
    target = clusterer.steps[-1][1] if isinstance(clusterer, Pipeline) else clusterer
    max_samples = getattr(target, "max_samples", None)
    if max_samples is None or isinstance(max_samples, str):
        return
    if isinstance(max_samples, Real) and not isinstance(max_samples, Integral):
        n_used = int(max_samples * n_samples) if max_samples <= 1 else int(max_samples)
    else:
        n_used = int(max_samples)
    n_used = min(n_used, n_samples)
    if n_used < K:
        raise ValueError(
            f"the clusterer's max_samples={max_samples!r} keeps {n_used} of the "
            f"{n_samples} samples, fewer than K={K} clusters; raise max_samples or "
            "lower K."
        )


def cluster_labels(clusterer, features):
    """Fit ``clusterer`` and return its labels as a 1-D integer array."""
    if hasattr(clusterer, "fit_predict"):
        labels = clusterer.fit_predict(features)
    else:
        labels = getattr(clusterer.fit(features), "labels_", None)
        if labels is None:
            raise TypeError(
                f"clusterer={clusterer!r} has no fit_predict and sets no labels_ "
                "after fit; ClusterFit needs one of them."
            )
    labels = np.asarray(labels)
    if labels.shape != (len(features),):
        raise ValueError(
            f"the clusterer returned labels of shape {labels.shape}; expected "
            f"({len(features)},)."
        )
    return labels.astype(np.int64)


def cluster_centers(clusterer, features, labels):
    """The clusterer's centres if it has them, else the mean feature per cluster."""
    if isinstance(clusterer, Pipeline):
        clusterer = clusterer.steps[-1][1]
    for name in ("cluster_centers_", "means_"):
        centers = getattr(clusterer, name, None)
        if centers is not None:
            return np.asarray(centers, dtype=np.float32)
    ids = np.unique(labels)
    sums = np.zeros((ids.max() + 1, features.shape[1]))
    np.add.at(sums, labels, features)
    counts = np.bincount(labels, minlength=len(sums))[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)
