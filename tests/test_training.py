"""NetClassifier: the one training loop."""

import numpy as np
import pytest

from skclusterfit import NetClassifier
from skclusterfit.training import balanced_order


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
    np.testing.assert_allclose(
        restored.predict_proba(X[:10]), clf.predict_proba(X[:10]), atol=1e-2
    )


def test_gpu_code_paths_run_on_the_cpu(digits_images, monkeypatch):
    """bf16 autocast and channels-last are the GPU defaults; forced on the CPU
    they run the same code (defect 9): the loops train and extract with them."""
    import torch

    from skclusterfit import FeatureExtractor, _torch_utils

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
