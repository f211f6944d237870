"""
The fit script: ClusterFit written as for one process
=====================================================

This is the script :ref:`sphx_glr_auto_examples_scaling_plot_torchrun.py`
runs, once with ``python`` and once with ``torchrun``::

    python torchrun_fit.py TEACHER.skcf OUT_DIR
    torchrun --standalone --nproc_per_node=2 torchrun_fit.py TEACHER.skcf OUT_DIR

Nothing in it mentions torch.distributed. Under torchrun, ClusterFit sees the
environment torchrun sets, initialises the process group (gloo on the CPU,
NCCL on GPUs), and every process extracts the teacher features of its own
rows, clusters them together with the others and trains the student with
DistributedDataParallel. Every process ends with the same fitted model;
``save`` writes it from process 0 only.
"""

import os
import sys

from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

import skclusterfit
from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import load_digits_images

# plot_torchrun.py passes its own seed on (SKCLUSTERFIT_EXAMPLE_SEED).
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

teacher_file, out_dir = sys.argv[1], sys.argv[2]

X, y = load_digits_images()
X_train, _, _, _ = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)

cf = ClusterFit(
    teacher=FrozenEstimator(skclusterfit.load(teacher_file)),
    K=100,
    student=NetClassifier(max_epochs=15, batch_size=64),  # per process
    random_state=seed,
    verbose=1,
)
cf.fit(X_train)

world_size = int(os.environ.get("WORLD_SIZE", 1))
cf.save(os.path.join(out_dir, f"clusterfit-{world_size}.skcf"))
