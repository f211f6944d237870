"""Correctness of skclusterfit.cluster.KMeans and its engines (never their speed)."""

import pathlib
import warnings
import weakref

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.cluster import kmeans_plusplus
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from skclusterfit.cluster import (
    KMeans,
    PCAWhitening,
    _ann,
    _common,
    _exact_cpu,
    _exact_torch,
    _kmeans,
)
from skclusterfit.runtime import LOCAL
from skclusterfit.cluster._rows import ArrayRows

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "skclusterfit"


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(3000, n_features=16, centers=12, cluster_std=0.5, random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def overlapping():
    """Many clusters over fewer modes (ClusterFit's K >> classes regime)."""
    X, _ = make_blobs(6000, n_features=24, centers=40, cluster_std=1.5, random_state=1)
    return X.astype(np.float32)


def exact_nearest(X, centers):
    """Nearest centre by float64 brute force, and the gap to the second nearest."""
    X64, C64 = X.astype(np.float64), centers.astype(np.float64)
    d = (X64**2).sum(1)[:, None] - 2 * X64 @ C64.T + (C64**2).sum(1)[None]
    order = np.argsort(d, axis=1)[:, :2]
    rows = np.arange(len(X))
    return order[:, 0], d[rows, order[:, 1]] - d[rows, order[:, 0]]


def reference_lloyd(X, init, n_iter):
    """Lloyd in float64 numpy: the labels of each iteration, as the textbook defines them."""
    centers = init.astype(np.float64)
    X64 = X.astype(np.float64)
    history = []
    for _ in range(n_iter):
        labels, _ = exact_nearest(X64, centers)
        history.append(labels)
        for k in range(len(centers)):
            members = X64[labels == k]
            if len(members):
                centers[k] = members.mean(0)
    return history, centers


# -- exactness ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["yinyang", "torch"])
def test_exact_matches_sklearn_on_easy_data(blobs, backend):
    X, y = blobs
    init, _ = kmeans_plusplus(X, 12, random_state=0)
    ours = KMeans(12, init=init, normalize=False, device="cpu", backend=backend).fit(X)
    ref = SklearnKMeans(12, init=init, n_init=1, max_iter=20).fit(X)
    assert ours.engine_ == backend
    assert adjusted_rand_score(ours.labels_, ref.labels_) == 1.0
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)
    assert adjusted_rand_score(ours.labels_, y) == 1.0


@pytest.mark.parametrize("backend", ["yinyang", "torch"])
@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_exact_inertia_equal_to_sklearn_at_equal_init(overlapping, backend, offset):
    """Within 1e-4 of scikit-learn, also for data far from the origin (centring)."""
    X = overlapping + np.float32(offset)
    init, _ = kmeans_plusplus(X, 150, random_state=0)
    ours = KMeans(
        150, init=init, normalize=False, device="cpu", backend=backend, max_iter=10
    ).fit(X)
    ref = SklearnKMeans(150, init=init, n_init=1, max_iter=10).fit(X)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)


def test_yinyang_labels_are_lloyds_at_every_iteration(overlapping):
    """The bounds skip only what cannot change: Lloyd's labels, iteration by iteration."""
    X = overlapping[:3000] + np.float32(50.0)  # off-centre: the engine must centre
    init = X[np.random.RandomState(0).choice(len(X), 120, replace=False)]
    history, _ = reference_lloyd(X, init, 8)
    for n_iter in (1, 3, 8):
        km = KMeans(
            120, init=init, max_iter=n_iter, tol=0, normalize=False, device="cpu",
            backend="yinyang",
        ).fit(X)
        # The fit's labels are those of its returned centres: Lloyd's labels
        # of iteration n_iter + 1 (the centres after n_iter updates).
        expected, gap = exact_nearest(X, km.cluster_centers_)
        clear = gap > 1e-3  # not a near tie
        assert clear.mean() > 0.99
        np.testing.assert_array_equal(km.labels_[clear], expected[clear])
        if n_iter < 8:
            np.testing.assert_array_equal(km.labels_[clear], history[n_iter][clear])


