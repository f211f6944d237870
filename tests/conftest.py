import os

import numpy as np
import pytest
import torch

from skclusterfit.data import load_digits_images

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per xdist worker: with tiny networks, OpenMP threads
    # spinning against the other worker cost far more than they gain.
    torch.set_num_threads(1)


def selects_gpu_tests(markexpr):
    """Whether the ``-m`` expression asks for ``gpu``-marked tests (``pytest -m gpu``).

    The ordinary run (``-m "not slow"`` from setup.cfg) does not: it would
    select the gpu tests only by not excluding them.
    """
    from _pytest.mark.expression import Expression

    if not markexpr or "gpu" not in markexpr:
        return False
    expression = Expression.compile(markexpr)
    return any(
        expression.evaluate(lambda name, marks=marks, **_: name in marks)
        for marks in ({"gpu"}, {"gpu", "slow"})
    )


def pytest_configure(config):
    # The suite is pinned to the CPU: its tests assert bitwise CPU results and
    # start 2-process gloo groups, where device="auto" would pick a GPU. Only
    # a run that asks for gpu-marked tests (pytest -m gpu) sees CUDA; any
    # other test it selects is pinned by cpu_only below.
    if not selects_gpu_tests(config.getoption("markexpr")):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(autouse=True)
def cpu_only(request, monkeypatch):
    """Outside gpu-marked tests, CUDA is invisible (in this process and its children)."""
    if "gpu" in request.keywords or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        yield
        return
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    yield


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
