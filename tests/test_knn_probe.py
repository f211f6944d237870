"""knn_probe against a plain brute-force reference of DINO's weighted kNN vote."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skclusterfit.evaluation import knn_probe


def reference_knn_accuracy(X_train, y_train, X_test, y_test, k, temperature):
    """One test sample at a time: cosine similarities, top-k, exp(s/T) votes."""
    train = X_train / np.linalg.norm(X_train, axis=1, keepdims=True)
    test = X_test / np.linalg.norm(X_test, axis=1, keepdims=True)
    correct = 0
    for x, label in zip(test, y_test):
        sims = train @ x
        top = np.argsort(-sims, kind="stable")[:k]
        votes = {}
        for j in top:
            votes[y_train[j]] = votes.get(y_train[j], 0.0) + np.exp(sims[j] / temperature)
        correct += max(votes, key=votes.get) == label
    return correct / len(y_test)


@pytest.mark.parametrize("k, temperature", [(1, 0.07), (5, 0.07), (20, 0.07), (20, 1.0)])
def test_matches_brute_force_reference_on_digits(k, temperature):
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64) + 0.01  # no all-zero row
    args = (X[:1200], y[:1200], X[1200:], y[1200:])
    expected = reference_knn_accuracy(*args, k, temperature)
    assert knn_probe(*args, k=k, temperature=temperature, algorithm="brute") == pytest.approx(
        expected, abs=1e-12
    )
    assert 0.85 < expected <= 1.0


def test_temperature_weights_the_vote():
    # Two neighbours of class "a" at similarity ~0.55 against one "b" at 1.0:
    # a majority vote says "a", exp(s / 0.07) weighting says "b".
    X_train = np.array([[1.0, 0.0], [0.55, 0.835], [0.55, -0.835]])
    y_train = np.array(["b", "a", "a"])
    X_test, y_test = np.array([[1.0, 0.0]]), np.array(["b"])
    assert knn_probe(X_train, y_train, X_test, y_test, k=3, temperature=0.07) == 1.0
    assert knn_probe(X_train, y_train, X_test, y_test, k=3, temperature=100.0) == 0.0
    assert reference_knn_accuracy(X_train, y_train, X_test, y_test, 3, 0.07) == 1.0


def test_features_are_l2_normalised_first():
    rng = np.random.RandomState(0)
    X_train, y_train = rng.normal(size=(200, 8)), rng.randint(3, size=200)
    X_test, y_test = rng.normal(size=(50, 8)), rng.randint(3, size=50)
    scales = rng.uniform(0.1, 10, size=(200, 1))
    assert knn_probe(X_train * scales, y_train, X_test, y_test, k=7) == knn_probe(
        X_train, y_train, X_test, y_test, k=7
    )


def test_auto_is_exact_on_small_data():
    rng = np.random.RandomState(1)
    X_train, y_train = rng.normal(size=(300, 16)), rng.randint(4, size=300)
    X_test, y_test = rng.normal(size=(100, 16)), rng.randint(4, size=100)
    assert knn_probe(X_train, y_train, X_test, y_test) == pytest.approx(
        reference_knn_accuracy(X_train, y_train, X_test, y_test, 20, 0.07)
    )


@pytest.mark.slow  # pynndescent compiles its numba kernels on first use (~1 min)
def test_graph_search_agrees_with_exact_search():
    X, y = load_digits(return_X_y=True)
    args = (X[:1200], y[:1200], X[1200:], y[1200:])
    exact = knn_probe(*args, algorithm="brute")
    approximate = knn_probe(*args, algorithm="nndescent", random_state=0)
    assert abs(exact - approximate) <= 0.01


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k=0 must be an integer from 1 to n_train=10"),
        ({"k": 11}, "k=11 must be an integer"),
        ({"k": 3, "temperature": 0.0}, "temperature=0.0 must be a positive"),
        ({"k": 3, "algorithm": "kd_tree"}, "algorithm='kd_tree'"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    X = np.random.RandomState(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match=message):
        knn_probe(X, np.arange(10) % 2, X, np.arange(10) % 2, **kwargs)


def test_mismatched_shapes_are_named():
    X = np.ones((10, 3))
    with pytest.raises(ValueError, match="X_train has 3 features per sample but X_test has 2"):
        knn_probe(X, np.zeros(10), np.ones((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="y_test has shape"):
        knn_probe(X, np.zeros(10), X, np.zeros(9))


def test_both_probes_take_data_first_and_a_transformer_by_keyword():
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    from skclusterfit.evaluation import linear_probe

    X, y = load_digits(return_X_y=True)
    pca = PCA(8, random_state=0).fit(X[:1000])
    args = (X[:1000], y[:1000], X[1000:], y[1000:])
    features = (pca.transform(X[:1000]), y[:1000], pca.transform(X[1000:]), y[1000:])
    assert knn_probe(*args, transformer=pca) == knn_probe(*features)
    assert linear_probe(*args, transformer=pca) == linear_probe(*features)
    assert linear_probe(*args, transformer=pca) < linear_probe(*args)  # 8 of 64 dimensions
    with pytest.warns(FutureWarning, match=r"linear_probe\(transformer, X_train.*deprecated"):
        old = linear_probe(pca, *args)
    assert old == linear_probe(*args, transformer=pca)
    with pytest.raises(TypeError, match=r"takes 4 positional arguments"):
        linear_probe(pca, *args, "extra")


def test_knn_probe_random_state_default_moves_to_none_with_a_warning(monkeypatch):
    import warnings

    from skclusterfit import evaluation

    seeds = []

    def graph(train, test, k, random_state):  # pynndescent's JIT costs minutes: exact here
        seeds.append(random_state)
        return evaluation._exact_neighbours(train, test, k)

    monkeypatch.setattr(evaluation, "_graph_neighbours", graph)
    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 4).astype(np.float32), np.arange(60) % 3
    with pytest.warns(FutureWarning, match=r"random_state changes from 0 to None"):
        knn_probe(X, y, X, y, k=5, algorithm="nndescent")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        knn_probe(X, y, X, y, k=5, algorithm="nndescent", random_state=None)
        knn_probe(X, y, X, y, k=5, algorithm="nndescent", random_state=3)
        knn_probe(X, y, X, y, k=5)  # exact search: no seed involved, no warning
    assert seeds == [0, None, 3]
