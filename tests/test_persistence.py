"""save()/load(): pickle-free, CPU-loadable, and refusing files that would run code."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from torch import nn

import skclusterfit
from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans
from skclusterfit.storage import read_metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:200].astype(np.float32), y[:200]


class Net(nn.Module):
    """A user's own network: code that a file cannot hold."""

    def __init__(self, width=16):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, width), nn.ReLU())
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(self.body(torch.flatten(x, 1)))


def roundtrip(estimator, tmp_path, **kwargs):
    path = tmp_path / "model.skcf"
    if hasattr(estimator, "save"):
        assert estimator.save(path) == path
    else:  # any estimator, e.g. a user's, through the function
        skclusterfit.save(estimator, path)
    return skclusterfit.load(path, **kwargs)


def test_feature_extractor_roundtrip(digits, tmp_path):
    X, _ = digits
    images = X.reshape(-1, 1, 8, 8)
    for extractor in (
        FeatureExtractor("cnn", random_state=0).fit(images),
        FeatureExtractor("cnn", layer="features.1", random_state=0).fit(images),
    ):
        loaded = roundtrip(extractor, tmp_path)
        assert loaded.get_params() == extractor.get_params()
        assert loaded.input_shape_ == extractor.input_shape_
        np.testing.assert_array_equal(loaded.transform(images), extractor.transform(images))


def test_torchvision_network_roundtrip(tmp_path):
    """A torchvision architecture is rebuilt by name; the weights come from the file."""
    images = np.random.RandomState(0).rand(6, 3, 32, 32).astype(np.float32)
    for extractor in (
        FeatureExtractor("resnet18", weights=None, random_state=0),
        FeatureExtractor("resnet18", weights=None, layer="layer2", random_state=0),
    ):
        extractor.fit(images)
        loaded = roundtrip(extractor, tmp_path)
        np.testing.assert_array_equal(loaded.transform(images), extractor.transform(images))


def test_net_classifier_roundtrip(digits, tmp_path):
    X, y = digits
    clf = NetClassifier(max_epochs=2, random_state=0).fit(X, y)
    loaded = roundtrip(clf, tmp_path)
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.transform(X), clf.transform(X))
    assert loaded.history_ == clf.history_


def test_kmeans_roundtrip_and_unfitted_estimators(digits, tmp_path):
    X, _ = digits
    km = KMeans(n_clusters=7, random_state=0).fit(X)
    loaded = roundtrip(km, tmp_path)
    np.testing.assert_array_equal(loaded.cluster_centers_, km.cluster_centers_)
    np.testing.assert_array_equal(loaded.predict(X), km.predict(X))
    assert loaded.inertia_ == km.inertia_
    unfitted = roundtrip(ClusterFit(K=33, student=NetClassifier(max_epochs=4)), tmp_path)
    assert unfitted.get_params()["student__max_epochs"] == 4
    assert not hasattr(unfitted, "student_")


def test_clusterfit_roundtrip_with_sklearn_clusterer_and_frozen_teacher(digits, tmp_path):
    X, y = digits
    teacher = NetClassifier(max_epochs=1, random_state=0).fit(X, y)
    cf = ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=8,
        clusterer=SklearnKMeans(n_init=1),
        student=NetClassifier(max_epochs=1),
        random_state=0,
    ).fit(X)
    loaded = roundtrip(cf, tmp_path)
    np.testing.assert_array_equal(loaded.transform(X), cf.transform(X))
    np.testing.assert_array_equal(loaded.labels_, cf.labels_)
    features = cf.teacher_.transform(X)
    np.testing.assert_array_equal(loaded.teacher_.transform(X), features)
    np.testing.assert_array_equal(
        loaded.clusterer_.predict(features), cf.clusterer_.predict(features)
    )