@pytest.mark.parametrize("heavy_fraction", [0.0, 1.0])
def test_yinyang_gemm_fallback_and_group_search_agree(overlapping, monkeypatch, heavy_fraction):
    """Points recomputed by GEMM (fraction 0) and by the group search (1) get the same labels."""
    init = overlapping[:200].copy()
    reference = KMeans(
        200, init=init, max_iter=6, normalize=False, device="cpu", backend="yinyang"
    ).fit(overlapping)
    monkeypatch.setattr(_exact_cpu, "_HEAVY_FRACTION", heavy_fraction)
    km = KMeans(200, init=init, max_iter=6, normalize=False, device="cpu", backend="yinyang")
    km.fit(overlapping)
    np.testing.assert_array_equal(km.labels_, reference.labels_)
    np.testing.assert_allclose(km.cluster_centers_, reference.cluster_centers_, atol=1e-5)


def test_yinyang_engine_on_blocks_equals_one_block(overlapping):
    """The engine sees its rows by blocks (out of core): block size changes nothing."""
    X = overlapping - overlapping.mean(0)
    init = X[:60].copy()

    class Blocked(ArrayRows):
        def blocks(self, block_rows=None):
            return super().blocks(777)

    one = _exact_cpu.lloyd_exact_cpu(ArrayRows(X), init, max_iter=5, tol=0, comm=LOCAL)
    many = _exact_cpu.lloyd_exact_cpu(Blocked(X), init, max_iter=5, tol=0, comm=LOCAL)
    np.testing.assert_array_equal(one.labels, many.labels)
    np.testing.assert_allclose(one.centers, many.centers, atol=1e-6)
    assert one.inertia == pytest.approx(many.inertia, rel=1e-6)


def test_predict_is_the_exact_nearest_centre(overlapping):
    km = KMeans(50, normalize=False, device="cpu", random_state=0).fit(overlapping)
    queries = overlapping[::3] + np.float32(0.5)
    expected, gap = exact_nearest(queries, km.cluster_centers_)
    clear = gap > 1e-3
    np.testing.assert_array_equal(km.predict(queries)[clear], expected[clear])
    np.testing.assert_array_equal(km.predict(overlapping), km.labels_)


def test_torch_chunking_gives_identical_results(overlapping):
    X = overlapping[:2000]
    init = X[:50].copy()
    fits = [
        KMeans(
            50, init=init, max_iter=5, normalize=False, device="cpu", backend="torch",
            chunk_size=c,
        ).fit(X)
        for c in (500, 1024, None)
    ]
    for other in fits[1:]:
        np.testing.assert_array_equal(fits[0].labels_, other.labels_)
        np.testing.assert_allclose(fits[0].cluster_centers_, other.cluster_centers_)


# -- the GPU path, run on the CPU (defects 2 and 9 of issue 10) ----------------


def test_reduced_precision_iterations_end_with_an_exact_labelling(overlapping, monkeypatch):
    """The GPU's bfloat16 iterations, injected on the CPU: the returned labels
    come from a float32 pass, so they are the exact nearest centres."""
    calls = []
    original = _exact_torch.assign

    def spy(X, centers, chunk_size, dtype=None):
        calls.append(dtype)
        return original(X, centers, chunk_size, dtype)

    monkeypatch.setattr(_exact_torch, "iteration_dtype_for", lambda device: torch.bfloat16)
    monkeypatch.setattr(_exact_torch, "assign", spy)
    km = KMeans(80, max_iter=4, normalize=False, device="cpu", backend="torch", random_state=0)
    km.fit(overlapping)
    assert calls[:4] == [torch.bfloat16] * 4
    assert calls[4] == torch.float32  # the final, exact pass ran
    expected, gap = exact_nearest(overlapping, km.cluster_centers_)
    clear = gap > 1e-3
    np.testing.assert_array_equal(km.labels_[clear], expected[clear])


def test_no_process_wide_precision_flag_is_written(overlapping):
    """Reduced precision is a cast of local tensors; torch's global flags are only read."""
    before = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    KMeans(20, max_iter=3, device="cpu", backend="torch", random_state=0).fit(overlapping)
    assert (
        torch.backends.cuda.matmul.allow_tf32,
        torch.get_float32_matmul_precision(),
    ) == before
    source = (PACKAGE / "cluster" / "_exact_torch.py").read_text()
    assert "allow_tf32 =" not in source and "set_float32_matmul_precision" not in source
    # A user who allowed TF32 float32 products still gets exact final labels.
    assert _exact_torch.exact_dtype(torch.device("cpu")) == torch.float32


