"""
ClusterFit on two processes with torchrun
=========================================

A script written for one process (:ref:`the fit script
<sphx_glr_auto_examples_scaling_torchrun_fit.py>`) runs unchanged under
``torchrun --nproc_per_node=2``: here on two CPU processes with the gloo
backend, while this page was built. Each process extracts the teacher
features of half the images, the two cluster them together (one all-reduce
of the centroid sums and counts per k-means iteration) and train the student
with DistributedDataParallel, each on its own half of every epoch.

We compare it with the same script run by plain ``python``: the same
pseudo-labels up to a few ties, and a student as good on a linear probe.
Read more in :ref:`scaling`.
"""

# %%
# A teacher trained on 80% wrong labels, saved to a file the script loads.
import os
import subprocess
import sys
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

import skclusterfit
from skclusterfit import NetClassifier
from skclusterfit.data import add_label_noise, load_digits_images
from skclusterfit.evaluation import linear_probe

# Every random step of this page is seeded with ``seed``; the slow tests rerun
# the page with another one (tests/test_examples.py) so that its claims are
# not one lucky draw.
seed = int(os.environ.get("SKCLUSTERFIT_EXAMPLE_SEED", "0"))

X, y = load_digits_images()
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=seed
)
teacher = NetClassifier(max_epochs=40, random_state=seed).fit(
    X_train, add_label_noise(y_train, 0.8, random_state=seed)
)
work = tempfile.mkdtemp()
teacher_file = teacher.save(os.path.join(work, "teacher.skcf"))

# %%
# The same script, by ``python`` and by ``torchrun`` with two processes. Each
# process runs on one thread; the script's log lines of both processes are
# printed below (``[ClusterFit] process 0 of 2`` ...).
try:
    here = os.path.dirname(os.path.abspath(__file__))
except NameError:  # sphinx-gallery runs an example from its own folder
    here = os.getcwd()
script = os.path.join(here, "torchrun_fit.py")
env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
launchers = {
    1: [sys.executable],
    2: [sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node=2"],
}
for world_size, launcher in launchers.items():
    run = subprocess.run(
        [*launcher, script, teacher_file, work], env=env, capture_output=True, text=True
    )
    if run.returncode != 0:
        raise RuntimeError(run.stdout[-3000:] + run.stderr[-3000:])
    print(f"--- {world_size} process(es)")
    print("\n".join(line for line in run.stdout.splitlines() if line.startswith("[")))

# %%
# Both runs saved their model (the 2-process one from process 0 only); both
# load in this single process.
one = skclusterfit.load(os.path.join(work, "clusterfit-1.skcf"))
two = skclusterfit.load(os.path.join(work, "clusterfit-2.skcf"))
same = np.mean(one.labels_ == two.labels_)
print(f"identical pseudo-labels: {same:.2%}")
print(f"largest difference between the centres: "
      f"{np.abs(one.cluster_centers_ - two.cluster_centers_).max():.2g}")

accuracy = {
    "teacher\n(N_pre)": linear_probe(X_train, y_train, X_test, y_test, transformer=teacher),
    "ClusterFit\n1 process": linear_probe(X_train, y_train, X_test, y_test, transformer=one),
    "ClusterFit\n2 processes": linear_probe(X_train, y_train, X_test, y_test, transformer=two),
}
for name, value in accuracy.items():
    print(f"{name.replace(chr(10), ' ')}: linear-probe accuracy {value:.4f}")

# %%
# With ``batch_size=64`` per process, two processes take steps of 128 images:
# half as many steps per epoch, hence a slightly slower fall of the loss (the
# user guide says how to scale the learning rate with the number of processes).
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
bars = left.bar(list(accuracy), list(accuracy.values()), color=["0.6", "C0", "C1"])
left.bar_label(bars, fmt="%.3f")
left.set_ylim(0.8, 1.0)
left.set_ylabel("linear-probe accuracy (clean labels)")
for model, label, color in ((one, "1 process", "C0"), (two, "2 processes", "C1")):
    losses = [epoch["loss"] for epoch in model.student_.history_]
    right.plot(range(1, len(losses) + 1), losses, "o-", color=color, label=label)
right.set_xlabel("student epoch")
right.set_ylabel("training loss (pseudo-labels)")
right.legend()
fig.tight_layout()
plt.show()