def test_user_module_must_be_given_back_at_load(digits, tmp_path):
    X, _ = digits
    cf = ClusterFit(teacher=Net(), K=6, random_state=0)
    cf.set_params(student=NetClassifier(Net(width=8), max_epochs=1))
    cf.fit(X)
    path = cf.save(tmp_path / "cf.skcf")
    with pytest.raises(ValueError, match=r"holds code") as error:
        skclusterfit.load(path)
    # Each user module is asked for once (the clones inside the fit refer to it).
    assert "'teacher' (a Net)" in str(error.value)
    assert "'student.model' (a Net)" in str(error.value)
    assert str(error.value).count("(a Net)") == 2
    # By parameter path; a module of another shape is refused, not silently used.
    with pytest.raises(ValueError, match="does not match the saved weights"):
        skclusterfit.load(path, custom_objects={"teacher": Net(), "student.model": Net()})
    user_teacher = Net()
    loaded = skclusterfit.load(
        path, custom_objects={"teacher": user_teacher, "student.model": Net(width=8)}
    )
    np.testing.assert_array_equal(loaded.transform(X), cf.transform(X))
    # The saved teacher weights are loaded into a copy, never into the user's object.
    assert not torch.equal(user_teacher.fc.weight, cf.teacher.fc.weight)
    assert torch.equal(loaded.teacher.fc.weight, cf.teacher.fc.weight)
    np.testing.assert_array_equal(loaded.teacher_.transform(X), cf.teacher_.transform(X))


class ModuloClusterer(BaseEstimator):
    """A user's own clusterer class, outside skclusterfit and scikit-learn."""

    def __init__(self, n_clusters=2):
        self.n_clusters = n_clusters

    def fit(self, X, y=None):
        self.labels_ = np.arange(len(X)) % self.n_clusters
        return self


def test_user_estimator_class_must_be_given_back_at_load(digits, tmp_path):
    X, _ = digits
    cf = ClusterFit(
        teacher=FeatureExtractor("mlp", random_state=0), K=4, clusterer=ModuloClusterer(),
        student=NetClassifier(max_epochs=1), random_state=0,
    ).fit(X)
    path = cf.save(tmp_path / "cf.skcf")
    with pytest.raises(ValueError, match=r"ModuloClusterer.*custom_objects=\{'ModuloClusterer'"):
        skclusterfit.load(path)
    loaded = skclusterfit.load(path, custom_objects={"ModuloClusterer": ModuloClusterer})
    assert isinstance(loaded.clusterer_, ModuloClusterer)
    np.testing.assert_array_equal(loaded.clusterer_.labels_, cf.clusterer_.labels_)
    np.testing.assert_array_equal(loaded.transform(X), cf.transform(X))


def test_save_names_a_value_it_cannot_store(tmp_path):
    km = KMeans()
    km.note_ = object()
    with pytest.raises(TypeError, match=r"cannot save note_=<object object"):
        km.save(tmp_path / "km.skcf")
    assert not os.listdir(tmp_path)  # nothing half-written


def test_device_override_reaches_nested_estimators(digits, tmp_path):
    X, _ = digits
    cf = ClusterFit(
        teacher=FeatureExtractor("mlp", random_state=0), K=5,
        student=NetClassifier(max_epochs=1), random_state=0,
    ).fit(X)
    for estimator in (cf, cf.teacher_, cf.student_, cf.clusterer_):
        estimator.set_params(device="cuda:7")  # as if saved on a GPU machine
    loaded = roundtrip(cf, tmp_path, device="cpu")
    assert {e.device for e in (loaded, loaded.teacher_, loaded.student_, loaded.clusterer_)} == {
        "cpu"
    }
    cf.student_.set_params(device="cpu")
    np.testing.assert_array_equal(loaded.transform(X), cf.set_params(device="cpu").transform(X))


def test_metadata_is_plain_json(digits, tmp_path):
    X, _ = digits
    path = KMeans(n_clusters=3, random_state=0).fit(X).save(tmp_path / "km.skcf")
    document = read_metadata(path)
    estimator = document["estimator"]["__estimator__"]
    assert estimator["class"] == "skclusterfit.cluster._kmeans:KMeans"
    assert estimator["params"]["n_clusters"] == 3
    json.dumps(document)


