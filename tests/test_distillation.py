"""Distillation: the soft-target loss, the student it trains, teachers with class
scores, and its place in Pipelines and files."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

import skclusterfit
from skclusterfit import Distillation, FeatureExtractor, NetClassifier
from skclusterfit._soft_targets import SoftTargets
from skclusterfit._distillation import teacher_scores
from skclusterfit.pretext import RotNet


@pytest.fixture(scope="module")
def teacher(digits_images):
    X, y = digits_images
    return NetClassifier(max_epochs=8, random_state=0).fit(X[:1000], y[:1000])


def test_soft_target_loss_is_hintons():
    rng = np.random.RandomState(0)
    scores = rng.randn(6, 4).astype(np.float32)
    logits = torch.from_numpy(rng.randn(6, 4).astype(np.float32))
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    T, alpha = 3.0, 0.25
    soft = SoftTargets(scores, classes=np.arange(4), temperature=T, alpha=alpha)
    p = soft.probabilities()
    q = torch.log_softmax(logits / T, dim=1)
    expected_soft = -(p * q).sum(1).mean() * T**2
    expected = alpha * expected_soft + (1 - alpha) * nn.functional.cross_entropy(logits, target)
    loss = soft.loss(logits, p, target, nn.CrossEntropyLoss())
    torch.testing.assert_close(loss, expected)
    # alpha=1: the hard labels do not matter.
    only_soft = SoftTargets(scores, classes=np.arange(4), temperature=T, alpha=1.0)
    a = only_soft.loss(logits, p, target, nn.CrossEntropyLoss())
    b = only_soft.loss(logits, p, (target + 1) % 4, nn.CrossEntropyLoss())
    torch.testing.assert_close(a, expected_soft)
    assert float(a) == float(b)


def test_soft_targets_refuse_labels_the_teacher_lacks():
    soft = SoftTargets(np.zeros((3, 2)), classes=np.array(["cat", "dog"]))
    np.testing.assert_array_equal(soft.encode(["dog", "cat", "dog"]), [1, 0, 1])
    with pytest.raises(ValueError, match=r"labels the teacher has no score for, e\.g\. \['eel'\]"):
        soft.encode(["dog", "eel", "cat"])


def test_alpha_zero_is_training_on_the_labels(digits_images, teacher):
    # With alpha=0 only the hard labels count: the student is exactly the
    # NetClassifier trained on y with the seed Distillation gives it.
    X, y = digits_images
    X, y = X[:300], y[:300]
    distilled = Distillation(
        FrozenEstimator(teacher), alpha=0.0, student=NetClassifier(max_epochs=2),
        random_state=0,
    ).fit(X, y)
    seed = distilled.student_.random_state
    plain = NetClassifier(max_epochs=2, random_state=seed).fit(X, y)
    np.testing.assert_array_equal(distilled.transform(X), plain.transform(X))


class NextDigitTeacher(ClassifierMixin, BaseEstimator):
    """A teacher whose soft targets say "0.7 this digit, 0.3 the next one"."""

    def fit(self, X, y):
        self.classifier_ = LogisticRegression(max_iter=500).fit(X.reshape(len(X), -1), y)
        self.classes_ = self.classifier_.classes_
        return self

    def predict_proba(self, X):
        digit = self.classifier_.predict(X.reshape(len(X), -1))
        proba = np.zeros((len(X), 10))
        proba[np.arange(len(X)), digit] = 0.7
        proba[np.arange(len(X)), (digit + 1) % 10] = 0.3
        return proba


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_student_learns_what_only_the_soft_targets_say(digits_images):
    X, y = digits_images
    teacher = FrozenEstimator(NextDigitTeacher().fit(X[:1000], y[:1000]))
    X_fit, X_new = X[:600], X[1000:1300]
    distilled = Distillation(
        teacher, temperature=1.0, student=NetClassifier(max_epochs=10), random_state=0
    ).fit(X_fit)  # no y: soft targets only
    digit = teacher.predict_proba(X_new).argmax(1)
    p_student = distilled.student_.predict_proba(X_new)
    rows = np.arange(len(X_new))
    assert np.mean(p_student.argmax(1) == digit) > 0.75
    # The "next digit" share exists only in the soft targets; the student has it.
    next_share = p_student[rows, (digit + 1) % 10].mean()
    assert 0.15 < next_share < 0.45
    hard = Distillation(
        teacher, alpha=0.0, student=NetClassifier(max_epochs=10), random_state=0
    ).fit(X_fit, teacher.predict_proba(X_fit).argmax(1))
    assert hard.student_.predict_proba(X_new)[rows, (digit + 1) % 10].mean() < 0.1


def test_network_teacher_gives_its_head_logits(digits_small):
    X, y = digits_small
    X = X.reshape(len(X), -1)
    distilled = Distillation(
        FeatureExtractor("mlp", random_state=0), student=NetClassifier(max_epochs=1),
        random_state=0,
    ).fit(X)
    assert distilled.teacher_.layer == "fc"
    assert distilled.classes_.tolist() == list(range(10))
    scores = teacher_scores(distilled.teacher_, X[:5])
    assert scores.shape == (5, 10)
    # The scores are the network's own logits.
    network = distilled.teacher_.network_
    with torch.no_grad():
        logits = network(torch.from_numpy(X[:5])).numpy()
    np.testing.assert_allclose(scores, logits, rtol=1e-5, atol=1e-6)
    assert distilled.student_.model_.head.out_features == 10


def test_teachers_without_class_scores_are_refused(digits_images):
    X, _ = digits_images
    rotnet = RotNet(NetClassifier(max_epochs=1), random_state=0).fit(X[:100])
    with pytest.raises(ValueError, match="has no class scores"):
        Distillation(FrozenEstimator(rotnet)).fit(X[:100])
    extractor = FeatureExtractor("cnn", random_state=0).fit(X[:10])
    with pytest.raises(ValueError, match="layer=None gives penultimate features"):
        Distillation(FrozenEstimator(extractor)).fit(X[:100])
    headless = nn.Sequential(nn.Flatten(), nn.ReLU())
    with pytest.raises(ValueError, match="no final nn.Linear"):
        Distillation(headless).fit(X[:100])


def test_pipeline_grid_search_and_persistence(digits_images, teacher, tmp_path):
    X, y = digits_images
    X, y = X[:400], y[:400]
    pipe = make_pipeline(
        Distillation(FrozenEstimator(teacher), student=NetClassifier(max_epochs=1),
                     random_state=0),
        LogisticRegression(max_iter=500),
    )
    search = GridSearchCV(pipe, {"distillation__temperature": [1.0, 4.0]}, cv=2).fit(X, y)
    assert search.best_params_["distillation__temperature"] in (1.0, 4.0)
    distilled = search.best_estimator_[0]
    loaded = skclusterfit.load(distilled.save(tmp_path / "distilled.skcf"))
    np.testing.assert_array_equal(loaded.transform(X[:20]), distilled.transform(X[:20]))
    assert clone(distilled).get_params()["temperature"] == distilled.temperature


def test_nested_parameters_reach_default_components():
    distilled = Distillation("mlp").set_params(student__max_epochs=3, teacher__batch_size=7)
    assert distilled.student is None and distilled.teacher == "mlp"  # still the defaults
    assert distilled.get_params()["student__max_epochs"] == 3
    assert distilled._component("student").max_epochs == 3
    assert distilled._component("teacher").batch_size == 7


def test_alpha_without_labels_warns_that_it_cannot_apply(digits_images, teacher):
    X, _ = digits_images
    quick = {"student": NetClassifier(max_epochs=1), "random_state": 0}
    with pytest.warns(UserWarning, match=r"alpha=0.3 weighs the labels y.*fit got no y"):
        Distillation(FrozenEstimator(teacher), alpha=0.3, **quick).fit(X[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Distillation(FrozenEstimator(teacher), **quick).fit(X[:200])  # alpha="auto"


def test_torchvision_classifier_teacher_gives_its_logits(tmp_path):
    import torchvision

    from skclusterfit._distillation import head_layer

    assert head_layer("resnet18", (3, 32, 32)) == "fc"
    assert head_layer("mobilenet_v3_small", (3, 32, 32)) == "classifier.3"
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=7).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(network.state_dict(), path)
    X = np.random.RandomState(0).rand(6, 3, 32, 32).astype(np.float32)
    teacher = FeatureExtractor(torchvision.models.resnet18(num_classes=7), weights=str(path))
    distilled = Distillation(
        teacher, student=NetClassifier("cnn", max_epochs=1), random_state=0
    ).fit(X)
    assert distilled.teacher_.layer == "fc" and distilled.classes_.tolist() == list(range(7))
    with torch.no_grad():
        logits = network(torch.from_numpy(X)).numpy()
    scores = teacher_scores(distilled.teacher_, X)
    np.testing.assert_allclose(scores, logits, rtol=1e-4, atol=1e-5)
