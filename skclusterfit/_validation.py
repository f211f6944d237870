"""Input validation shared by the estimators (scikit-learn's ``validate_data`` plus image shapes)."""

import numpy as np
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
    must match it.
    """
    # A sentinel, not None: a classifier's fit must reject y=None (scikit-learn checks).
    has_y = not (isinstance(y, str) and y == _NO_Y)
    if is_path_list(X):
        X = ImageFiles(X)  # checks every file now, naming a missing or bad one
    if is_dataset(X):
        if has_y:
            y = validate_data(estimator, X="no_validation", y=y, reset=False)
        _check_sample_shape(estimator, tuple(first_input(X[0]).shape), reset)
        return (X, y) if has_y else X
    _check_image_dtype(X)
    if not reset and getattr(X, "ndim", 0) > 2:
        # Before scikit-learn's check, which would call an image's channels "features".
        _check_sample_shape(estimator, tuple(X.shape[1:]), reset)
    kwargs = dict(reset=reset, allow_nd=True, dtype=_ACCEPTED_DTYPES)
    try:
        if has_y:
            X, y = validate_data(estimator, X, y, **kwargs)
        else:
            X = validate_data(estimator, X, **kwargs)
    except ValueError as exc:
        if "could not convert" not in str(exc):
            raise
        # numpy's message names the value but not the parameter, nor what would work.
        raise ValueError(
            f"X must hold numbers (an array of images or vectors) or be a list of "
            f"image paths; {exc}."
        ) from exc
    image_layout(X.shape)  # raises on unsupported ndim
    _check_sample_shape(estimator, tuple(X.shape[1:]), reset)
    return (X, y) if has_y else X


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
