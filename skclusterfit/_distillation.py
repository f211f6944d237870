"""Knowledge distillation (Hinton et al., 2015): the paper's main baseline.

ClusterFit can be read as distillation through a lossy bottleneck: the
student learns cluster ids instead of the teacher's class scores. The paper
compares the two on the same data (sections 3.2 and 4.1): distillation keeps
more of what the teacher learned, including the artefacts of its noisy or
proxy labels, and transfers worse than ClusterFit when those labels were
noisy.
"""

import time
import warnings
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import column_or_1d
from torch import nn

from . import _stages
from ._base import NetworkFeaturesMixin
from .runtime._estimators import unfrozen
from .runtime._progress import log
from ._soft_targets import SoftTargets
from ._teachers import TeacherStudentMixin, teacher_from
from .runtime._torch_utils import draw_seed
from .networks._backbones import build_module, find_head
from .data._sources import make_source
from ._features import FeatureExtractor
from .storage._persistence import PersistenceMixin
from ._training import NetClassifier

__all__ = ["Distillation"]


def teacher_scores(teacher, X, *, verbose=0, out=None):
    """The teacher's class scores (logits or log-probabilities) for every sample.

    Module-level so that joblib.Memory can cache it by name
    (:func:`skclusterfit._stages.teacher_outputs`).
    """
    inner = unfrozen(teacher)
    if hasattr(inner, "predict_proba"):
        proba = np.asarray(teacher.predict_proba(X), dtype=np.float64)
        # log p is a logit vector: softmax(log p / T) is p ** (1/T), renormalised.
        return np.log(np.clip(proba, 1e-12, None)).astype(np.float32)
    if hasattr(inner, "decision_function"):
        scores = np.asarray(teacher.decision_function(X), dtype=np.float32)
        if scores.ndim == 1:  # a binary classifier's single margin
            scores = np.stack([-scores / 2, scores / 2], axis=1)
        return scores
    # A FeatureExtractor whose layer is the classification head: its logits.
    return _stages.transform_in_chunks(teacher, X, verbose=verbose, out=out)


def _teacher_classes(teacher, n_classes):
    classes = getattr(unfrozen(teacher), "classes_", None)
    return np.asarray(classes) if classes is not None else np.arange(n_classes)


def head_layer(model, sample_shape):
    """The node name of ``model``'s classification head (its final nn.Linear).

    The layer a :class:`FeatureExtractor` must read for class scores instead
    of penultimate features.
    """
    module = model if isinstance(model, nn.Module) else build_module(model, sample_shape)
    name = find_head(module)
    if name is None:
        raise ValueError(
            f"Distillation needs class scores, but model={model!r} has no final "
            "nn.Linear (classification head) to read them from."
        )
    return name


