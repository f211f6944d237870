"""PCAWhitening: real whitening (identity covariance) and L2 normalisation."""

import numpy as np
import pytest

from skclusterfit.cluster import PCAWhitening


@pytest.fixture(scope="module")
def correlated():
    rng = np.random.RandomState(0)
    mixing = rng.normal(size=(12, 12)) * np.logspace(0, -2, 12)[:, None]
    return (rng.normal(size=(4000, 12)) @ mixing + 3.0).astype(np.float32)


def test_whitening_gives_identity_covariance(correlated):
    Z = PCAWhitening(n_components=6, normalize=False).fit_transform(correlated)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(np.cov(Z, rowvar=False), np.eye(6), atol=1e-3)


def test_whitening_scales_by_inverse_sqrt_eigenvalue(correlated):
    w = PCAWhitening(normalize=False).fit(correlated)
    eig = np.linalg.eigvalsh(np.cov(correlated.astype(np.float64), rowvar=False))[::-1]
    # float32 GEMM per block: the smallest of 12 eigenvalues (1e-6 of the
    # largest) is within 1%, the others far closer.
    np.testing.assert_allclose(w.explained_variance_, eig, rtol=1e-2)
    norms = np.linalg.norm(w.whitening_, axis=0)
    np.testing.assert_allclose(norms, 1 / np.sqrt(eig + w.eps), rtol=1e-2)


def test_normalize_gives_unit_rows(correlated):
    Z = PCAWhitening(n_components=4).fit_transform(correlated)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)


def test_refit_is_deterministic(correlated):
    a = PCAWhitening(3).fit(correlated).components_
    b = PCAWhitening(3).fit(correlated[::-1].copy()).components_
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_too_many_components_names_parameter(correlated):
    with pytest.raises(ValueError, match="n_components=13"):
        PCAWhitening(13).fit(correlated)


def test_feature_names_out(correlated):
    w = PCAWhitening(2).fit(correlated)
    assert list(w.get_feature_names_out()) == ["pcawhitening0", "pcawhitening1"]
