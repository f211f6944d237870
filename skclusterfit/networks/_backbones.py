"""Turn a model specification into a network, and find its penultimate layer.

A specification is a torchvision model name, a built-in name (``"cnn"``,
``"mlp"``, ``"auto"``), an ``nn.Module`` or a callable returning one. Weights
are a torchvision weight name, a local file, or None. The user's own module is
never modified: everything here works on copies.
"""

import copy
import math
import os

import torch
from torch import nn

from ._builtin import MLP, SmallCNN
from ._heads import find_head, read_state_dict, replace_submodule, split_head  # noqa: F401
from ._libraries import (
    SPEC_HELP,
    LibraryFeatures,
    build_library_network,
    library_of,
    library_student,
    parse_spec,
)
from ._preprocessing import ImagePreprocessing
from ._video import VideoModel, video_model_names, wrap_video_transforms

_WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


class HeadedNetwork(nn.Module):
    """A network split into a feature ``backbone`` and a linear ``head``.

    Every network a :class:`~skclusterfit.NetClassifier` trains takes this
    form (its ``model_``): the network given as ``model`` loses its final
    ``nn.Linear``, which becomes ``head`` sized to the classes seen in fit,
    and the rest becomes ``backbone``. ``forward`` returns logits;
    :meth:`features` returns the penultimate features (the input of the
    head), which is what ``transform`` returns. Node names for
    ``layerwise_probe`` and ``FeatureExtractor(layer=...)`` start with
    ``backbone.`` or are ``head``.

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps a batch of inputs to features; outputs of more than two
        dimensions are flattened after the first.
    head : torch.nn.Linear
        Maps the features to one logit per class.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skclusterfit.networks import HeadedNetwork
    >>> net = HeadedNetwork(nn.Sequential(nn.Linear(64, 32), nn.ReLU()), nn.Linear(32, 10))
    >>> x = torch.zeros(5, 64)
    >>> net.features(x).shape, net(x).shape
    (torch.Size([5, 32]), torch.Size([5, 10]))
    """

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x):
        """Penultimate features of the batch ``x``: the head's input, shape (n, d)."""
        return torch.flatten(self.backbone(x), 1)

    def forward(self, x):
        """Logits of the batch ``x``, shape (n, n_classes)."""
        return self.head(self.features(x))


def _refuse_fixed(model, kwargs, fixed):
    """Refuse ``model_kwargs`` that set what skclusterfit sets itself (``fixed``)."""
    clash = sorted(set(kwargs) & set(fixed))
    if clash:
        raise ValueError(
            f"model_kwargs={kwargs!r} sets {clash}, which skclusterfit sets for "
            f"model={model!r} (from the data or the estimator's parameters)."
        )


def _built(build, model, kwargs, *args, **fixed):
    """``build(*args, **fixed, **kwargs)``, naming ``model_kwargs`` when it refuses one."""
    _refuse_fixed(model, kwargs, fixed)
    try:
        return build(*args, **fixed, **kwargs)
    except TypeError as exc:
        if not kwargs or "argument" not in str(exc):
            raise
        raise ValueError(f"model_kwargs={kwargs!r} for model={model!r}: {exc}") from exc


def builtin_name(model, sample_shape):
    """Resolve ``"auto"`` to the built-in network that fits the input's shape."""
    if model == "auto":
        return "cnn" if len(sample_shape) == 3 else "mlp"
    return model


