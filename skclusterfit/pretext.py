"""Pretext-task teachers trained without labels (paper section 4.2), and label noise.

A pretext teacher is fitted on unlabelled images and then used like any other
teacher: ``ClusterFit(teacher=FrozenEstimator(RotNet().fit(X)), K=...)``.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    TransformerMixin,
)
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.utils.data import Dataset

from ._base import NetworkFeaturesMixin, TorchStateMixin
from ._validation import validate_input
from .data import DatasetSource, first_input, make_source
from .datasets import add_label_noise
from .training import NetClassifier

__all__ = ["RotNet", "RotatedImages", "add_label_noise"]

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
    TorchStateMixin, NetworkFeaturesMixin, TransformerMixin, BaseEstimator
):
    """RotNet (Gidaris et al., 2018): a teacher trained to predict image rotation.

    ``fit`` trains a network from scratch, with :class:`NetClassifier` (the
    one training loop), to tell which of four rotations (0, 90, 180, 270
    degrees) was applied to each image; no labels are used. ``transform``
    returns the penultimate features of the *unrotated* images. The paper
    (section 4.2) shows that these features overfit the pretext task and that
    ClusterFit on them transfers better.

    Parameters
    ----------
    model : str, nn.Module or callable, default="auto"
        The network, as for :class:`NetClassifier` (``"auto"``: a small CNN).
    max_epochs : int, default=30
        Passes over the rotated data (each pass sees every image 4 times).
    batch_size : int, default=128
        Rotated images per step.
    lr : float, default=0.05
        Peak learning rate of SGD with Nesterov momentum (cosine schedule).
    weight_decay : float, default=5e-4
        L2 penalty of SGD.
    momentum : float, default=0.9
        SGD momentum.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and augmentation.
    verbose : int, default=0
        Print a line per epoch when > 0.

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

    Examples
    --------
    >>> from skclusterfit.datasets import load_digits_images
    >>> from skclusterfit.pretext import RotNet
    >>> X, _ = load_digits_images()
    >>> rotnet = RotNet(max_epochs=1, random_state=0).fit(X[:300])
    >>> rotnet.transform(X[:2]).shape
    (2, 128)
    >>> rotnet.classifier_.classes_
    array([0, 1, 2, 3])
    """

    _parameter_constraints = {
        "model": [str, nn.Module, callable],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model="auto",
        *,
        max_epochs=30,
        batch_size=128,
        lr=0.05,
        weight_decay=5e-4,
        momentum=0.9,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.model = model
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

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
        self.classifier_ = NetClassifier(
            model=self.model,
            optimizer="sgd",  # lr, weight_decay and momentum are SGD's
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            momentum=self.momentum,
            device=self.device,
            random_state=self.random_state,
            verbose=self.verbose,
        ).fit(rotated, rotated.labels())
        self.model_ = self.classifier_.model_
        self.n_features_out_ = self.classifier_.n_features_out_
        return self

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
