"""Determinism, checkpoint/resume (KeyboardInterrupt and SIGKILL) and memory bounds."""

import glob
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit.data import random_shift
from skclusterfit.storage._checkpoint import STUDENT_FILE, atomic_write
from skclusterfit.cluster import KMeans

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


@pytest.fixture(scope="module")
def images():
    return load_digits().images[:120, None].astype(np.float32)


class InterruptAt:
    """Augmentation (random shifts) that raises KeyboardInterrupt at batch ``at``."""

    def __init__(self, at=None):
        self.at = at
        self.calls = 0

    def __call__(self, x, generator):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return random_shift(x, 1, generator)


def make_clusterfit(interrupt_at=None, **params):
    return ClusterFit(
        teacher=FeatureExtractor("cnn", random_state=0),
        K=8,
        student=NetClassifier(max_epochs=3, batch_size=40, augment=InterruptAt(interrupt_at)),
        random_state=0,
        **params,
    )


@pytest.fixture(scope="module")
def uninterrupted(images):
    return make_clusterfit().fit(images)


def read_student_checkpoint(directory):
    return torch.load(os.path.join(directory, STUDENT_FILE), weights_only=True)


def temporaries(directory):
    return glob.glob(os.path.join(directory, ".*.tmp"))


def test_two_fits_with_the_same_seed_are_identical(images, uninterrupted):
    again = make_clusterfit().fit(images)
    np.testing.assert_array_equal(again.labels_, uninterrupted.labels_)
    np.testing.assert_array_equal(again.cluster_centers_, uninterrupted.cluster_centers_)
    # Bitwise: same CPU kernels, same generators, same order of operations.
    np.testing.assert_array_equal(again.transform(images), uninterrupted.transform(images))
    other_seed = make_clusterfit().set_params(random_state=1).fit(images)
    assert not np.array_equal(other_seed.transform(images), uninterrupted.transform(images))


def test_keyboard_interrupt_then_resume_matches_uninterrupted(
    images, uninterrupted, tmp_path, capsys
):
    directory = str(tmp_path / "ckpt")
    # 3 batches per epoch: batch 5 is in the middle of the second epoch.
    with pytest.raises(KeyboardInterrupt):
        make_clusterfit(interrupt_at=5, checkpoint_dir=directory, verbose=1).fit(images)
    assert "interrupted; fit again to resume" in capsys.readouterr().out
    assert read_student_checkpoint(directory)["epoch"] == 1
    assert not temporaries(directory)

    resumed = make_clusterfit(checkpoint_dir=directory, verbose=1).fit(images)
    out = capsys.readouterr().out
    assert "resuming from teacher features" in out
    assert "resuming from the cluster assignment" in out
    assert "resuming from epoch 1 of the student" in out
    np.testing.assert_array_equal(resumed.labels_, uninterrupted.labels_)
    np.testing.assert_array_equal(resumed.transform(images), uninterrupted.transform(images))
    assert [h["epoch"] for h in resumed.student_.history_] == [1, 2, 3]
    assert read_student_checkpoint(directory)["epoch"] == 3


