"""Faults 3 and 4 of issue 22 under a real ``torchrun --nproc_per_node=2`` (gloo).

3: with ``random_state=None`` the processes agree on the epoch order (their
shares are disjoint and cover the epoch) and on random initial weights.
4: ``batch_size`` is the global batch, so 2 processes train the student with
the steps of one, and it lands within noise of the one-process student.
"""

import os

import numpy as np
import pytest

from test_distributed import _environment, finish

TESTS = os.path.dirname(os.path.abspath(__file__))

pytestmark = pytest.mark.slow


def _run(out_dir, nproc):
    import subprocess
    import sys

    os.makedirs(out_dir, exist_ok=True)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command = [sys.executable, *(launcher if nproc > 1 else []),
               os.path.join(TESTS, "_distributed_seeds.py"), str(out_dir)]
    process = subprocess.Popen(command, env=_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    finish(process)
    return [dict(np.load(os.path.join(out_dir, f"rank{r}.npz"))) for r in range(nproc)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("seeds")
    return _run(base / "two", 2), _run(base / "one", 1)[0]


def test_unseeded_processes_share_the_epoch_and_the_weights(runs):
    (a, b), _ = runs
    assert len(np.intersect1d(a["epoch_share"], b["epoch_share"])) == 0
    assert len(np.union1d(a["epoch_share"], b["epoch_share"])) == 400
    np.testing.assert_array_equal(a["unseeded_features"], b["unseeded_features"])
    np.testing.assert_array_equal(a["teacher_features"], b["teacher_features"])
    np.testing.assert_array_equal(a["clusterfit_teacher"], b["clusterfit_teacher"])
    np.testing.assert_array_equal(a["clusterfit_labels"], b["clusterfit_labels"])


def test_two_processes_train_the_student_of_one(runs):
    (a, b), one = runs
    # Each process takes half of every global step of 32: the steps of one process.
    assert int(a["student_steps"]) == int(b["student_steps"]) == int(one["student_steps"]) == 40
    assert float(a["student_accuracy"]) == float(b["student_accuracy"])
    print(f"student accuracy: 2 processes {float(a['student_accuracy']):.4f}, "
          f"1 process {float(one['student_accuracy']):.4f}")
    assert abs(float(a["student_accuracy"]) - float(one["student_accuracy"])) <= 0.015
