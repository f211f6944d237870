"""ClusterFit end to end: the user's card, composition, caching, persistence."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import MiniBatchKMeans
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer
from torch import nn

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans
from skclusterfit.networks import SmallCNN


def fast_cf(**params):
    defaults = dict(
        teacher=FeatureExtractor("cnn", random_state=0),
        K=10,
        student=NetClassifier(max_epochs=2, batch_size=64),
        random_state=0,
    )
    defaults.update(params)
    return ClusterFit(**defaults)


@pytest.mark.slow  # five fits on all 1,797 digits; the fast grid searches are below
def test_users_card_pipeline_and_grid_search(digits_images):
    X, y = digits_images
    pipe = Pipeline(
        [
            ("cf", fast_cf(K=20)),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    search = GridSearchCV(pipe, {"cf__K": [10, 20]}, cv=2).fit(X, y)
    assert set(search.cv_results_["param_cf__K"]) == {10, 20}
    assert search.best_params_["cf__K"] in (10, 20)
    # The fitted pipeline really classifies digits from student features.
    assert search.score(X, y) > 0.5
    assert search.best_estimator_.named_steps["cf"].student_.n_features_out_ == 128


def test_fit_state_and_transform(digits_small):
    X, _ = digits_small
    cf = fast_cf().fit(X)
    assert cf.labels_.shape == (len(X),)
    assert len(np.unique(cf.labels_)) == 10
    assert cf.cluster_centers_.shape == (10, 128)
    features = cf.transform(X)
    assert features.dtype == np.float32 and features.shape == (len(X), 128)
    assert isinstance(cf.student_, NetClassifier)
    # The student learned the pseudo-labels, not the teacher's (absent) labels.
    assert set(cf.student_.classes_) == set(np.unique(cf.labels_))
    names = cf.get_feature_names_out()
    assert names[0] == "clusterfit0" and len(names) == 128


def test_nested_params_reach_the_parts_and_user_objects_stay_untouched():
    student = NetClassifier(max_epochs=2)
    cf = fast_cf(student=student)
    pipe = Pipeline([("cf", cf), ("clf", LogisticRegression())])
    params = pipe.get_params(deep=True)
    assert params["cf__student__max_epochs"] == 2
    assert params["cf__K"] == 10
    pipe.set_params(cf__student__max_epochs=3)
    assert student.max_epochs == 3


def test_fit_pushes_onto_clones_not_user_objects(digits_small):
    X, _ = digits_small
    student = NetClassifier(max_epochs=1)
    clusterer = SKKMeans(n_clusters=2, n_init=1)
    cf = fast_cf(student=student, clusterer=clusterer, K=7, random_state=3).fit(X)
    assert clusterer.n_clusters == 2 and student.random_state is None
    assert cf.clusterer_.n_clusters == 7
    assert cf.student_.random_state is not None
    assert cf.clusterer_ is not clusterer and cf.student_ is not student
    assert not hasattr(student, "model_")


@pytest.mark.parametrize(
    "clusterer",
    [
        SKKMeans(n_init=1),
        MiniBatchKMeans(n_init=1),
        GaussianMixture(covariance_type="diag"),
        make_pipeline(Normalizer(), SKKMeans(n_init=1)),
        KMeans(normalize=False),
    ],
    ids=["sklearn-kmeans", "minibatch", "gmm", "pipeline", "ours-raw"],
)
def test_pluggable_clusterers(digits_small, clusterer):
    X, _ = digits_small
    cf = fast_cf(clusterer=clusterer, K=6).fit(X)
    assert cf.labels_.shape == (len(X),)
    assert 1 < len(np.unique(cf.labels_)) <= 6
    assert cf.cluster_centers_.shape[0] == 6


def test_teacher_forms(digits_small):
    X, y = digits_small
    labelled = NetClassifier(max_epochs=2, random_state=0).fit(X, y)
    frozen = fast_cf(teacher=FrozenEstimator(labelled)).fit(X)
    # A frozen teacher is used as given, never refitted.
    assert frozen.teacher_.estimator is labelled
    module_teacher = fast_cf(teacher=SmallCNN(in_channels=1)).fit(X)
    assert module_teacher.teacher_.n_features_out_ == 128


def test_teacher_that_would_need_training_is_refused(digits_small):
    from sklearn.decomposition import PCA

    X, _ = digits_small
    with pytest.raises(TypeError, match="never trains its teacher"):
        fast_cf(teacher=PCA(5)).fit(X.reshape(len(X), -1))


def test_student_none_copies_teacher_architecture(digits_small):
    X, y = digits_small
    teacher = NetClassifier(max_epochs=3, lr=0.07, random_state=0).fit(X, y)
    cf = ClusterFit(FrozenEstimator(teacher), K=8, random_state=0).fit(X)
    assert cf.student_.max_epochs == 3 and cf.student_.lr == 0.07
    teacher_weights = teacher.model_.backbone.features[0][0].weight
    student_weights = cf.student_.model_.backbone.features[0][0].weight
    assert not np.allclose(teacher_weights.detach(), student_weights.detach())


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_student_forms(digits_small):
    X, _ = digits_small
    cf = fast_cf(student=SmallCNN(in_channels=1, width=8)).fit(X)
    assert cf.transform(X[:3]).shape == (3, 32)
    cf = fast_cf(student="mlp").fit(X)
    assert cf.transform(X[:3]).shape == (3, 128)


@pytest.fixture
def extraction_calls(monkeypatch):
    """The sizes of every teacher extraction (FeatureExtractor.transform call)."""
    calls = []
    original = FeatureExtractor.transform

    def counting_transform(self, X):
        calls.append(len(X))
        return original(self, X)

    monkeypatch.setattr(FeatureExtractor, "transform", counting_transform)
    return calls


def test_memory_extracts_teacher_features_once_per_data(digits_small, tmp_path, extraction_calls):
    X, _ = digits_small
    calls = extraction_calls
    memory = joblib.Memory(tmp_path, verbose=0)
    for K in (5, 10, 15):
        fast_cf(K=K, memory=memory).fit(X)
    assert calls == [len(X)]
    fast_cf(K=5, memory=memory).fit(X[:200])
    assert calls == [len(X), 200]
    fast_cf(K=5, memory=None).fit(X)
    assert len(calls) == 3


def test_grid_search_over_K_extracts_once_per_fold(digits_small, tmp_path, extraction_calls):
    X, y = digits_small
    calls = extraction_calls
    pipe = Pipeline(
        [("cf", fast_cf(memory=str(tmp_path))), ("clf", LogisticRegression(max_iter=500))]
    )
    GridSearchCV(pipe, {"cf__K": [5, 10, 15]}, cv=2, refit=False).fit(X, y)
    # One extraction per training fold; the other K values hit the cache.
    assert len(calls) == 2


def test_clone_and_pickle_round_trip(digits_small):
    X, _ = digits_small
    cf = fast_cf()
    assert clone(cf).get_params()["K"] == 10
    cf.fit(X)
    restored = pickle.loads(pickle.dumps(cf))
    np.testing.assert_array_equal(restored.transform(X[:50]), cf.transform(X[:50]))
    np.testing.assert_array_equal(restored.labels_, cf.labels_)


def test_same_seed_same_result(digits_small):
    X, _ = digits_small
    first = fast_cf(random_state=7).fit(X)
    second = fast_cf(random_state=7).fit(X)
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_array_equal(first.transform(X), second.transform(X))


def test_set_output_pandas(digits_small):
    pd = pytest.importorskip("pandas")
    X, _ = digits_small
    vectors = X.reshape(len(X), -1)
    cf = fast_cf(teacher=FeatureExtractor("mlp", random_state=0)).set_output(
        transform="pandas"
    )
    out = cf.fit(vectors).transform(vectors)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns[:2]) == ["clusterfit0", "clusterfit1"]


def test_default_parameters_mean_the_paper():
    cf = ClusterFit()
    assert cf.teacher == "resnet50" and cf.K == "auto" and cf.student is None


def test_auto_K_is_ten_times_a_classifier_teachers_classes(digits_small):
    X, y = digits_small
    teacher = NetClassifier(max_epochs=1, random_state=0).fit(X, y % 4)
    student = NetClassifier(max_epochs=1)
    cf = ClusterFit(FrozenEstimator(teacher), student=student, random_state=0).fit(X)
    assert cf.K == "auto" and cf.K_ == 40 and len(np.unique(cf.labels_)) == 40
    # Not a classifier: the paper's 16,000, at most one cluster per 20 samples.
    cf = fast_cf(K="auto").fit(X)
    assert cf.K_ == len(X) // 20
    assert fast_cf(K=7).fit(X).K_ == 7
    # Never more clusters than samples.
    assert ClusterFit(FrozenEstimator(teacher), student=student).fit(X[:30]).K_ == 30


def test_torchvision_name_teacher_without_network_fails_clearly(monkeypatch):
    import torchvision

    def offline(self, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    X = np.zeros((4, 3, 32, 32), dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"weights='DEFAULT'.*local path"):
        ClusterFit(K=2).fit(X)


def test_module_teacher_and_fresh_student_weights(digits_small):
    X, _ = digits_small
    module = SmallCNN(in_channels=1, width=8)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    cf = ClusterFit(
        teacher=module, K=4, student=NetClassifier(SmallCNN(in_channels=1, width=8), max_epochs=1),
        random_state=0,
    ).fit(X)
    for key, value in module.state_dict().items():
        assert (value == before[key]).all(), f"user's module changed at {key}"
    assert isinstance(cf.student_.model_.head, nn.Linear)


def test_feature_cache_tells_teachers_with_equal_params_apart(digits_small, tmp_path):
    X, y = digits_small
    first = NetClassifier(max_epochs=1, random_state=1).fit(X, y)
    second = NetClassifier(max_epochs=1, random_state=1).fit(X, y[::-1])
    memory = joblib.Memory(tmp_path, verbose=0)
    a = fast_cf(teacher=FrozenEstimator(first), memory=memory).fit(X)
    b = fast_cf(teacher=FrozenEstimator(second), memory=memory).fit(X)
    # Same parameters, other weights: no shared cache entry.
    assert not np.array_equal(a.cluster_centers_, b.cluster_centers_)


def test_torch_dataset_through_clusterfit(digits_small):
    import torch
    from torch.utils.data import TensorDataset

    X, y = digits_small
    dataset = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    cf = fast_cf().fit(dataset)
    assert cf.labels_.shape == (len(X),)
    from_dataset = cf.transform(dataset)
    np.testing.assert_allclose(from_dataset, cf.transform(X), rtol=1e-5, atol=1e-6)


# -- defaults that nested parameters reach; one rule per default -------------------

def test_nested_parameters_of_defaults_are_kept_as_overrides():
    """cf__student__*, cf__clusterer__*, cf__teacher__* with student=None,
    clusterer="kmeans" and a teacher given by name: kept, listed, cloned, and
    applied to the component fit builds; a misspelt one fails at once."""
    cf = ClusterFit(teacher="cnn").set_params(
        student__max_epochs=1, clusterer__tol=0.01, teacher__random_state=3
    )
    assert cf.student is None and cf.clusterer == "kmeans" and cf.teacher == "cnn"
    params = cf.get_params(deep=True)
    assert params["student__max_epochs"] == 1 and params["clusterer__tol"] == 0.01
    assert "student__max_epochs" not in cf.get_params(deep=False)
    assert clone(cf).get_params(deep=True)["teacher__random_state"] == 3
    assert pickle.loads(pickle.dumps(cf)).get_params()["clusterer__tol"] == 0.01
    assert cf._component("teacher").random_state == 3
    assert isinstance(cf._component("clusterer"), KMeans)
    cf.set_params(student__max_epochs=2, student__lr=0.1)  # merged, last wins
    assert (cf._component("student").max_epochs, cf._component("student").lr) == (2, 0.1)
    with pytest.raises(ValueError, match=r"Invalid parameter 'max_epoch'"):
        cf.set_params(student__max_epoch=3)
    # An estimator object carries its own parameters: the overrides go.
    cf.set_params(student=NetClassifier(max_epochs=7))
    assert "student__lr" not in ClusterFit().get_params()
    assert cf.get_params()["student__max_epochs"] == 7 and cf.get_params()["student__lr"] == "auto"


def test_default_student_follows_a_later_teacher(digits_small):
    """set_params(student__...) then set_params(teacher=...): the student fit
    trains is the new teacher's architecture, with the override."""
    X, _ = digits_small
    vectors = X.reshape(len(X), -1)[:200]
    cf = ClusterFit(teacher="cnn", K=5, random_state=0).set_params(student__max_epochs=1)
    cf.set_params(teacher=FeatureExtractor("mlp", random_state=0)).fit(vectors)
    assert cf.student_.model == "mlp" and cf.student_.max_epochs == 1
    assert cf.student is None


