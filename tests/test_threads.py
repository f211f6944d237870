"""Torch threads picked for the work: tiny steps on one thread, whatever the process has."""

import numpy as np
import pytest
import torch
from torch import nn

from skclusterfit import NetClassifier
from skclusterfit.runtime._threads import FLOPS_PER_THREAD, forward_flops, threads_for


@pytest.fixture
def four_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_small_steps_get_one_thread_large_ones_all(four_threads):
    small = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    assert forward_flops(small, (1, 8, 8)) == 2 * (8 * 9 * 36 + 288 * 10)
    assert threads_for(small, (1, 8, 8), 32, training=True) == 1
    large = nn.Linear(4096, 4096)  # 2 * 16.8M FLOPs a sample, three passes: all four
    assert threads_for(large, (4096,), 64, training=True) == 4
    # in between: one thread per FLOPS_PER_THREAD of the step
    batch = int(2.5 * FLOPS_PER_THREAD // (3 * forward_flops(small, (1, 8, 8)))) + 1
    assert threads_for(small, (1, 8, 8), batch, training=True) == 2
    assert threads_for(small, (1, 8, 8), batch, training=False) == 1


def test_a_network_that_cannot_be_counted_keeps_the_threads(four_threads):
    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            if len(x) < 2:
                raise RuntimeError("needs a batch")
            return self.fc(x)

    assert threads_for(Picky(), (3,), 8, training=True) == 4


class _RecordThreads(nn.Module):
    seen = set()  # on the class: NetClassifier builds its network from a copy

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        if len(x) > 1:  # a step; one sample is a shape or FLOP probe
            _RecordThreads.seen.add(torch.get_num_threads())
        return self.body(x)


def test_a_tiny_network_trains_on_one_thread_with_the_same_result(digits_small):
    X, y = digits_small
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _RecordThreads.seen.clear()
            torch.manual_seed(0)  # the same backbone weights for both thread counts
            clf = NetClassifier(_RecordThreads(), max_epochs=2, random_state=0)
            results[threads] = clf.fit(X[:200], y[:200]).transform(X[:200])
            assert _RecordThreads.seen == {1}  # every step, training and inference
            assert torch.get_num_threads() == threads  # restored after the fit
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(results[1], results[2])
