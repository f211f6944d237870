"""Every bad input the reliability issue lists: the error type, and a message naming the value."""

import re

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.cluster import DBSCAN
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans
from skclusterfit.networks import SmallCNN

N = 60


@pytest.fixture(scope="module")
def X():
    return load_digits().data[:N].astype(np.float32)


@pytest.fixture(scope="module")
def images(X):
    return X.reshape(-1, 1, 8, 8)


def small_clusterfit(**params):
    params.setdefault("teacher", FeatureExtractor("mlp", random_state=0))
    params.setdefault("student", NetClassifier(max_epochs=1))
    params.setdefault("K", 5)
    return ClusterFit(random_state=0, **params)


@pytest.fixture(scope="module")
def fitted_on_images(images):
    return small_clusterfit(teacher=FeatureExtractor("cnn", random_state=0)).fit(images)


@pytest.fixture(scope="module")
def fitted_on_vectors(X):
    return small_clusterfit().fit(X)


class NaNAfter(nn.Module):
    """A teacher whose features are NaN from sample ``start`` on (column 0 holds the index)."""

    def __init__(self, start):
        super().__init__()
        self.start = start
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        out = x[:, :2].clone()
        out[x[:, 0] >= self.start] = float("nan")
        return out


class SpyClusterer(BaseEstimator):
    """Records whether it was ever fitted."""

    fitted = False

    def __init__(self, n_clusters=2):
        self.n_clusters = n_clusters

    def fit_predict(self, X, y=None):
        type(self).fitted = True
        return np.arange(len(X)) % self.n_clusters

    def fit(self, X, y=None):
        return self


class FitOnly(BaseEstimator):
    """A clusterer with fit but neither fit_predict nor labels_."""

    def __init__(self, n_clusters=2):
        self.n_clusters = n_clusters

    def fit(self, X, y=None):
        return self


class Subsampling(SpyClusterer):
    """A clusterer that clusters ``max_samples`` points and says how many it needs."""

    def __init__(self, n_clusters=2, max_samples=None):
        self.n_clusters = n_clusters
        self.max_samples = max_samples

    def _check_fit_size(self, n_samples):
        if self.max_samples < self.n_clusters:
            raise ValueError(
                f"max_samples={self.max_samples} keeps fewer than n_clusters="
                f"{self.n_clusters} of the {n_samples} rows."
            )


class CountingTeacher(BaseEstimator):
    """A fitted transformer that counts its transform calls."""

    calls = 0

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        type(self).calls += 1
        return np.asarray(X, dtype=np.float32)


def _rgb(images):
    return np.repeat(images, 3, axis=1)


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _no_download(monkeypatch):
    import torchvision.models._api as api

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(api, "load_state_dict_from_url", refuse)


