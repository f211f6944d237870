"""Correctness of skclusterfit.cluster.KMeans (never its speed)."""

import numpy as np
import pytest
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.cluster import kmeans_plusplus
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from skclusterfit.cluster import KMeans, PCAWhitening
from skclusterfit.cluster import _ann


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(3000, n_features=16, centers=12, cluster_std=0.5, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def overlapping():
    """Many clusters over fewer modes (ClusterFit's K >> classes regime)."""
    X, _ = make_blobs(6000, n_features=24, centers=40, cluster_std=1.5, random_state=1)
    return X.astype(np.float32)


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_exact_matches_sklearn_on_easy_data(blobs, backend):
    X, y = blobs
    init, _ = kmeans_plusplus(X, 12, random_state=0)
    ours = KMeans(12, init=init, normalize=False, device="cpu", backend=backend).fit(X)
    ref = SklearnKMeans(12, init=init, n_init=1, max_iter=20).fit(X)
    assert ours.engine_ == backend
    assert adjusted_rand_score(ours.labels_, ref.labels_) == 1.0
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-3)
    assert adjusted_rand_score(ours.labels_, y) == 1.0


@pytest.mark.parametrize("backend", ["sklearn", "torch"])
def test_exact_inertia_equal_to_sklearn_at_equal_init(overlapping, backend):
    init, _ = kmeans_plusplus(overlapping, 150, random_state=0)
    ours = KMeans(
        150, init=init, normalize=False, device="cpu", backend=backend, n_iter=10
    ).fit(overlapping)
    ref = SklearnKMeans(150, init=init, n_init=1, max_iter=10).fit(overlapping)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-3)


def test_torch_chunking_gives_identical_results(overlapping):
    X = overlapping[:2000]
    init = X[:50].copy()
    fits = [
        KMeans(
            50, init=init, n_iter=5, normalize=False, device="cpu", backend="torch",
            chunk_size=c,
        ).fit(X)
        for c in (500, 1024, None)
    ]
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].labels_, other.labels_)
        np.testing.assert_allclose(fits[0].cluster_centers_, other.cluster_centers_)


def test_ann_inertia_within_tolerance_of_exact(overlapping):
    init, _ = kmeans_plusplus(overlapping, 200, random_state=0)
    exact = KMeans(200, init=init, normalize=False, device="cpu", assign="exact").fit(
        overlapping
    )
    ann = KMeans(
        200, init=init, normalize=False, device="cpu", assign="ann", random_state=0
    ).fit(overlapping)
    assert ann.engine_ == "graph"
    assert ann.centroid_graph_.shape == (200, 32)
    assert ann.inertia_ <= 1.01 * exact.inertia_
    # labels_ and inertia_ describe the same assignment
    diff = overlapping - ann.cluster_centers_[ann.labels_]
    assert ann.inertia_ == pytest.approx(float((diff.astype(np.float64) ** 2).sum()), rel=1e-4)


def test_ann_predict_is_close_to_exact_nearest(overlapping):
    ann = KMeans(100, normalize=False, device="cpu", assign="ann", random_state=0)
    ann.fit(overlapping)
    predicted = ann.predict(overlapping)
    centers = ann.cluster_centers_
    d = ((overlapping[:, None, :] - centers[None]) ** 2).sum(-1)
    assert np.mean(predicted == d.argmin(1)) > 0.97


