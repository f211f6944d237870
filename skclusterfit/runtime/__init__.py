"""Where and how a fit runs: processes under torchrun, devices and seeds, progress, files.

The public names are the torch.distributed helpers that ClusterFit,
NetClassifier and KMeans use under ``torchrun`` (:ref:`scaling`), needed only
to write distributed code of your own. The private modules hold the services
every estimator shares: devices, seeds and mixed precision (``_torch_utils``),
the training loop's share of each process (``_ddp``), progress bars
(``_progress``), atomic file writing (``_atomic``), arrays on disk
(``_out_of_core``) and small facts about scikit-learn estimators (``_estimators``).
This is the lowest layer: it imports no other part of the package.
"""

from ._distributed import (
    LOCAL,
    ProcessGroup,
    init_process_group,
    is_initialized,
    process_group,
    shard_bounds,
    torchrun_environment,
)

__all__ = [
    "LOCAL",
    "ProcessGroup",
    "init_process_group",
    "is_initialized",
    "process_group",
    "shard_bounds",
    "torchrun_environment",
]
