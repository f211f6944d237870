"""Input validation shared by the estimators (scikit-learn's ``validate_data`` plus image shapes)."""

import numpy as np
from sklearn.utils.validation import validate_data

from .data import ArraySource, first_input, image_layout, is_dataset
from .image_files import ImageFiles, is_path_list

_ACCEPTED_DTYPES = [np.float32, np.float64, np.uint8]


def validate_input(estimator, X, y=None, *, reset):
    """Validate ``X`` (and ``y``) the scikit-learn way, keeping image arrays n-D.

    A list or 1-D array of file paths becomes an :class:`ImageFiles` dataset
    (every file checked now). A torch Dataset passes through, its first item's
    shape recorded or checked like an array's samples. Arrays keep float32, float64 or
    uint8 (other numeric dtypes become float32), must be finite, and at
    ``reset`` record their per-sample shape in ``input_shape_``; later calls
    must match it.
    """
    if is_path_list(X):
        X = ImageFiles(X)  # checks every file now, naming a missing or bad one
    if is_dataset(X):
        if y is not None:
            y = validate_data(estimator, X="no_validation", y=y, reset=False)
        _check_sample_shape(estimator, tuple(first_input(X[0]).shape), reset)
        return (X, y) if y is not None else X
    kwargs = dict(reset=reset, allow_nd=True, dtype=_ACCEPTED_DTYPES)
    try:
        if y is not None:
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
    return (X, y) if y is not None else X


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
    if fitted is not None and _network_shape(tuple(fitted)) != _network_shape(sample_shape):
        raise ValueError(
            f"X has samples of shape {sample_shape}, but "
            f"{type(estimator).__name__} was fitted on samples of shape "
            f"{tuple(fitted)}."
        )