# (id, call raising the error, error type, regex the message must match)
# Each call gets a context with the data, fitted models, tmp_path and monkeypatch.
CASES = [
    ("ndim-1", lambda c: small_clusterfit().fit(np.arange(10.0)), ValueError,
     r"1D array.*0\. 1\. 2\."),
    # 5-D arrays are videos (n, T, C, H, W); 6-D is nothing.
    ("ndim-6", lambda c: small_clusterfit().fit(np.zeros((4, 1, 2, 8, 8, 1))), ValueError,
     r"videos \(n, T, C, H, W\); got an array of shape \(4, 1, 2, 8, 8, 1\)"),
    ("channels-the-teacher-does-not-take",
     lambda c: small_clusterfit(teacher=FeatureExtractor(SmallCNN(in_channels=3))).fit(
         c.images), ValueError, r"X has 1 channel\(s\).*takes 3"),
    ("non-numeric", lambda c: small_clusterfit().fit(np.array([["a", "b"], ["c", "d"]],
     dtype=object)), ValueError, r"X must hold numbers.*'a'"),
    ("complex", lambda c: small_clusterfit().fit(c.X + 1j), ValueError, r"Complex data"),
    ("nan-in-X", lambda c: small_clusterfit().fit(np.where(c.X == 0, np.nan, c.X)),
     ValueError, r"X contains NaN"),
    ("inf-in-X", lambda c: small_clusterfit().fit(np.where(c.X == 0, np.inf, c.X)),
     ValueError, r"X contains infinity"),
    ("nan-teacher-features",
     lambda c: small_clusterfit(
         teacher=FeatureExtractor(NaNAfter(start=32), batch_size=16), clusterer=SpyClusterer()
     ).fit(np.c_[np.arange(N), c.X].astype(np.float32)),
     ValueError, r"NaN or inf features in the batch of samples 32\.\.47"),
    ("K-below-2", lambda c: small_clusterfit(K=1).fit(c.X), InvalidParameterError,
     r"'K' parameter.*Got 1 instead"),
    ("K-above-n-samples", lambda c: small_clusterfit(K=N + 1).fit(c.X), ValueError,
     rf"K={N + 1}.*n_samples={N}"),
    ("transform-before-fit", lambda c: small_clusterfit().transform(c.X), NotFittedError,
     r"ClusterFit instance is not fitted"),
    ("feature-count-differs", lambda c: c.fitted_on_vectors.transform(c.X[:, :10]),
     ValueError, r"X has 10 features.*expecting 64"),
    ("image-size-differs",
     lambda c: c.fitted_on_images.transform(np.zeros((2, 1, 6, 6), np.float32)), ValueError,
     r"\(1, 6, 6\).*\(1, 8, 8\)"),
    ("image-path-missing",
     lambda c: small_clusterfit().fit([str(c.tmp_path / "absent.png")]), ValueError,
     r"absent\.png' does not exist"),
    ("image-path-not-an-image",
     lambda c: small_clusterfit().fit([_write(c.tmp_path / "notes.png", b"plain text")]),
     ValueError, r"notes\.png' is not an image file"),
    ("torchvision-weights-without-network",
     lambda c: (_no_download(c.monkeypatch),
                FeatureExtractor("resnet18", weights="DEFAULT").fit(_rgb(c.images))),
     RuntimeError, r"could not fetch weights='DEFAULT'.*local path"),
    ("teacher-name-without-network",
     lambda c: (_no_download(c.monkeypatch),
                small_clusterfit(teacher="resnet18").fit(_rgb(c.images))),
     RuntimeError, r"could not fetch weights='DEFAULT'"),
    ("default-teacher-on-vectors-says-images-before-any-download",
     lambda c: (_no_download(c.monkeypatch),
                make_pipeline(StandardScaler(), ClusterFit(K=10)).fit(c.X)),
     ValueError, r"convolutional and needs images \(n, C, H, W\)"),
    ("default-teacher-on-grayscale-says-channels-before-any-download",
     lambda c: (_no_download(c.monkeypatch), ClusterFit(K=10).fit(c.images)),
     ValueError, r"X has 1 channel\(s\) per image but the feature network's first "
     r"convolution takes 3"),
    ("integer-images-other-than-uint8",
     lambda c: small_clusterfit(teacher=FeatureExtractor("cnn")).fit(
         (c.images * 16).astype(np.int64)),
     ValueError, r"X holds int64 images; only uint8 images are scaled"),
    ("uint16-images", lambda c: FeatureExtractor("cnn").fit(c.images.astype(np.uint16)),
     ValueError, r"X holds uint16 images.*65535"),
    ("weight-name-for-a-network-without-weights",
     lambda c: FeatureExtractor("mlp", weights="DEFAULT").fit(c.X), ValueError,
     r"weights='DEFAULT' is neither an existing file nor a torchvision weight name"),
    ("clusterer-without-fit", lambda c: small_clusterfit(clusterer=object()).fit(c.X),
     InvalidParameterError, r"'clusterer' parameter.*<object object"),
    ("clusterer-without-fit_predict-or-labels_",
     lambda c: small_clusterfit(clusterer=FitOnly()).fit(c.X), TypeError,
     r"clusterer=FitOnly\(.*no fit_predict and sets no labels_"),
    ("student-head-cannot-be-replaced",
     lambda c: small_clusterfit(student=nn.Sequential(nn.Flatten(), nn.ReLU())).fit(c.X),
     ValueError, r"model=Sequential\(.*has no final nn\.Linear"),
    ("device-unknown", lambda c: small_clusterfit(device="tpu").fit(c.X), ValueError,
     r"device='tpu' is not a device torch knows"),
    ("device-absent", lambda c: small_clusterfit(device="cuda:7").fit(c.X), ValueError,
     r"device='cuda:7'"),
    ("feature-extractor-transform-before-fit",
     lambda c: FeatureExtractor("mlp").transform(c.X), NotFittedError,
     r"FeatureExtractor instance is not fitted"),
    ("net-classifier-feature-count-differs",
     lambda c: c.fitted_on_vectors.student_.predict(c.X[:, :10]), ValueError,
     r"X has 10 features.*expecting 64"),
    ("net-classifier-labels-of-other-length",
     lambda c: NetClassifier(max_epochs=1).fit(c.X, np.arange(N - 1) % 2), ValueError,
     rf"\[{N}, {N - 1}\]"),
    ("kmeans-more-clusters-than-samples",
     lambda c: KMeans(n_clusters=N + 1).fit(c.X), ValueError,
     rf"n_clusters={N + 1} must be <= n_samples={N}"),
    ("kmeans-predict-before-fit", lambda c: KMeans().predict(c.X), NotFittedError,
     r"KMeans instance is not fitted"),
    ("netclassifier-device-absent",
     lambda c: NetClassifier(device="cuda:7").fit(c.X, np.arange(N) % 2), ValueError,
     r"device='cuda:7'"),
    ("device-without-a-type", lambda c: small_clusterfit(device="gpu0").fit(c.X), ValueError,
     r"device='gpu0'"),
    ("net-classifier-transform-before-fit", lambda c: NetClassifier().transform(c.X),
     NotFittedError, r"NetClassifier instance is not fitted"),
    ("unknown-model-name",
     lambda c: FeatureExtractor("resnet9000").fit(np.zeros((2, 3, 8, 8), np.float32)),
     ValueError, r"model='resnet9000'"),
    ("clusterer-without-K-parameter",
     lambda c: small_clusterfit(clusterer=DBSCAN()).fit(c.X), ValueError,
     r"clusterer=DBSCAN\(\) has no n_clusters or n_components parameter to receive K=5"),
    ("channels-a-module-teacher-does-not-take",
     lambda c: small_clusterfit(teacher=c.fitted_on_images.teacher_.network_).fit(
         _rgb(c.images)), ValueError, r"X has 3 channel\(s\).*takes 1"),
]


