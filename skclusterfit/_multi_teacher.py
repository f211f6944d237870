"""Several teachers as one: their features normalised and concatenated.

The paper's multi-task ClusterFit (section 4.2 and its supplementary
material) clusters the features of several pre-trained networks at once,
e.g. a RotNet and a Jigsaw network, so that the pseudo-labels group samples
that *all* teachers find alike. ``ClusterFit(teacher=[t1, t2])`` means
``ClusterFit(teacher=ConcatTeachers([t1, t2]))``.
"""

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize as l2_normalize
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from . import _stages
from ._base import NetworkFeaturesMixin
from .runtime._estimators import unfrozen
from ._teachers import fit_teacher, teacher_from
from .runtime._torch_utils import draw_seed
from ._validation import validate_input
from .data._sources import take_rows
from .storage._persistence import PersistenceMixin

__all__ = ["ConcatTeachers"]


class ConcatTeachers(PersistenceMixin, NetworkFeaturesMixin, TransformerMixin, BaseEstimator):
    """The features of several frozen teachers, L2-normalised and concatenated.

    Each teacher's features are L2-normalised per sample, optionally reduced
    by PCA to ``n_components`` dimensions (so that a 2048-d teacher does not
    outweigh a 128-d one by its width) and normalised again, then
    concatenated and scaled by ``1 / sqrt(n_teachers)``: every teacher
    contributes the same norm, and every row has norm 1. Teachers are never
    trained: ``fit`` builds the ones given by name or as a
    :class:`~skclusterfit.FeatureExtractor` and fits the PCAs.

    Parameters
    ----------
    teachers : list of FeatureExtractor, str, nn.Module or FrozenEstimator
        The teachers, each as ClusterFit's ``teacher`` takes it.
    n_components : int or None, default=None
        Reduce each teacher's features to this many PCA components (fitted
        on the samples given to ``fit``, which then extracts every teacher's
        features once more). None: keep each teacher's own dimension.
    device : str, default="auto"
        Unless "auto", set on every teacher (a frozen one runs on a copy).
    random_state : int, RandomState instance or None, default=None
        Seeds the teachers built here and the PCAs' solvers.
    verbose : int, default=0
        Progress bars over the samples of each teacher's extraction in fit.

    Attributes
    ----------
    teachers_ : list of estimator
        The fitted teachers (clones, or the FrozenEstimators given).
    pcas_ : list of PCA or None
        Each teacher's fitted PCA, when ``n_components`` is set.
    n_features_per_teacher_ : list of int
        Width of each teacher's block in the output.
    input_shape_ : tuple
        Shape of one sample seen in fit.
    n_features_in_ : int
        ``X.shape[1]`` seen in fit (array input).
    n_features_out_ : int
        Width of the concatenated features.

    See Also
    --------
    ClusterFit : ``teacher=[t1, t2]`` clusters these features.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skclusterfit import ConcatTeachers, FeatureExtractor
    >>> X = load_digits().data.astype("float32")
    >>> both = ConcatTeachers(
    ...     [FeatureExtractor("mlp", random_state=0), FeatureExtractor("mlp", random_state=1)],
    ...     n_components=16,
    ... ).fit(X)
    >>> features = both.transform(X[:4])
    >>> features.shape, both.n_features_per_teacher_
    ((4, 32), [16, 16])
    >>> [round(float(n), 4) for n in (features**2).sum(1)]
    [1.0, 1.0, 1.0, 1.0]
    """

    _parameter_constraints = {
        "teachers": [list, tuple],
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    # fit builds and freezes; it never trains a teacher (ClusterFit's rule).
    _never_trains = True

    def __init__(self, teachers, *, n_components=None, device="auto", random_state=None,
                 verbose=0):
        self.teachers = teachers
        self.n_components = n_components
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y=None):
        """Build the teachers (never trained) and fit the PCAs.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Inputs as the teachers take them.
        y : None
            Ignored.

        Returns
        -------
        self : ConcatTeachers
        """
        self._validate_params()
        if len(self.teachers) == 0:
            raise ValueError("teachers=[] holds no teacher; give at least one.")
        X = validate_input(self, X, reset=True)
        rng = check_random_state(self.random_state)
        seeded = self.random_state is not None
        self.teachers_ = [
            fit_teacher(
                teacher, X, device=self.device, seed=draw_seed(rng) if seeded else None,
                owner="ConcatTeachers",
            )
            for teacher in self.teachers
        ]
        self.pcas_ = None
        if self.n_components is not None:
            self.pcas_ = []
            for teacher in self.teachers_:
                features = l2_normalize(
                    _stages.transform_in_chunks(teacher, X, verbose=self.verbose)
                )
                if self.n_components > min(features.shape):
                    raise ValueError(
                        f"n_components={self.n_components} must be at most the number "
                        f"of samples and of each teacher's features; a teacher gives "
                        f"{features.shape[1]} features of {features.shape[0]} samples."
                    )
                pca = PCA(self.n_components, random_state=draw_seed(rng))
                self.pcas_.append(pca.fit(features))
        self.n_features_per_teacher_ = [
            self.n_components if self.n_components is not None
            else int(_features_out(teacher, X))
            for teacher in self.teachers_
        ]
        self.n_features_out_ = int(sum(self.n_features_per_teacher_))
        return self

    def transform(self, X):
        """The normalised, concatenated features of every teacher.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Inputs shaped like those seen in fit.

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        check_is_fitted(self)
        X = validate_input(self, X, reset=False)
        blocks = []
        for index, teacher in enumerate(self.teachers_):
            block = l2_normalize(np.asarray(teacher.transform(X), dtype=np.float32))
            if self.pcas_ is not None:
                block = l2_normalize(self.pcas_[index].transform(block))
            blocks.append(block)
        scale = 1.0 / np.sqrt(len(blocks))
        return (np.concatenate(blocks, axis=1) * scale).astype(np.float32)

    # -- what student=None means, and its preprocessing: the first teacher's --
    def _student_template(self):
        first = unfrozen(teacher_from(self.teachers[0]))
        template = getattr(first, "_student_template", None)
        if template is None:
            raise ValueError(
                f"student=None copies the first teacher's architecture, but "
                f"{self.teachers[0]!r} does not say what it is; pass student=."
            )
        return template()

    def _preprocess_spec(self):
        first = unfrozen(self.teachers_[0] if hasattr(self, "teachers_") else
                         teacher_from(self.teachers[0]))
        spec = getattr(first, "_preprocess_spec", None)
        return spec() if spec is not None else None


def _features_out(teacher, X):
    """A teacher's output width (from its fitted attribute, else one sample)."""
    width = getattr(unfrozen(teacher), "n_features_out_", None)
    if width is not None:
        return width
    return np.asarray(teacher.transform(take_rows(X, 0, 1))).shape[1]