# -- approximate assignment ----------------------------------------------------


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
    expected, _ = exact_nearest(overlapping, ann.cluster_centers_)
    assert np.mean(ann.predict(overlapping) == expected) > 0.97


@pytest.fixture(scope="module")
def digit_features(digits_images):
    """Penultimate features of a CNN trained on digits, L2-normalised as ClusterFit does."""
    from skclusterfit import NetClassifier

    X, y = digits_images
    Z = NetClassifier(max_epochs=5, random_state=0).fit(X, y).transform(X)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
@pytest.mark.parametrize("n_clusters", [50, 200, 500])
def test_ann_on_network_features_is_close_to_exact(digit_features, n_clusters):
    """The data ClusterFit sees: ANN inertia within 0.5% of exact Lloyd's from the
    same seeds, and predict returns the exact nearest centre for >= 99% of rows."""
    init = KMeans(n_clusters, max_iter=1, random_state=0, device="cpu").fit(
        digit_features
    ).cluster_centers_
    exact = KMeans(n_clusters, init=init, assign="exact", device="cpu").fit(digit_features)
    ann = KMeans(n_clusters, init=init, assign="ann", device="cpu", random_state=0)
    ann.fit(digit_features)
    assert ann.inertia_ <= 1.005 * exact.inertia_
    expected, _ = exact_nearest(digit_features, ann.cluster_centers_)
    assert np.mean(ann.predict(digit_features) == expected) >= 0.99


@pytest.fixture(scope="module")
def stuck_walk_data():
    """The benchmark's hard case, small: 300 unit-variance modes with N(0, I)
    means in 64-d, one per cluster, and seeds that miss many of them.
    Returns ``(X, init, exact Lloyd's inertia from init)``."""
    rng = np.random.RandomState(0)
    means = rng.standard_normal((300, 64)).astype(np.float32)
    X = means[rng.randint(300, size=10000)] + rng.standard_normal((10000, 64)).astype(np.float32)
    init = X[np.random.RandomState(1).choice(len(X), 300, replace=False)]
    exact = KMeans(300, init=init, normalize=False, assign="exact", device="cpu").fit(X)
    return X, init, exact.inertia_


def record_walk_checks(monkeypatch):
    """``(wider searches, exact passes)`` so far, appended after every E-step."""
    checks = []
    original = _ann._WalkCheck.e_step

    def counting(self, *args):
        result = original(self, *args)
        checks.append((self.wider_passes, self.exact_passes))
        return result

    monkeypatch.setattr(_ann._WalkCheck, "e_step", counting)
    return checks


def test_ann_falls_back_to_exact_when_the_walk_is_stuck(monkeypatch, stuck_walk_data):
    """The walk cannot cross between well-separated modes; the sample check
    notices and the E-step is redone exactly, so the inertia stays within 1%
    of exact Lloyd's."""
    X, init, exact_inertia = stuck_walk_data
    checks = record_walk_checks(monkeypatch)
    ann = KMeans(300, init=init, normalize=False, assign="ann", device="cpu", random_state=0)
    ann.fit(X)
    assert checks[-1][1] >= 1  # the fallback did run
    assert ann.inertia_ <= 1.01 * exact_inertia
    monkeypatch.setattr(_ann, "MIN_AGREEMENT", 0.0)  # never fall back: markedly worse
    unchecked = KMeans(300, init=init, normalize=False, assign="ann", device="cpu",
                       random_state=0).fit(X)
    assert unchecked.inertia_ > 1.03 * exact_inertia


def test_ann_widens_the_search_before_falling_back_to_exact(monkeypatch, stuck_walk_data):
    """The hard case again, with wider inverted-file searches allowed up to every
    group: the check is satisfied by widening, no exact pass is needed, and the
    inertia stays within 1% of exact Lloyd's."""
    X, init, exact_inertia = stuck_walk_data
    checks = record_walk_checks(monkeypatch)
    monkeypatch.setattr(_ann, "MAX_PROBE_FRACTION", 1.0)
    ann = KMeans(300, init=init, normalize=False, assign="ann", device="cpu", random_state=0)
    ann.fit(X)
    wider, exact_passes = checks[-1]
    assert wider >= 1 and exact_passes == 0
    assert ann.inertia_ <= 1.01 * exact_inertia


