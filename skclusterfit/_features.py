"""FeatureExtractor: a frozen network as a scikit-learn transformer."""

import copy
import os
from numbers import Integral

import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._base import NetworkFeaturesMixin, TorchStateMixin, run_network
from .runtime._ddp import shared_random_state
from .runtime._torch_utils import draw_seed, resolve_device, seeded
from ._validation import validate_input
from .networks._backbones import (
    build_module,
    build_shape_of,
    check_channels,
    load_weights,
    reset_parameters,
    resolve_weights,
    split_head,
    torchvision_weights,
    weights_name,
    weights_transforms,
)
from .data._sources import make_source
from .storage._persistence import PersistenceMixin


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
        a built-in name (``"auto"``, ``"cnn"``, ``"mlp"``), an ``nn.Module``
        (copied, used with its current weights unless ``weights`` is given),
        or a callable returning a module.
    weights : "auto", str, path or None, default="auto"
        "auto": a torchvision model name gets its default pretrained weights
        (``"DEFAULT"``, as ``ClusterFit(teacher="resnet50")``); a built-in
        name or a callable is randomly initialised (seeded by
        ``random_state``); a module keeps its own weights. Otherwise a
        torchvision weight name (``"DEFAULT"``, ``"IMAGENET1K_V2"`` or
        ``"ResNet50_Weights.IMAGENET1K_V2"``; needs network access or torch's
        hub cache), a local state-dict file (``.pth``/``.pt`` loaded with
        ``weights_only=True``, or ``.safetensors``), or None (nothing loaded:
        random initialisation for a name).
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
    mixed_precision : bool, "bfloat16" or "float16", default=True
        True: autocast (bf16 where supported, else fp16) on CUDA, float32 on
        the CPU. A dtype name forces that autocast on any device.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:N".
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation of networks built without weights.

    Attributes
    ----------
    network_ : torch.nn.Module
        The frozen feature network.
    random_init_ : bool
        True when the network was built from a name or callable without
        weights: its features are those of a random network (ClusterFit warns
        about such a teacher).
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
        "mixed_precision": ["boolean", StrOptions({"bfloat16", "float16"})],
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        model="resnet50",
        *,
        weights="auto",
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
        weights = resolve_weights(self.model, self.weights)
        random_state = self.random_state
        if weights is None and not isinstance(self.model, nn.Module):
            # Random weights: every process of a distributed fit builds the same.
            random_state = shared_random_state(random_state)
        with seeded(draw_seed(random_state), torch.device("cpu")):
            module = build_module(self.model, sample_shape)
        # Input shape and channels before any weights: a wrong input must not
        # first download (or fail to download) 100 MB of weights.
        check_channels(module, sample_shape, "feature")
        load_weights(module, self.model, weights)
        self.random_init_ = weights is None and not isinstance(self.model, nn.Module)
        self.network_ = self._feature_network(module)
        # One sample through the network: output width, and shape errors now, not mid-fit.
        self.n_features_out_ = self._transform_source(source.subset([0])).shape[1]
        return self

    def _feature_network(self, module):
        if self.layer is None:
            network, _ = split_head(module)
        else:
            network = NodeFeatures(module, self.layer)
        return network.eval().requires_grad_(False)

    @property
    def preprocess_(self):
        check_is_fitted(self)
        if self.preprocess != "auto":
            return self.preprocess
        enum = torchvision_weights(self.model, resolve_weights(self.model, self.weights))
        return weights_transforms(enum) if enum is not None else None

    def _preprocess_spec(self):
        """The preprocessing as a parameter value another network can take.

        A torchvision weights name (whose transforms to apply) when
        ``preprocess="auto"`` resolves through named weights, else the
        ``preprocess`` callable or None. ClusterFit gives it to its student,
        so that the student sees the teacher's input transform.
        """
        if self.preprocess != "auto":
            return self.preprocess
        return weights_name(self.model, resolve_weights(self.model, self.weights))

    def _student_template(self):
        """ClusterFit's default student: this architecture, re-initialised."""
        from ._training import NetClassifier  # a peer estimator, imported on use

        model = self.model
        if isinstance(model, nn.Module):
            model = reset_parameters(copy.deepcopy(model))
        return NetClassifier(model=model)

    # -- persistence protocol (skclusterfit.storage) ----------------------
    def _saved_networks(self):
        if not hasattr(self, "network_"):
            return {}
        return {"network_": {"build_shape": build_shape_of(self.network_)}}

    def _rebuild_network(self, name, info):
        module = build_module(self.model, tuple(info["build_shape"] or ()))
        return self._feature_network(module)

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