class Distillation(
    TeacherStudentMixin,
    PersistenceMixin,
    NetworkFeaturesMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Knowledge distillation: a student trained from scratch on a teacher's soft targets.

    The student learns the teacher's class probabilities softened at
    ``temperature`` (Hinton et al., 2015), optionally mixed with the hard
    labels ``y``: the paper's distillation baseline, "a weighted average of
    2 loss functions: cross-entropy with soft targets computed using N_pre
    and temperature T, and cross-entropy with the (weak) labels" (section
    4). It has the same fit/transform API as :class:`~skclusterfit.ClusterFit`,
    shares its teacher and student handling, and drops into the same
    Pipelines; ``transform`` returns the student's penultimate features.

    Read more in :ref:`paper_results` (the baselines).

    Parameters
    ----------
    teacher : FeatureExtractor, str, nn.Module or FrozenEstimator, default="resnet50"
        A teacher with class scores: a fitted classifier wrapped in
        ``sklearn.frozen.FrozenEstimator`` (e.g. a :class:`NetClassifier`
        trained on noisy labels; its ``predict_proba`` is used, or its
        ``decision_function``); or a network with a classification head, as
        a model name, an ``nn.Module`` or a :class:`FeatureExtractor`, whose
        head's logits are read (a FeatureExtractor's ``layer=None`` is
        replaced by the head's node name). Never trained.
    temperature : float, default=4.0
        ``T`` of the softmax of the teacher's and the student's scores.
    alpha : float in [0, 1] or "auto", default="auto"
        Weight of the soft-target loss (scaled by ``T**2``); ``1 - alpha``
        weighs the cross-entropy with ``y``. "auto": 0.5 with ``y``, 1.0
        without (``fit(X)``: the student learns the soft targets alone). An
        ``alpha`` below 1 given for a fit without ``y`` cannot apply: fit
        warns and uses 1.0.
    student : NetClassifier, str, nn.Module or None, default=None
        The network trained, from scratch; None: the teacher's architecture
        re-initialised (as ClusterFit's student), with the teacher's input
        preprocessing. Its head gets one output per teacher class.
    memory : str, joblib.Memory or None, default=None
        Caches the teacher's scores.
    device : str, default="auto"
        Unless "auto", pushed onto the teacher (a frozen one runs on a copy)
        and the student.
    random_state : int, RandomState instance or None, default=None
        Seeds a teacher built from a name or module and the student.
    verbose : int, default=0
        > 0: a line per stage and progress bars.

    Attributes
    ----------
    teacher_ : estimator
        The fitted teacher (a clone, or the FrozenEstimator given).
    student_ : NetClassifier
        The student trained on the soft targets; its ``classes_`` are the
        teacher's.
    classes_ : ndarray of shape (n_classes,)
        The teacher's classes (``classes_`` of a classifier, else
        ``0..n_classes-1``).
    input_shape_ : tuple
        Shape of one sample seen in fit.
    n_features_in_ : int
        ``X.shape[1]`` seen in fit (array input).
    n_features_out_ : int
        Dimension of the student features.

    See Also
    --------
    ClusterFit : the student learns the teacher's feature clusters instead.

    Examples
    --------
    >>> from sklearn.frozen import FrozenEstimator
    >>> from skclusterfit import Distillation, NetClassifier
    >>> from skclusterfit.data import load_digits_images
    >>> X, y = load_digits_images()
    >>> teacher = NetClassifier(max_epochs=2, random_state=0).fit(X, y)
    >>> distilled = Distillation(
    ...     FrozenEstimator(teacher), temperature=4.0, alpha=0.5,
    ...     student=NetClassifier(max_epochs=2), random_state=0,
    ... ).fit(X, y)
    >>> distilled.transform(X[:3]).shape
    (3, 128)
    >>> distilled.classes_.tolist() == teacher.classes_.tolist()
    True
    """

    _parameter_constraints = {
        "teacher": [str, nn.Module, HasMethods(["fit"])],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "student": [NetClassifier, str, nn.Module, callable, None],
        "memory": [None, str, HasMethods(["cache"])],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _component_parameters = ("teacher", "student")

    def __init__(
        self,
        teacher="resnet50",
        *,
        temperature=4.0,
        alpha="auto",
        student=None,
        memory=None,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.student = student
        self.memory = memory
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _log(self, message):
        log("Distillation", message, self.verbose)

    def _default_component(self, name):
        if name == "teacher":
            return teacher_from(self.teacher)
        return self._default_student()

    def fit(self, X, y=None):
        """Train the student on the teacher's soft targets (and ``y``, if given).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Images (n, C, H, W), (n, H, W, C), (n, H, W), videos
            (n, T, C, H, W) or vectors (n, d).
        y : array-like of shape (n_samples,) or None, default=None
            Hard labels among the teacher's classes (e.g. the noisy labels
            the teacher was trained on), weighted ``1 - alpha``. None: the
            soft targets alone.

        Returns
        -------
        self : Distillation
        """
        X, rng = self._start_fit(X)
        student_seed, teacher_seed = draw_seed(rng), draw_seed(rng)
        self.teacher_ = self._fit_teacher(self._scoring_teacher(X), X, teacher_seed)
        start = time.perf_counter()
        scores = _stages.teacher_outputs(
            self.teacher_, X, compute=teacher_scores, memory=self.memory,
            verbose=self.verbose,
        )
        self.classes_ = _teacher_classes(self.teacher_, scores.shape[1])
        self._log(f"teacher scores {scores.shape} in {time.perf_counter() - start:.1f}s")
        if y is None:
            if self.alpha not in ("auto", 1.0):
                warnings.warn(
                    f"alpha={self.alpha!r} weighs the labels y against the soft "
                    "targets, but fit got no y: the student learns the soft targets "
                    "alone (alpha=1.0). Pass y, or leave alpha='auto'.",
                    UserWarning,
                    stacklevel=2,
                )
            alpha, y = 1.0, self.classes_[np.argmax(scores, axis=1)]
        else:
            alpha = 0.5 if self.alpha == "auto" else float(self.alpha)
            y = column_or_1d(y, warn=True)
        soft = SoftTargets(scores, self.classes_, temperature=self.temperature, alpha=alpha)
        start = time.perf_counter()
        self.student_ = self._make_student(student_seed)
        self.student_.fit(X, y, soft_targets=soft)
        self.n_features_out_ = self.student_.n_features_out_
        self._log(f"student trained in {time.perf_counter() - start:.1f}s")
        return self

    def _scoring_teacher(self, X):
        """The teacher, set to output class scores."""
        teacher = self._component("teacher")
        if isinstance(teacher, FrozenEstimator):
            inner = unfrozen(teacher)
            if isinstance(inner, FeatureExtractor):
                if inner.layer is None:
                    raise ValueError(
                        "a frozen FeatureExtractor with layer=None gives penultimate "
                        "features, not class scores; pass the FeatureExtractor itself "
                        "(unfrozen: Distillation reads its head) or set layer= to the "
                        "node of its logits."
                    )
            elif not any(hasattr(inner, m) for m in ("predict_proba", "decision_function")):
                raise ValueError(
                    f"teacher={teacher!r} has no class scores: Distillation needs a "
                    "classifier (predict_proba or decision_function) or a network "
                    "with a classification head."
                )
            return teacher
        if isinstance(teacher, FeatureExtractor) and teacher.layer is None:
            sample_shape = make_source(X).sample_shape
            teacher.set_params(layer=head_layer(teacher.model, sample_shape))
        return teacher
