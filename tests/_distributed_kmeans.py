"""Run under ``torchrun --nproc_per_node=N``: KMeans on this rank's shard of fixed data.

Writes ``<out>/rank<R>.npz`` with, per configuration, this rank's labels, the
centres and the inertia; tests/test_distributed_kmeans.py compares them with
a one-process fit on all rows.
"""

import sys

import numpy as np
import torch.distributed as dist

from skclusterfit.cluster import KMeans

# name -> KMeans parameters (shared with the test, which fits the same in one process)
CONFIGS = {
    "exact": {"n_clusters": 24},
    "exact-offset-max_samples": {"n_clusters": 24, "normalize": False, "max_samples": 0.6},
    "ann": {"n_clusters": 24, "assign": "ann"},
    # A two-neighbour graph: the sample check rejects the walk in the first
    # E-steps and the ranks must agree to take the exact step together.
    "ann-fallback": {"n_clusters": 300, "assign": "ann", "n_neighbors": 2},
    "torch-random-init": {"n_clusters": 24, "backend": "torch", "init": "random"},
    "whiten": {"n_clusters": 12, "whiten_dim": 6},
}


def data():
    """5,003 rows (not divisible by 2 or 3), 16 features, 30 blobs, off-centre."""
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(5003, n_features=16, centers=30, cluster_std=2.0, random_state=0)
    return (X + 40.0).astype(np.float32)


def shard(n_rows, rank, world_size):
    """This rank's contiguous rows: the first ``n_rows % world_size`` ranks get one more."""
    base, extra = divmod(n_rows, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def main(out):
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    X = data()
    part = X[shard(len(X), rank, world_size)]
    results = {}
    for name, params in CONFIGS.items():
        km = KMeans(**params, device="cpu", random_state=0).fit(part)
        results[f"{name}/labels"] = km.labels_
        results[f"{name}/centers"] = km.cluster_centers_
        results[f"{name}/inertia"] = np.array(km.inertia_)
        results[f"{name}/n_iter"] = np.array(km.n_iter_)
    np.savez(f"{out}/rank{rank}.npz", **results)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
