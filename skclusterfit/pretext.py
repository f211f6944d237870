"""Pretext-task teachers trained without labels (paper section 4.2), and label noise.

A pretext teacher is fitted on unlabelled images and then used like any other
teacher: ``ClusterFit(teacher=FrozenEstimator(RotNet().fit(X)), K=...)``.
"""

import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch.utils.data import Dataset

from ._base import NetworkFeaturesMixin, TorchStateMixin
from ._components import ComponentsMixin
from ._validation import validate_input
from .data._sources import DatasetSource, first_input, make_source
from .storage._persistence import PersistenceMixin
from ._training import NetClassifier

__all__ = ["RotNet", "RotatedImages"]


def __getattr__(name):
    # 0.1 re-exported add_label_noise here; its home is skclusterfit.data.
    if name == "add_label_noise":
        from .data._datasets import add_label_noise

        warnings.warn(
            "skclusterfit.pretext.add_label_noise is deprecated since 0.2 and will be "
            "removed in 0.3: import add_label_noise from skclusterfit.data instead.",
            FutureWarning,
            stacklevel=2,
        )
        return add_label_noise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

N_ROTATIONS = 4


class RotatedImages(Dataset):
    """Every image of a source under each of the four rotations 0, 90, 180, 270 degrees.

    Item ``i`` is image ``i % n`` rotated by ``(i // n) * 90`` degrees, so the
    rotation label of item ``i`` is ``i // n``. Rotations are applied per
    batch when the training loop asks for one (``__getitems__``): no rotated
    copy of the data is ever stored.

    Parameters
    ----------
    source : ArraySource or DatasetSource
        The images, from :func:`skclusterfit.data.make_source`.

    Attributes
    ----------
    source : ArraySource or DatasetSource
        The images given.
    n_images : int
        Number of source images; the dataset has four times as many items.

    See Also
    --------
    RotNet : trains a network on these items and their rotation labels.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.data import make_source
    >>> from skclusterfit.pretext import RotatedImages
    >>> X = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    >>> rotated = RotatedImages(make_source(X))
    >>> len(rotated), rotated.labels().tolist()
    (8, [0, 0, 1, 1, 2, 2, 3, 3])
    >>> rotated[2].tolist()  # image 0, rotated by 90 degrees
    [[[1.0, 3.0], [0.0, 2.0]]]
    """

    def __init__(self, source):
        self.source = source
        self.n_images = len(source)

    def __len__(self):
        return N_ROTATIONS * self.n_images

    def labels(self):
        """Rotation label (0..3) of every item."""
        return np.repeat(np.arange(N_ROTATIONS), self.n_images)

    def _images(self, index):
        if isinstance(self.source, DatasetSource):
            return torch.stack([first_input(self.source.dataset[i]) for i in index])
        return self.source.batch(index)

    def __getitems__(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        x = self._images(indices % self.n_images)
        rotation = indices // self.n_images
        for k in range(1, N_ROTATIONS):
            chosen = torch.from_numpy(np.flatnonzero(rotation == k))
            if len(chosen):
                x[chosen] = torch.rot90(x[chosen], k, dims=(2, 3))
        return list(x.unbind(0))

    def __getitem__(self, index):
        return self.__getitems__([index])[0]


class RotNet(
    PersistenceMixin,
    ComponentsMixin,
    TorchStateMixin,
    NetworkFeaturesMixin,
    TransformerMixin,
    BaseEstimator,
):
    """RotNet (Gidaris et al., 2018): a teacher trained to predict image rotation.

    ``fit`` trains a clone of ``classifier`` (a :class:`NetClassifier`, the
    one training loop, with all its options: optimizer, schedule,
    augmentation, sampler, mixed precision...) from scratch to tell which of
    four rotations (0, 90, 180, 270 degrees) was applied to each image; no
    labels are used. ``transform`` returns the penultimate features of the
    *unrotated* images. The paper (section 4.2) shows that these features
    overfit the pretext task and that ClusterFit on them transfers better.

    Parameters
    ----------
    classifier : NetClassifier or None, default=None
        The rotation classifier's network and training recipe; None means
        ``NetClassifier()`` with its defaults (a small CNN for images). Its
        nested parameters can be set through RotNet, with or without a
        classifier given: ``RotNet().set_params(classifier__max_epochs=5)``.
    random_state : int, RandomState instance or None, default=None
        If not None, replaces the classifier's ``random_state`` (which seeds
        initialisation, shuffling and augmentation).

    Attributes
    ----------
    classifier_ : NetClassifier
        The rotation classifier (4 classes), trained on the rotated images.
    model_ : HeadedNetwork
        Its network (``classifier_.model_``).
    input_shape_ : tuple
        Shape of one sample seen in fit.
    n_features_in_ : int
        ``X.shape[1]`` seen in fit (array input).
    n_features_out_ : int
        Dimension of the features.

    See Also
    --------
    RotatedImages : the rotated images it trains on.

    Examples
    --------
    >>> from skclusterfit import NetClassifier
    >>> from skclusterfit.data import load_digits_images
    >>> from skclusterfit.pretext import RotNet
    >>> X, _ = load_digits_images()
    >>> rotnet = RotNet(NetClassifier(max_epochs=1), random_state=0).fit(X[:300])
    >>> rotnet.transform(X[:2]).shape
    (2, 128)
    >>> rotnet.classifier_.classes_
    array([0, 1, 2, 3])
    """

    _parameter_constraints = {
        "classifier": [NetClassifier, None],
        "random_state": ["random_state"],
    }
    _component_parameters = ("classifier",)

    def __init__(self, classifier=None, *, random_state=None):
        self.classifier = classifier
        self.random_state = random_state

    def _default_component(self, name):
        return NetClassifier()

    def fit(self, X, y=None):
        """Train rotation prediction on the images ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, C, H, W), (n, H, W, C), (n, H, W) or Dataset
            Square images; labels are not used.
        y : None
            Ignored.

        Returns
        -------
        self : RotNet
        """
        self._validate_params()
        X = validate_input(self, X, reset=True)
        source = make_source(X)
        shape = source.sample_shape
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(
                "RotNet needs square images (n, C, H, H) so that rotated images "
                f"keep their shape; got samples of shape {tuple(shape)}."
            )
        rotated = RotatedImages(source)
        classifier = self._component("classifier")
        if self.random_state is not None:
            classifier.set_params(random_state=self.random_state)
        self.classifier_ = classifier.fit(rotated, rotated.labels())
        self.n_features_out_ = self.classifier_.n_features_out_
        return self

    def _student_template(self):
        """ClusterFit's default student: the rotation classifier's recipe, unfitted."""
        return self._component("classifier")

    def _preprocess_spec(self):
        return self._component("classifier")._preprocess_spec()

    @property
    def model_(self):
        check_is_fitted(self)
        return self.classifier_.model_

    def transform(self, X):
        """Penultimate features of the unrotated images.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Images shaped like those seen in fit.

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        check_is_fitted(self)
        X = validate_input(self, X, reset=False)
        return self.classifier_.transform(X)