def test_interrupt_while_writing_keeps_the_previous_checkpoint(images, tmp_path, monkeypatch):
    directory = str(tmp_path / "ckpt")
    real_save = torch.save
    calls = []

    def save_then_interrupt(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the checkpoint after the second epoch
            file.write(b"PK\x03\x04 half a zip archive")
            raise KeyboardInterrupt
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        make_clusterfit(checkpoint_dir=directory).fit(images)
    monkeypatch.setattr(torch, "save", real_save)
    assert not temporaries(directory)
    assert read_student_checkpoint(directory)["epoch"] == 1  # complete, and the last one


def test_stale_temporary_file_is_removed_not_used(images, uninterrupted, tmp_path):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    stale = directory / f".{STUDENT_FILE}.abc123.tmp"  # as left by SIGKILL mid-write
    stale.write_bytes(b"garbage")
    fitted = make_clusterfit(checkpoint_dir=str(directory)).fit(images)
    assert not stale.exists()
    np.testing.assert_array_equal(fitted.transform(images), uninterrupted.transform(images))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write(path, lambda f: f.write(b"old"))

    def fail(file):
        file.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


@pytest.fixture(scope="module")
def vectors():
    return load_digits().data[:120].astype(np.float32)


def vector_clusterfit(**params):
    params.setdefault("teacher", FeatureExtractor("mlp", random_state=0))
    params.setdefault("student", NetClassifier(max_epochs=1))
    params.setdefault("K", 5)
    return ClusterFit(random_state=0, **params)


def test_checkpoint_of_other_parameters_or_data_is_refused(vectors, tmp_path):
    directory = str(tmp_path / "ckpt")
    vector_clusterfit(checkpoint_dir=directory).fit(vectors)
    with pytest.raises(ValueError, match=r"other parameters \(K: 5 there, 6 here\)"):
        vector_clusterfit(checkpoint_dir=directory, K=6).fit(vectors)
    with pytest.raises(ValueError, match=r"student__max_epochs: 1 there, 2 here"):
        vector_clusterfit(
            checkpoint_dir=directory, student=NetClassifier(max_epochs=2)
        ).fit(vectors)
    with pytest.raises(ValueError, match=r"teacher__random_state: 0 there, 1 here"):
        vector_clusterfit(
            checkpoint_dir=directory, teacher=FeatureExtractor("mlp", random_state=1)
        ).fit(vectors)
    changed = vectors.copy()
    changed[7, 3] += 1
    with pytest.raises(ValueError, match=r"checkpoint_dir=.*ckpt' holds a checkpoint of .* data"):
        vector_clusterfit(checkpoint_dir=directory).fit(changed)
    # verbose and device do not change the result: the checkpoint is reused.
    vector_clusterfit(checkpoint_dir=directory, verbose=1, device="cpu").fit(vectors)
    os.remove(os.path.join(directory, "fingerprint.json"))
    with pytest.raises(ValueError, match=r"teacher_features\.npy.* but no fingerprint\.json"):
        vector_clusterfit(checkpoint_dir=directory).fit(vectors)


def test_checkpoint_sees_a_teacher_whose_weights_file_changed(vectors, tmp_path):
    """Same parameters, other weights behind the same file name: refused."""
    from skclusterfit.networks import MLP

    weights = tmp_path / "teacher.pt"
    directory = str(tmp_path / "ckpt")
    teacher = FeatureExtractor("mlp", weights=str(weights))
    torch.manual_seed(0)
    torch.save(MLP(vectors.shape[1]).state_dict(), weights)
    vector_clusterfit(checkpoint_dir=directory, teacher=teacher).fit(vectors)
    torch.manual_seed(1)
    torch.save(MLP(vectors.shape[1]).state_dict(), weights)
    with pytest.raises(ValueError, match=r"other parameters \(teacher_: [0-9a-f]+ there"):
        vector_clusterfit(checkpoint_dir=directory, teacher=teacher).fit(vectors)


def test_data_fingerprint_sees_changes(tmp_path, monkeypatch):
    from PIL import Image

    from skclusterfit.storage import _fingerprint as checkpoint
    from skclusterfit.data import ImageFiles

    X = np.random.RandomState(0).rand(50, 4).astype(np.float32)
    assert checkpoint.data_fingerprint(X) == checkpoint.data_fingerprint(X.copy())
    changed = X.copy()
    changed[49, 3] += 1e-6
    assert checkpoint.data_fingerprint(changed) != checkpoint.data_fingerprint(X)
    assert checkpoint.data_fingerprint(X.astype(np.float64)) != checkpoint.data_fingerprint(X)
    # Huge arrays: only a strided sample of rows (and the shape) is hashed.
    monkeypatch.setattr(checkpoint, "_FULL_HASH_BYTES", 100)
    monkeypatch.setattr(checkpoint, "_SAMPLED_ROWS", 5)
    assert checkpoint.data_fingerprint(changed) != checkpoint.data_fingerprint(X)  # row 49
    # Image files: paths, sizes and modification times.
    paths = [str(tmp_path / f"{i}.png") for i in range(2)]
    for path in paths:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    before = checkpoint.data_fingerprint(ImageFiles(paths))
    Image.fromarray(np.full((4, 4), 9, np.uint8)).save(paths[1])
    os.utime(paths[1], ns=(10**9, 10**9))
    assert checkpoint.data_fingerprint(ImageFiles(paths)) != before


def test_malicious_student_checkpoint_is_refused(vectors, tmp_path):
    directory = tmp_path / "ckpt"
    vector_clusterfit(checkpoint_dir=str(directory)).fit(vectors)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    (directory / STUDENT_FILE).write_bytes(pickle.dumps({"epoch": Payload()}, protocol=2))
    with pytest.raises(ValueError, match=r"student checkpoint .* cannot be read safely"):
        vector_clusterfit(checkpoint_dir=str(directory)).fit(vectors)
    assert not marker.exists()


def test_net_classifier_resumes_from_a_checkpoint_file(tmp_path):
    X, y = load_digits(return_X_y=True)
    X, y = X[:150], y[:150]
    path = tmp_path / "clf.pt"
    full = NetClassifier(max_epochs=3, random_state=0).fit(X, y)
    partial = NetClassifier(max_epochs=3, random_state=0, augment=InterruptAt(at=4))
    with pytest.raises(KeyboardInterrupt):  # 2 batches per epoch: stops in epoch 2
        partial.fit(X, y, checkpoint=path)
    resumed = NetClassifier(max_epochs=3, random_state=0, augment=InterruptAt()).fit(
        X, y, checkpoint=path
    )
    np.testing.assert_array_equal(resumed.predict_proba(X), full.predict_proba(X))
    with pytest.raises(ValueError, match="belongs to another fit"):
        NetClassifier(max_epochs=3, random_state=0, augment=InterruptAt()).fit(
            X, (y + 1) % 10, checkpoint=path
        )


def test_kmeans_never_allocates_an_n_by_k_matrix():
    """The largest single allocation of fit and predict stays at one chunk of distances.

    The torch engine (the GPU path) is the one profiled: the CPU engines are
    numba kernels over rows, which never form a distance matrix beyond one
    GEMM chunk either.
    """
    from torch.profiler import ProfilerActivity, profile

    n_samples, n_features, n_clusters, chunk = 8000, 16, 400, 1000
    X = np.random.RandomState(0).rand(n_samples, n_features).astype(np.float32)
    km = KMeans(
        n_clusters=n_clusters, max_iter=2, init="random", chunk_size=chunk,
        backend="torch", random_state=0,
    )
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        km.fit(X)
        km.predict(X)
    largest = max(event.cpu_memory_usage for event in prof.events())
    n_by_k = 4 * n_samples * n_clusters  # 12.8 MB of float32 distances
    one_chunk = 4 * chunk * n_clusters  # 1.6 MB
    assert largest >= one_chunk  # the profiler does see the distance chunks
    assert largest <= max(one_chunk, 8 * n_samples * n_features)
    assert largest < n_by_k / 4


def test_extraction_streams_batches_from_a_memmap(tmp_path):
    """Extraction never converts the whole dataset to one float tensor."""
    from torch.profiler import ProfilerActivity, profile

    n_samples, n_features = 3000, 64
    X = np.lib.format.open_memmap(
        tmp_path / "X.npy", mode="w+", dtype=np.uint8, shape=(n_samples, n_features)
    )
    X[:] = np.random.RandomState(0).randint(0, 256, X.shape)
    X.flush()
    X = np.load(tmp_path / "X.npy", mmap_mode="r")
    extractor = FeatureExtractor("mlp", batch_size=100, random_state=0).fit(X)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        features = extractor.transform(X)
    assert features.shape == (n_samples, 128)
    largest = max(event.cpu_memory_usage for event in prof.events())
    assert 0 < largest <= 4 * 100 * 256  # one batch of the widest layer
    assert largest < 4 * n_samples * n_features / 4


def run_script(args, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [sys.executable, os.path.join(TESTS, "_interruptible_fit.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **kwargs,
    )


@pytest.mark.slow
def test_sigkill_during_student_training_then_resume_matches_uninterrupted(tmp_path):
    """The issue's acceptance test; slow (three processes each importing torch)."""
    directory = str(tmp_path / "ckpt")
    reference = run_script(["-", str(tmp_path / "reference.npy")])

    killed = run_script([directory, str(tmp_path / "never.npy")])
    seen = []
    deadline = time.monotonic() + 120
    for line in killed.stdout:
        seen.append(line)
        if "[NetClassifier] epoch 2/6" in line:
            os.kill(killed.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "".join(seen)
    assert not os.path.exists(tmp_path / "never.npy")
    stopped_at = read_student_checkpoint(directory)["epoch"]
    assert 1 <= stopped_at < 6

    resumed = run_script([directory, str(tmp_path / "resumed.npy")])
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert f"resuming from epoch {stopped_at} of the student" in out
    assert "resuming from the cluster assignment" in out
    reference_out = reference.communicate(timeout=300)[0]
    assert reference.returncode == 0, reference_out
    np.testing.assert_array_equal(
        np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "reference.npy")
    )
    with open(os.path.join(directory, "fingerprint.json")) as file:
        assert set(json.load(file)) == {"data", "parameters"}


def test_fitted_fingerprint_sees_nested_fitted_state():
    """The teacher's fitted state defines the features, networks or not."""
    from sklearn.decomposition import PCA
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import make_pipeline

    from skclusterfit.storage import fitted_fingerprint

    rng = np.random.RandomState(0)
    first, second = rng.rand(30, 5), rng.rand(30, 5)
    a = FrozenEstimator(make_pipeline(PCA(2)).fit(first))
    b = FrozenEstimator(make_pipeline(PCA(2)).fit(second))
    assert fitted_fingerprint(a) != fitted_fingerprint(b)
    assert fitted_fingerprint(a) == fitted_fingerprint(
        FrozenEstimator(make_pipeline(PCA(2)).fit(first))
    )


def test_fitted_fingerprint_of_a_callable_does_not_depend_on_its_address():
    """Two equal fits whose preprocess is a distinct function object (same code,
    same name) fingerprint alike: a hash of repr() would see two addresses."""
    from skclusterfit.storage import fitted_fingerprint

    X = np.random.RandomState(0).rand(30, 5).astype(np.float32)

    def make_scale():
        def scale(x):
            return x * 2

        return scale

    first, second = make_scale(), make_scale()
    assert first is not second and repr(first) != repr(second)
    one = FeatureExtractor("mlp", preprocess=first, random_state=0).fit(X)
    two = FeatureExtractor("mlp", preprocess=second, random_state=0).fit(X)
    assert fitted_fingerprint(one) == fitted_fingerprint(two)
    three = FeatureExtractor("mlp", preprocess=first, random_state=1).fit(X)
    assert fitted_fingerprint(one) != fitted_fingerprint(three)


def test_fitted_fingerprint_of_clusterfit_rounds_is_by_content():
    """``rounds_`` (a list of dicts holding students) is hashed by what the
    students learned: two equal fits agree (a repr would show object
    addresses, so processes of one distributed fit would disagree), a fit
    with another seed does not."""
    from skclusterfit.storage import fitted_fingerprint

    X = load_digits().data[:120].astype(np.float32)

    def fit(seed):
        return ClusterFit(FeatureExtractor("mlp", random_state=0), K=5,
                          student=NetClassifier("mlp", max_epochs=1),
                          n_rounds=2, random_state=seed).fit(X)

    with pytest.warns(UserWarning, match="randomly initialised"):
        one, two, other = fit(0), fit(0), fit(1)
    assert one.rounds_[0]["student"] is not two.rounds_[0]["student"]
    assert fitted_fingerprint(one) == fitted_fingerprint(two)
    assert fitted_fingerprint(one) != fitted_fingerprint(other)
