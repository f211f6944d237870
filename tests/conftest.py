import os

import numpy as np
import pytest
import torch

from skclusterfit.data import load_digits_images

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per xdist worker: with tiny networks, OpenMP threads
    # spinning against the other worker cost far more than they gain.
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA device visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def digits_images():
    """(X, y): 1797 8x8 digit images, float32 in [0, 1], shape (n, 1, 8, 8)."""
    return load_digits_images()


@pytest.fixture(scope="session")
def digits_small(digits_images):
    """A 400-sample stratified-ish slice for fast fits."""
    X, y = digits_images
    rng = np.random.RandomState(0)
    index = rng.permutation(len(X))[:400]
    return X[index], y[index]
