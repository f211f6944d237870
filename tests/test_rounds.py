"""Iterated ClusterFit (n_rounds): the student of round r teaches round r + 1."""

import os

import numpy as np
import pytest

import skclusterfit
from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.cluster import KMeans


def cf(**params):
    defaults = dict(
        teacher=FeatureExtractor("cnn", random_state=0),
        K=10,
        student=NetClassifier(max_epochs=1, batch_size=64),
        random_state=0,
    )
    return ClusterFit(**{**defaults, **params})


@pytest.fixture(scope="module")
def three_rounds(digits_small):
    X, _ = digits_small
    return cf(n_rounds=3).fit(X)


def test_round_one_is_the_one_round_fit(digits_small, three_rounds):
    X, _ = digits_small
    one = cf().fit(X)
    first = three_rounds.rounds_[0]
    np.testing.assert_array_equal(first["labels"], one.labels_)
    np.testing.assert_array_equal(first["student"].transform(X), one.transform(X))
    assert len(one.rounds_) == 1 and one.rounds_[0]["student"] is one.student_


def test_each_round_clusters_the_previous_student(digits_small, three_rounds):
    X, _ = digits_small
    rounds = three_rounds.rounds_
    assert len(rounds) == 3 and rounds[-1]["student"] is three_rounds.student_
    np.testing.assert_array_equal(rounds[-1]["labels"], three_rounds.labels_)
    # Round 3's clusters: k-means (the round's seed) of round 2's student features.
    seed = three_rounds.clusterer_.random_state
    features = rounds[1]["student"].transform(X)
    expected = KMeans(10, random_state=seed).fit(features).labels_
    np.testing.assert_array_equal(three_rounds.labels_, expected)
    # Every round trains a new student on its own pseudo-labels.
    assert not np.array_equal(rounds[0]["labels"], rounds[1]["labels"])
    students = [r["student"] for r in rounds]
    assert len({id(s) for s in students}) == 3
    np.testing.assert_array_equal(three_rounds.transform(X), students[-1].transform(X))


def test_rounds_resume_from_checkpoints_and_save(digits_small, tmp_path, capsys):
    X, _ = digits_small
    directory = tmp_path / "ckpt"
    first = cf(n_rounds=2, checkpoint_dir=directory).fit(X)
    assert os.path.exists(directory / "round2" / "clusters.npz")
    capsys.readouterr()
    again = cf(n_rounds=2, checkpoint_dir=directory, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "resuming from epoch 1 of the student in" in out
    assert "round2" in out.split("round 2 of 2")[1]  # round 2 read from its directory
    np.testing.assert_array_equal(again.labels_, first.labels_)
    np.testing.assert_array_equal(again.transform(X), first.transform(X))
    loaded = skclusterfit.load(first.save(tmp_path / "cf.skcf"))
    assert loaded.rounds_[-1]["student"] is loaded.student_
    np.testing.assert_array_equal(
        loaded.rounds_[0]["student"].transform(X), first.rounds_[0]["student"].transform(X)
    )


def test_n_rounds_must_be_positive(digits_small):
    X, _ = digits_small
    with pytest.raises(ValueError, match="n_rounds"):
        cf(n_rounds=0).fit(X)
