"""A ClusterFit fit written as for one process, launched by test_distributed.py
under ``torchrun --nproc_per_node=2`` (gloo, CPU) and also run in one process.

    python _distributed_fit.py OUT_DIR [CHECKPOINT_DIR]
    torchrun --nproc_per_node=2 _distributed_fit.py OUT_DIR [CHECKPOINT_DIR]

Nothing here mentions torch.distributed: the script is the user's. Each
process writes what the test compares to ``OUT_DIR/rank<r>.npz`` (its
labels_, centres, student features, and a fingerprint of its whole fitted
estimator) and calls ``save`` (which only process 0 performs). With
``SKCF_SLOW=1`` every training batch sleeps a little, so that the test can
kill the run while the student trains; the result does not change.
"""

import os
import sys
import time

import numpy as np
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import random_shift
from skclusterfit.data import load_digits_images
from skclusterfit.storage import estimator_fingerprint

# The global batch of both runs (batch_size is global: two processes take 32 each).
GLOBAL_BATCH = 64


class SlowableShift:
    """Random shifts drawn from the training loop's generator (slowed on request)."""

    def __call__(self, x, generator):
        if os.environ.get("SKCF_SLOW"):
            time.sleep(0.2)
        return random_shift(x, 1, generator)


def data():
    X, y = load_digits_images()
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


def make_clusterfit(checkpoint_dir=None):
    return ClusterFit(
        teacher=FeatureExtractor("cnn", batch_size=128, random_state=0),
        K=50,
        student=NetClassifier(
            max_epochs=8, batch_size=GLOBAL_BATCH, augment=SlowableShift()
        ),
        random_state=0,
        checkpoint_dir=checkpoint_dir,
        verbose=2,
    )


def fitted_fingerprint(cf):
    """A hash of the fitted estimator, except the epoch timings (wall clock)."""
    history = cf.student_.history_
    cf.student_.history_ = [{k: v for k, v in e.items() if k != "seconds"} for e in history]
    try:
        return estimator_fingerprint(cf)
    finally:
        cf.student_.history_ = history


def main(out_dir, checkpoint_dir=None):
    rank = int(os.environ.get("RANK", 0))
    X_train, X_test, y_train, y_test = data()
    cf = make_clusterfit(checkpoint_dir).fit(X_train)
    cf.save(os.path.join(out_dir, "model.skcf"))
    np.savez(
        os.path.join(out_dir, f"rank{rank}.npz"),
        labels=cf.labels_,
        centers=cf.cluster_centers_,
        train_features=cf.transform(X_train),
        test_features=cf.transform(X_test),
        clusterer_labels=cf.clusterer_.labels_,
        fingerprint=np.array(fitted_fingerprint(cf)),
        losses=np.array([epoch["loss"] for epoch in cf.student_.history_]),
    )
    print(f"rank {rank} done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