def test_ann_spends_no_full_pass_on_a_rejected_search(monkeypatch, stuck_walk_data):
    """The searches are tried on the check's sample first: an E-step that ends
    in the exact step runs no search over all rows, and one that runs a
    search over all rows gives the sample's rows the labels the sample's
    search predicted (a row's search does not depend on the other rows)."""
    X, init, _ = stuck_walk_data
    steps = []
    original_search, original_e_step = _ann._search, _ann._WalkCheck.e_step

    def search(X_, *args):
        found = original_search(X_, *args)
        steps[-1]["searches"].append((X_.shape[0], found.copy()))
        return found

    def e_step(self, rows, *args):
        steps.append({"searches": [], "exact": self.exact_passes, "check": self})
        labels, changed = original_e_step(self, rows, *args)
        steps[-1].update(exact=self.exact_passes - steps[-1]["exact"], labels=labels.copy())
        return labels, changed

    monkeypatch.setattr(_ann, "_search", search)
    monkeypatch.setattr(_ann._WalkCheck, "e_step", e_step)
    KMeans(300, init=init, normalize=False, assign="ann", device="cpu", random_state=0).fit(X)
    exact_steps = [step for step in steps if step["exact"]]
    walk_steps = [step for step in steps if not step["exact"]]
    assert exact_steps and walk_steps  # the hard case has both
    for step in exact_steps:
        assert all(n_rows < len(X) for n_rows, _ in step["searches"])
    for step in walk_steps:
        sample_rows = step["check"].local
        predicted = [found for n_rows, found in step["searches"] if n_rows == len(sample_rows)]
        assert any(n_rows == len(X) for n_rows, _ in step["searches"])
        # The trusted search is the last one tried on the sample. A GEMM over
        # another batch of rows may round a near-tie differently: hence not 100%.
        assert np.mean(step["labels"][sample_rows] == predicted[-1]) >= 0.999


def test_graph_engine_lets_the_initial_centres_go(monkeypatch, overlapping):
    """The initial centres (a K x d array: 131 MB at the paper's scale) are
    freed once the first M-step has replaced them, not held by fit."""
    initial, alive = [], []
    original_initial, original_update = KMeans._initial_centers, _ann.update_centers

    def initial_centers(self, *args):
        centers = original_initial(self, *args)
        initial.append(weakref.ref(centers))
        return centers

    def update_centers(rows, labels, centers, comm):
        alive.append(initial[0]() is not None)
        return original_update(rows, labels, centers, comm)

    monkeypatch.setattr(KMeans, "_initial_centers", initial_centers)
    monkeypatch.setattr(_ann, "update_centers", update_centers)
    KMeans(60, assign="ann", device="cpu", max_iter=3, tol=0.0, random_state=0).fit(overlapping)
    assert alive[0]  # the first M-step reads them
    assert not any(alive[1:])


