"""KMeans across two processes (torchrun, gloo, CPU) equals the one-process fit."""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _distributed_kmeans import CONFIGS, data, shard  # noqa: E402

from skclusterfit.cluster import KMeans  # noqa: E402

SCRIPT = pathlib.Path(__file__).resolve().parent / "_distributed_kmeans.py"
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    torchrun = shutil.which("torchrun") or str(pathlib.Path(sys.executable).parent / "torchrun")
    out = tmp_path_factory.mktemp("ranks")
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", str(SCRIPT), str(out)],
        env=env, check=True, timeout=600, capture_output=True,
    )
    return [dict(np.load(out / f"rank{rank}.npz")) for rank in range(2)]


# torchrun starts two Python processes that import torch: ~40 s on 2 cores.
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_two_processes_match_one(two_ranks, name):
    X = data()
    one = KMeans(**CONFIGS[name], device="cpu", random_state=0).fit(X)
    ranks = two_ranks
    # Every rank holds the same centres, bit for bit.
    np.testing.assert_array_equal(ranks[0][f"{name}/centers"], ranks[1][f"{name}/centers"])
    np.testing.assert_allclose(ranks[0][f"{name}/centers"], one.cluster_centers_, atol=1e-4)
    # labels_ holds each rank's own rows; together they are the one-process labels.
    for rank in range(2):
        assert len(ranks[rank][f"{name}/labels"]) == len(X[shard(len(X), rank, 2)])
    labels = np.concatenate([ranks[rank][f"{name}/labels"] for rank in range(2)])
    assert np.mean(labels == one.labels_) >= 0.999
    assert float(ranks[0][f"{name}/inertia"]) == pytest.approx(one.inertia_, rel=1e-5)
    assert int(ranks[0][f"{name}/n_iter"]) == int(ranks[1][f"{name}/n_iter"])
    # The ranks did cluster together: rank 0's rows alone give other centres.
    alone = KMeans(**CONFIGS[name], device="cpu", random_state=0).fit(X[shard(len(X), 0, 2)])
    assert np.abs(alone.cluster_centers_ - one.cluster_centers_).max() > 1e-3
