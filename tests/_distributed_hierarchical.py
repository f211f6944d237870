"""Run under ``torchrun --nproc_per_node=N``: hierarchical KMeans on this rank's shard.

``python _distributed_hierarchical.py DATA.npz OUT``: for every array of
DATA.npz (name -> rows) and every configuration below, this rank fits its
contiguous shard and writes ``OUT/rank<R>.npz`` with its labels, the centres,
the inertia and the engine; tests/test_kmeans_hierarchical.py compares them
with a one-process fit of all rows and with exact Lloyd.
"""

import sys

import numpy as np
import torch.distributed as dist

from skclusterfit.cluster import KMeans

# name -> KMeans parameters (shared with the test, which fits the same in one
# process). 20 global iterations, flat Lloyd's budget: on these few thousand
# rows (25-40 per cluster) the default two end 1-2% above flat Lloyd.
CONFIGS = {
    "graph": {"n_clusters": 200, "algorithm": "hierarchical", "max_iter": 20},
    "groups": {"n_clusters": 200, "algorithm": "hierarchical", "max_iter": 20,
               "_refine": "groups"},
    "exact": {"n_clusters": 200, "algorithm": "hierarchical", "assign": "exact",
              "max_iter": 20},
    # No global iteration: not held to 1% of exact Lloyd ("_within_one_percent").
    "stages": {"n_clusters": 200, "algorithm": "hierarchical", "max_iter": 0,
               "_within_one_percent": False},
}


def params(config):
    """KMeans parameters of a configuration (``_refine`` is set on the module)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def shard(n_rows, rank, world_size):
    base, extra = divmod(n_rows, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def main(data, out):
    from skclusterfit.cluster import _kmeans

    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    results = {}
    for data_name, X in np.load(data).items():
        part = X[shard(len(X), rank, world_size)]
        for name, config in CONFIGS.items():
            saved = _kmeans._GROUPS_MIN_CLUSTERS
            if config.get("_refine") == "groups":
                _kmeans._GROUPS_MIN_CLUSTERS = 1
            try:
                km = KMeans(**params(config), device="cpu", random_state=0).fit(part)
            finally:
                _kmeans._GROUPS_MIN_CLUSTERS = saved
            key = f"{data_name}/{name}"
            results[f"{key}/labels"] = km.labels_
            results[f"{key}/centers"] = km.cluster_centers_
            results[f"{key}/inertia"] = np.array(km.inertia_)
            results[f"{key}/engine"] = np.array(km.engine_)
    np.savez(f"{out}/rank{rank}.npz", **results)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