class Context:
    pass


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_value(
    call, error, match, X, images, fitted_on_images, fitted_on_vectors, tmp_path, monkeypatch
):
    context = Context()
    context.X, context.images = X, images
    context.fitted_on_images, context.fitted_on_vectors = fitted_on_images, fitted_on_vectors
    context.tmp_path, context.monkeypatch = tmp_path, monkeypatch
    with pytest.raises(error, match=re.compile(match, re.DOTALL)):
        call(context)


def test_channel_count_differs_at_transform_names_channels_and_both_shapes(
    images, fitted_on_images
):
    with pytest.raises(ValueError) as info:
        fitted_on_images.transform(_rgb(images[:3]))
    message = str(info.value)
    assert "features" not in message
    assert "(3, 8, 8)" in message and "3 channel(s)" in message
    assert "(1, 8, 8)" in message and "1 channel(s)" in message


def test_nan_teacher_stops_before_clustering(X):
    SpyClusterer.fitted = False
    cf = small_clusterfit(
        teacher=FeatureExtractor(NaNAfter(start=32), batch_size=16), clusterer=SpyClusterer()
    )
    with pytest.raises(ValueError, match="NaN"):
        cf.fit(np.c_[np.arange(N), X].astype(np.float32))
    assert not SpyClusterer.fitted


