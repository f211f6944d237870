"""The names of the command line and of fit_folder/transform_folder that 0.2
aligned with the estimators' (``max_epochs``, ``random_state``,
``num_workers``) and ImageReader's (``size``); the 0.1 names work, with a
warning, until 0.3. One table for the options (``_main``) and the keyword
arguments (``_image_folder``)."""

import warnings

RENAMED = {"epochs": "max_epochs", "seed": "random_state", "workers": "num_workers",
           "resize": "size"}


def renamed_arguments(function, renamed, **given):
    """``given`` with the arguments passed by their 0.1 names in ``renamed``, warned about."""
    for old, value in renamed.items():
        new = RENAMED.get(old)
        if new not in given:
            raise TypeError(f"{function}() got an unexpected keyword argument {old!r}")
        warnings.warn(
            f"skclusterfit.cli.{function}({old}=...) is deprecated since 0.2 and will be "
            f"removed in 0.3: use {new}=, the estimators' name.",
            FutureWarning,
            stacklevel=3,
        )
        given[new] = value
    return given
