"""Run by test_distributed_hardware.py, in one process or under
``torchrun --nproc_per_node=2`` (gloo, CPU): what each process trains on and
starts from when the user gives no seed, and the student a fit ends with.

    python _distributed_seeds.py OUT_DIR
    torchrun --standalone --nproc_per_node=2 _distributed_seeds.py OUT_DIR

Each process writes ``OUT_DIR/rank<r>.npz``.
"""

import os
import sys

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import load_digits_images
from skclusterfit.runtime import _ddp

torch.set_num_threads(1)


def main(out_dir):
    rank = int(os.environ.get("RANK", 0))
    X, y = load_digits_images()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    shares, steps = [], []
    original = _ddp.epoch_share

    def spy(order, batch_size, group):
        share = original(order, batch_size, group)
        shares.append(np.asarray(share))
        steps.append(-(-len(share) // batch_size))  # this process's optimizer steps
        return share

    _ddp.epoch_share = spy
    # random_state=None: the epoch order and the initial weights of every process.
    unseeded = NetClassifier(max_epochs=1, batch_size=32, device="cpu").fit(X[:400], y[:400])
    epoch_share = shares[0]
    teacher = FeatureExtractor("cnn", device="cpu").fit(X[:50])
    teacher_features = teacher.transform(X[:50])
    cf = ClusterFit(teacher=FeatureExtractor("cnn"), K=10,
                    student=NetClassifier(max_epochs=1), device="cpu").fit(X[:200])
    # The student with the same seed and batch_size in 1 or 2 processes.
    student = NetClassifier(max_epochs=6, batch_size=32, device="cpu", random_state=0)
    student.fit(X_train, y_train)
    np.savez(
        os.path.join(out_dir, f"rank{rank}.npz"),
        epoch_share=epoch_share,
        unseeded_features=unseeded.transform(X[:20]),
        teacher_features=teacher_features,
        clusterfit_labels=cf.labels_,
        clusterfit_teacher=cf.teacher_.transform(X[:20]),
        student_accuracy=student.score(X_test, y_test),
        student_steps=steps[-1],
    )
    print(f"rank {rank} done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