@pytest.mark.parametrize("n_clusters, n_neighbors", [(300, 5), (3000, 32)])
def test_centroid_graph_is_the_exact_knn_graph(n_clusters, n_neighbors):
    rng = np.random.RandomState(0)
    centers = rng.normal(size=(n_clusters, 8)).astype(np.float32)
    graph = _ann.centroid_graph(centers, n_neighbors)
    d = ((centers[:, None].astype(np.float64) - centers[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    expected = np.sort(np.argsort(d, 1)[:, :n_neighbors], 1)
    agree = (np.sort(graph, 1) == expected).all(1)
    # float32 GEMM distances may swap two neighbours at the k-th place.
    assert agree.mean() >= 0.99


def test_fitted_centroid_graph_belongs_to_the_final_centres(overlapping):
    km = KMeans(60, assign="ann", device="cpu", random_state=0).fit(overlapping)
    expected = _ann.centroid_graph(km.cluster_centers_, km.n_neighbors)
    agree = (np.sort(km.centroid_graph_, 1) == np.sort(expected, 1)).all(1)
    assert agree.mean() >= 0.95  # equal up to float32 near-ties (fitted on centred data)


def test_balanced_groups_caps_group_sizes():
    """A dense blob beside scattered points: plain k-means leaves one group with
    most of the blob; no balanced group exceeds twice the mean size, none is
    empty, each centre is its members' mean, and the result is deterministic."""
    rng = np.random.RandomState(0)
    points = np.vstack([
        rng.normal(scale=0.01, size=(1500, 16)),
        rng.normal(scale=5.0, size=(500, 16)),
    ]).astype(np.float32)
    _, plain = _common.small_kmeans(points, 40, 0, n_iter=10)
    assert np.bincount(plain).max() > 2 * 50  # the imbalance being fixed
    centres, groups = _common.balanced_groups(points, 40, 0)
    counts = np.bincount(groups, minlength=len(centres))
    assert counts.min() >= 1 and counts.max() <= 2 * 50
    for g in range(len(centres)):
        np.testing.assert_allclose(centres[g], points[groups == g].mean(0), atol=1e-5)
    again_centres, again = _common.balanced_groups(points, 40, 0)
    np.testing.assert_array_equal(groups, again)
    np.testing.assert_array_equal(centres, again_centres)
    # Identical points cannot be split by k-means: they are sliced.
    _, same = _common.balanced_groups(np.ones((100, 4), dtype=np.float32), 10, 0)
    assert np.bincount(same).max() <= 2 * 10


def test_wider_search_keeps_the_closer_centre():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(2000, 16)).astype(np.float32)
    centers = rng.normal(size=(200, 16)).astype(np.float32)
    labels = rng.randint(200, size=2000).astype(np.int32)
    candidates = rng.randint(200, size=2000).astype(np.int32)
    d = ((X[:, None] - centers[None]) ** 2).sum(-1)
    expected = np.where(d[np.arange(2000), candidates] < d[np.arange(2000), labels],
                        candidates, labels)
    _ann.keep_closer(X, centers, labels, candidates)
    np.testing.assert_array_equal(labels, expected)


def test_wider_search_all_groups_is_exact_nearest():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(3000, 16)).astype(np.float32)
    centers = rng.normal(size=(400, 16)).astype(np.float32)
    groups = _ann.CentroidGroups(centers, 0, n_probe=1000)  # every group probed
    expected, _ = exact_nearest(X, centers)
    assert np.mean(groups.nearest(X, centers) == expected) >= 0.999


def test_auto_assign_switches_to_ann_for_large_k(monkeypatch, overlapping):
    monkeypatch.setattr(_kmeans, "_ANN_MIN_CLUSTERS", 50)
    assert KMeans(60, device="cpu", random_state=0).fit(overlapping).engine_ == "graph"
    assert KMeans(40, device="cpu", random_state=0).fit(overlapping).engine_ == "yinyang"


# -- sampling, seeding, preprocessing ------------------------------------------


@pytest.mark.parametrize("assign", ["exact", "ann"])
def test_max_samples_fits_on_a_sample_and_labels_every_row(overlapping, assign):
    init, _ = kmeans_plusplus(overlapping, 40, random_state=0)
    km = KMeans(
        40, init=init, normalize=False, device="cpu", assign=assign, max_samples=0.25,
        random_state=0,
    ).fit(overlapping)
    assert km.labels_.shape == (len(overlapping),)
    assert set(np.unique(km.labels_)) <= set(range(40))
    diff = overlapping - km.cluster_centers_[km.labels_]
    assert km.inertia_ == pytest.approx(float((diff.astype(np.float64) ** 2).sum()), rel=1e-4)
    full = KMeans(40, init=init, normalize=False, device="cpu", assign=assign, random_state=0)
    assert km.inertia_ <= 1.05 * full.fit(overlapping).inertia_
    if assign == "exact":
        np.testing.assert_array_equal(km.predict(overlapping), km.labels_)


def test_check_fit_size_is_the_one_rule():
    """max_samples as a fraction rounds up: 0.0999 of 1000 rows keeps 100."""
    assert KMeans(100, max_samples=0.0999)._check_fit_size(1000) == 100
    assert KMeans(7, max_samples=0.07)._check_fit_size(100) == 7
    assert KMeans(5, max_samples=50)._check_fit_size(30) == 30
    assert KMeans(5)._check_fit_size(30) == 30
    with pytest.raises(ValueError, match=r"max_samples=0\.0999 keeps 100 of the 1000 samples, "
                       r"fewer than n_clusters=101"):
        KMeans(101, max_samples=0.0999)._check_fit_size(1000)
    with pytest.raises(ValueError, match=r"n_clusters=31 must be <= n_samples=30"):
        KMeans(31)._check_fit_size(30)


def test_fit_uses_the_fit_size_rule(overlapping):
    with pytest.raises(ValueError, match="max_samples=10 keeps 10"):
        KMeans(40, max_samples=10, device="cpu").fit(overlapping)
    km = KMeans(60, max_samples=0.0099, device="cpu", random_state=0)  # 59.4 -> 60 rows
    assert km.fit(overlapping).labels_.shape == (len(overlapping),)


def test_init_size_seeds_from_a_subset(overlapping):
    km = KMeans(30, init_size=500, device="cpu", random_state=0).fit(overlapping)
    assert km.cluster_centers_.shape == (30, overlapping.shape[1])
    with pytest.raises(ValueError, match="init_size=10"):
        KMeans(30, init_size=10, device="cpu").fit(overlapping)


def test_default_seeding_is_kmeans_plusplus_quality(overlapping):
    """The default (k-means++ on a sample) beats random rows after a few iterations."""
    plus = KMeans(150, max_iter=5, normalize=False, device="cpu", random_state=0)
    rand = KMeans(150, max_iter=5, normalize=False, device="cpu", random_state=0, init="random")
    assert plus.fit(overlapping).inertia_ < rand.fit(overlapping).inertia_


def test_whiten_dim_clusters_in_the_whitened_normalised_space(overlapping):
    km = KMeans(10, whiten_dim=8, device="cpu", random_state=0).fit(overlapping)
    assert isinstance(km.whitener_, PCAWhitening)
    assert km.cluster_centers_.shape == (10, 8)
    Z = km.whitener_.transform(overlapping)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(km.predict(overlapping), km.labels_)
    with pytest.raises(ValueError, match="whiten_dim=30"):
        KMeans(10, whiten_dim=30, device="cpu").fit(overlapping)


def test_normalize_clusters_directions():
    X = np.array([[1, 0], [100, 1], [0, 1], [1, 200]], dtype=np.float64)
    km = KMeans(2, device="cpu", random_state=0).fit(X)
    assert km.labels_[0] == km.labels_[1] != km.labels_[2] == km.labels_[3]
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1, atol=1e-3)


