"""HierarchicalCuration (Vo et al. 2024), NetClassifier's sample_weight, and
ClusterFit(curation=...)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator

import skclusterfit
from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.cluster import HierarchicalCuration
from skclusterfit.cluster._curation import balanced_shares


def long_tail(sizes=(400, 200, 100, 50, 20, 8), seed=0):
    """Well-separated Gaussian classes with a Zipf-like profile."""
    rng = np.random.RandomState(seed)
    centers = np.eye(len(sizes), 8) * 10
    X = np.concatenate([c + rng.randn(n, 8) for c, n in zip(centers, sizes)])
    return X.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.parametrize("sizes, target", [
    ([10, 1, 5, 30], 20), ([3, 3, 3], 9), ([3, 3, 3], 100), ([7, 0, 2, 9, 1], 11),
    ([100], 37), ([4, 4, 4, 4], 5),
])
def test_balanced_shares_are_as_even_as_the_sizes_allow(sizes, target):
    sizes = np.array(sizes)
    shares = balanced_shares(sizes, target, np.random.RandomState(0))
    assert shares.sum() == min(target, sizes.sum())
    assert np.all(shares <= sizes) and np.all(shares >= 0)
    # A group that could take more never has two fewer than another group.
    open_groups = shares < sizes
    if open_groups.any():
        assert shares.max() - shares[open_groups].min() <= 1


def test_curation_keeps_the_tail_and_thins_the_head():
    X, y = long_tail()
    curation = HierarchicalCuration(n_clusters=(30, 6), n_samples=150, random_state=0)
    curation.set_params(kmeans__normalize=False).fit(X)
    kept = np.bincount(y[curation.sample_indices_], minlength=6)
    assert len(curation.sample_indices_) == 150
    assert len(np.unique(curation.sample_indices_)) == 150
    # Six well-separated classes, each a top cluster: an even share is 25
    # rows; the 20- and 8-row classes are kept whole and the 122 rows left
    # are spread evenly over the four others.
    assert kept[-2:].tolist() == [20, 8]
    assert sorted(kept[:-2].tolist()) == [30, 30, 31, 31]
    # Share of the tail grows from 1% of X to 5% of the curated set.
    assert kept[-1] / 150 > 4 * np.mean(y == 5)


def test_levels_are_a_tree_and_predict_follows_it():
    X, _ = long_tail()
    curation = HierarchicalCuration(n_clusters=(20, 8, 3), n_samples=0.25,
                                    random_state=0).fit(X)
    assert curation.labels_.shape == (len(X), 3)
    assert [len(s) for s in curation.cluster_sizes_] == [20, 8, 3]
    assert all(s.sum() == len(X) for s in curation.cluster_sizes_)
    assert len(curation.sample_indices_) == round(0.25 * len(X))
    # Every level-0 cluster lies inside one cluster of each level above.
    for level in (1, 2):
        pairs = np.unique(curation.labels_[:, [0, level]], axis=0)
        assert len(pairs) == len(np.unique(curation.labels_[:, 0]))
    np.testing.assert_array_equal(curation.predict(X), curation.labels_)


def test_fit_resample_and_seeding():
    X, y = long_tail()
    a = HierarchicalCuration(n_clusters=(12, 4), n_samples=60, random_state=3)
    X_curated, y_curated = a.fit_resample(X, y)
    np.testing.assert_array_equal(X_curated, X[a.sample_indices_])
    np.testing.assert_array_equal(y_curated, y[a.sample_indices_])
    b = HierarchicalCuration(n_clusters=(12, 4), n_samples=60, random_state=3).fit(X)
    np.testing.assert_array_equal(a.sample_indices_, b.sample_indices_)


@pytest.mark.parametrize("params, message", [
    ({"n_clusters": (5, 10)}, "must not increase"),
    ({"n_clusters": (1000,)}, "need at least as many rows"),
    ({"n_clusters": ()}, "non-empty"),
    ({"n_clusters": (4.5, 2)}, "positive int"),
    ({"n_samples": 0}, "n_samples"),
    ({"n_samples": 1.5}, "n_samples"),
    ({"n_resampling_steps": -1}, "n_resampling_steps"),
])
def test_bad_parameters_are_named(params, message):
    X, _ = long_tail()
    with pytest.raises(ValueError, match=message):
        HierarchicalCuration(**params).fit(X)


def test_curation_round_trips(tmp_path):
    X, _ = long_tail()
    curation = HierarchicalCuration(n_clusters=(12, 4), random_state=0).fit(X)
    curation.save(tmp_path / "curation.skcf")
    loaded = skclusterfit.load(tmp_path / "curation.skcf")
    np.testing.assert_array_equal(loaded.sample_indices_, curation.sample_indices_)
    np.testing.assert_array_equal(loaded.predict(X), curation.predict(X))


def test_sample_weight_zero_rows_are_never_trained_on():
    X, y = load_digits(return_X_y=True)
    X, y = X[:800].astype(np.float32), y[:800]
    weight = (y != 3).astype(float)
    net = NetClassifier("mlp", max_epochs=2, random_state=0)
    weighted = net.fit(X, y, sample_weight=weight).predict(X[y == 3])
    plain = NetClassifier("mlp", max_epochs=2, random_state=0).fit(X, y).predict(X[y == 3])
    # The class is known (in classes_) but no row of it was drawn.
    assert np.mean(plain == 3) > 0.8
    assert np.mean(weighted == 3) < 0.05


@pytest.mark.parametrize("weight, sampler, message", [
    (np.ones(10), "balanced", "sampler='balanced'"),
    (np.ones(9), "shuffle", r"shape \(9,\)"),
    (-np.ones(10), "shuffle", "non-negative"),
    (np.zeros(10), "shuffle", "not all zero"),
])
def test_bad_sample_weight_is_refused(weight, sampler, message):
    X = np.random.RandomState(0).rand(10, 4).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        NetClassifier("mlp", max_epochs=1, sampler=sampler).fit(
            X, np.arange(10) % 2, sample_weight=weight)


def test_clusterfit_trains_its_student_on_the_curated_rows():
    X, _ = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    teacher = FrozenEstimator(PCA(n_components=16, random_state=0).fit(X))

    def fit():
        return ClusterFit(
            teacher, K=20, student=NetClassifier("mlp", max_epochs=1), random_state=0,
            curation=HierarchicalCuration(n_clusters=(40, 8), n_samples=0.3),
        ).fit(X)

    cf = fit()
    assert len(cf.curation_.sample_indices_) == round(0.3 * len(X))
    assert cf.stage_seconds_["curation"] > 0
    assert len(cf.labels_) == len(X)  # the clusters are every row's
    again = fit()
    np.testing.assert_array_equal(again.curation_.sample_indices_,
                                  cf.curation_.sample_indices_)
    np.testing.assert_array_equal(again.transform(X[:50]), cf.transform(X[:50]))
