"""The teacher and student handling shared by the estimators that learn from a
frozen teacher (ClusterFit, Distillation): what a teacher or student
specification stands for, fitting the teacher without training it, and its
outputs cached by ``memory``.
"""

import copy
import os
import warnings

from joblib import Memory
from sklearn.base import TransformerMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted, check_memory
from torch import nn

from . import _stages
from .runtime._estimators import unfrozen
from ._validation import validate_input
from ._features import FeatureExtractor
from .storage._fingerprint import estimator_fingerprint
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
        The specification (the user's object is never changed: it is cloned,
        or, frozen, copied when it must move to another device).
    X : validated input
    device : str, default="auto"
        Unless "auto", set on the teacher.
    seed : int or None, default=None
        Unless None, the ``random_state`` of a teacher built here.
    owner : str, default="ClusterFit"
        The estimator named in the warning about a random teacher.
    stacklevel : int, default=4
        Of that warning, so that it points at the user's ``fit`` call.
    """
    spec = teacher
    if isinstance(teacher, FrozenEstimator):
        check_is_fitted(teacher)
        return frozen_on_device(teacher, device)
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
    updates = {}
    if device != "auto":
        updates["device"] = device
    if seed is not None:
        updates["random_state"] = seed
    teacher = teacher.set_params(**updates).fit(X)
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


def frozen_on_device(teacher, device):
    """The frozen teacher, on a copy set to ``device`` when it must move."""
    inner = teacher.estimator
    if device == "auto" or "device" not in inner.get_params(deep=False):
        return teacher
    if inner.get_params(deep=False)["device"] == device:
        return teacher
    # A copy: the user's fitted teacher keeps its own device setting.
    return FrozenEstimator(copy.deepcopy(inner).set_params(device=device))


def _cached_teacher_features(fingerprint, teacher, X, verbose, out=None, dtype="float32"):
    """Module-level so joblib.Memory can cache it; ``fingerprint`` names the teacher.

    ``dtype`` is part of the cache key (float16 features are other features);
    ``out`` (where they are written) is not.
    """
    return _stages.teacher_features(teacher, X, verbose=verbose, out=out)


def check_memory_location(memory):
    """Refuse a ``memory`` cache folder that cannot be created (a file on its path)."""
    location = memory if isinstance(memory, (str, os.PathLike)) else getattr(
        memory, "location", None)
    if location is None:
        return
    path = os.path.abspath(os.fspath(location))
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(
            f"memory={memory!r}: {existing!r} is a file, so the cache folder "
            f"{path!r} cannot be created there; give a folder path (created if missing)."
        )


def teacher_features(
    teacher, X, *, memory=None, verbose=0, compute=None, out=None, dtype="float32"
):
    """The fitted teacher's outputs for every sample of ``X``, cached by ``memory``.

    ``compute(teacher, X, verbose)`` computes them (default: the teacher's
    ``transform`` chunk by chunk, into the array ``out(n, d)`` gives, see
    :func:`skclusterfit._stages.teacher_features`, in ``dtype``); joblib's
    cache key is the teacher's fingerprint (class, parameters and fitted
    state), ``X`` and ``dtype``.
    """
    check_memory_location(memory)
    if compute is None and isinstance(memory, (str, os.PathLike)):
        # A cache given as a path hands large cached features back as memory maps.
        memory = Memory(memory, mmap_mode="r", verbose=0)
    memory = check_memory(memory)
    fingerprint = estimator_fingerprint(teacher) if memory.location is not None else None
    if compute is None:
        extract = memory.cache(_cached_teacher_features, ignore=["teacher", "verbose", "out"])
        return extract(fingerprint, teacher, X, verbose, out, dtype)
    extract = memory.cache(compute, ignore=["teacher", "verbose"])
    return extract(fingerprint, teacher, X, verbose)


def student_from(student, teacher):
    """The student ``student`` stands for (a new NetClassifier), given ``teacher``."""
    if isinstance(student, NetClassifier):
        return clone(student)
    if student is not None:
        return NetClassifier(model=student)
    # The teacher's architecture, re-initialised (the paper's N_cf): each
    # teacher class says what a student like it is.
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


def make_student(student, teacher, *, seed=None, device="auto", verbose=0, group=None):
    """The unfitted student for the fitted ``teacher``, with the owner's settings.

    ``seed`` (unless None) and ``device`` (unless "auto") are pushed onto it;
    a student whose ``preprocess`` is "auto" takes the teacher's; with the
    fit's process ``group``, a student that can train across processes does
    so exactly when the group is distributed.
    """
    student = student_from(student, teacher)
    updates = {"verbose": verbose}
    if group is not None and "distributed" in student.get_params(deep=False):
        # It trains on this process's share of each epoch, with the others, or alone.
        updates["distributed"] = "auto" if group.is_distributed else False
    if seed is not None:
        updates["random_state"] = seed
    if device != "auto":
        updates["device"] = device
    if student.preprocess == "auto":
        spec = getattr(unfrozen(teacher), "_preprocess_spec", None)
        updates["preprocess"] = spec() if spec is not None else None
    return student.set_params(**updates)


class StudentFeaturesMixin(TransformerMixin):
    """``transform`` of an estimator whose output is its trained ``student_``'s
    features (ClusterFit, Distillation).

    A TransformerMixin itself: scikit-learn wraps ``transform`` for
    ``set_output`` only in the class that defines it.
    """

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
