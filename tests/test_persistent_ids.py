"""Cluster ids that persist: match_cluster_ids and ClusterFit(persistent_ids=...)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.cluster import match_cluster_ids


def test_matching_labels_undoes_a_permutation():
    rng = np.random.RandomState(0)
    previous = rng.randint(0, 12, size=500)
    permutation = rng.permutation(12)
    mapping = match_cluster_ids(previous, permutation[previous], on="labels")
    np.testing.assert_array_equal(mapping[permutation[previous]], previous)


@pytest.mark.parametrize("k_new", [5, 8, 11])
def test_matching_centres_keeps_matched_ids_and_is_a_permutation(k_new):
    rng = np.random.RandomState(0)
    previous = rng.randn(8, 3) * 10
    # The first min(k, 8) new centres are the old ones moved a little, shuffled.
    shared = min(k_new, 8)
    order = rng.permutation(8)[:shared]
    current = np.concatenate([previous[order] + 0.01 * rng.randn(shared, 3),
                              rng.randn(k_new - shared, 3) * 10 + 100])
    mapping = match_cluster_ids(previous, current)
    assert sorted(mapping.tolist()) == list(range(k_new))
    for i, old in enumerate(order):
        if old < k_new:  # an id that still exists is kept
            assert mapping[i] == old


@pytest.mark.parametrize("previous, current, on, message", [
    (np.zeros((3, 2)), np.zeros((3, 4)), "centers", "as many features"),
    (np.zeros(5, dtype=int), np.zeros(6, dtype=int), "labels", "same rows"),
    (np.zeros(5), np.zeros(5, dtype=int), "labels", "non-negative ints"),
    (np.zeros((3, 2)), np.zeros((3, 2)), "overlap", "on='overlap'"),
])
def test_bad_input_is_named(previous, current, on, message):
    with pytest.raises(ValueError, match=message):
        match_cluster_ids(previous, current, on=on)


@pytest.fixture(scope="module")
def digits():
    X, _ = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return X, FrozenEstimator(PCA(n_components=16, random_state=0).fit(X))


def refit_agreement(X, teacher, persistent, seed):
    """Share of the first fit's rows that keep their id on a refit with 10% more rows."""
    n = int(len(X) / 1.1)
    cf = ClusterFit(teacher, K=10, student=NetClassifier("mlp", max_epochs=1),
                    random_state=seed, persistent_ids=persistent).fit(X[:n])
    first = cf.labels_.copy()
    cf.set_params(random_state=seed + 100).fit(X)  # other seeds: other raw ids
    return np.mean(cf.labels_[:n] == first), first, cf


def test_ids_persist_on_a_refit_with_ten_percent_more_data(digits):
    X, teacher = digits
    kept, first, cf = refit_agreement(X, teacher, True, seed=0)
    lost, _, _ = refit_agreement(X, teacher, False, seed=0)
    # Measured over seeds 0-5: 0.69 to 0.85 of the rows keep their id with
    # persistent_ids, 0.00 to 0.33 without (k-means numbers clusters anew).
    assert kept > 0.6 and lost < kept - 0.3
    # Matching the centres does as well as the best renumbering of the labels
    # (which needs the rows of both fits): what is left is k-means moving.
    n = len(first)
    best = match_cluster_ids(first, cf.labels_[:n], on="labels")[cf.labels_[:n]]
    assert kept >= np.mean(best == first) - 0.02
    # The student learned the persistent ids; the clusterer keeps its own.
    np.testing.assert_array_equal(cf.cluster_id_map_[cf.clusterer_.labels_], cf.labels_)
    assert set(cf.student_.classes_) == set(np.unique(cf.labels_))


def test_ids_persist_between_rounds(digits):
    X, teacher = digits
    agreement = {}
    for persistent in (True, False):
        cf = ClusterFit(teacher, K=10, student=NetClassifier("mlp", max_epochs=2),
                        n_rounds=2, random_state=0, persistent_ids=persistent).fit(X)
        first, second = (r["labels"] for r in cf.rounds_)
        agreement[persistent] = np.mean(first == second)
        if persistent:  # as good as the best renumbering of round 2's labels
            best = match_cluster_ids(first, second, on="labels")[second]
            np.testing.assert_array_equal(best, second)
    assert agreement[True] > agreement[False] + 0.2


def test_reference_centres_of_another_space_are_refused(digits):
    X, teacher = digits
    cf = ClusterFit(teacher, K=5, student=NetClassifier("mlp", max_epochs=1),
                    random_state=0, persistent_ids=np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"reference centres have shape \(5, 3\)"):
        cf.fit(X[:200])


def test_previous_ids_of_the_rows_are_kept_where_rows_had_one(digits):
    X, teacher = digits
    cf = ClusterFit(teacher, K=10, student=NetClassifier("mlp", max_epochs=1),
                    random_state=0).fit(X[:1500])
    previous = np.full(len(X), -1)
    previous[:1500] = cf.labels_
    refit = ClusterFit(teacher, K=10, student=NetClassifier("mlp", max_epochs=1),
                       random_state=7, persistent_ids=previous).fit(X)
    new = refit.labels_[:1500]
    # The renumbering that agrees most with the previous ids: matching again changes nothing.
    np.testing.assert_array_equal(match_cluster_ids(cf.labels_, new, on="labels"),
                                  np.arange(10))
    assert np.mean(new == cf.labels_) > 0.6
    with pytest.raises(ValueError, match="1500 previous cluster ids for 1797 rows"):
        refit.set_params(persistent_ids=previous[:1500]).fit(X)
