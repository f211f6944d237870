"""Bad input gets a clear error naming the parameter and the value."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans


def cf(**params):
    defaults = dict(
        teacher=FeatureExtractor("cnn", random_state=0),
        K=5,
        student=NetClassifier(max_epochs=1),
        random_state=0,
    )
    defaults.update(params)
    return ClusterFit(**defaults)


def test_K_larger_than_n_samples(digits_small):
    X, _ = digits_small
    with pytest.raises(ValueError, match=r"K=500 .*n_samples=400"):
        cf(K=500).fit(X)


@pytest.mark.parametrize("K", [1, 0, -3])
def test_K_below_two(digits_small, K):
    X, _ = digits_small
    with pytest.raises(ValueError, match=rf"(?i)'K' parameter .* got {K}"):
        cf(K=K).fit(X)


def test_one_dimensional_X():
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        cf().fit(np.arange(20.0))


def test_channel_count_the_teacher_does_not_take(digits_small):
    X, _ = digits_small
    rgb = np.repeat(X, 3, axis=1)
    teacher = FeatureExtractor("cnn", random_state=0).fit(X)
    with pytest.raises(ValueError, match=r"3 channel\(s\) .* takes 1"):
        ClusterFit(teacher=teacher.network_, K=5).fit(rgb)
    with pytest.raises(ValueError, match=r"1 channel\(s\) .* takes 3"):
        FeatureExtractor("resnet18").fit(X)


def test_nan_in_X(digits_small):
    X, _ = digits_small
    X = X.copy()
    X[3, 0, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cf().fit(X)


def test_transform_before_fit(digits_small):
    X, _ = digits_small
    for estimator in (cf(), FeatureExtractor("cnn"), NetClassifier(), KMeans()):
        method = estimator.predict if isinstance(estimator, KMeans) else estimator.transform
        with pytest.raises(NotFittedError):
            method(X.reshape(len(X), -1) if isinstance(estimator, KMeans) else X)


def test_feature_count_differs_from_fit():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 6).astype(np.float32)
    fitted = cf(teacher=FeatureExtractor("mlp", random_state=0)).fit(X)
    with pytest.raises(ValueError, match="X has 4 features, but ClusterFit is expecting 6"):
        fitted.transform(X[:, :4])


def test_image_size_differs_from_fit(digits_small):
    X, _ = digits_small
    fitted = cf().fit(X)
    bigger = np.zeros((3, 1, 10, 10), dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(1, 10, 10\).*\(1, 8, 8\)"):
        fitted.transform(bigger)


def test_bad_device_string(digits_small):
    X, _ = digits_small
    with pytest.raises(ValueError, match="device='gpu0'"):
        cf(device="gpu0").fit(X)
    with pytest.raises(ValueError, match="device='cuda:7'"):
        NetClassifier(device="cuda:7").fit(X, np.arange(len(X)) % 2)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="model='resnet9000'"):
        FeatureExtractor("resnet9000").fit(np.zeros((2, 3, 8, 8), np.float32))


def test_clusterer_without_K_parameter(digits_small):
    from sklearn.cluster import DBSCAN

    X, _ = digits_small
    with pytest.raises(ValueError, match="no n_clusters or n_components"):
        cf(clusterer=DBSCAN()).fit(X)


def test_student_without_linear_head(digits_small):
    from torch import nn

    X, _ = digits_small
    headless = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="no final nn.Linear"):
        cf(student=headless).fit(X)


def test_channel_count_differs_at_transform_names_channels_and_both_shapes(digits_small):
    X, _ = digits_small
    fitted = cf().fit(X)
    rgb = np.repeat(X[:3], 3, axis=1)
    with pytest.raises(ValueError) as info:
        fitted.transform(rgb)
    message = str(info.value)
    assert "features" not in message
    assert "(3, 8, 8)" in message and "3 channel(s)" in message
    assert "(1, 8, 8)" in message and "1 channel(s)" in message
