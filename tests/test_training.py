"""NetClassifier: the one training loop."""

import numpy as np
import pytest

from skclusterfit import NetClassifier
from skclusterfit._training import balanced_order


def test_learns_digits_images(digits_images):
    X, y = digits_images
    clf = NetClassifier(max_epochs=4, random_state=0).fit(X[:1200], y[:1200])
    assert clf.score(X[1200:], y[1200:]) > 0.85
    proba = clf.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert clf.transform(X[:5]).shape == (5, 128)
    assert [h["epoch"] for h in clf.history_] == [1, 2, 3, 4]
    assert clf.history_[-1]["loss"] < clf.history_[0]["loss"]


def test_head_sized_to_classes_and_string_labels(digits_small):
    X, y = digits_small
    names = np.array(["zero", "one", "two"])[y % 3]
    clf = NetClassifier(max_epochs=1, random_state=0).fit(X, names)
    assert clf.model_.head.out_features == 3
    assert set(clf.predict(X)) <= set(names)


def test_torchvision_student_from_scratch():
    X = np.random.RandomState(0).rand(8, 3, 32, 32).astype(np.float32)
    y = np.arange(8) % 2
    clf = NetClassifier("resnet18", max_epochs=1, batch_size=4, random_state=0).fit(X, y)
    assert clf.model_.head.out_features == 2
    assert clf.transform(X).shape == (8, 512)