def test_bad_image_files_can_be_skipped_with_a_warning(tmp_path):
    from PIL import Image

    from skclusterfit.data import ImageFiles

    good = []
    for i in range(3):
        good.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((5, 7), 40 * i, np.uint8)).save(good[-1])
    bad = _write(tmp_path / "bad.jpg", b"\xff\xd8 truncated")
    missing = str(tmp_path / "missing.png")
    with pytest.warns(UserWarning, match=r"skipped 2 of 5 .*bad\.jpg"):
        images = ImageFiles([good[0], bad, good[1], missing, good[2]], mode="L", on_error="skip")
    assert images.paths == good
    assert [path for path, _ in images.skipped] == [bad, missing]
    assert torch.allclose(images[2], torch.full((1, 5, 7), 80 / 255))


def test_image_files_of_other_sizes_are_named_or_resized(tmp_path):
    from PIL import Image

    from skclusterfit.data import ImageFiles

    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(paths[0])
    Image.fromarray(np.zeros((6, 9, 3), np.uint8)).save(paths[1])
    with pytest.raises(ValueError, match=r"b\.png' is 6x9 \(HxW\) but the first is 8x8"):
        ImageFiles(paths)
    assert ImageFiles(paths, size=(4, 4))[1].shape == (3, 4, 4)


def test_image_paths_fit_like_arrays(tmp_path, images):
    """A list of paths is decoded and gives the same features as the pixel array."""
    from PIL import Image

    pixels = (images[:20, 0] * 16).astype(np.uint8)  # digits are 0..16
    paths = []
    for i, image in enumerate(pixels):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    from skclusterfit.data import ImageFiles

    extractor = FeatureExtractor("cnn", random_state=0).fit(ImageFiles(paths, mode="L"))
    np.testing.assert_allclose(
        extractor.transform(ImageFiles(paths, mode="L")),
        extractor.transform(pixels[:, None]),
        rtol=1e-5, atol=1e-6,
    )


def test_clusterer_size_rule_is_checked_before_any_extraction(X):
    """The clusterer owns its sample-size rule; ClusterFit asks it first."""
    from sklearn.frozen import FrozenEstimator

    CountingTeacher.calls = 0
    teacher = FrozenEstimator(CountingTeacher().fit(X))
    with pytest.raises(ValueError, match=r"max_samples=4 keeps fewer than n_clusters=5 of the 60"):
        small_clusterfit(teacher=teacher, clusterer=Subsampling(max_samples=4)).fit(X)
    assert CountingTeacher.calls == 0


def test_kmeans_fraction_rule_is_the_same_in_clusterfit():
    """max_samples=0.0999 of 1000 rows keeps 100 (rounded up) for K=100, alone or in ClusterFit."""
    rng = np.random.RandomState(0)
    vectors = rng.rand(1000, 4).astype(np.float32)
    kmeans = KMeans(n_clusters=100, max_samples=0.0999, random_state=0)
    assert len(np.unique(kmeans.fit(vectors).labels_)) > 1
    cf = small_clusterfit(clusterer=kmeans, K=100).fit(vectors)
    assert cf.labels_.shape == (1000,)


def cf(**params):
    """A small ClusterFit on a random CNN teacher (the bad-input table's fits)."""
    params.setdefault("teacher", FeatureExtractor("cnn", random_state=0))
    return small_clusterfit(**params)


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


def test_range_check_reads_a_bounded_strided_sample():
    """The 0..255 check must not cost a pass over a large X (it once read all of it)."""
    from skclusterfit._validation import _spread_out_sample

    X = np.zeros((512, 3, 224, 224), dtype=np.float32)
    sample = _spread_out_sample(X)
    assert np.shares_memory(sample, X) and sample.size <= 2**20 * 1.1
    assert sample.shape[:2] == (512, 3)  # every sample, every channel, fewer pixels
    small = np.zeros((60, 1, 8, 8), dtype=np.float32)
    assert _spread_out_sample(small).shape == small.shape
    video = np.zeros((40, 3, 16, 112, 112), dtype=np.float32)
    assert _spread_out_sample(video).size <= 2**20 * 1.1
    X[:, :, 100:140, 100:140] = 255.0  # a patch of unscaled pixels is still seen
    with pytest.warns(UserWarning, match="divide them by 255"):
        from skclusterfit._validation import _warn_image_range

        sample = _spread_out_sample(X)
        _warn_image_range(float(sample.min()), float(sample.max()), "X")


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
