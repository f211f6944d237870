"""skclusterfit: ClusterFit (CVPR 2020) behind the scikit-learn API."""

try:
    from ._clusterfit import ClusterFit
    from ._distillation import Distillation
    from ._features import FeatureExtractor
    from ._multi_teacher import ConcatTeachers
    from .storage import load, save
    from ._training import NetClassifier
except KeyboardInterrupt:
    # Ctrl-C during the few seconds of importing torch: the command line answers
    # in one line, as it does once started (skclusterfit.cli.main).
    import sys as _sys

    _module_run = _sys.argv[0] == "-m" and "skclusterfit" in getattr(_sys, "orig_argv", ())
    if _module_run or _sys.argv[0].endswith(("skclusterfit", "skclusterfit.exe")):
        print("skclusterfit: interrupted while starting", file=_sys.stderr)
        raise SystemExit(130) from None
    raise

__version__ = "0.1.0"

__all__ = [
    "ClusterFit",
    "ConcatTeachers",
    "Distillation",
    "FeatureExtractor",
    "NetClassifier",
    "load",
    "save",
    "__version__",
]
