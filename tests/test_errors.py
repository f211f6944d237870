"""Bad input gets a clear error naming the parameter and the value."""

import re

import numpy as np
import pytest
import torch
from torch import nn
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


# -- the bad-input table: what a new user tried, and the error each must get ----------
# Each row: (id, what is done, the error class, a pattern naming the parameter and value).
class _OneDimensionalOutput(nn.Module):
    """A teacher module returning one number per sample, as a 1-D tensor."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return (x * self.scale).mean(dim=(1, 2, 3))


def _fitted_teacher(X, y):
    from sklearn.frozen import FrozenEstimator

    return FrozenEstimator(NetClassifier(max_epochs=1, random_state=0).fit(X, y))


def _flattened_for_a_cnn(X, y):
    ClusterFit(teacher=_fitted_teacher(X, y), K=5).fit(X.reshape(len(X), -1))


def _y_of_another_length(X, y):
    cf().fit(X, y[:-3])


def _one_dimensional_teacher_output(X, y):
    cf(teacher=_OneDimensionalOutput()).fit(X)


def _memory_inside_a_file(X, y, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cf(memory=str(blocker / "cache")).fit(X)


def _nan_in_X(X, y):
    X = X.copy()
    X[7, 0, 3, 3] = np.nan
    cf().fit(X)


def _int64_images(X, y):
    cf().fit((X * 255).astype(np.int64))


BAD_INPUTS = [
    ("y of another length", _y_of_another_length, ValueError,
     r"^y has 397 labels but X has 400 samples"),
    ("X flattened for a CNN", _flattened_for_a_cnn, ValueError,
     r"X is 2-D, of shape \(400, 64\), but NetClassifier was fitted on images of shape "
     r"\(1, 8, 8\).*X\.reshape\(-1, 1, 8, 8\)"),
    ("1-D teacher output", _one_dimensional_teacher_output, ValueError,
     r"network's output for a batch of \d+ samples has shape \(\d+,\)"),
    ("memory inside a file", _memory_inside_a_file, ValueError,
     r"memory='.*a_file/cache': '.*a_file' is a file"),
    ("NaN in X", _nan_in_X, ValueError,
     r"^X contains NaN \(1 sample\(s\), the first at index 7\); the networks need finite"),
    ("int64 images", _int64_images, ValueError, r"X holds int64 images"),
]


@pytest.mark.parametrize("case, fit, error, pattern", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_table(case, fit, error, pattern, digits_small, tmp_path):
    X, y = digits_small
    kwargs = {"tmp_path": tmp_path} if "tmp_path" in fit.__code__.co_varnames else {}
    with pytest.raises(error) as info:
        fit(X, y, **kwargs)
    message = str(info.value)
    assert re.search(pattern, message), message
    assert "HistGradientBoosting" not in message and "Dimension out of range" not in message


def test_float_images_far_outside_0_1_warn(digits_small):
    X, _ = digits_small
    with pytest.warns(UserWarning, match=r"X holds float images with values from 0 to 255.*"
                      r"divide them by 255"):
        cf(K=3).fit(X[:60] * 255)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        from skclusterfit._validation import _warn_image_range

        _warn_image_range(-2.1, 2.6, "X")  # ImageNet-normalised images: no warning


def test_torch_tensor_X_is_accepted_as_its_array(digits_small):
    X, _ = digits_small
    X = X[:60]
    from_array = cf(K=3).fit(X).transform(X)
    fitted = cf(K=3).fit(torch.from_numpy(X))
    np.testing.assert_array_equal(fitted.transform(torch.from_numpy(X)), from_array)


def test_channels_last_X_for_a_channels_first_fit(digits_small):
    X, _ = digits_small
    rgb = np.repeat(X[:60], 3, axis=1)  # (60, 3, 8, 8)
    fitted = cf(K=3).fit(rgb)
    np.testing.assert_allclose(fitted.transform(rgb.transpose(0, 2, 3, 1)),
                               fitted.transform(rgb), rtol=1e-6)
    gray = cf(K=3).fit(X[:60])
    np.testing.assert_allclose(gray.transform(X[:60, 0]), gray.transform(X[:60]), rtol=1e-6)