def test_grid_search_over_a_default_students_parameter(digits_small):
    X, y = digits_small
    X, y = X[:200], y[:200]
    labelled = NetClassifier(max_epochs=1, random_state=0).fit(X, y)
    cf = ClusterFit(teacher=FrozenEstimator(labelled), K=6, random_state=0)
    pipe = Pipeline([("cf", cf), ("clf", LogisticRegression(max_iter=200))])
    assert "cf__student__max_epochs" not in pipe.get_params()
    search = GridSearchCV(pipe, {"cf__student__max_epochs": [1, 2]}, cv=2).fit(X, y)
    assert sorted(search.cv_results_["param_cf__student__max_epochs"]) == [1, 2]
    best = search.best_estimator_.named_steps["cf"]
    assert best.student_.max_epochs == search.best_params_["cf__student__max_epochs"]
    assert best.student_.lr == labelled.lr  # still the teacher's recipe (student=None)
    assert cf.student is None and "cf__student__max_epochs" not in pipe.get_params()


def test_settings_go_only_onto_components_left_at_their_default(digits_small):
    """verbose, device, random_state and distributed: one rule for teacher,
    clusterer and student; what the user set on a component stays."""
    X, _ = digits_small
    vectors = X.reshape(len(X), -1)[:200]
    cf = ClusterFit(
        FeatureExtractor("mlp", random_state=1), K=5, random_state=0, verbose=1,
        student=NetClassifier(max_epochs=1, verbose=2, random_state=7),
        clusterer=KMeans(random_state=5),
    ).fit(vectors)
    assert cf.teacher_.random_state == 1
    assert cf.student_.verbose == 2 and cf.student_.random_state == 7
    assert cf.student_.distributed is False  # left "auto": one process here
    assert cf.clusterer_.random_state == 5 and cf.clusterer_.verbose == 1
    assert cf.clusterer_.distributed is False  # left "auto": one process here
    defaults = ClusterFit("mlp", K=5, random_state=0, student=NetClassifier(max_epochs=1))
    defaults.fit(vectors)
    assert defaults.teacher_.random_state is not None
    assert defaults.student_.random_state is not None and defaults.student_.verbose == 0
    assert defaults.clusterer_.random_state is not None


