"""FeatureExtractor: a frozen network as a scikit-learn transformer."""

import os
from numbers import Integral

import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._base import NetworkFeaturesMixin, TorchStateMixin, run_network
from ._torch_utils import resolve_device, seeded, torch_seed
from ._validation import validate_input
from .backbones import (
    build_module,
    first_conv_in_channels,
    load_weights,
    split_head,
    torchvision_weights,
)
from .data import make_source
from .persistence import PersistenceMixin


class NodeFeatures(nn.Module):
    """The output of one named node of a network, global-average pooled if spatial."""

    def __init__(self, module, layer):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.layer = layer
        self.graph = create_feature_extractor(module, return_nodes={layer: "out"})

    def forward(self, x):
        out = self.graph(x)["out"]
        if out.ndim > 2:
            out = out.mean(dim=tuple(range(2, out.ndim)))
        return out


class FeatureExtractor(
    PersistenceMixin,
    TorchStateMixin,
    NetworkFeaturesMixin,
    TransformerMixin,
    BaseEstimator,
):
    """A frozen network as a transformer: the teacher, or the N_pre baseline.

    ``fit`` builds the network (and loads its weights); it never trains it.
    ``transform`` returns the activations of ``layer`` (by default the
    penultimate layer: the input of the final ``nn.Linear``), batched and
    without gradients.

    Read more in :ref:`pretrained_teacher` and :ref:`components`.

    Parameters
    ----------
    model : str, nn.Module or callable, default="resnet50"
        A torchvision model name (built with ``torchvision.models.get_model``),
        a built-in name (``"auto"``, ``"cnn"``, ``"mlp"``: randomly initialised
        unless ``weights`` is given), an ``nn.Module`` (copied, used with its
        current weights), or a callable returning a module.
    weights : str or path, default=None
        A torchvision weight name (``"DEFAULT"``, ``"IMAGENET1K_V2"`` or
        ``"ResNet50_Weights.IMAGENET1K_V2"``; needs network access or torch's
        hub cache), a local state-dict file (``.pth``/``.pt`` loaded with
        ``weights_only=True``, or ``.safetensors``), or None.
    layer : str, default=None
        A node name as in ``torchvision.models.feature_extraction``
        (e.g. ``"layer3"``); spatial outputs are global-average pooled. None
        means the penultimate layer.
    preprocess : callable, "auto" or None, default="auto"
        Applied to each float batch on the device before the network. "auto"
        uses the transforms of the torchvision ``weights`` when given by name
        (resize, crop, normalise), nothing otherwise. uint8 input is scaled to
        [0, 1] before this.
    batch_size : int, default=256
        Samples per forward pass.
    num_workers : int, default=0
        DataLoader workers, used only for torch Dataset input.
    mixed_precision : bool, default=True
        Use autocast (bf16/fp16) on CUDA. Ignored on the CPU.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation of networks built without weights.

    Attributes
    ----------
    network_ : torch.nn.Module
        The frozen feature network.
    preprocess_ : callable or None
        What runs on each float batch before the network: ``preprocess``
        itself, or for ``preprocess="auto"`` the transforms of the torchvision
        ``weights`` given by name (None when there are none).
    input_shape_ : tuple
        Shape of one sample seen in fit.
    n_features_in_ : int
        ``X.shape[1]`` seen in fit (array input).
    n_features_out_ : int
        Dimension of the features.

    See Also
    --------
    ClusterFit : uses a FeatureExtractor as its teacher.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skclusterfit import FeatureExtractor
    >>> X = load_digits().data.astype("float32")
    >>> extractor = FeatureExtractor("mlp", random_state=0).fit(X)
    >>> extractor.transform(X[:5]).shape
    (5, 128)
    """

    _parameter_constraints = {
        "model": [str, nn.Module, callable],
        "weights": [str, os.PathLike, None],
        "layer": [str, None],
        "preprocess": [callable, StrOptions({"auto"}), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "mixed_precision": ["boolean"],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        model="resnet50",
        *,
        weights=None,
        layer=None,
        preprocess="auto",
        batch_size=256,
        num_workers=0,
        mixed_precision=True,
        device="auto",
        random_state=None,
    ):
        self.model = model
        self.weights = weights
        self.layer = layer
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.mixed_precision = mixed_precision
        self.device = device
        self.random_state = random_state

    def fit(self, X, y=None):
        """Build the frozen network for inputs like ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...) or torch Dataset
            Images (n, C, H, W), (n, H, W, C), (n, H, W) or vectors (n, d).
        y : None
            Ignored.

        Returns
        -------
        self : FeatureExtractor
        """
        self._validate_params()
        X = validate_input(self, X, reset=True)
        resolve_device(self.device)  # fail early on a bad device string
        source = make_source(X, self.num_workers)
        sample_shape = source.sample_shape
        with seeded(torch_seed(self.random_state), torch.device("cpu")):
            module = build_module(self.model, sample_shape)
        load_weights(module, self.model, self.weights)
        check_channels(module, sample_shape, "feature")
        if self.layer is None:
            network, _ = split_head(module)
        else:
            network = NodeFeatures(module, self.layer)
        network.eval().requires_grad_(False)
        self.network_ = network
        self.preprocess_ = self._resolve_preprocess()
        # One sample through the network: output width, and shape errors now, not mid-fit.
        self.n_features_out_ = self._transform_source(source.subset([0])).shape[1]
        return self


    def _resolve_preprocess(self):
        if self.preprocess != "auto":
            return self.preprocess
        enum = torchvision_weights(self.model, self.weights)
        return enum.transforms() if enum is not None else None

    def _transform_source(self, source):
        return run_network(
            self.network_,
            source,
            batch_size=self.batch_size,
            device=resolve_device(self.device),
            preprocess=self.preprocess_,
            mixed_precision=self.mixed_precision,
        )

    def transform(self, X):
        """Features of ``X`` from the frozen network.

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
        return self._transform_source(make_source(X, self.num_workers))


def check_channels(module, sample_shape, role):
    """Refuse images whose channel count the network's first convolution does not take."""
    in_channels = first_conv_in_channels(module)
    if in_channels is None:
        return
    if len(sample_shape) != 3:
        raise ValueError(
            f"the {role} network is convolutional and needs images (n, C, H, W); "
            f"got samples of shape {tuple(sample_shape)}."
        )
    if sample_shape[0] != in_channels:
        raise ValueError(
            f"X has {sample_shape[0]} channel(s) per image but the {role} network's "
            f"first convolution takes {in_channels}; convert the images (e.g. "
            "repeat grayscale to 3 channels) or use a matching network."
        )