@pytest.mark.parametrize(
    "params", [{"backend": "yinyang"}, {"backend": "torch"}, {"assign": "ann"}],
    ids=["yinyang", "torch", "ann"],
)
def test_empty_clusters_are_reseeded(params):
    X = np.repeat(np.eye(4, dtype=np.float32), 25, axis=0)
    init = np.vstack([np.eye(4), np.full((2, 4), 50.0)]).astype(np.float32)
    km = KMeans(6, init=init, normalize=False, device="cpu", **params).fit(X)
    assert km.n_empty_splits_ >= 2
    assert np.isfinite(km.cluster_centers_).all()
    assert len(np.unique(km.labels_)) >= 4


# -- parameters ------------------------------------------------------------------


def test_n_iter_is_a_deprecated_alias_of_max_iter(overlapping):
    with pytest.warns(FutureWarning, match="n_iter.*max_iter=3"):
        old = KMeans(20, n_iter=3, device="cpu", random_state=0).fit(overlapping)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = KMeans(20, max_iter=3, device="cpu", random_state=0).fit(overlapping)
    np.testing.assert_array_equal(old.labels_, new.labels_)
    assert old.n_iter_ <= 3


def test_whiten_is_a_deprecated_alias_of_whiten_dim(overlapping):
    with pytest.warns(FutureWarning, match="whiten_dim=4"):
        old = KMeans(5, whiten=4, device="cpu", random_state=0).fit(overlapping)
    new = KMeans(5, whiten_dim=4, device="cpu", random_state=0).fit(overlapping)
    np.testing.assert_array_equal(old.labels_, new.labels_)


def test_bad_init_shape_names_parameter(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="init has shape"):
        KMeans(3, init=np.zeros((2, 16)), device="cpu").fit(X)