def test_push_settings_is_the_one_rule():
    from skclusterfit._components import push_settings

    pipe = make_pipeline(Normalizer(), KMeans(verbose=3))
    push_settings(pipe, verbose=1, random_state=4, device=None, no_such_param=1)
    assert pipe[-1].verbose == 3 and pipe[-1].random_state == 4 and pipe[-1].device == "auto"


def test_builtin_name_as_teacher_works_and_warns_that_it_is_random(digits_small):
    X, _ = digits_small
    for name in ("cnn", "auto"):
        with pytest.warns(UserWarning, match=r"randomly initialised weights"):
            cf = ClusterFit(name, K=5, student=NetClassifier(max_epochs=1),
                            random_state=0).fit(X)
        assert cf.transform(X[:3]).shape == (3, 128)
    vectors = X.reshape(len(X), -1)
    with pytest.warns(UserWarning, match=r"randomly initialised weights"):
        ClusterFit("mlp", K=5, student=NetClassifier(max_epochs=1)).fit(vectors)


def test_a_trained_teacher_does_not_warn(digits_small):
    import warnings

    X, y = digits_small
    teacher = NetClassifier(max_epochs=1, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast_cf(teacher=FrozenEstimator(teacher)).fit(X)


def test_random_state_seeds_a_teacher_built_from_a_name(digits_small):
    """Defect 15: an unseeded teacher ClusterFit builds is seeded by random_state."""
    X, _ = digits_small
    vectors = X.reshape(len(X), -1)

    def fit():
        return ClusterFit(FeatureExtractor("mlp"), K=5, student=NetClassifier(max_epochs=1),
                          random_state=0).fit(vectors)

    first, second = fit(), fit()
    np.testing.assert_array_equal(first.labels_, second.labels_)
    np.testing.assert_array_equal(first.transform(vectors), second.transform(vectors))


def test_device_reaches_a_frozen_teacher_on_a_copy(digits_small):
    X, y = digits_small
    teacher = NetClassifier(max_epochs=1, random_state=0).fit(X, y)
    frozen = FrozenEstimator(teacher)
    cf = fast_cf(teacher=frozen, device="cpu").fit(X)
    assert cf.teacher_.estimator.device == "cpu"
    assert teacher.device == "auto" and cf.teacher_.estimator is not teacher
    np.testing.assert_array_equal(cf.teacher_.transform(X[:5]), teacher.transform(X[:5]))
    same = fast_cf(teacher=frozen).fit(X)  # device="auto": used as given
    assert same.teacher_ is frozen


def test_student_takes_the_teachers_preprocessing(digits_small):
    X, _ = digits_small

    def halve(x):
        return x * 0.5

    teacher = FeatureExtractor("cnn", preprocess=halve, random_state=0)
    cf = fast_cf(teacher=teacher).fit(X)
    assert cf.student_.preprocess is halve and cf.student_.preprocess_ is halve
    told_otherwise = fast_cf(teacher=teacher, student=NetClassifier(max_epochs=1,
                                                                    preprocess=None)).fit(X)
    assert told_otherwise.student_.preprocess is None
    # A pretrained torchvision teacher's transforms travel by weights name (JSON, not code).
    named = FeatureExtractor("resnet18", weights="IMAGENET1K_V1")
    assert named._preprocess_spec() == "ResNet18_Weights.IMAGENET1K_V1"


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_student_with_a_torchvision_weights_preprocessing_trains(tmp_path):
    """NetClassifier(preprocess=<weights name>) applies those transforms (no download)."""
    rng = np.random.RandomState(0)
    X = rng.rand(8, 3, 40, 40).astype(np.float32)
    y = np.arange(8) % 2
    clf = NetClassifier(max_epochs=1, batch_size=4, preprocess="ResNet18_Weights.IMAGENET1K_V1",
                        random_state=0).fit(X, y)
    seen = {}
    clf.model_.backbone.register_forward_pre_hook(lambda m, a: seen.update(shape=a[0].shape))
    clf.transform(X[:2])
    assert tuple(seen["shape"]) == (2, 3, 224, 224)  # resized and centre-cropped
    import skclusterfit

    skclusterfit.save(clf, tmp_path / "clf.skcf")
    loaded = skclusterfit.load(tmp_path / "clf.skcf")
    np.testing.assert_array_equal(loaded.transform(X), clf.transform(X))


def test_K_close_to_n_samples_raises_no_regression_warning(digits_small):
    import warnings

    X, _ = digits_small
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast_cf(teacher=FrozenEstimator(NetClassifier(max_epochs=1, random_state=0).fit(
            X[:40], np.arange(40) % 4)), K=30, clusterer=SKKMeans(n_init=1)).fit(X[:40])


def test_checkpoint_dir_naming_a_file_is_refused(digits_small, tmp_path):
    X, _ = digits_small
    path = tmp_path / "a_file"
    path.write_text("")
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*a_file' is a file; it must be a "
                                         r"directory"):
        fast_cf(checkpoint_dir=str(path)).fit(X)


def test_verbose_reaches_every_stage(digits_small, capsys):
    X, _ = digits_small
    fast_cf(verbose=1).fit(X)
    captured = capsys.readouterr()
    assert "[ClusterFit] teacher features" in captured.out
    assert "teacher features" in captured.err  # the extraction bar
    assert "training" in captured.err and "2/2" in captured.err  # the student's epochs
    fast_cf(verbose=0).fit(X)
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    cf = fast_cf(verbose=2)
    cf.fit(X)
    assert cf.clusterer_.verbose == 2