def test_verbose_shows_a_bar_then_lines_per_epoch(digits_small, capsys):
    X, y = digits_small
    NetClassifier(max_epochs=2, random_state=0).fit(X, y)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    NetClassifier(max_epochs=2, verbose=1, random_state=0).fit(X, y)
    bar = capsys.readouterr()
    assert "training" in bar.err and "2/2" in bar.err and "loss" in bar.err
    assert bar.out == ""
    NetClassifier(max_epochs=2, verbose=2, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "loss" in out


def test_balanced_order_is_uniform_over_classes():
    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    order = balanced_order(y, np.random.RandomState(0))
    counts = np.bincount(y[order], minlength=3)
    assert len(order) == len(y)
    assert all(abs(c - len(y) / 3) < 60 for c in counts), counts


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_balanced_sampler_trains(digits_images):
    X, y = digits_images
    clf = NetClassifier(max_epochs=3, sampler="balanced", random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.6


def test_constant_schedule_and_no_augmentation(digits_images):
    X, y = digits_images
    clf = NetClassifier(
        max_epochs=3, lr_schedule="constant", augment=None, random_state=0
    ).fit(X, y)
    assert clf.score(X, y) > 0.6


def test_custom_augmentation_is_called(digits_small):
    X, y = digits_small
    calls = []

    def augment(batch, generator):
        calls.append(batch.shape)
        return batch.flip(-1)

    NetClassifier(max_epochs=1, augment=augment, batch_size=100).fit(X, y)
    assert len(calls) == 4 and calls[0] == (100, 1, 8, 8)


@pytest.mark.gpu
def test_gpu_fit_then_cpu_pickle(digits_small):
    import pickle

    import torch

    X, y = digits_small
    clf = NetClassifier(max_epochs=1, device="cuda", random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    restored.set_params(device="cpu")
    assert next(restored.model_.parameters()).device == torch.device("cpu")
    # float32 on both sides (the fit used AMP), without TF32 convolutions.
    clf.set_params(mixed_precision=False)
    restored.set_params(mixed_precision=False)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        expected = clf.predict_proba(X[:10])
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    np.testing.assert_allclose(restored.predict_proba(X[:10]), expected, rtol=1e-4, atol=1e-6)


def _plain_cnn():
    """A user's network without normalisation layers (issue 10, defect 4)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    )


@pytest.mark.parametrize(
    "epochs, threshold", [(3, 0.5), pytest.param(30, 0.9, marks=pytest.mark.slow)]
)
def test_defaults_train_a_plain_network(digits_images, epochs, threshold):
    # With SGD at lr 0.05 this network stayed at chance (loss 2.30) for 10 epochs.
    from sklearn.model_selection import train_test_split

    X, y = digits_images
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    clf = NetClassifier(_plain_cnn, max_epochs=epochs, random_state=0)
    assert clf.fit(X_train, y_train).score(X_test, y_test) >= threshold


def test_optimizer_choices_and_keywords(digits_small):
    import torch

    X, y = digits_small
    sgd = NetClassifier(optimizer="sgd", max_epochs=1, random_state=0).fit(X, y)
    adamw = NetClassifier(optimizer="adamw", max_epochs=1, random_state=0).fit(X, y)
    assert not np.allclose(sgd.transform(X[:5]), adamw.transform(X[:5]))
    clf = NetClassifier(
        optimizer=torch.optim.RMSprop, lr=1e-3, optimizer__alpha=0.9,
        max_epochs=5, random_state=0,
    )
    assert clf.get_params()["optimizer__alpha"] == 0.9
    clf.fit(X, y)
    assert clf.score(X, y) > 0.3


def test_optimizer_keywords_reach_the_optimizer(monkeypatch, digits_small):
    import torch

    from skclusterfit import _training as training

    made = []

    class Recording(torch.optim.SGD):
        def __init__(self, params, **kwargs):
            made.append(kwargs)
            super().__init__(params, **kwargs)

    X, y = digits_small
    NetClassifier(optimizer=Recording, lr=0.01, optimizer__momentum=0.5,
                  max_epochs=1).fit(X, y)
    assert made == [{"lr": 0.01, "momentum": 0.5}]  # momentum= is "sgd"'s only
    made.clear()
    monkeypatch.setitem(training.OPTIMIZERS, "sgd", (Recording, {"lr": 0.05,
                                                                  "weight_decay": 5e-4}))
    NetClassifier(optimizer="sgd", optimizer__lr=0.2, max_epochs=1).fit(X, y)
    assert made == [{"lr": 0.2, "weight_decay": 5e-4, "momentum": 0.9, "nesterov": True}]


def test_optimizer_parameters_clone_set_and_search(digits_small):
    import torch
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    clf = NetClassifier(optimizer=torch.optim.Adam, optimizer__betas=(0.8, 0.99))
    copy = clone(clf)
    assert copy.optimizer is torch.optim.Adam
    assert copy.get_params()["optimizer__betas"] == (0.8, 0.99)
    copy.set_params(optimizer__eps=1e-6, max_epochs=1)
    assert copy.optimizer__eps == 1e-6 and "optimizer__eps" not in clf.get_params()
    assert "optimizer__betas" in repr(copy)
    X, y = digits_small
    search = GridSearchCV(
        NetClassifier(max_epochs=1, random_state=0),
        {"optimizer": ["sgd", "adamw"], "optimizer__weight_decay": [0.0]}, cv=2,
        error_score="raise",
    ).fit(X, y)
    assert search.best_params_["optimizer__weight_decay"] == 0.0


def test_optimizer_errors(digits_small):
    X, y = digits_small
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['optimiser__lr'\]"):
        NetClassifier(optimiser__lr=0.1, max_epochs=1).fit(X, y)
    with pytest.raises(TypeError, match="subclass of torch.optim.Optimizer"):
        NetClassifier(optimizer=dict, max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="optimizer"):
        NetClassifier(optimizer="adam", max_epochs=1).fit(X, y)
    with pytest.raises(TypeError, match="optimizer__nonsense"):
        NetClassifier(optimizer__nonsense=1, max_epochs=1).fit(X, y)


def test_optimizer_parameters_survive_save_and_load(tmp_path, digits_small):
    import torch

    from skclusterfit import load

    X, y = digits_small
    clf = NetClassifier(optimizer__betas=(0.8, 0.99), max_epochs=1, random_state=0)
    clf.fit(X, y).save(tmp_path / "adamw.skcf")
    loaded = load(tmp_path / "adamw.skcf")
    assert loaded.get_params()["optimizer__betas"] == (0.8, 0.99)
    np.testing.assert_array_equal(loaded.transform(X[:5]), clf.transform(X[:5]))
    # A class is code: given back at load time, like a user's network.
    clf.set_params(optimizer=torch.optim.Adam).fit(X, y).save(tmp_path / "adam.skcf")
    loaded = load(tmp_path / "adam.skcf", custom_objects={"optimizer": torch.optim.Adam})
    assert loaded.optimizer is torch.optim.Adam


def test_gpu_code_paths_run_on_the_cpu(digits_images, monkeypatch):
    """bf16 autocast and channels-last are the GPU defaults; forced on the CPU
    they run the same code (defect 9): the loops train and extract with them."""
    import torch

    from skclusterfit import FeatureExtractor
    from skclusterfit.runtime import _torch_utils

    X, y = digits_images
    monkeypatch.setattr(_torch_utils, "CHANNELS_LAST_DEVICE_TYPES", {"cuda", "cpu"})
    seen = {}

    def record(module, args, output):
        seen["dtype"] = output.dtype
        seen["channels_last"] = args[0].is_contiguous(memory_format=torch.channels_last)

    clf = NetClassifier(max_epochs=3, mixed_precision="bfloat16", random_state=0)
    clf.fit(X[:600], y[:600])
    clf.model_.backbone.features[0][0].register_forward_hook(record)
    clf.predict(X[:4])
    assert seen == {"dtype": torch.bfloat16, "channels_last": True}
    # It trains like float32 does: the same loss curve to bf16's precision.
    reference = NetClassifier(max_epochs=3, mixed_precision=False, random_state=0)
    reference.fit(X[:600], y[:600])
    losses = [h["loss"] for h in clf.history_]
    np.testing.assert_allclose(losses, [h["loss"] for h in reference.history_], rtol=0.02)
    assert losses[-1] < 0.8 * losses[0]
    features = FeatureExtractor("cnn", mixed_precision="bfloat16", random_state=0).fit(X[:8])
    assert features.transform(X[:8]).dtype == np.float32
    # float16 forced: the GradScaler path (enabled only for float16).
    NetClassifier(max_epochs=1, mixed_precision="float16", random_state=0).fit(X[:64], y[:64])