def build_module(model, sample_shape, num_classes=10, *, weights=None, library_info=None,
                 model_kwargs=None):
    """Return a fresh ``nn.Module`` for ``model``; never the user's own object.

    A model library's specification (``"timm:NAME"``, ...) is built by the
    library with ``weights`` (see :func:`~skclusterfit.networks._libraries.build_library_network`),
    or from ``library_info`` without them; other names ignore ``weights``.
    ``model_kwargs`` go to the call that builds a named network (the
    library's, torchvision's ``get_model``, the built-in's constructor).
    """
    kwargs = dict(model_kwargs or {})
    if kwargs and not isinstance(model, str):
        raise ValueError(
            f"model_kwargs={kwargs!r} applies to a network given by name; "
            f"model={model!r} is built already: give it those arguments where it is "
            "built, or name the network."
        )
    if parse_spec(model) is not None:
        # A classifier's head has one output per class of y, as for the others.
        _refuse_fixed(model, kwargs, {} if num_classes is None else {"num_classes": num_classes})
        return build_library_network(model, weights, num_classes, info=library_info,
                                     kwargs=kwargs)
    if isinstance(model, str):
        name = builtin_name(model, sample_shape)
        if name == "cnn":
            if len(sample_shape) != 3:
                raise ValueError(
                    f"model='cnn' needs image input (n, C, H, W); got samples of "
                    f"shape {tuple(sample_shape)}. Use model='mlp' for vectors."
                )
            return _built(SmallCNN, model, kwargs, in_channels=sample_shape[0],
                          num_classes=num_classes)
        if name == "mlp":
            return _built(MLP, model, kwargs, int(math.prod(sample_shape)),
                          num_classes=num_classes)
        import torchvision  # imported on use: ~1 s and hundreds of MB of model code

        if name in video_model_names():
            if len(sample_shape) != 4:
                raise ValueError(
                    f"model={model!r} is a video network: X must hold videos "
                    f"(n, T, C, H, W); got samples of shape {tuple(sample_shape)}."
                )
            return _built(VideoModel(name), model, kwargs)
        if name not in torchvision.models.list_models():
            raise ValueError(
                f"model={model!r} is neither a built-in network ('auto', 'cnn', "
                "'mlp'), a torchvision model name (see "
                f"torchvision.models.list_models()), nor a model library's: {SPEC_HELP}."
            )
        return _built(torchvision.models.get_model, model, kwargs, name, weights=None)
    if isinstance(model, nn.Module):
        return copy.deepcopy(model)
    if callable(model):
        module = model()
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"model={model!r} is a callable that returned "
                f"{type(module).__name__}, not a torch.nn.Module."
            )
        return module
    raise TypeError(
        f"model={model!r} must be a model name, a torch.nn.Module or a callable "
        "returning one."
    )


def reset_parameters(module):
    """Re-initialise every layer that knows how to, in place."""
    for layer in module.modules():
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    return module


BUILTIN_NAMES = ("auto", "cnn", "mlp")


def resolve_weights(model, weights):
    """``weights`` with ``"auto"`` resolved: a torchvision name's pretrained default.

    ``"auto"`` means ``"DEFAULT"`` (torchvision's recommended pretrained
    weights) for a torchvision model name, and None (no weights to load)
    for a built-in name, a module (used with its own weights) or a callable.
    """
    if not (isinstance(weights, str) and weights == "auto"):
        return weights
    if parse_spec(model) is not None:
        return "auto"  # the library's own pretrained default
    if isinstance(model, str) and model not in BUILTIN_NAMES:
        return "DEFAULT"
    return None


def weights_name(model, weights):
    """The full torchvision name of ``weights`` (``"ResNet50_Weights.IMAGENET1K_V2"``),
    or None when they are a file, None, or not torchvision's."""
    enum = torchvision_weights(model, weights)
    if enum is None:
        return None
    return f"{type(enum).__name__}.{enum.name}"


def is_weight_file(weights):
    return isinstance(weights, (str, os.PathLike)) and (
        os.path.exists(weights)
        or os.sep in str(weights)
        or str(weights).endswith(_WEIGHT_FILE_SUFFIXES)
    )


def torchvision_weights(model, weights):
    """The torchvision weights enum named by ``weights``, or None for a file/None
    (or a model library's weights, which torchvision does not name)."""
    if weights is None or is_weight_file(weights) or parse_spec(model) is not None:
        return None
    if not isinstance(weights, str):
        return weights  # already a WeightsEnum member
    import torchvision

    try:
        if "." in weights:
            return torchvision.models.get_weight(weights)
        if not isinstance(model, str):
            raise ValueError(
                f"weights={weights!r} is a short torchvision weight name, which "
                "only works with a torchvision model name; with a module pass "
                "the full name, e.g. 'ResNet50_Weights.IMAGENET1K_V2', or a file."
            )
        return torchvision.models.get_model_weights(model)[weights]
    except (KeyError, ValueError, AttributeError) as exc:
        if isinstance(exc, ValueError) and "short torchvision" in str(exc):
            raise
        raise ValueError(
            f"weights={weights!r} is neither an existing file nor a torchvision "
            f"weight name for model={model!r}."
        ) from exc


