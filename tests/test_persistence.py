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
from skclusterfit.persistence import read_metadata

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
    assert estimator.save(path) == path
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
    np.save(tmp_path / "expected.npy", cf.transform(X))
    script = (
        "import sys, numpy as np, torch, skclusterfit\n"
        "assert not torch.cuda.is_available()\n"
        "cf = skclusterfit.load(sys.argv[1], device='cpu')\n"
        "out = cf.transform(np.load(sys.argv[2]))\n"
        "np.testing.assert_allclose(out, np.load(sys.argv[3]), rtol=1e-2, atol=1e-3)\n"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    subprocess.run(
        [sys.executable, "-c", script, str(path), str(tmp_path / "X.npy"),
         str(tmp_path / "expected.npy")],
        env=env, check=True,
    )
