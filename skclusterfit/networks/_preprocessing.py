"""A network's input preprocessing as plain settings: resize, centre crop, normalise.

The model libraries describe their evaluation preprocessing in their own
ways (timm's data config and ``create_transform``, a Hugging Face image
processor, open_clip's ``preprocess``). Read once into the same few settings
(the names of :class:`~skclusterfit.data.ImageFiles`), it applies the same way
to image files, decoded with PIL in DataLoader workers, and to batches of
arrays on the device; and, being JSON-able, it is stored with a saved model
and handed from a teacher to its student as a parameter value.
"""

import torch

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
SETTING_NAMES = ("mode", "size", "crop", "mean", "std", "interpolation")


def _pair_or_int(value):
    if value is None or isinstance(value, int):
        return value
    value = [int(v) for v in value]
    return value[0] if len(value) == 1 else tuple(value)


def make_settings(*, mode="RGB", size=None, crop=None, mean=None, std=None,
                  interpolation="bilinear"):
    """The settings dict, normalised (ints, tuples, floats) so that equal settings compare equal."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation={interpolation!r} must be one of {INTERPOLATIONS}."
        )
    crop = _pair_or_int(crop)
    if isinstance(crop, int):
        crop = (crop, crop)
    return {
        "mode": mode,
        "size": _pair_or_int(size),
        "crop": crop,
        "mean": None if mean is None else tuple(float(v) for v in mean),
        "std": None if std is None else tuple(float(v) for v in std),
        "interpolation": interpolation,
    }


class ImagePreprocessing:
    """Resize, centre-crop and normalise a batch of images ``(n, C, H, W)`` in [0, 1].

    The batch counterpart of :class:`~skclusterfit.data.ImageFiles`' reading
    with the same settings: ``torchvision.transforms.functional`` ``resize``
    (antialiased), ``center_crop`` and ``normalize``, which is what the
    libraries' own torchvision transforms call on tensors.

    Parameters
    ----------
    size : int, (height, width) or None
        An int sets the shorter side (aspect kept); a pair the exact size.
    crop : (height, width) or None
        Centre crop after resizing.
    mean, std : tuple of float or None
        Per-channel normalisation.
    interpolation : str, default="bilinear"
        One of ``INTERPOLATIONS``.
    mode : str, default="RGB"
        The colour mode image files are read in (batches are used as given).

    Examples
    --------
    >>> import torch
    >>> from skclusterfit.networks._preprocessing import ImagePreprocessing
    >>> prep = ImagePreprocessing(size=40, crop=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> prep(torch.zeros(2, 3, 50, 60)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(self, size=None, crop=None, mean=None, std=None, interpolation="bilinear",
                 mode="RGB"):
        self.settings = make_settings(mode=mode, size=size, crop=crop, mean=mean, std=std,
                                      interpolation=interpolation)

    def __call__(self, x):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        settings = self.settings
        if settings["size"] is not None:
            size = settings["size"]
            size = [size] if isinstance(size, int) else list(size)
            x = F.resize(x, size, interpolation=InterpolationMode(settings["interpolation"]),
                         antialias=True)
        if settings["crop"] is not None:
            x = F.center_crop(x, list(settings["crop"]))
        if settings["mean"] is not None:
            x = F.normalize(x, list(settings["mean"]), list(settings["std"]))
        return x

    def __eq__(self, other):
        return isinstance(other, ImagePreprocessing) and other.settings == self.settings

    __hash__ = None

    def __repr__(self):
        shown = ", ".join(f"{k}={v!r}" for k, v in self.settings.items() if v is not None)
        return f"ImagePreprocessing({shown})"


def settings_from_transforms(transforms, what):
    """The settings of a torchvision ``Compose`` of evaluation transforms.

    Understands ``Resize`` (shorter side or exact size), ``CenterCrop``,
    ``Normalize`` and the steps that only convert (to a tensor, to RGB). Any
    other step (e.g. a resize that keeps the longer side) is refused rather
    than dropped: ``what`` names the model in the message.
    """
    from torchvision import transforms as T

    settings = {}
    steps = getattr(transforms, "transforms", [transforms])
    for step in steps:
        name = type(step).__name__
        if isinstance(step, T.Resize):
            if step.max_size is not None:
                raise _unsupported(what, f"{name}(max_size={step.max_size})")
            settings["size"] = step.size
            settings["interpolation"] = step.interpolation.value
        elif isinstance(step, T.CenterCrop):
            settings["crop"] = step.size
        elif isinstance(step, T.Normalize):
            settings["mean"], settings["std"] = step.mean, step.std
            settings["mean"] = [float(v) for v in torch.as_tensor(step.mean).flatten()]
            settings["std"] = [float(v) for v in torch.as_tensor(step.std).flatten()]
        elif name in ("ToTensor", "MaybeToTensor", "PILToTensor", "MaybeConvertMode") or (
            getattr(step, "__name__", "") == "_convert_to_rgb"
        ):
            continue
        else:
            raise _unsupported(what, name)
    return make_settings(**settings)


def _unsupported(what, step):
    return ValueError(
        f"the preprocessing of {what} has a step skclusterfit cannot reproduce "
        f"({step}); pass preprocess= explicitly (a callable, or a dict of size, "
        "crop, mean, std, interpolation), and for image files ImageFiles(...) "
        "settings or the --resize/--crop/--mean/--std options."
    )
