"""The paper's clusterers that use labels: prototype and per-label k-means, alone
and as ClusterFit's clusterer (which passes y to a clusterer that requires it)."""

import numpy as np
import pytest
from sklearn.cluster import KMeans as SKKMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skclusterfit
from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans, PerLabelKMeans, PrototypeClusterer
from skclusterfit.cluster._per_label import sqrt_allocation


def blobs(n_per_class=(60, 30, 15), seed=0):
    rng = np.random.RandomState(seed)
    centers = np.eye(3, 5) * 4
    X = np.concatenate([c + rng.randn(n, 5) for c, n in zip(centers, n_per_class)])
    y = np.repeat(np.arange(3), n_per_class)
    return X.astype(np.float32), y


def test_prototypes_are_class_means_and_labels_nearest():
    X, y = blobs()
    proto = PrototypeClusterer(normalize=False).fit(X, y)
    for c in range(3):
        np.testing.assert_allclose(proto.cluster_centers_[c], X[y == c].mean(0), rtol=1e-5)
    distances = ((X[:, None, :] - proto.cluster_centers_[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(proto.labels_, distances.argmin(1))
    np.testing.assert_array_equal(proto.predict(X), proto.labels_)


def test_prototype_relabels_noisy_labels_by_features():
    X, y = blobs()
    y_noisy = y.copy()
    flipped = np.arange(0, len(y), 10)
    y_noisy[flipped] = (y[flipped] + 1) % 3
    proto = PrototypeClusterer().fit(X, y_noisy)
    # Nearest prototype recovers the true class of (nearly) every flipped sample.
    assert np.mean(proto.classes_[proto.labels_] == y) > 0.95
    assert np.mean(y_noisy == y) < 0.92


def test_prototype_keeps_string_classes():
    X, y = blobs()
    names = np.array(["cat", "dog", "eel"])[y]
    proto = PrototypeClusterer().fit(X, names)
    assert proto.classes_.tolist() == ["cat", "dog", "eel"]
    assert adjusted_rand_score(proto.labels_, y) > 0.9


@pytest.mark.parametrize(
    "counts, K",
    [([100, 25, 4], 17), ([5, 5, 5], 3), ([1, 1, 50], 10), ([7, 300, 2, 2], 40), ([3, 4], 7)],
)
def test_sqrt_allocation_sums_to_K_within_bounds(counts, K):
    k = sqrt_allocation(counts, K)
    counts = np.array(counts)
    assert k.sum() == K
    assert np.all(k >= 1) and np.all(k <= counts)
    # Proportional to sqrt(n) up to the rounding and the bounds.
    share = K * np.sqrt(counts) / np.sqrt(counts).sum()
    free = (k > 1) & (k < counts)
    assert np.all(np.abs(k[free] - share[free]) < 1.5)


def test_sqrt_allocation_refuses_impossible_K():
    with pytest.raises(ValueError, match="n_clusters=2 must lie between"):
        sqrt_allocation([5, 5, 5], 2)
    with pytest.raises(ValueError, match="n_clusters=16 must lie between"):
        sqrt_allocation([5, 5, 5], 15 + 1)


def test_per_label_kmeans_clusters_stay_inside_labels():
    X, y = blobs((80, 20, 20))
    per_label = PerLabelKMeans(n_clusters=12, random_state=0).fit(X, y)
    assert per_label.n_clusters_per_label_.tolist() == sqrt_allocation([80, 20, 20], 12).tolist()
    assert per_label.cluster_centers_.shape == (12, 5)
    assert sorted(np.unique(per_label.labels_)) == list(range(12))
    np.testing.assert_array_equal(per_label.cluster_label_[per_label.labels_], y)
    # Each label's part is a k-means of that label's rows (same seed stream).
    again = PerLabelKMeans(n_clusters=12, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.labels_, per_label.labels_)


def test_per_label_kmeans_takes_any_kmeans_and_nested_params():
    X, y = blobs()
    per_label = PerLabelKMeans(n_clusters=9, kmeans=SKKMeans(n_init=1), random_state=0)
    per_label.fit(X, y)
    assert per_label.cluster_centers_.shape == (9, 5)
    default = PerLabelKMeans(n_clusters=9).set_params(kmeans__normalize=False)
    assert default.kmeans is None and default.get_params()["kmeans__normalize"] is False
    assert isinstance(default._component("kmeans"), KMeans)
    centres = default.fit(X, y).cluster_centers_
    # Without normalisation the centres are means of raw rows (norm ~4, not 1).
    assert np.linalg.norm(centres, axis=1).max() > 2


def test_label_clusterers_require_y():
    X, _ = blobs()
    for clusterer in (PrototypeClusterer(), PerLabelKMeans(n_clusters=5)):
        with pytest.raises(TypeError):
            clusterer.fit(X)


@pytest.mark.parametrize(
    "clusterer",
    [PrototypeClusterer(), PerLabelKMeans(n_clusters=6, random_state=0)],
    ids=["prototype", "per-label"],
)
def test_save_load(clusterer, tmp_path):
    X, y = blobs()
    clusterer.fit(X, y)
    loaded = skclusterfit.load(clusterer.save(tmp_path / "c.skcf"))
    np.testing.assert_array_equal(loaded.labels_, clusterer.labels_)
    np.testing.assert_array_equal(loaded.cluster_centers_, clusterer.cluster_centers_)
    if hasattr(clusterer, "predict"):
        np.testing.assert_array_equal(loaded.predict(X), clusterer.predict(X))


# -- as ClusterFit's clusterer --------------------------------------------------


def cf(clusterer, K=20):
    return ClusterFit(
        teacher=FeatureExtractor("mlp", random_state=0),
        K=K,
        clusterer=clusterer,
        student=NetClassifier(max_epochs=1),
        random_state=0,
    )


def test_clusterfit_passes_y_to_prototype_clusterer(digits_small):
    X, y = digits_small
    X = X.reshape(len(X), -1)
    # K is not used by the prototype clusterer: one cluster per class, even K > n.
    fitted = cf(PrototypeClusterer(), K=10_000).fit(X, y)
    assert fitted.clusterer_.classes_.tolist() == list(range(10))
    np.testing.assert_array_equal(fitted.labels_, fitted.clusterer_.labels_)
    assert fitted.cluster_centers_.shape == (10, 128)
    assert fitted.student_.classes_.max() <= 9


def test_clusterfit_passes_y_to_per_label_kmeans_in_a_pipeline(digits_small):
    X, y = digits_small
    X = X.reshape(len(X), -1)
    clusterer = make_pipeline(StandardScaler(), PerLabelKMeans(random_state=0))
    fitted = cf(clusterer, K=30).fit(X, y)
    per_label = fitted.clusterer_[-1]
    assert per_label.n_clusters == 30 and per_label.n_clusters_per_label_.sum() == 30
    np.testing.assert_array_equal(per_label.cluster_label_[fitted.labels_], y)


def test_clusterfit_without_y_for_a_label_clusterer_says_so(digits_small):
    X, _ = digits_small
    with pytest.raises(ValueError, match=r"clusters with labels: call fit\(X, y\)"):
        cf(PrototypeClusterer()).fit(X.reshape(len(X), -1))


def test_clusterfit_ignores_y_for_an_unsupervised_clusterer(digits_small):
    X, y = digits_small
    X = X.reshape(len(X), -1)
    with_y = cf("kmeans").fit(X, y)
    without = cf("kmeans").fit(X)
    np.testing.assert_array_equal(with_y.labels_, without.labels_)


def test_checkpoint_of_other_labels_is_refused(digits_small, tmp_path):
    X, y = digits_small
    X = X.reshape(len(X), -1)
    cf(PrototypeClusterer()).set_params(checkpoint_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="other data"):
        cf(PrototypeClusterer()).set_params(checkpoint_dir=tmp_path).fit(X, (y + 1) % 10)
