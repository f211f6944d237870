"""The teacher and student handling shared by the estimators that learn from a
frozen teacher (ClusterFit, Distillation): what a teacher or student
specification stands for, fitting the teacher without training it, the fit
prologue, and the student with its owner's settings.
"""

import copy
import warnings

from sklearn.base import TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._components import ComponentsMixin, push_settings, settings_to_push
from .runtime._estimators import unfrozen
from .runtime._torch_utils import resolve_device
from ._validation import validate_input
from ._features import FeatureExtractor
from ._training import NetClassifier


def teacher_from(teacher):
    """The teacher a name or module stands for: ``FeatureExtractor(teacher)``."""
    if isinstance(teacher, (str, nn.Module)):
        return FeatureExtractor(teacher)
    return teacher


def fit_teacher(teacher, X, *, device="auto", seed=None, owner="ClusterFit", stacklevel=4):
    """The fitted teacher for ``X``; never trains a network.

    Parameters
    ----------
    teacher : FeatureExtractor, str, nn.Module or FrozenEstimator
        The teacher (the user's object is never changed: it is cloned, or,
        frozen, copied when it must move to another device).
    X : validated input
    device : str, default="auto"
        Unless "auto", pushed onto the teacher (:func:`push_settings`).
    seed : int or None, default=None
        Unless None, pushed onto the teacher as its ``random_state``.
    owner : str, default="ClusterFit"
        The estimator named in the warning about a random teacher.
    stacklevel : int, default=4
        Of that warning, so that it points at the user's ``fit`` call.
    """
    settings = {"device": None if device == "auto" else device, "random_state": seed}
    if isinstance(teacher, FrozenEstimator):
        check_is_fitted(teacher)
        # A copy, when it must change: the user's fitted teacher keeps its settings.
        updates = settings_to_push(teacher.estimator, device=settings["device"])
        if updates:
            teacher = FrozenEstimator(copy.deepcopy(teacher.estimator).set_params(**updates))
        return teacher
    spec = teacher
    if isinstance(teacher, (str, nn.Module)):
        teacher = teacher_from(teacher)
    elif isinstance(teacher, FeatureExtractor) or getattr(teacher, "_never_trains", False):
        # Fitting builds a network (or several) and trains none: a teacher.
        teacher = clone(teacher)
    else:
        raise TypeError(
            f"teacher={teacher!r} would have to be trained, and {owner} never "
            "trains its teacher: pass a FeatureExtractor, a torchvision model "
            "name, an nn.Module, or a fitted transformer wrapped in "
            "sklearn.frozen.FrozenEstimator."
        )
    teacher = push_settings(teacher, **settings).fit(X)
    if getattr(teacher, "random_init_", False):
        warnings.warn(
            f"teacher={spec!r} has randomly initialised weights (a "
            "built-in or callable network without weights=): "
            f"{owner} on the outputs of a random network is rarely what you want. "
            "Pass a trained teacher, e.g. FeatureExtractor(model, weights='file.pth') "
            "or FrozenEstimator(fitted_estimator).",
            UserWarning,
            stacklevel=stacklevel,
        )
    return teacher


def student_from(student, teacher):
    """The student ``student`` stands for (a new NetClassifier), given ``teacher``.

    The one "student = the teacher's architecture" rule: ``student=None``
    asks the teacher (``_student_template()``) for a network like it,
    re-initialised (the paper's N_cf).
    """
    if isinstance(student, NetClassifier):
        return clone(student)
    if student is not None:
        return NetClassifier(model=student)
    inner = unfrozen(teacher_from(teacher))
    template = getattr(inner, "_student_template", None)
    if template is None:
        raise ValueError(
            f"student=None copies the teacher's architecture, but teacher="
            f"{teacher!r} does not say what its architecture is (no "
            "_student_template()); pass student= explicitly (a NetClassifier, a "
            "model name or an nn.Module)."
        )
    return template()


class TeacherStudentMixin(ComponentsMixin, TransformerMixin):
    """What the estimators that learn from a frozen teacher (ClusterFit,
    Distillation) share: components ``teacher`` and ``student``, the fit
    prologue, the student with the owner's settings, and ``transform``, the
    trained ``student_``'s features.

    The estimator has the parameters ``teacher``, ``student``, ``device``,
    ``random_state`` and ``verbose``. A TransformerMixin itself:
    scikit-learn wraps ``transform`` for ``set_output`` only in the class
    that defines it.
    """

    def _start_fit(self, X):
        """The fit prologue: parameters and ``X`` validated, the device
        checked; returns ``(X, rng)``, rng the source of the fit's seeds."""
        self._validate_params()
        X = validate_input(self, X, reset=True)
        if self.device != "auto":
            resolve_device(self.device)
        return X, check_random_state(self.random_state)

    def _seed(self, seed):
        """A seed drawn from the fit's rng is pushed only when the user seeded."""
        return seed if self.random_state is not None else None

    def _fit_teacher(self, teacher, X, seed):
        return fit_teacher(
            teacher, X, device=self.device, seed=self._seed(seed),
            owner=type(self).__name__,
        )

    def _default_student(self):
        return student_from(self.student, self._component("teacher"))

    def _make_student(self, seed, group=None):
        """The unfitted student for the fitted ``teacher_``, with the owner's settings.

        Settings go through :func:`push_settings`; with the fit's process
        ``group``, a student that can train across processes does so exactly
        when the group is distributed. A student whose ``preprocess`` is
        "auto" takes the teacher's.
        """
        student = self._component("student")
        push_settings(
            student,
            verbose=self.verbose,
            device=None if self.device == "auto" else self.device,
            random_state=self._seed(seed),
            # It trains on this process's share of each epoch, with the others, or alone.
            distributed=None if group is None else ("auto" if group.is_distributed else False),
        )
        if student.preprocess == "auto":
            spec = getattr(unfrozen(self.teacher_), "_preprocess_spec", None)
            student.set_params(preprocess=spec() if spec is not None else None)
        return student

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