class Payload:
    """Unpickling this runs code: it creates the file named by ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_load_refuses_a_malicious_pickle(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.skcf"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(Payload(str(marker))))
    else:
        torch.save({"state": Payload(str(marker))}, path)
    # The payload works: plain unpickling would run it.
    pickle.loads(pickle.dumps(Payload(str(tmp_path / "control"))))
    assert (tmp_path / "control").exists()
    with pytest.raises(ValueError, match="not a skclusterfit model file.*never unpickles"):
        skclusterfit.load(path)
    assert not marker.exists()


def test_load_refuses_classes_outside_sklearn(tmp_path):
    from safetensors.torch import save_file

    marker = tmp_path / "pwned"
    for class_path in ("os:system", "builtins:exec", "sklearn.utils:check_array"):
        document = {
            "format": "skclusterfit-model",
            "version": 1,
            "estimator": {"__estimator__": {
                "class": class_path, "params": {"command": f"touch {marker}"},
                "state": {}, "networks": {},
            }},
        }
        path = tmp_path / "crafted.skcf"
        save_file({}, path, metadata={"skclusterfit": json.dumps(document)})
        with pytest.raises(ValueError, match=rf"{class_path}"):
            skclusterfit.load(path)
    assert not marker.exists()


def test_pickle_still_works(digits):
    X, _ = digits
    cf = ClusterFit(
        teacher=FeatureExtractor("mlp", random_state=0), K=5,
        student=NetClassifier(max_epochs=1), random_state=0,
    ).fit(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cf)).transform(X), cf.transform(X))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_saved_model_loads_without_gpu(digits, tmp_path):
    X, _ = digits
    cf = ClusterFit(
        teacher=FeatureExtractor("mlp", random_state=0), K=5,
        student=NetClassifier(max_epochs=1), device="cuda", random_state=0,
    ).fit(X)
    path = cf.save(tmp_path / "cf.skcf")
    np.save(tmp_path / "X.npy", X)
    # The fit used AMP (bf16 autocast); the comparison is in float32 on both
    # sides, without TF32 convolutions: the model, not the precision, is tested.
    cf.student_.set_params(mixed_precision=False)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        np.save(tmp_path / "expected.npy", cf.transform(X))
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    script = (
        "import sys, numpy as np, torch, skclusterfit\n"
        "assert not torch.cuda.is_available()\n"
        "cf = skclusterfit.load(sys.argv[1], device='cpu')\n"
        "cf.student_.set_params(mixed_precision=False)\n"
        "out = cf.transform(np.load(sys.argv[2]))\n"
        "np.testing.assert_allclose(out, np.load(sys.argv[3]), rtol=1e-4, atol=1e-5)\n"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "X.npy"),
         str(tmp_path / "expected.npy")],
        env=env, check=True,
    )


# -- every public estimator, through one protocol -------------------------------------

def _images():
    from skclusterfit.data import load_digits_images

    return load_digits_images()[0][:120]


def _frozen_rotnet_clusterfit():
    from skclusterfit.pretext import RotNet

    rotnet = RotNet(NetClassifier(max_epochs=1), random_state=0).fit(_images())
    return ClusterFit(
        teacher=FrozenEstimator(rotnet), K=6, student=NetClassifier(max_epochs=1),
        random_state=0,
    )


def _public_estimators():
    from skclusterfit.cluster import HierarchicalCuration, PCAWhitening
    from skclusterfit.pretext import RotNet

    images = _images()
    vectors = images.reshape(len(images), -1)
    return {
        "FeatureExtractor": (FeatureExtractor("cnn", random_state=0), images),
        "NetClassifier": (NetClassifier(max_epochs=1, random_state=0), images),
        "KMeans": (KMeans(n_clusters=4, random_state=0), vectors),
        "HierarchicalCuration": (HierarchicalCuration(n_clusters=(4, 2), random_state=0),
                                 vectors),
        "PCAWhitening": (PCAWhitening(n_components=5), vectors),
        "RotNet": (RotNet(NetClassifier(max_epochs=1), random_state=0), images),
        "ClusterFit": (
            ClusterFit(teacher=FeatureExtractor("cnn", random_state=0), K=6,
                       student=NetClassifier(max_epochs=1), random_state=0),
            images,
        ),
        "ClusterFit-on-a-frozen-RotNet": (_frozen_rotnet_clusterfit(), images),
    }


def _outputs(estimator, X):
    for method in ("transform", "predict"):
        if hasattr(estimator, method):
            return getattr(estimator, method)(X)
    raise AssertionError(f"{estimator!r} has neither transform nor predict")


@pytest.mark.parametrize("name", sorted(_public_estimators()))
def test_every_public_estimator_round_trips(name, tmp_path):
    estimator, X = _public_estimators()[name]
    y = np.arange(len(X)) % 3
    fitted = estimator.fit(X, y) if isinstance(estimator, NetClassifier) else estimator.fit(X)
    loaded = roundtrip(fitted, tmp_path)
    assert type(loaded) is type(fitted)
    assert loaded.get_params().keys() == fitted.get_params().keys()
    np.testing.assert_array_equal(_outputs(loaded, X), _outputs(fitted, X))
    # Unfitted ones too: parameters only.
    assert roundtrip(skclusterfit.load(tmp_path / "model.skcf"), tmp_path) is not None


def test_an_object_reached_twice_is_stored_once_and_loads_as_one(digits, tmp_path):
    X, _ = digits
    teacher = FrozenEstimator(FeatureExtractor("mlp", random_state=0).fit(X))
    cf = ClusterFit(teacher=teacher, K=5, student=NetClassifier(max_epochs=1),
                    random_state=0).fit(X)
    assert cf.teacher_ is cf.teacher
    loaded = roundtrip(cf, tmp_path)
    assert loaded.teacher_ is loaded.teacher
    from safetensors import safe_open

    with safe_open(tmp_path / "model.skcf", framework="pt") as file:
        teacher_tensors = [k for k in file.keys() if "teacher" in k and "network_" in k]
    n_teacher_weights = len(teacher.estimator.network_.state_dict())
    assert len(teacher_tensors) == n_teacher_weights


class MyExtractor(BaseEstimator):
    """A user's transformer holding a network, following the persistence protocol."""

    def __init__(self, width=8):
        self.width = width

    def fit(self, X, y=None):
        torch.manual_seed(0)
        self.net_ = nn.Linear(X.shape[1], self.width)
        return self

    def transform(self, X):
        with torch.no_grad():
            return self.net_(torch.as_tensor(X, dtype=torch.float32)).numpy()

    def _saved_networks(self):
        return {"net_": {"in_features": self.net_.in_features}}

    def _rebuild_network(self, name, info):
        return nn.Linear(info["in_features"], self.width)


