"""ConcatTeachers (several frozen teachers as one) and multi-teacher ClusterFit."""

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.preprocessing import normalize

import skclusterfit
from skclusterfit import ClusterFit, ConcatTeachers, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans
from skclusterfit.pretext import RotNet


@pytest.fixture(scope="module")
def teachers(digits_images):
    X, y = digits_images
    noisy = NetClassifier(max_epochs=2, random_state=0).fit(X[:500], y[:500])
    rotnet = RotNet(NetClassifier(max_epochs=1), random_state=0).fit(X[:500])
    return FrozenEstimator(noisy), FrozenEstimator(rotnet)


def test_concatenation_of_normalised_features(digits_images, teachers):
    X, _ = digits_images
    both = ConcatTeachers(list(teachers)).fit(X[:300])
    expected = np.hstack([normalize(t.transform(X[:50])) for t in teachers]) / np.sqrt(2)
    np.testing.assert_allclose(both.transform(X[:50]), expected, rtol=1e-5, atol=1e-6)
    assert both.n_features_per_teacher_ == [128, 128] and both.n_features_out_ == 256
    # Frozen teachers are used as given, never refitted.
    assert both.teachers_[0] is teachers[0] and both.teachers_[1] is teachers[1]


def test_pca_gives_every_teacher_the_same_width_and_weight(digits_images, teachers):
    X, _ = digits_images
    wide = FeatureExtractor("cnn", random_state=0)  # 128-d
    both = ConcatTeachers([teachers[0], wide], n_components=8, random_state=0).fit(X[:300])
    features = both.transform(X[:40])
    assert features.shape == (40, 16) and features.dtype == np.float32
    for block in (features[:, :8], features[:, 8:]):
        np.testing.assert_allclose((block**2).sum(1), 0.5, rtol=1e-5)
    # The teacher built from a specification is a fitted clone; the user's is untouched.
    assert both.teachers_[1] is not wide and not hasattr(wide, "network_")
    block = normalize(both.pcas_[0].transform(normalize(teachers[0].transform(X[:40]))))
    np.testing.assert_allclose(features[:, :8], block / np.sqrt(2), rtol=1e-4, atol=1e-6)


def test_bad_settings_are_named(digits_images, teachers):
    X, _ = digits_images
    with pytest.raises(ValueError, match=r"teachers=\[\] holds no teacher"):
        ConcatTeachers([]).fit(X[:20])
    with pytest.raises(ValueError, match="n_components=500 must be at most"):
        ConcatTeachers(list(teachers), n_components=500).fit(X[:300])
    with pytest.raises(TypeError, match="would have to be trained"):
        ConcatTeachers([NetClassifier()]).fit(X[:20])


def test_student_template_and_preprocessing_are_the_first_teachers(teachers):
    both = ConcatTeachers(list(teachers))
    template = both._student_template()
    assert isinstance(template, NetClassifier) and template.max_epochs == 2
    assert both._preprocess_spec() is None


def test_save_load(digits_images, teachers, tmp_path):
    X, _ = digits_images
    both = ConcatTeachers(list(teachers), n_components=4, random_state=0).fit(X[:200])
    loaded = skclusterfit.load(both.save(tmp_path / "both.skcf"))
    np.testing.assert_allclose(loaded.transform(X[:10]), both.transform(X[:10]), atol=1e-6)


# -- ClusterFit(teacher=[t1, t2]) -------------------------------------------------


def test_clusterfit_with_a_list_of_teachers(digits_images, teachers, tmp_path):
    X, _ = digits_images
    X = X[:300]
    cf = ClusterFit(teacher=list(teachers), K=10, random_state=0)
    cf.set_params(student__max_epochs=1)  # student=None: the first teacher's recipe
    cf.fit(X)
    assert isinstance(cf.teacher_, ConcatTeachers)
    assert cf.teacher_.teachers_[0] is teachers[0]
    assert cf.cluster_centers_.shape == (10, 256)
    assert cf.student is None and cf.student_.max_epochs == 1
    # The clusters are k-means of the concatenated features (same seed stream).
    features = ConcatTeachers(list(teachers)).fit(X).transform(X)
    seed = cf.clusterer_.random_state
    np.testing.assert_array_equal(cf.labels_, KMeans(10, random_state=seed).fit(features).labels_)
    loaded = skclusterfit.load(cf.save(tmp_path / "cf.skcf"))
    np.testing.assert_array_equal(loaded.transform(X[:20]), cf.transform(X[:20]))
    assert isinstance(loaded.teacher, list) and len(loaded.teacher) == 2


def test_nested_parameters_reach_the_concat_teachers_a_list_stands_for(teachers):
    cf = ClusterFit(teacher=list(teachers)).set_params(teacher__n_components=8)
    assert isinstance(cf.teacher, list)  # kept as given; the override waits for fit
    built = cf._component("teacher")
    assert isinstance(built, ConcatTeachers) and built.n_components == 8
    assert built.teachers[1] is teachers[1]
