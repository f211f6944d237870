"""Input validation shared by the estimators (scikit-learn's ``validate_data`` plus image shapes)."""

import warnings

import numpy as np
import torch
from sklearn.utils.validation import validate_data

from .data._sources import ArraySource, first_input, image_layout, is_dataset
from .data._image_files import ImageFiles, is_path_list

_ACCEPTED_DTYPES = [np.float32, np.float64, np.uint8]


_NO_Y = "no_validation"


def validate_input(estimator, X, y=_NO_Y, *, reset):
    """Validate ``X`` (and ``y``) the scikit-learn way, keeping image arrays n-D.

    A list or 1-D array of file paths becomes an :class:`ImageFiles` dataset
    (every file checked now). A torch Dataset passes through, its first item's
    shape recorded or checked like an array's samples. Arrays keep float32, float64 or
    uint8 (other numeric dtypes become float32), must be finite, and at
    ``reset`` record their per-sample shape in ``input_shape_``; later calls
    must match it (images in another layout of the same shape, e.g.
    channels-last for a channels-first fit, are transposed to the fitted
    one). A torch tensor is taken as the numpy array it holds. Float images
    far outside [0, 1] (e.g. 0..255 not divided by 255) get a warning.
    """
    # A sentinel, not None: a classifier's fit must reject y=None (scikit-learn checks).
    has_y = not (isinstance(y, str) and y == _NO_Y)
    if isinstance(X, torch.Tensor):  # users of a torch library pass tensors
        X = X.detach().cpu().numpy()
    if has_y and isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if is_path_list(X):
        X = ImageFiles(X)  # checks every file now, naming a missing or bad one
    if is_dataset(X):
        if has_y:
            y = validate_data(estimator, X="no_validation", y=y, reset=False)
        first = first_input(X[0])
        _check_sample_shape(estimator, tuple(first.shape), reset)
        if first.ndim >= 2:
            _warn_image_range(float(first.min()), float(first.max()), "the first sample of X")
        return (X, y) if has_y else X
    _check_image_dtype(X)
    if not reset and getattr(X, "ndim", 0) >= 2:
        # Before scikit-learn's check, which would call an image's channels "features".
        X = _to_fitted_layout(estimator, X)
    kwargs = dict(reset=reset, allow_nd=True, dtype=_ACCEPTED_DTYPES)
    try:
        if has_y:
            X, y = validate_data(estimator, X, y, **kwargs)
        else:
            X = validate_data(estimator, X, **kwargs)
    except ValueError as exc:
        if "could not convert" in str(exc):
            # numpy's message names the value but not the parameter, nor what would work.
            raise ValueError(
                f"X must hold numbers (an array of images or vectors) or be a list of "
                f"image paths; {exc}."
            ) from exc
        if "contains NaN" in str(exc) or "contains infinity" in str(exc):
            _raise_not_finite(X, y if has_y else None, exc)
        raise
    image_layout(X.shape)  # raises on unsupported ndim
    _check_sample_shape(estimator, tuple(X.shape[1:]), reset)
    if X.ndim >= 3 and X.dtype.kind == "f":
        sample = _spread_out_sample(X)
        if sample.size:
            _warn_image_range(float(sample.min()), float(sample.max()), "X")
    return (X, y) if has_y else X


