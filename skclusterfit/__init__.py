"""skclusterfit: ClusterFit (CVPR 2020) behind the scikit-learn API."""

from ._clusterfit import ClusterFit
from ._distillation import Distillation
from ._features import FeatureExtractor
from ._multi_teacher import ConcatTeachers
from .storage import load, save
from ._training import NetClassifier

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