def test_yinyang_backend_needs_cpu(blobs):
    X, _ = blobs
    km = KMeans(3, backend="yinyang", device="cpu")
    assert km.fit(X).engine_ == "yinyang"
    with pytest.raises(ValueError, match="backend='yinyang'"):
        km._resolve_engine(torch.device("cuda"))


def test_verbose_shows_a_progress_bar_and_quiet_shows_nothing(overlapping, capsys):
    KMeans(10, max_iter=3, device="cpu", random_state=0).fit(overlapping)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    KMeans(10, max_iter=3, device="cpu", random_state=0, verbose=1).fit(overlapping)
    loud = capsys.readouterr()
    assert "k-means" in loud.err and "iter" in loud.err
    assert "[KMeans]" in loud.out


# -- the package's shape ---------------------------------------------------------


def test_engines_share_one_signature():
    import inspect

    from skclusterfit.cluster._ann import lloyd_graph
    from skclusterfit.cluster._exact_cpu import lloyd_exact_cpu
    from skclusterfit.cluster._exact_torch import lloyd_torch

    for engine in (lloyd_exact_cpu, lloyd_torch, lloyd_graph):
        parameters = inspect.signature(engine).parameters
        assert list(parameters)[:2] == ["rows", "centers_init"]
        for name in ("max_iter", "tol", "verbose", "comm"):
            assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    "estimator",
    [
        # The default engine's checks run in test_estimator_checks.py.
        KMeans(n_clusters=3, max_iter=5, device="cpu", assign="ann"),
        KMeans(n_clusters=3, max_iter=5, device="cpu", backend="torch"),
        PCAWhitening(2),
    ],
    ids=["kmeans-ann", "kmeans-torch", "pcawhitening"],
)
def test_scikit_learn_estimator_checks(estimator):
    from sklearn.utils.estimator_checks import check_estimator

    failed = [
        result["check_name"]
        for result in check_estimator(estimator, on_fail=None)
        if result["status"] == "failed"
    ]
    assert failed == []


@pytest.mark.gpu
def test_gpu_labels_are_exact_nearest_centres():
    """bfloat16 iterations on the GPU, but the returned labels are the exact argmin."""
    rng = np.random.RandomState(0)
    X = rng.randn(20000, 64).astype(np.float32)
    km = KMeans(n_clusters=256, max_iter=5, normalize=False, device="cuda", random_state=0)
    km.fit(X)
    expected, gap = exact_nearest(X, km.cluster_centers_)
    clear = gap > 1e-3
    assert np.mean(expected[clear] == km.labels_[clear]) == 1.0


_CACHE_SCRIPT = """
import numpy as np
from skclusterfit.cluster import KMeans, _numba
X = np.random.RandomState(0).rand(300, 4).astype(np.float32)
KMeans(5, max_iter=2, device="cpu", random_state=0).fit(X)
print(_numba.cache_dir())
"""


@pytest.mark.slow  # a fresh interpreter compiles the numba kernels: ~10 s of CPU each
@pytest.mark.parametrize("writable", [True, False])
def test_numba_cache_lives_outside_the_package(tmp_path, writable):
    """Compiled kernels go to the user cache directory, never into the package;
    an unwritable cache directory only means compiling again."""
    import os
    import subprocess
    import sys

    package_cache = PACKAGE / "cluster" / "__pycache__"
    before = set(package_cache.glob("*.nb*")) if package_cache.exists() else set()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path) if writable else "/dev/null/not-a-directory"
    env["PYTHONPATH"] = str(PACKAGE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", _CACHE_SCRIPT], env=env, capture_output=True, text=True,
        check=True, timeout=600,
    ).stdout.strip().splitlines()[-1]
    after = set(package_cache.glob("*.nb*")) if package_cache.exists() else set()
    assert after == before
    if writable:
        assert out == str(tmp_path / "skclusterfit" / "numba")
        assert list((tmp_path / "skclusterfit" / "numba").rglob("*.nbi"))
    else:
        assert out == "None"


# -- distributed and out-of-core, in one process ----------------------------------


def test_distributed_true_needs_a_process_group(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="distributed=True needs an initialised"):
        KMeans(3, distributed=True, device="cpu").fit(X)
    # "auto" without a process group is an ordinary one-process fit.
    assert KMeans(3, device="cpu", random_state=0).fit(X).labels_.shape == (len(X),)