def test_centroid_graph_is_the_exact_knn_graph():
    rng = np.random.RandomState(0)
    centers = rng.normal(size=(300, 8)).astype(np.float32)
    graph = _ann.centroid_graph(centers, 5)
    d = ((centers[:, None] - centers[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(np.sort(graph, 1), np.sort(np.argsort(d, 1)[:, :5], 1))


def test_auto_assign_switches_to_ann_for_large_k(monkeypatch, overlapping):
    from skclusterfit.cluster import _kmeans

    monkeypatch.setattr(_kmeans, "_ANN_MIN_CLUSTERS", 50)
    assert KMeans(60, device="cpu", random_state=0).fit(overlapping).engine_ == "graph"
    assert KMeans(40, device="cpu", random_state=0).fit(overlapping).engine_ == "sklearn"


@pytest.mark.parametrize("assign", ["exact", "ann"])
def test_max_samples_fits_on_a_sample_and_labels_every_row(overlapping, assign):
    km = KMeans(
        40, normalize=False, device="cpu", assign=assign, max_samples=0.25,
        random_state=0,
    ).fit(overlapping)
    assert km.labels_.shape == (len(overlapping),)
    assert set(np.unique(km.labels_)) <= set(range(40))
    diff = overlapping - km.cluster_centers_[km.labels_]
    assert km.inertia_ == pytest.approx(float((diff.astype(np.float64) ** 2).sum()), rel=1e-4)
    full = KMeans(40, normalize=False, device="cpu", assign=assign, random_state=0)
    assert km.inertia_ <= 1.1 * full.fit(overlapping).inertia_
    if assign == "exact":
        np.testing.assert_array_equal(km.predict(overlapping), km.labels_)


def test_max_samples_smaller_than_k_is_rejected(overlapping):
    with pytest.raises(ValueError, match="max_samples=10"):
        KMeans(40, max_samples=10, device="cpu").fit(overlapping)


def test_init_size_seeds_from_a_subset(overlapping):
    km = KMeans(30, init_size=500, device="cpu", random_state=0).fit(overlapping)
    assert km.cluster_centers_.shape == (30, overlapping.shape[1])
    with pytest.raises(ValueError, match="init_size=10"):
        KMeans(30, init_size=10, device="cpu").fit(overlapping)


def test_whiten_clusters_in_the_whitened_normalised_space(overlapping):
    km = KMeans(10, whiten=8, device="cpu", random_state=0).fit(overlapping)
    assert isinstance(km.whitener_, PCAWhitening)
    assert km.cluster_centers_.shape == (10, 8)
    Z = km.whitener_.transform(overlapping)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(km.predict(overlapping), km.labels_)


def test_normalize_clusters_directions():
    X = np.array([[1, 0], [100, 1], [0, 1], [1, 200]], dtype=np.float64)
    km = KMeans(2, device="cpu", random_state=0).fit(X)
    assert km.labels_[0] == km.labels_[1] != km.labels_[2] == km.labels_[3]
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, atol=1e-3)


def test_empty_clusters_are_reseeded():
    X = np.repeat(np.eye(4, dtype=np.float32), 25, axis=0)
    init = np.vstack([np.eye(4), np.full((2, 4), 50.0)]).astype(np.float32)
    for backend in ("sklearn", "torch"):
        km = KMeans(6, init=init, normalize=False, device="cpu", backend=backend).fit(X)
        assert km.n_empty_splits_ >= 2
        assert np.isfinite(km.cluster_centers_).all()


def test_bad_init_shape_names_parameter(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="init has shape"):
        KMeans(3, init=np.zeros((2, 16)), device="cpu").fit(X)


def test_sklearn_backend_needs_cpu(blobs):
    X, _ = blobs
    km = KMeans(3, backend="sklearn", device="cpu")
    assert km.fit(X).engine_ == "sklearn"
    with pytest.raises(ValueError, match="backend='sklearn'"):
        km._resolve_engine(__import__("torch").device("cuda"))


@pytest.mark.parametrize(
    "estimator",
    [
        KMeans(n_clusters=3, n_iter=5, device="cpu"),
        KMeans(n_clusters=3, n_iter=5, device="cpu", assign="ann"),
        KMeans(n_clusters=3, n_iter=5, device="cpu", backend="torch"),
        PCAWhitening(2),
    ],
    ids=["kmeans-sklearn", "kmeans-ann", "kmeans-torch", "pcawhitening"],
)
def test_scikit_learn_estimator_checks(estimator):
    from sklearn.utils.estimator_checks import check_estimator

    failed = [
        result["check_name"]
        for result in check_estimator(estimator, on_fail=None)
        if result["status"] == "failed"
    ]
    assert failed == []


def test_tf32_is_scoped_to_cuda_blocks():
    import torch

    from skclusterfit.cluster._kmeans import matmul_tf32

    before = torch.backends.cuda.matmul.allow_tf32
    with matmul_tf32(torch.device("cuda"), not before):
        assert torch.backends.cuda.matmul.allow_tf32 is (not before)
        with matmul_tf32(torch.device("cuda"), before):
            assert torch.backends.cuda.matmul.allow_tf32 is before
        assert torch.backends.cuda.matmul.allow_tf32 is (not before)
    assert torch.backends.cuda.matmul.allow_tf32 is before
    with matmul_tf32(torch.device("cpu"), not before):
        assert torch.backends.cuda.matmul.allow_tf32 is before


@pytest.mark.gpu
def test_gpu_labels_are_exact_nearest_centres():
    """TF32 iterations on the GPU, but the returned labels are the exact argmin."""
    rng = np.random.RandomState(0)
    X = rng.randn(20000, 64).astype(np.float32)
    km = KMeans(n_clusters=256, n_iter=5, normalize=False, device="cuda", random_state=0).fit(X)
    X64, C64 = X.astype(np.float64), km.cluster_centers_.astype(np.float64)
    exact = np.argmin((C64**2).sum(1) - 2 * X64 @ C64.T, axis=1)
    assert np.mean(exact == km.labels_) > 0.9999
