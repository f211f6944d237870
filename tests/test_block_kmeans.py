"""The compiled kernels of the hierarchical engine's groups and of the inverted-file search."""

import numpy as np
import pytest

from skclusterfit.cluster import _ann, _block_kmeans
from skclusterfit.cluster._common import split_empty_clusters


def blobs(n_rows=600, n_features=8, n_modes=6, seed=0):
    rng = np.random.RandomState(seed)
    means = 4 * rng.standard_normal((n_modes, n_features))
    X = means[rng.randint(n_modes, size=n_rows)] + rng.standard_normal((n_rows, n_features))
    return np.ascontiguousarray(X, dtype=np.float32)


def reference_lloyd(X, centers, n_iter):
    """Plain numpy Lloyd, float64 means, empty clusters split as every engine does."""
    centers = centers.copy()
    for _ in range(n_iter):
        d2 = ((X[:, None, :].astype(np.float64) - centers[None]) ** 2).sum(-1)
        labels = d2.argmin(1)
        counts = np.bincount(labels, minlength=len(centers))
        for j in np.flatnonzero(counts):
            centers[j] = X[labels == j].mean(0, dtype=np.float64)
        split_empty_clusters(centers, counts)
    return centers, labels


def test_lloyd_block_matches_numpy_lloyd():
    X = blobs()
    start = X[:: len(X) // 12][:12].copy()
    expected, expected_labels = reference_lloyd(X, start, 5)
    centers, labels = start.copy(), np.empty(len(X), dtype=np.int64)
    _block_kmeans.lloyd_block(X, centers, 5, labels)
    np.testing.assert_allclose(centers, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, expected_labels)


def test_lloyd_block_splits_an_empty_cluster_like_the_engines():
    X = blobs(n_modes=2)
    # A centre far from every row: empty after the first assignment.
    start = np.vstack([X[:3], np.full((1, X.shape[1]), 100.0, dtype=np.float32)])
    centers = start.copy()
    n_empty = _block_kmeans.lloyd_block(X, centers, 1, np.empty(len(X), dtype=np.int64))
    expected, _ = reference_lloyd(X, start, 1)
    assert n_empty == 1
    np.testing.assert_allclose(centers, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 8])
def test_greedy_seeds_are_distinct_rows_spread_over_the_modes(batch, monkeypatch):
    monkeypatch.setattr(_block_kmeans, "SEED_BATCH", batch)
    X = blobs(n_modes=6)
    seeds = _block_kmeans.greedy_seeds(X, 6, np.random.RandomState(0))
    rows = {tuple(row) for row in X}
    assert all(tuple(seed) in rows for seed in seeds)
    assert len({tuple(seed) for seed in seeds}) == 6
    # Greedy k-means++ puts one seed in each of six well-separated modes, so
    # its potential is far below that of six random rows.
    def potential(C):
        return ((X[:, None] - C[None]) ** 2).sum(-1).min(1).sum()

    random_rows = X[np.random.RandomState(1).choice(len(X), 6, replace=False)]
    assert potential(seeds) < 0.5 * potential(random_rows)


def test_greedy_seeds_complete_with_unused_rows_when_rows_repeat():
    X = np.repeat(np.eye(3, 4, dtype=np.float32), 5, axis=0)  # 3 distinct rows, 15 rows
    seeds = _block_kmeans.greedy_seeds(X, 5, np.random.RandomState(0))
    assert seeds.shape == (5, 4)
    assert len({tuple(seed) for seed in seeds}) == 3  # every distinct row is a seed


def test_greedy_seeds_depend_only_on_the_seed():
    X = blobs()
    a = _block_kmeans.greedy_seeds(X, 10, np.random.RandomState(3))
    b = _block_kmeans.greedy_seeds(X, 10, np.random.RandomState(3))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n_probe", [2, 3, 5])
def test_smallest_finds_the_n_probe_smallest_columns(n_probe):
    scores = np.random.RandomState(0).standard_normal((300, 9)).astype(np.float32)
    scores[:, 4] = scores[:, 7]  # ties
    found = _ann._smallest(scores, n_probe)
    assert all(len(set(row)) == n_probe for row in found)
    np.testing.assert_array_equal(
        np.sort(np.take_along_axis(scores, found, 1), 1), np.sort(scores, 1)[:, :n_probe]
    )


@pytest.mark.parametrize("n_probe", [1, 2, 4])
@pytest.mark.parametrize("chunk_size", [None, 97])
def test_inverted_file_search_is_the_nearest_member_of_the_probed_groups(n_probe, chunk_size):
    X = blobs(n_rows=2000, n_modes=10)
    centers = X[np.random.RandomState(0).choice(len(X), 60, replace=False)]
    groups = _ann.CentroidGroups(centers, seed=0, n_probe=n_probe)
    labels = groups.nearest(X, centers, chunk_size)
    group_of = np.empty(len(centers), dtype=np.int64)
    for g in range(len(groups.group_centers)):
        group_of[groups.members[groups.offsets[g] : groups.offsets[g + 1]]] = g
    to_groups = ((X[:, None] - groups.group_centers[None]) ** 2).sum(-1)
    probed = np.argsort(to_groups, axis=1)[:, :n_probe]
    to_centers = ((X[:, None] - centers[None]) ** 2).sum(-1)
    allowed = (group_of[None, :, None] == probed[:, None, :]).any(-1)
    expected = np.where(allowed, to_centers, np.inf).min(1)
    np.testing.assert_allclose(to_centers[np.arange(len(X)), labels], expected, rtol=1e-4)
