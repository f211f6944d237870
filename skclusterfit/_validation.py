"""Input validation shared by the estimators (scikit-learn's ``validate_data`` plus image shapes)."""

import numpy as np
from sklearn.utils.validation import validate_data

from .data import image_layout, is_dataset

_ACCEPTED_DTYPES = [np.float32, np.float64, np.uint8]


_NO_Y = "no_validation"


def validate_input(estimator, X, y=_NO_Y, *, reset):
    """Validate ``X`` (and ``y``) the scikit-learn way, keeping image arrays n-D.

    A torch Dataset passes through untouched. Arrays keep float32, float64 or
    uint8 (other numeric dtypes become float32), must be finite, and at
    ``reset`` record their per-sample shape in ``input_shape_``; later calls
    must match it.
    """
    has_y = not (isinstance(y, str) and y == _NO_Y)
    if is_dataset(X):
        if has_y:
            y = validate_data(estimator, X="no_validation", y=y, reset=False)
        return (X, y) if has_y else X
    kwargs = dict(reset=reset, allow_nd=True, dtype=_ACCEPTED_DTYPES)
    if has_y:
        X, y = validate_data(estimator, X, y, **kwargs)
    else:
        X = validate_data(estimator, X, **kwargs)
    image_layout(X.shape)  # raises on unsupported ndim
    sample_shape = tuple(X.shape[1:])
    if reset:
        estimator.input_shape_ = sample_shape
    elif getattr(estimator, "input_shape_", sample_shape) != sample_shape:
        raise ValueError(
            f"X has samples of shape {sample_shape}, but "
            f"{type(estimator).__name__} was fitted on samples of shape "
            f"{estimator.input_shape_}."
        )
    return (X, y) if has_y else X
