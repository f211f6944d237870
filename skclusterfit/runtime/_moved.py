"""The import paths of version 0.1 that moved in 0.2, and their stubs.

Version 0.2 moved the flat modules into subpackages (``data``, ``networks``,
``runtime``, ``storage``, ``cli``). Each old path stays importable for one
release as a stub whose names are looked up on use (PEP 562) with a
``FutureWarning`` naming the new place. Files saved by 0.1 name their classes
by the old module; ``load`` reads them through :data:`MOVED_MODULES`, which
outlives the stubs.
"""

import importlib
import warnings

REMOVED_IN = "0.3"

# old module -> (the public package to import from now, the module that holds the code)
MOVED_MODULES = {
    "skclusterfit.augment": ("skclusterfit.data", "skclusterfit.data._augment"),
    "skclusterfit.datasets": ("skclusterfit.data", "skclusterfit.data._datasets"),
    "skclusterfit.image_files": ("skclusterfit.data", "skclusterfit.data._image_files"),
    "skclusterfit.backbones": ("skclusterfit.networks", "skclusterfit.networks._backbones"),
    "skclusterfit.models": ("skclusterfit.networks", "skclusterfit.networks._builtin"),
    "skclusterfit.video": ("skclusterfit.networks", "skclusterfit.networks._video"),
    "skclusterfit.distributed": ("skclusterfit.runtime", "skclusterfit.runtime._distributed"),
    "skclusterfit.checkpoint": ("skclusterfit.storage", "skclusterfit.storage._checkpoint"),
    "skclusterfit.fingerprint": ("skclusterfit.storage", "skclusterfit.storage._fingerprint"),
    "skclusterfit.persistence": ("skclusterfit.storage", "skclusterfit.storage._persistence"),
    "skclusterfit.distillation": ("skclusterfit", "skclusterfit._distillation"),
    "skclusterfit.features": ("skclusterfit", "skclusterfit._features"),
    "skclusterfit.multi_teacher": ("skclusterfit", "skclusterfit._multi_teacher"),
    "skclusterfit.training": ("skclusterfit", "skclusterfit._training"),
    "skclusterfit.image_folder": ("skclusterfit.cli", "skclusterfit.cli._image_folder"),
    "skclusterfit.report": ("skclusterfit.cli", "skclusterfit.cli._report"),
}


def current_module(name):
    """The module that holds the code of module ``name`` now (``name`` itself if it did not move)."""
    return MOVED_MODULES.get(name, (None, name))[1]


def stub(old):
    """``__getattr__``, ``__dir__`` and ``__all__`` of the stub module at the old path ``old``."""
    public, private = MOVED_MODULES[old]

    def exported():
        return list(getattr(importlib.import_module(public), "__all__", ()))

    def __getattr__(name):
        try:
            value = getattr(importlib.import_module(private), name)
        except AttributeError:
            raise AttributeError(f"module {old!r} has no attribute {name!r}") from None
        home = public if name in exported() else private
        warnings.warn(
            f"{old} is deprecated since 0.2 and will be removed in {REMOVED_IN}: "
            f"import {name} from {home} instead.",
            FutureWarning,
            stacklevel=2,
        )
        return value

    def __dir__():
        code = importlib.import_module(private)
        return sorted(set(exported()) | {n for n in dir(code) if not n.startswith("_")})

    # A star import of the stub gives the public names whose code lives in ``private``.
    public_module, code = importlib.import_module(public), importlib.import_module(private)
    names = [n for n in exported() if getattr(public_module, n) is getattr(code, n, None)]
    return __getattr__, __dir__, names
