"""skclusterfit: ClusterFit (CVPR 2020) behind the scikit-learn API."""

from ._clusterfit import ClusterFit
from .distillation import Distillation
from .features import FeatureExtractor
from .multi_teacher import ConcatTeachers
from .persistence import load, save
from .training import NetClassifier

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