class Undeclared(MyExtractor):
    def _saved_networks(self):
        return {}


def test_a_user_subclass_following_the_protocol_saves_and_loads(digits, tmp_path):
    X, _ = digits
    mine = MyExtractor().fit(X)
    loaded = roundtrip(mine, tmp_path, custom_objects={"MyExtractor": MyExtractor})
    np.testing.assert_array_equal(loaded.transform(X), mine.transform(X))
    cf = ClusterFit(teacher=FrozenEstimator(mine), K=4, student=NetClassifier(max_epochs=1),
                    random_state=0).fit(X)
    loaded = roundtrip(cf, tmp_path, custom_objects={"MyExtractor": MyExtractor})
    np.testing.assert_array_equal(loaded.transform(X), cf.transform(X))
    with pytest.raises(TypeError, match=r"net_: a fitted Linear that Undeclared does not "
                                        r"declare in _saved_networks\(\)"):
        skclusterfit.save(Undeclared().fit(X), tmp_path / "x.skcf")


def test_load_of_a_directory_says_so(tmp_path):
    with pytest.raises(IsADirectoryError, match=r"is a directory; pass the model file"):
        skclusterfit.load(tmp_path)


def test_pickling_leaves_the_fitted_network_where_it_is(digits, monkeypatch):
    """Pickling (joblib in a grid search) must not move a live network: before,
    __getstate__ called .to('cpu') on every fitted network, a GPU one included."""
    X, y = digits
    clf = NetClassifier(max_epochs=1, random_state=0).fit(X, y)
    moved = []
    original_to = nn.Module.to

    def spy(module, *args, **kwargs):
        moved.append(module)
        return original_to(module, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", spy)
    pickle.dumps(clf)
    assert not any(module is clf.model_ for module in moved)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pickling_a_gpu_model_keeps_it_on_the_gpu(digits):
    X, y = digits
    clf = NetClassifier(max_epochs=1, device="cuda", random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(clf))
    assert next(clf.model_.parameters()).is_cuda
    assert not next(copy.model_.parameters()).is_cuda
