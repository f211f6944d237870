"""What a fit keeps: saved estimators, checkpoints of interrupted fits, and fingerprints.

``save``/``load`` write and read one safetensors file without pickle;
:class:`StageStore` and :class:`EpochCheckpoint` are the files of
``ClusterFit(checkpoint_dir=...)`` and ``NetClassifier.fit(checkpoint=...)``;
the fingerprints say when two fits, or two teachers, are the same.
"""

from ._checkpoint import EpochCheckpoint, StageStore
from ._fingerprint import (
    data_fingerprint,
    estimator_fingerprint,
    fitted_fingerprint,
    parameter_fingerprint,
)
from ._persistence import PersistenceMixin, load, read_metadata, save

__all__ = [
    "EpochCheckpoint",
    "PersistenceMixin",
    "StageStore",
    "data_fingerprint",
    "estimator_fingerprint",
    "fitted_fingerprint",
    "load",
    "parameter_fingerprint",
    "read_metadata",
    "save",
]