def _spread_out_sample(X, max_elements=2**20):
    """A strided view of about ``max_elements`` values of ``X`` (n, C, ...), spread
    over samples and pixels: the range check then costs no pass over a large
    array, nor reads all of a memory map."""
    rows = X[:: max(1, len(X) // 1000)]
    n_spatial = X.ndim - 2
    stride = int(np.ceil((rows.size / max_elements) ** (1 / n_spatial))) if rows.size else 1
    return rows[(slice(None), slice(None)) + (slice(None, None, max(1, stride)),) * n_spatial]


# Normalised images (ImageNet's mean and std) span about -2.1..2.6; 0..255 values
# not divided by 255 go far beyond.
_IMAGE_RANGE_WARNING = 8.0


def _warn_image_range(low, high, what):
    if low >= -_IMAGE_RANGE_WARNING and high <= _IMAGE_RANGE_WARNING:
        return
    hint = (" If they hold 0..255 pixel values, divide them by 255 (or pass uint8, "
            "which is scaled)." if 0 <= low and high <= 255 else "")
    warnings.warn(
        f"{what} holds float images with values from {low:g} to {high:g}, far outside "
        f"[0, 1]; the networks expect [0, 1] (or values normalised to about unit "
        f"variance), and their features suffer otherwise.{hint}",
        UserWarning, stacklevel=4,
    )


def _raise_not_finite(X, y, exc):
    """scikit-learn's message, without its hints for tabular estimators."""
    which = "y" if "Input y" in str(exc) else "X"
    values = np.asarray(X if which == "X" else y)
    try:
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        rows = np.flatnonzero(bad)
        where = (f" ({len(rows)} sample(s), the first at index {rows[0]})"
                 if len(rows) else "")
    except (TypeError, ValueError):
        where = ""
    kind = "NaN" if "NaN" in str(exc) else "infinity"
    raise ValueError(
        f"{which} contains {kind}{where}; the networks need finite values. Drop or "
        f"repair those samples first."
    ) from None


def _to_fitted_layout(estimator, X):
    """``X`` in the layout the estimator was fitted on, or a clear error.

    Images are accepted as (n, C, H, W), (n, H, W, C) or (n, H, W); one fitted
    on one layout takes the same images in another, transposed here (a view).
    """
    fitted = getattr(estimator, "input_shape_", None)
    if fitted is None or X.ndim < 2:
        return X
    fitted, sample_shape = tuple(fitted), tuple(X.shape[1:])
    if sample_shape == fitted or (len(fitted) == 1 and X.ndim == 2):
        return X  # vectors: scikit-learn's own check names the feature counts
    seen, expected = _network_shape(sample_shape), _network_shape(fitted)
    if len(expected) >= 3 and X.ndim == 2:
        name = type(estimator).__name__
        reshape = (f" If its rows are flattened images, reshape it: "
                   f"X.reshape(-1, {', '.join(map(str, fitted))})."
                   if int(np.prod(fitted)) == sample_shape[0] else "")
        raise ValueError(
            f"X is 2-D, of shape {tuple(X.shape)}, but {name} was fitted on images "
            f"of shape {fitted}.{reshape}"
        )
    if seen != expected:
        _check_sample_shape(estimator, sample_shape, reset=False)  # raises
    if X.ndim in (3, 4) and len(fitted) in (2, 3):
        return _from_nchw(_to_nchw(X), fitted)
    return X


def _to_nchw(X):
    layout = image_layout(X.shape)
    if layout == "nhwc":
        return np.moveaxis(X, -1, 1)
    if layout == "nhw":
        return X[:, None]
    return X


def _from_nchw(X, fitted):
    layout = image_layout((1, *fitted))
    if layout == "nhwc":
        return np.moveaxis(X, 1, -1)
    if layout == "nhw":
        return X[:, 0]
    return X


def _check_image_dtype(X):
    """Refuse integer images other than uint8: there is no safe guess of their range."""
    dtype = getattr(X, "dtype", None)
    if dtype is None or getattr(X, "ndim", 0) < 3:
        return
    dtype = np.dtype(dtype)
    if dtype.kind in "iu" and dtype != np.uint8:
        raise ValueError(
            f"X holds {dtype.name} images; only uint8 images are scaled (to [0, 1]) "
            "and other integer types are not guessed. Convert them first: "
            "X.astype(np.uint8) if they hold 0..255, or X.astype(np.float32) / "
            "max_value for another range (e.g. 65535 for 16-bit images)."
        )


def _network_shape(sample_shape):
    """A sample's shape as the network sees it, (C, H, W) or (D,), for comparisons.

    Lets a model fitted on an (n, H, W, C) array accept the same images as a
    Dataset of (C, H, W) tensors, and the other way round.
    """
    if len(sample_shape) not in (1, 2, 3):
        return sample_shape
    return ArraySource(np.broadcast_to(np.zeros((), np.uint8), (1, *sample_shape))).sample_shape


def _check_sample_shape(estimator, sample_shape, reset):
    if reset:
        estimator.input_shape_ = sample_shape
        return
    fitted = getattr(estimator, "input_shape_", None)
    if fitted is None:
        return
    seen, expected = _network_shape(sample_shape), _network_shape(tuple(fitted))
    if seen == expected:
        return
    name = type(estimator).__name__
    if len(seen) == 3 and len(expected) == 3:
        raise ValueError(
            f"X has images of shape {sample_shape} ({seen[0]} channel(s) of "
            f"{seen[1]}x{seen[2]} pixels as (C, H, W)), but {name} was fitted on "
            f"images of shape {tuple(fitted)} ({expected[0]} channel(s) of "
            f"{expected[1]}x{expected[2]})."
        )
    raise ValueError(
        f"X has samples of shape {sample_shape}, but {name} was fitted on samples "
        f"of shape {tuple(fitted)}."
    )
