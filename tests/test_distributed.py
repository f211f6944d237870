"""ClusterFit under torchrun: 2 processes (gloo, CPU) against one, and a killed run resumed.

The 2-process runs are real: ``torchrun --nproc_per_node=2`` starts two
Python processes that form a gloo process group; nothing is mocked. Each
process runs on one thread.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skclusterfit
from skclusterfit.storage._checkpoint import STUDENT_FILE

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)

import _distributed_fit as script  # noqa: E402

pytestmark = pytest.mark.slow


def _environment(**extra):
    env = dict(os.environ)
    env.update(
        # One thread per process (2 processes on a 2-core machine), numba's too.
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        NUMBA_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]),
    )
    env.pop("SKCF_SLOW", None)
    env.update(extra)
    return env


def torchrun(out_dir, checkpoint_dir=None, env=None, nproc=2, **popen):
    """Start ``_distributed_fit.py`` under torchrun with 2 processes (or plain python)."""
    os.makedirs(out_dir, exist_ok=True)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command = [
        sys.executable, *(launcher if nproc > 1 else []),
        os.path.join(TESTS, "_distributed_fit.py"), str(out_dir),
    ]
    if checkpoint_dir is not None:
        command.append(str(checkpoint_dir))
    return subprocess.Popen(
        command, env=env or _environment(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **popen
    )


def finish(process, timeout=900):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-5000:]
    return output


def process_tree(pid):
    """``pid`` and all its descendants (torchrun starts each worker in its own session)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    # The command may hold spaces: the parent id follows its ")".
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def load_ranks(out_dir):
    return [dict(np.load(os.path.join(out_dir, f"rank{r}.npz"))) for r in range(2)]


def probe_accuracy(result, y_train, y_test):
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(result["train_features"], y_train)
    return probe.score(result["test_features"], y_test)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """An uninterrupted 2-process fit (with a checkpoint directory)."""
    base = tmp_path_factory.mktemp("two")
    output = finish(torchrun(base / "out", base / "checkpoint"))
    return base, output


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same script run by plain python: one process, the same random_state."""
    base = tmp_path_factory.mktemp("one")
    output = finish(torchrun(base / "out", base / "checkpoint", nproc=1))
    assert "process 0 of" not in output
    return base


def test_two_processes_match_one(two_processes, one_process):
    base, output = two_processes
    one_base = one_process
    one_run = dict(np.load(one_base / "out" / "rank0.npz"))
    assert "[ClusterFit] process 0 of 2" in output
    ranks = load_ranks(base / "out")
    _, _, y_train, y_test = script.data()

    # Teacher features: each process extracted a disjoint contiguous part, in
    # its own file; together, exactly the one-process features.
    parts = [np.load(base / "checkpoint" / f"teacher_features.rank{r}of2.npy") for r in range(2)]
    assert all(len(part) > 0 for part in parts)
    assert sum(len(part) for part in parts) == len(y_train)
    one = np.load(one_base / "checkpoint" / "teacher_features.npy")
    np.testing.assert_array_equal(np.concatenate(parts), one)

    # Pseudo-labels (all N on every rank) and centres.
    for rank in ranks:
        assert rank["labels"].shape == one_run["labels"].shape
        np.testing.assert_array_equal(rank["clusterer_labels"], rank["labels"])
    agreement = np.mean(ranks[0]["labels"] == one_run["labels"])
    assert agreement >= 0.999, agreement
    np.testing.assert_allclose(ranks[0]["centers"], one_run["centers"], atol=1e-4)

    # Every rank holds the same fitted estimator and gives the same features.
    assert ranks[0]["fingerprint"] == ranks[1]["fingerprint"]
    for key in ("labels", "centers", "train_features", "test_features", "losses"):
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key])

    # The student is as good as one process's (same global batch).
    accuracy_two = probe_accuracy(ranks[0], y_train, y_test)
    accuracy_one = probe_accuracy(one_run, y_train, y_test)
    print(f"linear probe: 2 processes {accuracy_two:.4f}, 1 process {accuracy_one:.4f}")
    assert abs(accuracy_two - accuracy_one) <= 0.01, (accuracy_two, accuracy_one)

    # The file process 0 saved loads in this (one) process and transforms alike.
    _, X_test, _, _ = script.data()
    loaded = skclusterfit.load(
        base / "out" / "model.skcf", device="cpu",
        custom_objects={"SlowableShift": script.SlowableShift()},
    )
    np.testing.assert_array_equal(loaded.labels_, ranks[0]["labels"])
    np.testing.assert_array_equal(loaded.transform(X_test), ranks[0]["test_features"])


def test_killed_after_first_epoch_then_resumed_matches_uninterrupted(two_processes, tmp_path):
    base, _ = two_processes
    checkpoint_dir = tmp_path / "checkpoint"
    # Slowed (the sleep changes no number) so that the kill lands mid-training.
    killed = torchrun(tmp_path / "killed", checkpoint_dir, env=_environment(SKCF_SLOW="1"))
    deadline = time.monotonic() + 600
    try:
        while not (checkpoint_dir / STUDENT_FILE).exists():
            assert killed.poll() is None, killed.communicate()[0][-5000:]
            assert time.monotonic() < deadline, "no student checkpoint in 10 minutes"
            time.sleep(0.05)
    finally:
        # SIGKILL torchrun and both workers: nothing gets to clean up.
        for pid in process_tree(killed.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed.communicate()
    assert not (tmp_path / "killed" / "rank0.npz").exists()

    output = finish(torchrun(tmp_path / "resumed", checkpoint_dir))
    assert "resuming from teacher features of process 0" in output
    assert "resuming from the cluster assignment" in output
    assert "resuming from epoch" in output
    assert "resuming from epoch 8" not in output  # it did train after resuming
    resumed, uninterrupted = load_ranks(tmp_path / "resumed"), load_ranks(base / "out")
    for rank in range(2):
        for key in ("labels", "centers", "train_features", "test_features", "losses"):
            np.testing.assert_array_equal(resumed[rank][key], uninterrupted[rank][key])