def load_weights(module, model, weights):
    """Load ``weights`` (torchvision name or local file) into ``module`` in place."""
    if weights is None:
        return module
    if is_weight_file(weights):
        state = read_state_dict(weights)
    else:
        enum = torchvision_weights(model, weights)
        try:
            state = enum.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # no network, proxy, corrupt download...
            raise RuntimeError(
                f"could not fetch weights={weights!r} ({enum.url}): {exc}. On a "
                "machine without network access, download that file elsewhere "
                "and pass its local path instead, e.g. "
                f"weights='/path/to/{os.path.basename(enum.url)}'; it is loaded "
                "with torch.load(weights_only=True)."
            ) from exc
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"weights={weights!r} do not fit model={model!r}: {exc}"
        ) from exc
    return module


def with_new_head(module, n_outputs, model_repr="model"):
    """A :class:`HeadedNetwork` whose head maps the penultimate features to ``n_outputs``.

    A model library's network loses its head through the library's own API
    (timm ``reset_classifier(0)``); its features are taken as the library
    means them (:class:`~skclusterfit.networks._libraries.LibraryFeatures`).
    """
    if library_of(module) is not None or isinstance(module, LibraryFeatures):
        if isinstance(module, LibraryFeatures):
            backbone, width = module, module.output_dim()
        else:
            backbone, width = library_student(module)
        return HeadedNetwork(backbone, nn.Linear(width, n_outputs))
    backbone, head = split_head(module, model_repr)
    if head is None:
        raise ValueError(
            f"{model_repr} has no final nn.Linear layer to resize to {n_outputs} "
            "outputs; give it a linear classification head (e.g. an attribute "
            "'fc' = nn.Linear(features, classes))."
        )
    return HeadedNetwork(backbone, nn.Linear(head.in_features, n_outputs))


def first_conv_in_channels(module):
    """Input channels of the first 2-D convolution, or None if there is none."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return layer.in_channels
    return None


def build_shape_of(network):
    """A sample shape from which :func:`build_module` rebuilds a built-in network.

    The built-in CNN only needs the channel count and the MLP only the input
    width, so both can be read off a built network itself (this works for
    Dataset input too, where no ``input_shape_`` is recorded).
    """
    for layer in network.modules():
        if isinstance(layer, nn.Conv2d):
            return [layer.in_channels, 1, 1]
        if isinstance(layer, nn.Conv3d):  # a video network: (T, C, H, W) samples
            return [1, layer.in_channels, 1, 1]
        if isinstance(layer, nn.Linear):
            return [layer.in_features]
    return None


def check_channels(module, sample_shape, role):
    """Refuse images whose channel count the network's first convolution does not take."""
    if len(sample_shape) == 4:
        _check_video_channels(module, sample_shape, role)
        return
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


def _check_video_channels(module, sample_shape, role):
    """The same check for videos (T, C, H, W) and a network of 3-D convolutions."""
    conv = next((m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    if conv is None:
        return
    if isinstance(conv, nn.Conv2d):
        raise ValueError(
            f"the {role} network is an image network (2-D convolutions); X holds "
            f"videos of shape {tuple(sample_shape)} (T, C, H, W). Use a video "
            "model, e.g. model='r2plus1d_18'."
        )
    if sample_shape[1] != conv.in_channels:
        raise ValueError(
            f"X has videos of {sample_shape[1]} channel(s) per frame (samples of "
            f"shape {tuple(sample_shape)} as (T, C, H, W)) but the {role} network's "
            f"first convolution takes {conv.in_channels}; convert the frames (e.g. "
            "repeat grayscale to 3 channels)."
        )


def weights_transforms(enum):
    """The input transforms of torchvision weights, for our batch layouts.

    Video transforms give clips back frames first (see
    :func:`skclusterfit.networks.wrap_video_transforms`).
    """
    return wrap_video_transforms(enum.transforms())


def preprocess_from_spec(spec):
    """A batch preprocessing callable from its parameter value.

    ``spec`` is None (nothing), a callable (used as it is), a dict of
    :class:`~skclusterfit.networks._preprocessing.ImagePreprocessing` settings
    (``size``, ``crop``, ``mean``, ``std``, ``interpolation``: what a model
    library's teacher hands its student), or a full torchvision weights name
    such as ``"ResNet50_Weights.IMAGENET1K_V2"``, whose own transforms
    (resize, crop, normalisation) are applied.
    """
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, dict):
        return ImagePreprocessing(**spec)
    enum = torchvision_weights(None, spec)
    if enum is None:
        raise ValueError(
            f"preprocess={spec!r} is neither a callable nor a torchvision weights "
            "name such as 'ResNet50_Weights.IMAGENET1K_V2'."
        )
    return weights_transforms(enum)
