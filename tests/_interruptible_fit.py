"""A ClusterFit fit run as a script, for the SIGKILL test in test_reliability.py.

    python _interruptible_fit.py CHECKPOINT_DIR|- OUTPUT.npy

Prints the student's epochs (verbose) and saves the student features of the
training data to OUTPUT.npy. Each training batch sleeps a little so that the
test can kill the process while the student trains.
"""

import sys
import time

import numpy as np
from sklearn.datasets import load_digits

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import random_shift


class SlowShift:
    """Random shifts (drawing from the training loop's generator), slowed down."""

    def __call__(self, x, generator):
        time.sleep(0.05)
        return random_shift(x, 1, generator)


def make_clusterfit(checkpoint_dir=None):
    return ClusterFit(
        teacher=FeatureExtractor("cnn", random_state=0),
        K=8,
        student=NetClassifier(max_epochs=6, batch_size=50, augment=SlowShift()),
        random_state=0,
        checkpoint_dir=checkpoint_dir,
        verbose=2,
    )


def data():
    return load_digits().images[:200, None].astype(np.float32)


if __name__ == "__main__":
    checkpoint_dir = None if sys.argv[1] == "-" else sys.argv[1]
    cf = make_clusterfit(checkpoint_dir).fit(data())
    np.save(sys.argv[2], cf.transform(data()))
    print("done", flush=True)
