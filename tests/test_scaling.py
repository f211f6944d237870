"""Scaling parts that run in one process: shards, epoch shares, the launch rule,
and teacher features out of core (a disk memory map above ``feature_budget``).

The multi-process runs themselves are in test_distributed.py (torchrun).
"""

import glob
import os
import tempfile

import numpy as np
import torch
import pytest
from sklearn.cluster import KMeans as SklearnKMeans

from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
from skclusterfit import _stages
from skclusterfit.runtime import _ddp
from skclusterfit.runtime._out_of_core import NpyWriter, StreamingMap, parse_bytes
from skclusterfit.runtime import LOCAL, ProcessGroup, process_group, shard_bounds

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("n_samples", [2, 3, 7, 100, 1797])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
@pytest.mark.parametrize("align", [1, 4, 128])
def test_shards_are_contiguous_disjoint_and_complete(n_samples, world_size, align):
    if n_samples < world_size:
        with pytest.raises(ValueError, match=f"n_samples={n_samples}"):
            shard_bounds(n_samples, 0, world_size, align)
        return
    bounds = [shard_bounds(n_samples, rank, world_size, align) for rank in range(world_size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n_samples
    for (_, stop), (start, _) in zip(bounds, bounds[1:]):
        assert stop == start  # contiguous, in rank order: no gap, no duplicate
    sizes = [stop - start for start, stop in bounds]
    assert min(sizes) >= 1
    if -(-n_samples // align) >= world_size:
        # Every inner boundary falls on the teacher's batches.
        assert all(start % align == 0 for start, _ in bounds)
        assert max(sizes) - min(sizes) <= align
    else:
        assert max(sizes) - min(sizes) <= 1


def test_aligned_shards_split_the_teacher_batches():
    # 1257 rows, batches of 128: 10 batches, 5 per process.
    assert shard_bounds(1257, 0, 2, align=128) == (0, 640)
    assert shard_bounds(1257, 1, 2, align=128) == (640, 1257)
    assert _stages.shard_alignment(FeatureExtractor("cnn", batch_size=128)) == 128
    assert _stages.shard_alignment(SklearnKMeans()) == 1


@pytest.mark.parametrize("n_samples", [10, 97, 128, 130, 1000])
@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("batch_size", [4, 32])
def test_epoch_shares_are_disjoint_with_equal_steps(n_samples, world_size, batch_size):
    order = np.random.RandomState(0).permutation(n_samples)
    groups = [ProcessGroup(rank, world_size) for rank in range(world_size)]
    shares = [_ddp.epoch_share(order, batch_size, group) for group in groups]
    together = np.concatenate(shares)
    assert len(np.unique(together)) == len(together)  # no sample twice in an epoch
    dropped = n_samples - len(together)
    assert dropped < 2 * world_size  # at most a last global batch too small to split
    for share, group in zip(shares, groups):
        batches = [share[i : i + batch_size] for i in range(0, len(share), batch_size)]
        # The same number of steps on every process, each on >= 2 samples.
        assert len(batches) == _ddp.steps_per_epoch(n_samples, batch_size, group)
        assert all(len(batch) >= 2 for batch in batches)
    # Step s of every process comes from the same stretch of the global order.
    for step in range(len(shares[0]) // batch_size):
        stretch = order[step * batch_size * world_size : (step + 1) * batch_size * world_size]
        for share in shares:
            assert np.isin(share[step * batch_size : (step + 1) * batch_size], stretch).all()


def test_one_process_keeps_the_order_and_step_count():
    order = np.arange(10)[::-1]
    assert _ddp.epoch_share(order, 4, LOCAL) is order
    assert _ddp.steps_per_epoch(10, 4, LOCAL) == 3
    assert _ddp.process_seed(123, LOCAL) == 123
    assert _ddp.process_seed(123, ProcessGroup(1, 2)) != 123


def test_plain_python_is_one_process(no_torchrun):
    assert process_group("auto") is LOCAL
    assert process_group(False) is LOCAL
    with pytest.raises(ValueError, match="distributed=True"):
        process_group(True)


def test_torchrun_of_one_process_is_one_process(no_torchrun, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert process_group("auto") is LOCAL


def test_distributed_true_outside_torchrun_is_refused(no_torchrun, digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="distributed=True"):
        NetClassifier(max_epochs=1, distributed=True).fit(X, y)
    cf = ClusterFit(FeatureExtractor("cnn", random_state=0), K=5, distributed=True)
    with pytest.raises(ValueError, match="distributed=True"):
        cf.fit(X)


def test_a_clusterer_that_cannot_shard_is_refused_when_distributed():
    with pytest.raises(ValueError, match="cannot fit on teacher features split over 2"):
        _stages.check_distributable(SklearnKMeans(3), ProcessGroup(0, 2))
    _stages.check_distributable(SklearnKMeans(3), LOCAL)  # one process: anything goes


@pytest.mark.parametrize(
    "value, expected",
    [(0, 0), (4096, 4096), ("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1.5G", 15 * 10**8),
     ("100 kb", 100_000)],
)
def test_sizes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value", ["lots", "2 parsecs", 1.5, "-1GB"])
def test_bad_budget_is_refused_with_its_name(value, digits_small):
    X, _ = digits_small
    cf = ClusterFit(FeatureExtractor("cnn", random_state=0), K=5, feature_budget=value)
    with pytest.raises(ValueError, match="feature_budget"):
        cf.fit(X)


def test_npy_writer_writes_a_loadable_file(tmp_path):
    rows = np.random.RandomState(0).rand(10, 3).astype(np.float32)
    writer = NpyWriter(tmp_path / "a.npy", rows.shape, np.float16)
    writer[0:4] = rows[:4]
    with pytest.raises(ValueError, match="consecutive"):
        writer[6:8] = rows[6:8]
    writer[4:10] = rows[4:]
    mapped = writer.finish()
    assert isinstance(mapped, np.memmap) and mapped.dtype == np.float16
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), rows.astype(np.float16))


def _resident_file_bytes():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_streaming_map_does_not_stay_resident(tmp_path):
    """Sweeping a plain memory map leaves the file resident in the process; a
    StreamingMap keeps about one block."""
    path = tmp_path / "features.npy"
    rows = 1 << 15
    writer = NpyWriter(path, (rows, 1024), np.float32)  # 128 MiB, written without a map
    block = np.ones((4096, 1024), dtype=np.float32)
    for start in range(0, rows, len(block)):
        writer[start : start + len(block)] = block
    writer.finish()
    size = rows * 1024 * 4

    def sweep(X):
        before = _resident_file_bytes()
        total = 0.0
        for start in range(0, rows, 4096):
            total += float(X[start : start + 4096][:, 0].sum())
        assert total == rows
        return _resident_file_bytes() - before

    assert sweep(np.load(path, mmap_mode="r")) > size // 2  # why StreamingMap exists
    assert sweep(StreamingMap.open(path)) < size // 8

    # A sample of rows spread over the file (k-means seeding) maps their
    # neighbours too; taken a run at a time, little stays resident.
    sample = np.arange(0, rows, 7)
    X = StreamingMap.open(path)
    before = _resident_file_bytes()
    taken = X[sample]
    assert taken.shape == (len(sample), 1024) and type(taken) is np.ndarray
    assert _resident_file_bytes() - before < size // 8


def _clusterfit(**params):
    return ClusterFit(
        teacher=FeatureExtractor("cnn", random_state=0),
        K=10,
        student=NetClassifier(max_epochs=2),
        random_state=0,
        **params,
    )


@pytest.fixture(scope="module")
def in_memory(digits_small):
    X, _ = digits_small
    return _clusterfit().fit(X)


def test_features_above_the_budget_go_to_disk_and_give_the_same_fit(
    digits_small, in_memory, tmp_path, monkeypatch, capsys
):
    X, _ = digits_small
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out_of_core = _clusterfit(feature_budget=1000, verbose=1).fit(X)
    assert "(on disk)" in capsys.readouterr().out
    np.testing.assert_array_equal(out_of_core.labels_, in_memory.labels_)
    np.testing.assert_allclose(out_of_core.cluster_centers_, in_memory.cluster_centers_,
                               atol=1e-6)
    np.testing.assert_array_equal(out_of_core.transform(X), in_memory.transform(X))
    # The temporary folder of the features is gone once clustered.
    assert glob.glob(os.path.join(tmp_path, "skclusterfit-features-*")) == []


def test_out_of_core_features_become_the_checkpoint_file(digits_small, in_memory, tmp_path,
                                                        capsys):
    X, _ = digits_small
    directory = tmp_path / "run"
    first = _clusterfit(feature_budget=1000, checkpoint_dir=directory, verbose=1).fit(X)
    stored = np.load(directory / "teacher_features.npy")
    assert stored.shape == (len(X), 128)
    assert [name for name in os.listdir(directory) if name.endswith(".tmp")] == []
    capsys.readouterr()
    # Resumed: read back as a memory map (over the budget), same fit.
    again = _clusterfit(feature_budget=1000, checkpoint_dir=directory, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "resuming from teacher features" in out and "(on disk)" in out
    np.testing.assert_array_equal(again.labels_, first.labels_)
    np.testing.assert_array_equal(first.labels_, in_memory.labels_)
    # The budget says where the features live, not what they are: a larger one
    # resumes the same checkpoint, reading them into memory.
    larger = _clusterfit(checkpoint_dir=directory, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "resuming from teacher features" in out and "(on disk)" not in out
    np.testing.assert_array_equal(larger.labels_, first.labels_)


def test_float16_features(digits_small, in_memory, tmp_path):
    X, _ = digits_small
    directory = tmp_path / "run"
    half = _clusterfit(feature_dtype="float16", feature_budget=1000,
                       checkpoint_dir=directory).fit(X)
    assert np.load(directory / "teacher_features.npy").dtype == np.float16
    # Rounding the features to float16 moves few samples to another cluster.
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(half.labels_, in_memory.labels_) > 0.9
    # In memory (under the budget) float16 gives the same clusters as on disk.
    in_ram = _clusterfit(feature_dtype="float16").fit(X)
    np.testing.assert_array_equal(in_ram.labels_, half.labels_)


class _Images(torch.utils.data.Dataset):
    """A map-style Dataset of (image, target) pairs."""

    def __init__(self, X):
        self.X = X

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        return torch.from_numpy(self.X[index]), 0


def _image_paths(X, folder):
    from PIL import Image

    paths = []
    for i, image in enumerate(X):
        path = os.path.join(folder, f"{i:04d}.png")
        Image.fromarray((image[0] * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("kind", ["array", "memmap", "dataset", "paths", "frozen sklearn"])
def test_shards_of_any_input_give_the_one_process_features(kind, digits_small, tmp_path):
    """Each process extracts its own rows: the shards' features, concatenated in
    rank order, are the one-process features (any input, any teacher)."""
    from sklearn.decomposition import PCA
    from sklearn.frozen import FrozenEstimator

    from skclusterfit._validation import validate_input

    X, _ = digits_small
    X = X[:203]  # not divisible by the 3 processes, nor by the batch size
    teacher = FeatureExtractor("cnn", batch_size=16, random_state=0)
    if kind == "memmap":
        np.save(tmp_path / "X.npy", X)
        X = np.load(tmp_path / "X.npy", mmap_mode="r")
    elif kind == "dataset":
        X = _Images(X)
    elif kind == "paths":
        X = _image_paths(X, tmp_path)  # RGB images decoded by ImageFiles
    elif kind == "frozen sklearn":
        X = X.reshape(len(X), -1)
        teacher = FrozenEstimator(PCA(8, random_state=0).fit(X))
    X = validate_input(ClusterFit(), X, reset=True)
    if not isinstance(teacher, FrozenEstimator):
        teacher.fit(X)
    whole = _stages.transform_in_chunks(teacher, X)
    parts = [
        _stages.transform_in_chunks(teacher, _stages.feature_rows(teacher, X, ProcessGroup(r, 3)))
        for r in range(3)
    ]
    assert sum(len(part) for part in parts) == len(whole)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_student_checkpoint_of_two_processes_resumed_by_one_warns(digits_small, tmp_path):
    """A 2-process student checkpoint holds both processes' generators; one
    process resuming it goes on from the epoch, with a warning."""
    from skclusterfit.storage import EpochCheckpoint

    X, y = digits_small
    path = tmp_path / "student.pt"
    NetClassifier(max_epochs=1, random_state=0).fit(X, y, checkpoint=EpochCheckpoint(path))
    state = torch.load(path, weights_only=True)
    own = {key: state[key] for key in ("generator", "torch_rng", "cuda_rng")}
    state["ranks"] = [own, own]  # as written by process 0 of 2
    torch.save(state, path)
    resumed = NetClassifier(max_epochs=2, random_state=0)
    with pytest.warns(UserWarning, match="written by 2 process"):
        resumed.fit(X, y, checkpoint=EpochCheckpoint(path, log=lambda message: None))
    assert [epoch["epoch"] for epoch in resumed.history_] == [1, 2]
