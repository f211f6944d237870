"""FeatureExtractor: model specs, weights, layers, input layouts."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import TensorDataset

from skclusterfit import FeatureExtractor, NetClassifier
from skclusterfit.networks import SmallCNN


def test_torchvision_model_penultimate_layer():
    X = np.random.RandomState(0).rand(3, 3, 32, 32).astype(np.float32)
    extractor = FeatureExtractor("resnet18", weights=None, random_state=0).fit(X)
    features = extractor.transform(X)
    assert features.shape == (3, 512) and features.dtype == np.float32
    # The penultimate layer is the input of resnet's fc: compare with a hook.
    reference = torchvision.models.resnet18()
    reference.load_state_dict(
        {k: v for k, v in extractor.network_.state_dict().items()}, strict=False
    )
    captured = {}
    reference.fc.register_forward_hook(lambda m, inp, out: captured.update(x=inp[0]))
    reference.eval()(torch.from_numpy(X))
    np.testing.assert_allclose(features, captured["x"].detach().numpy(), rtol=1e-4, atol=1e-5)


def test_sequential_classifier_head_gives_its_input():
    module = nn.Sequential(nn.Flatten(), nn.Linear(16, 7), nn.ReLU(), nn.Linear(7, 3))
    X = np.random.RandomState(0).rand(5, 16).astype(np.float32)
    assert FeatureExtractor(module).fit(X).transform(X).shape == (5, 7)


def test_module_without_linear_head_gives_its_output():
    module = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(2))
    X = np.random.RandomState(0).rand(2, 1, 8, 8).astype(np.float32)
    assert FeatureExtractor(module).fit(X).transform(X).shape == (2, 16)


def test_named_layer_is_pooled(digits_images):
    X, _ = digits_images
    extractor = FeatureExtractor("cnn", layer="features.1", random_state=0).fit(X[:10])
    assert extractor.transform(X[:10]).shape == (10, 64)


def test_callable_model(digits_images):
    X, _ = digits_images
    extractor = FeatureExtractor(lambda: SmallCNN(1, width=4)).fit(X[:4])
    assert extractor.transform(X[:4]).shape == (4, 16)


def test_local_weights_file_round_trip(tmp_path, digits_images):
    X, _ = digits_images
    module = SmallCNN(1)
    path = tmp_path / "teacher.pth"
    torch.save(module.state_dict(), path)
    from_file = FeatureExtractor("cnn", weights=str(path)).fit(X[:8]).transform(X[:8])
    from_module = FeatureExtractor(module).fit(X[:8]).transform(X[:8])
    np.testing.assert_allclose(from_file, from_module, rtol=1e-6)


def test_safetensors_weights(tmp_path, digits_images):
    from safetensors.torch import save_file

    X, _ = digits_images
    module = SmallCNN(1)
    path = tmp_path / "teacher.safetensors"
    save_file(module.state_dict(), str(path))
    from_file = FeatureExtractor("cnn", weights=str(path)).fit(X[:8]).transform(X[:8])
    np.testing.assert_allclose(from_file, FeatureExtractor(module).fit(X[:8]).transform(X[:8]), rtol=1e-6)


def test_torchvision_weight_name_offline_error(monkeypatch):
    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    X = np.zeros((2, 3, 32, 32), dtype=np.float32)
    with pytest.raises(RuntimeError) as info:
        FeatureExtractor("resnet18", weights="IMAGENET1K_V1").fit(X)
    message = str(info.value)
    assert "weights='IMAGENET1K_V1'" in message and "resnet18-" in message
    assert "weights_only=True" in message


def test_weight_name_resolves_preprocessing():
    from skclusterfit.networks._backbones import preprocess_from_spec

    enum = torchvision.models.get_model_weights("resnet18")["IMAGENET1K_V1"]
    extractor = FeatureExtractor("resnet18", weights="IMAGENET1K_V1")
    assert extractor._preprocess_spec() == "ResNet18_Weights.IMAGENET1K_V1"
    assert type(preprocess_from_spec(extractor._preprocess_spec())) is type(enum.transforms())
    assert FeatureExtractor("resnet18")._preprocess_spec().startswith("ResNet18_Weights.")
    assert FeatureExtractor("resnet18", weights=None)._preprocess_spec() is None


def test_unknown_weight_name():
    X = np.zeros((2, 3, 32, 32), dtype=np.float32)
    with pytest.raises(ValueError, match="weights='NOPE'"):
        FeatureExtractor("resnet18", weights="NOPE").fit(X)


def test_layouts_and_dtypes_agree(digits_images):
    X, _ = digits_images
    X = X[:16]
    extractor = FeatureExtractor("cnn", random_state=0).fit(X)
    reference = extractor.transform(X)
    nhwc = np.ascontiguousarray(X.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(
        FeatureExtractor("cnn", random_state=0).fit(nhwc).transform(nhwc), reference, rtol=1e-5
    )
    nhw = X[:, 0]
    np.testing.assert_allclose(
        FeatureExtractor("cnn", random_state=0).fit(nhw).transform(nhw), reference, rtol=1e-5
    )
    as_uint8 = np.round(X * 255).astype(np.uint8)
    from_uint8 = FeatureExtractor("cnn", random_state=0).fit(as_uint8).transform(as_uint8)
    np.testing.assert_allclose(from_uint8, reference, atol=1e-2)


def test_torch_dataset_input(digits_images):
    X, y = digits_images
    dataset = TensorDataset(torch.from_numpy(X[:20]), torch.from_numpy(y[:20]))
    extractor = FeatureExtractor("cnn", random_state=0, batch_size=7).fit(dataset)
    np.testing.assert_allclose(
        extractor.transform(dataset), extractor.transform(X[:20]), rtol=1e-5, atol=1e-6
    )


def test_memmap_input(tmp_path, digits_images):
    X, _ = digits_images
    path = tmp_path / "x.npy"
    np.save(path, X[:30])
    mapped = np.load(path, mmap_mode="r")
    extractor = FeatureExtractor("cnn", random_state=0, batch_size=8).fit(mapped)
    np.testing.assert_allclose(extractor.transform(mapped), extractor.transform(X[:30]), rtol=1e-6)


def test_one_weights_rule_for_extractor_and_clusterfit_teacher(monkeypatch):
    """FeatureExtractor("resnet18") and ClusterFit(teacher="resnet18") both mean
    the pretrained default weights (defect 6); both fail offline the same way."""
    from skclusterfit import ClusterFit

    requested = []

    def offline(self, *args, **kwargs):
        requested.append(self.url)
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    X = np.zeros((4, 3, 32, 32), dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"weights='DEFAULT'"):
        FeatureExtractor("resnet18").fit(X)
    with pytest.raises(RuntimeError, match=r"weights='DEFAULT'"):
        ClusterFit(teacher="resnet18", K=2).fit(X)
    assert len(requested) == 2 and requested[0] == requested[1]
    assert FeatureExtractor("resnet18", weights=None).fit(X).random_init_
    assert FeatureExtractor("cnn").fit(np.zeros((2, 1, 8, 8), np.float32)).random_init_


def test_model_kwargs_build_named_networks_and_name_bad_ones(tmp_path):
    import skclusterfit

    X = np.random.RandomState(0).rand(12, 3, 16, 16).astype(np.float32)
    y = np.arange(12) % 3
    narrow = NetClassifier("cnn", model_kwargs={"width": 8}, max_epochs=1, device="cpu",
                           random_state=0).fit(X, y)
    wide = NetClassifier("cnn", max_epochs=1, device="cpu", random_state=0).fit(X, y)
    n_params = [sum(p.numel() for p in c.model_.parameters()) for c in (narrow, wide)]
    assert n_params[0] < n_params[1]
    loaded = skclusterfit.load(narrow.save(tmp_path / "narrow.skcf"))
    np.testing.assert_allclose(loaded.predict_proba(X), narrow.predict_proba(X), rtol=1e-6)
    half = FeatureExtractor("mobilenet_v3_small", weights=None, preprocess=None,
                            model_kwargs={"width_mult": 0.5}, device="cpu").fit(X)
    full = FeatureExtractor("mobilenet_v3_small", weights=None, preprocess=None,
                            device="cpu").fit(X)
    assert half.n_features_out_ < full.n_features_out_
    with pytest.raises(ValueError, match=r"model_kwargs=\{'widht': 8\} for model='cnn'.*widht"):
        NetClassifier("cnn", model_kwargs={"widht": 8}, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"sets \['num_classes'\], which skclusterfit sets"):
        NetClassifier("cnn", model_kwargs={"num_classes": 5}, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="applies to a network given by name"):
        FeatureExtractor(torch.nn.Flatten(), model_kwargs={"width": 8}).fit(X)
