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
from .networks._libraries import (
    POOLINGS,
    LayerFeatures,
    LibraryFeatures,
    library_build_info,
    library_of,
    library_preprocessing,
    parse_spec,
    pool_output,
)
from .networks._preprocessing import ImagePreprocessing
from .data._sources import make_source
from .storage._persistence import PersistenceMixin


class NodeFeatures(nn.Module):
    """The output of one named node of a network: maps averaged over space, tokens pooled."""

    def __init__(self, module, layer, pooling="auto"):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.layer = layer
        self.pooling = pooling
        # torchvision's ViT puts its class token first; other token sequences
        # are averaged ("auto").
        self.n_prefix = 1 if getattr(module, "class_token", None) is not None else 0
        self.graph = create_feature_extractor(module, return_nodes={layer: "out"})

    def forward(self, x):
        return pool_output(self.graph(x)["out"], self.pooling, self.n_prefix)


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
        a built-in name (``"auto"``, ``"cnn"``, ``"mlp"``), a model library's
        name: ``"timm:NAME"``, ``"hf:NAME_OR_DIR"`` (Hugging Face
        transformers), ``"open_clip:NAME"`` or ``"hub:DIR:ENTRY"`` (a local
        torch.hub repository), built by that library (see
        :ref:`model_libraries`); an ``nn.Module`` (copied, used with its
        current weights unless ``weights`` is given; a timm, transformers or
        open_clip module keeps its library's way of giving features), or a
        callable returning a module.
    weights : "auto", str, path or None, default="auto"
        "auto": a torchvision model name gets its default pretrained weights
        (``"DEFAULT"``, as ``ClusterFit(teacher="resnet50")``); a built-in
        name or a callable is randomly initialised (seeded by
        ``random_state``); a module keeps its own weights. Otherwise a
        torchvision weight name (``"DEFAULT"``, ``"IMAGENET1K_V2"`` or
        ``"ResNet50_Weights.IMAGENET1K_V2"``; needs network access or torch's
        hub cache), a local state-dict file (``.pth``/``.pt`` loaded with
        ``weights_only=True``, or ``.safetensors``), or None (nothing loaded:
        random initialisation for a name). For a model library's name,
        loaded by the library's own code: "auto" is its pretrained default;
        also a local file or directory, or one of its pretrained tags.
    model_kwargs : dict or None, default=None
        Keyword arguments of the call that builds a network given by name:
        ``timm.create_model`` (e.g. ``{"img_size": 224}``), Hugging Face
        ``from_pretrained`` (configuration overrides), ``open_clip.create_model``,
        a torch.hub entry, ``torchvision.models.get_model``, the built-in
        networks' constructors (``{"width": 64}``). Kept with a saved model,
        and given to the default student of ClusterFit with the name.
    layer : str, default=None
        A node name as in ``torchvision.models.feature_extraction``
        (e.g. ``"layer3"``), or for a model library's network a module name
        (e.g. ``"blocks.6"`` of a timm ViT, ``"encoder.layer.6"`` of a
        Hugging Face one); spatial outputs are global-average pooled, token
        outputs pooled by ``pooling``. None means the penultimate layer: the
        input of the final ``nn.Linear`` when it is the network's last
        module, the library's own features for a model library's network
        (timm ``forward_head(forward_features(x), pre_logits=True)``,
        transformers ``pooler_output``, open_clip ``encode_image``).
    pooling : {"auto", "cls", "mean", "cls+mean"}, default="auto"
        How tokens become features. "auto": the library's own features
        (above), or for a ``layer`` of tokens its class token (the token mean
        where there is none). "cls": the class token; "mean": the mean of the
        patch tokens; "cls+mean": both, concatenated (DINO's linear
        evaluation).
    n_last_blocks : int, default=1
        With a model library's transformer and ``pooling`` other than
        "auto" (or "auto" meaning "cls" here): the class tokens (and patch
        means) of the last ``n_last_blocks`` blocks, each normalised as the
        last one is, concatenated (DINO uses 4).
    preprocess : callable, "auto" or None, default="auto"
        Applied to each float batch on the device before the network. "auto"
        uses the transforms of the torchvision ``weights`` when given by name
        (resize, crop, normalise), for a model library's name the library's
        evaluation preprocessing from the model's own configuration (timm
        ``resolve_model_data_config``, the Hugging Face image processor,
        open_clip's preprocess), nothing otherwise. A dict of settings
        (``size``, ``crop``, ``mean``, ``std``, ``interpolation``) is applied
        the same way. uint8 input is scaled to [0, 1] before this.
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
        ``weights`` given by name, or the model library's preprocessing
        (None when there are none).
    preprocess_settings_ : dict or None
        For a model library's name: its evaluation preprocessing read from
        the model's configuration (``size``, ``crop``, ``mean``, ``std``,
        ``interpolation``, ``mode``), as :class:`~skclusterfit.data.ImageFiles`
        takes them; None otherwise.
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
        "model_kwargs": [dict, None],
        "layer": [str, None],
        "pooling": [StrOptions(set(POOLINGS))],
        "n_last_blocks": [Interval(Integral, 1, None, closed="left")],
        "preprocess": [callable, StrOptions({"auto"}), dict, None],
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
        model_kwargs=None,
        layer=None,
        pooling="auto",
        n_last_blocks=1,
        preprocess="auto",
        batch_size=256,
        num_workers=0,
        mixed_precision=True,
        device="auto",
        random_state=None,
    ):
        self.model = model
        self.weights = weights
        self.model_kwargs = model_kwargs
        self.layer = layer
        self.pooling = pooling
        self.n_last_blocks = n_last_blocks
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
        named_library = parse_spec(self.model) is not None
        random_state = self.random_state
        if weights is None and not isinstance(self.model, nn.Module):
            # Random weights: every process of a distributed fit builds the same.
            random_state = shared_random_state(random_state)
        with seeded(draw_seed(random_state), torch.device("cpu")):
            # A model library's network comes with its weights, loaded by the library.
            module = build_module(self.model, sample_shape, weights=weights,
                                  model_kwargs=self.model_kwargs)
        # Input shape and channels before any weights: a wrong input must not
        # first download (or fail to download) 100 MB of weights.
        check_channels(module, sample_shape, "feature")
        if not named_library:
            load_weights(module, self.model, weights)
        self.random_init_ = weights is None and not isinstance(self.model, nn.Module)
        self.preprocess_settings_ = (
            library_preprocessing(self.model, module, weights) if named_library else None
        )
        self.network_ = self._feature_network(module)
        # One sample through the network: output width, and shape errors now, not mid-fit.
        self.n_features_out_ = self._transform_source(source.subset([0])).shape[1]
        return self

    def _feature_network(self, module):
        if parse_spec(self.model) is not None or library_of(module) is not None:
            if self.layer is None:
                network = LibraryFeatures(module, self.pooling, self.n_last_blocks)
            else:
                network = LayerFeatures(module, self.layer, self.pooling)
        elif self.n_last_blocks != 1 or (self.layer is None and self.pooling != "auto"):
            raise ValueError(
                f"pooling={self.pooling!r} with n_last_blocks={self.n_last_blocks} "
                "takes the tokens of a model library's transformer (e.g. "
                f"'timm:...'); model={self.model!r} is not one. Choose a layer= to "
                "pool its tokens."
            )
        elif self.layer is None:
            network, _ = split_head(module, f"model={self.model!r}")
        else:
            network = NodeFeatures(module, self.layer, self.pooling)
        return network.eval().requires_grad_(False)

    @property
    def preprocess_(self):
        check_is_fitted(self)
        if isinstance(self.preprocess, dict):
            return ImagePreprocessing(**self.preprocess)
        if self.preprocess != "auto":
            return self.preprocess
        if getattr(self, "preprocess_settings_", None) is not None:
            return ImagePreprocessing(**self.preprocess_settings_)
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
        if getattr(self, "preprocess_settings_", None) is not None:
            return dict(self.preprocess_settings_)  # settings, so that the student stores them
        return weights_name(self.model, resolve_weights(self.model, self.weights))

    def _student_template(self):
        """ClusterFit's default student: this architecture, re-initialised."""
        from ._training import NetClassifier  # a peer estimator, imported on use

        model = self.model
        if isinstance(model, nn.Module):
            model = reset_parameters(copy.deepcopy(model))
        return NetClassifier(model=model, model_kwargs=self.model_kwargs)

    # -- persistence protocol (skclusterfit.storage) ----------------------
    def _saved_networks(self):
        if not hasattr(self, "network_"):
            return {}
        # A library's own build information, e.g. a Hugging Face config: the
        # network is rebuilt on load with no download or model directory.
        return {"network_": {"build_shape": build_shape_of(self.network_),
                             **library_build_info(self.model, self.network_)}}

    def _rebuild_network(self, name, info):
        module = build_module(self.model, tuple(info["build_shape"] or ()),
                              library_info=info.get("library"), model_kwargs=self.model_kwargs)
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