@pytest.fixture(scope="module")
def float16_memmap(tmp_path_factory):
    """40,000 x 64 float16 on disk: a float32 copy would take 10 MB."""
    X, _ = make_blobs(40000, n_features=64, centers=60, cluster_std=2.0, random_state=0)
    path = tmp_path_factory.mktemp("memmap") / "features.f16"
    mapped = np.memmap(path, dtype=np.float16, mode="w+", shape=X.shape)
    mapped[:] = X
    mapped.flush()
    return np.memmap(path, dtype=np.float16, mode="r", shape=X.shape)


@pytest.mark.slow  # three fits on a large memory map; the in-memory twin below stays fast
@pytest.mark.parametrize("params", [{}, {"assign": "ann"}, {"whiten_dim": 12}],
                         ids=["exact", "ann", "whiten"])
def test_memmap_is_streamed_not_copied(float16_memmap, monkeypatch, params):
    """A float16 memory map is clustered block by block: the result is that of the
    same values in memory, and no float32 copy of all rows is ever allocated."""
    import tracemalloc

    from skclusterfit.cluster import _rows

    monkeypatch.setattr(_rows, "STREAM_BLOCK_BYTES", 256 * 2**10)  # ~1000-row blocks
    in_memory = np.asarray(float16_memmap, dtype=np.float32)
    params = dict(params, init_size=1000)  # a seeding sample of 2.5% of the rows
    reference = KMeans(30, device="cpu", random_state=0, **params).fit(in_memory)
    full_copy = in_memory.nbytes
    tracemalloc.start()
    streamed = KMeans(30, device="cpu", random_state=0, **params).fit(float16_memmap)
    labels = streamed.predict(float16_memmap)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < full_copy / 2, f"peak {peak} bytes, a float32 copy is {full_copy}"
    assert np.mean(streamed.labels_ == reference.labels_) > 0.999
    np.testing.assert_allclose(streamed.cluster_centers_, reference.cluster_centers_, atol=1e-4)
    np.testing.assert_array_equal(labels, streamed.labels_)
    assert streamed.inertia_ == pytest.approx(reference.inertia_, rel=1e-4)


@pytest.mark.parametrize("params", [{}, {"assign": "ann"}, {"normalize": False}],
                         ids=["exact", "ann", "raw"])
@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_large_in_memory_array_is_streamed_like_a_copy(float16_memmap, monkeypatch, params):
    """An in-memory array too large to copy is prepared block by block (one
    reused buffer): the same fit as from a copy."""
    from skclusterfit.cluster import _rows

    X = np.asarray(float16_memmap, dtype=np.float32)
    params = dict(params, init_size=1000)
    reference = KMeans(30, device="cpu", random_state=0, **params).fit(X)
    monkeypatch.setattr(_kmeans, "_COPY_LIMIT_BYTES", 2**20)
    monkeypatch.setattr(_rows, "STREAM_BLOCK_BYTES", 256 * 2**10)
    streamed_rows = []
    original = _rows.StreamRows.blocks

    def spy(self, *args):
        streamed_rows.append(self.n_rows)
        yield from original(self, *args)

    monkeypatch.setattr(_rows.StreamRows, "blocks", spy)
    streamed = KMeans(30, device="cpu", random_state=0, **params).fit(X)
    assert streamed_rows and set(streamed_rows) == {len(X)}
    assert np.mean(streamed.labels_ == reference.labels_) > 0.999
    np.testing.assert_allclose(streamed.cluster_centers_, reference.cluster_centers_, atol=1e-4)
    assert streamed.inertia_ == pytest.approx(reference.inertia_, rel=1e-4)
    np.testing.assert_array_equal(streamed.predict(X), streamed.labels_)


def test_memmap_with_max_samples_holds_only_the_sample(float16_memmap, monkeypatch):
    import tracemalloc

    from skclusterfit.cluster import _rows

    monkeypatch.setattr(_rows, "STREAM_BLOCK_BYTES", 256 * 2**10)
    tracemalloc.start()
    km = KMeans(30, max_samples=0.1, init_size=1000, device="cpu", random_state=0)
    km.fit(float16_memmap)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert km.labels_.shape == (len(float16_memmap),)
    assert peak < 4 * float16_memmap.size / 2, f"peak {peak} bytes"
