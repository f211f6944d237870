"""The hardware paths of issue 22: what a GPU or a multi-GPU run would break.

Where the path can run on the CPU it does here: channels-last forced on the
CPU, the TF32 switches, a patched compute capability, torch.cuda functions
replaced, torch.distributed's group faked for the device rules. The rest is
``gpu``-marked (run by ``pytest -m gpu``, e.g. from benchmarks/gpu_check.sh).
Real 2-process runs are in tests/test_distributed_hardware.py.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from skclusterfit import FeatureExtractor, NetClassifier
from skclusterfit._base import prepare_network
from skclusterfit.cluster import KMeans, _exact_torch
from skclusterfit.cluster._rows import ArrayRows, StreamRows
from skclusterfit.runtime import _ddp, _distributed, _torch_utils
from skclusterfit.runtime._distributed import LOCAL, ProcessGroup, process_group
from skclusterfit.runtime._torch_utils import (
    autocast_dtype,
    check_deterministic,
    seeded,
)

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)

from conftest import selects_gpu_tests  # noqa: E402


class TinyVideoNet(nn.Module):
    """A Conv3d network on (n, T, C, H, W) clips, with a Conv2d over each frame after it."""

    def __init__(self, n_classes=3):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.frame = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, n_classes)

    def features(self, x):
        n, t = x.shape[:2]
        clips = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (n, T, 4, H, W)
        frames = self.frame(clips.flatten(0, 1))
        return frames.unflatten(0, (n, t)).mean(dim=(1, 3, 4))

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.fixture
def clips():
    from skclusterfit.data import make_moving_digits

    return make_moving_digits(24, n_frames=4, size=8, random_state=0)


# -- fault 1: channels-last and 3-D networks --------------------------------------


def test_channels_last_applies_to_4d_weights_only(clips, monkeypatch):
    """The GPU's channels-last path, forced on the CPU: a network with Conv3d
    layers trains and extracts (torch refuses channels_last for 5-D weights)."""
    monkeypatch.setattr(_torch_utils, "CHANNELS_LAST_DEVICE_TYPES", {"cuda", "cpu"})
    X, y = clips
    net = prepare_network(TinyVideoNet(), torch.device("cpu"))
    assert net.frame.weight.is_contiguous(memory_format=torch.channels_last)
    assert not net.frame.weight.is_contiguous()
    assert net.conv.weight.is_contiguous()
    clf = NetClassifier(TinyVideoNet(), max_epochs=1, batch_size=8, random_state=0).fit(X, y)
    assert clf.predict(X).shape == (len(X),)
    features = FeatureExtractor(TinyVideoNet(), weights=None, random_state=0).fit(X).transform(X)
    assert features.shape == (len(X), 8) and np.isfinite(features).all()


# -- fault 2: TF32 through torch's new API -----------------------------------------


@pytest.fixture
def restore_precision():
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.fp32_precision)
    legacy = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    yield
    torch.backends.fp32_precision = before[1]
    torch.backends.cuda.matmul.fp32_precision = before[0]
    # Written last through the legacy API, so that later legacy reads (other
    # tests, user code) do not see a "mix of the legacy and new APIs".
    torch.backends.cuda.matmul.allow_tf32 = legacy[0]
    torch.set_float32_matmul_precision(legacy[1])


@pytest.mark.parametrize("switch", ["matmul", "generic", "legacy"])
def test_tf32_allowed_by_any_api_gives_a_float64_final_pass(switch, restore_precision):
    cuda = torch.device("cuda")
    assert _exact_torch.exact_dtype(cuda) == torch.float32
    if switch == "matmul":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    elif switch == "generic":
        torch.backends.cuda.matmul.fp32_precision = "none"  # inherit the generic setting
        torch.backends.fp32_precision = "tf32"
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    assert _exact_torch.exact_dtype(cuda) == torch.float64
    assert _exact_torch.exact_dtype(torch.device("cpu")) == torch.float32


# -- fault 5: silent errors in the trainer ------------------------------------------


def test_batch_of_one_is_refused_with_batchnorm_and_trains_without(digits_small):
    X, y = digits_small
    X = X.reshape(len(X), -1)[:40]
    y = y[:40]
    with pytest.raises(ValueError, match="batch_size=1 .*BatchNorm"):
        NetClassifier("mlp", max_epochs=1, batch_size=1).fit(X, y)
    plain = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    clf = NetClassifier(plain, max_epochs=1, batch_size=1, random_state=0).fit(X, y)
    assert clf.history_[0]["loss"] > 0.1


def test_uint8_dataset_items_are_scaled_like_arrays(digits_small):
    X, _ = digits_small
    X8 = np.round(X[:50] * 255).astype(np.uint8)
    extractor = FeatureExtractor("cnn", random_state=0, device="cpu")
    from_array = extractor.fit(X8).transform(X8)
    dataset = TensorDataset(torch.from_numpy(X8))
    from_dataset = FeatureExtractor("cnn", random_state=0, device="cpu").fit(dataset)
    np.testing.assert_allclose(from_dataset.transform(dataset), from_array, rtol=1e-5, atol=1e-6)


# -- fault 4: the global batch under DDP ---------------------------------------------


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_distributed_steps_match_one_process(world_size):
    """batch_size is the global batch: W processes take as many steps per epoch
    as one, each on batch_size // W samples."""
    n, batch = 1000, 64
    for rank in range(world_size):
        group = ProcessGroup(rank, world_size)
        local = _ddp.local_batch_size(batch, group)
        assert local == batch // world_size
        assert _ddp.steps_per_epoch(n, local, group) == _ddp.steps_per_epoch(n, batch, LOCAL)
    with pytest.raises(ValueError, match="batch_size=3 is the global batch"):
        _ddp.local_batch_size(3, ProcessGroup(0, 2), min_batch=2)


# -- fault 6: the suite on the CPU; LOCAL_RANK against the GPUs -----------------------


def test_the_suite_is_pinned_to_the_cpu():
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == ""
    assert not torch.cuda.is_available()
    assert _torch_utils.resolve_device("auto") == torch.device("cpu")
    assert not selects_gpu_tests("not slow") and not selects_gpu_tests("")
    assert not selects_gpu_tests("not gpu")
    assert selects_gpu_tests("gpu") and selects_gpu_tests("gpu and slow")
    assert selects_gpu_tests("gpu or not slow")


@pytest.fixture
def torchrun_env(monkeypatch):
    for name, value in dict(RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                            MASTER_PORT="29999", LOCAL_RANK="1").items():
        monkeypatch.setenv(name, value)


def test_init_process_group_checks_local_rank_against_the_gpus(torchrun_env, monkeypatch):
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def set_device(index):
        raise AssertionError("set_device reached")

    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    with pytest.raises(RuntimeError, match=r"LOCAL_RANK=1, but only 1 CUDA device"):
        _distributed.init_process_group("cuda")


# -- fault 8: bf16 by the target device's compute capability ------------------------


@pytest.fixture
def two_gpus(monkeypatch):
    """GPU 0 an A100 (8.0), GPU 1 a V100 (7.0); torch says both 'support' bf16."""
    capabilities = {0: (8, 0), 1: (7, 0)}
    monkeypatch.setattr(torch.cuda, "get_device_capability",
                        lambda index=None: capabilities[0 if index is None else index])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


def test_autocast_and_kmeans_dtype_follow_the_target_gpu(two_gpus):
    a100, v100 = torch.device("cuda", 0), torch.device("cuda", 1)
    assert autocast_dtype(a100, True) == torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), True) == torch.bfloat16
    assert autocast_dtype(v100, True) == torch.float16  # with a GradScaler
    assert autocast_dtype(v100, "bfloat16") == torch.bfloat16  # asked for by name
    assert autocast_dtype(torch.device("cpu"), True) is None
    assert _exact_torch.iteration_dtype_for(a100) == torch.bfloat16
    assert _exact_torch.iteration_dtype_for(v100) is None
    assert _exact_torch.iteration_dtype_for(torch.device("cpu")) is None


# -- fault 9: parameters that are CUDA modules --------------------------------------


def test_pickling_moves_module_parameters_to_the_cpu(monkeypatch):
    """Every module the estimator holds is pickled from a CPU copy, not only fitted ones."""
    from skclusterfit import _base

    net = nn.Linear(3, 2)
    extractor = FeatureExtractor(model=net)
    monkeypatch.setattr(_base, "_off_cpu", lambda module: module is net)
    state = extractor.__getstate__()
    assert state["model"] is not net and isinstance(state["model"], nn.Linear)
    assert extractor.model is net


# -- fault 10: the user's CUDA generators ---------------------------------------------


def test_seeded_leaves_other_generators_alone(monkeypatch):
    touched = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: touched.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: touched.append(seed))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    touched.clear()
    with seeded(7, torch.device("cpu")):
        inside = torch.rand(3)
    with seeded(7, torch.device("cpu")):
        np.testing.assert_array_equal(torch.rand(3), inside)
    assert touched == []  # no CUDA generator seeded (not even lazily) by a CPU fit
    np.testing.assert_array_equal(torch.rand(3), expected)  # the user's stream goes on


def test_a_cpu_checkpoint_never_reads_the_gpus_generators(digits_small, tmp_path, monkeypatch):
    from skclusterfit.storage import _checkpoint

    X, y = digits_small
    # A machine with a GPU, as the checkpoint module sees it (torch's own
    # internals would try to start CUDA if every caller saw one).
    monkeypatch.setattr(
        torch.cuda, "is_available",
        lambda: sys._getframe(1).f_globals["__name__"] == _checkpoint.__name__,
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("a CPU fit read the CUDA generators")

    monkeypatch.setattr(torch.cuda, "get_rng_state_all", forbidden)
    monkeypatch.setattr(torch.cuda, "get_rng_state", forbidden)
    NetClassifier(max_epochs=1, device="cpu", random_state=0).fit(
        X[:100], y[:100], checkpoint=tmp_path / "student.pt"
    )
    assert (tmp_path / "student.pt").exists()


# -- fault 11: devices under torchrun --------------------------------------------------


@pytest.fixture
def fake_group(monkeypatch):
    """torch.distributed seen as initialised with 2 processes (nothing is started)."""
    backend = {"name": "gloo"}
    monkeypatch.setattr(_distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 0)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_backend", lambda *a: backend["name"])
    monkeypatch.setenv("LOCAL_RANK", "0")
    return backend


def test_explicit_gpu_index_under_torchrun_is_refused(fake_group):
    with pytest.raises(ValueError, match="would put every process on GPU 1"):
        process_group("auto", torch.device("cuda", 1))
    assert process_group("auto", torch.device("cuda", 0)).world_size == 2  # its own GPU
    assert process_group("auto", torch.device("cuda")).world_size == 2


def test_cpu_fit_in_an_nccl_group_is_refused(fake_group):
    assert process_group("auto", torch.device("cpu")).world_size == 2  # gloo
    fake_group["name"] = "nccl"
    with pytest.raises(ValueError, match="device='cpu', but .* NCCL"):
        process_group("auto", torch.device("cpu"))


# -- fault 12: deterministic algorithms on CUDA -----------------------------------------


def test_deterministic_mode_fails_early_with_what_cuda_needs(monkeypatch):
    import torchvision

    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    monkeypatch.setattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cuda = torch.device("cuda")
    check_deterministic(torch.device("cpu"), torchvision.models.resnet18())  # the CPU is fine
    with pytest.raises(RuntimeError, match="CUBLAS_WORKSPACE_CONFIG=:4096:8"):
        check_deterministic(cuda)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    check_deterministic(cuda)  # inference
    with pytest.raises(RuntimeError, match="AdaptiveAvgPool2d .*'avgpool'"):
        check_deterministic(cuda, torchvision.models.resnet18())
    from skclusterfit.networks import SmallCNN

    check_deterministic(cuda, SmallCNN())  # the built-in CNN pools with a mean


def test_builtin_cnn_pools_as_before():
    from skclusterfit.networks import SmallCNN

    net = SmallCNN().eval()
    x = torch.rand(4, 1, 8, 8)
    reference = nn.AdaptiveAvgPool2d(1)(net.features[:3](x)).flatten(1)
    torch.testing.assert_close(net.features(x), reference)


# -- fault 7: what the GPU persistence test compares -------------------------------------


def test_amp_output_is_compared_in_float32(tmp_path):
    """A GPU fit's transform runs under bf16 autocast (forced here on the CPU);
    the loaded model, on the CPU, in float32. The old check (rtol=1e-2) fails
    on those outputs (6% of them here); the model itself round-trips exactly,
    and float32 outputs agree tightly: what the GPU test now compares."""
    import skclusterfit
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:200].astype(np.float32), y[:200]
    clf = NetClassifier(max_epochs=1, mixed_precision=False, random_state=0).fit(X, y)
    loaded = skclusterfit.load(clf.save(tmp_path / "clf.skcf"), device="cpu")
    amp = clf.set_params(mixed_precision="bfloat16").transform(X)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(loaded.transform(X), amp, rtol=1e-2, atol=1e-3)
    for name, value in clf.model_.state_dict().items():
        torch.testing.assert_close(loaded.model_.state_dict()[name], value, rtol=0, atol=0)
    clf.set_params(mixed_precision=False)
    np.testing.assert_allclose(loaded.transform(X), clf.transform(X), rtol=1e-5, atol=1e-6)


# -- the k-means engine: host synchronisations and data held on the device --------------


_SYNCS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__",
          "nonzero")


@pytest.fixture
def count_syncs(monkeypatch):
    """Count the calls that read a device value on the host, outside to_host."""
    counts = {"to_host": 0, "other": []}
    inside = []
    for name in _SYNCS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, _name=name, **kwargs):
            if not inside:
                counts["other"].append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    original_bincount = torch.bincount

    def bincount(*args, **kwargs):
        counts["other"].append("bincount")
        return original_bincount(*args, **kwargs)

    monkeypatch.setattr(torch, "bincount", bincount)
    original_to_host = _exact_torch.to_host

    def to_host(tensors):
        counts["to_host"] += 1
        inside.append(True)
        try:
            return original_to_host(tensors)
        finally:
            inside.pop()

    monkeypatch.setattr(_exact_torch, "to_host", to_host)
    return counts


@pytest.mark.parametrize("iteration_dtype", [None, torch.bfloat16])
def test_kmeans_waits_for_the_device_once_per_iteration(count_syncs, iteration_dtype):
    rng = np.random.RandomState(0)
    X = rng.randn(1000, 8).astype(np.float32)
    init = X[rng.choice(len(X), 20, replace=False)].copy()
    result = _exact_torch.lloyd_torch(
        ArrayRows(X), init, max_iter=4, tol=0.0, comm=LOCAL, device=torch.device("cpu"),
        chunk_size=64, iteration_dtype=iteration_dtype,  # 16 chunks per pass
    )
    assert result.n_iter == 4
    assert count_syncs["other"] == []
    # One wait per iteration, one for the final labels and inertia.
    assert count_syncs["to_host"] == result.n_iter + 1


def _stream_rows(X, passes):
    rows = StreamRows(X, lambda raw, shift, out: np.subtract(raw, 0, out=out), X.shape[1],
                      block_rows=500)
    original = rows.blocks

    def blocks(block_rows=None):
        passes.append(block_rows)
        return original(block_rows)

    rows.blocks = blocks
    return rows


@pytest.mark.parametrize("free, held", [(10**12, True), (10**5, False)])
def test_rows_that_fit_the_device_are_read_once(monkeypatch, free, held):
    """The hold rule, run on the CPU with the device's free memory patched: rows
    within HOLD_SHARE of it are read once and held; otherwise every pass streams."""
    monkeypatch.setattr(_exact_torch, "free_device_memory", lambda device: free)
    rng = np.random.RandomState(0)
    X = rng.randn(2000, 8).astype(np.float32)
    init = X[:10].copy()
    passes = []
    streamed = _exact_torch.lloyd_torch(
        _stream_rows(X, passes), init, max_iter=3, tol=0.0, comm=LOCAL,
        device=torch.device("cpu"), chunk_size=256,
    )
    if held:
        assert len(passes) == 1
    else:
        assert len(passes) >= 2 * streamed.n_iter
    in_memory = _exact_torch.lloyd_torch(
        ArrayRows(X.copy()), init, max_iter=3, tol=0.0, comm=LOCAL,
        device=torch.device("cpu"), chunk_size=256,
    )
    np.testing.assert_array_equal(streamed.labels, in_memory.labels)
    np.testing.assert_allclose(streamed.centers, in_memory.centers, rtol=1e-6)


def test_gpu_chunks_are_sized_from_free_memory(monkeypatch):
    assert _exact_torch.auto_chunk_size(20000, device=torch.device("cpu")) == 419
    monkeypatch.setattr(_exact_torch, "free_device_memory", lambda device: 60 * 2**30)
    # 2 GiB of float32 distances at K = 20,000: 26,843 rows, 38 chunks per million rows.
    assert _exact_torch.auto_chunk_size(20000, device=torch.device("cuda")) == 26843
    monkeypatch.setattr(_exact_torch, "free_device_memory", lambda device: 2**30)
    assert _exact_torch.auto_chunk_size(20000, device=torch.device("cuda")) == 2**28 // 80000
    assert _exact_torch.auto_chunk_size(20000, 100, torch.device("cuda")) == 100


def test_predict_uploads_the_centres_once(monkeypatch):
    X = np.random.RandomState(0).randn(70000, 4).astype(np.float32)  # two 65,536-row blocks
    km = KMeans(5, max_iter=2, normalize=False, device="cpu", backend="torch", random_state=0)
    km.fit(X[:2000])
    uploads = []
    original = _exact_torch.to_device

    def to_device(array, device):
        uploads.append(array.shape)
        return original(array, device)

    monkeypatch.setattr(_exact_torch, "to_device", to_device)
    labels = km.predict(X)
    assert uploads == [(5, 4)]
    np.testing.assert_array_equal(labels[:2000], km.labels_)


# -- on a GPU -------------------------------------------------------------------------


def _run_without_gpu(script, *args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, check=True)


@pytest.mark.gpu
def test_gpu_module_parameter_pickles_for_a_cpu_machine(tmp_path):
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).cuda()
    extractor = FeatureExtractor(model=net, device="cuda")
    (tmp_path / "e.pkl").write_bytes(pickle.dumps(extractor))
    assert next(extractor.model.parameters()).is_cuda  # the object is unchanged
    _run_without_gpu(
        "import pickle, sys, torch\n"
        "e = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "assert not next(e.model.parameters()).is_cuda\n",
        tmp_path / "e.pkl",
    )


@pytest.mark.gpu
def test_gpu_and_cpu_copies_of_a_module_compare():
    """Saving compares user modules to store a copy once; a GPU module and its
    CPU copy sit on two devices, where torch.equal raises."""
    import copy

    from skclusterfit.storage._persistence import _same_module

    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cpu_copy = copy.deepcopy(net)
    assert _same_module(net.cuda(), cpu_copy)
    with torch.no_grad():
        cpu_copy[0].weight[0, 0] += 1
    assert not _same_module(net, cpu_copy)


@pytest.mark.gpu
def test_gpu_video_network_trains_and_extracts(clips):
    X, y = clips
    NetClassifier(TinyVideoNet(), max_epochs=1, batch_size=8, device="cuda").fit(X, y)
    from skclusterfit.networks import VideoModel

    extractor = FeatureExtractor(VideoModel("r3d_18", clip_length=4, n_clips=1),
                                 weights=None, device="cuda", random_state=0)
    assert np.isfinite(extractor.fit(X).transform(X)).all()


@pytest.mark.gpu
def test_gpu_kmeans_holds_the_rows_and_waits_once_per_iteration(count_syncs):
    rng = np.random.RandomState(0)
    X = rng.randn(20000, 32).astype(np.float32)
    init = X[:100].copy()
    result = _exact_torch.lloyd_torch(
        ArrayRows(X), init, max_iter=5, tol=0.0, comm=LOCAL,
        device=torch.device("cuda"), chunk_size=1000,
        iteration_dtype=_exact_torch.iteration_dtype_for(torch.device("cuda")),
    )
    assert count_syncs["other"] == []
    assert count_syncs["to_host"] == result.n_iter + 1
    expected = _exact_torch.lloyd_torch(
        ArrayRows(X.copy()), init, max_iter=5, tol=0.0, comm=LOCAL,
        device=torch.device("cpu"), iteration_dtype=None,
    )
    assert abs(result.inertia / expected.inertia - 1) < 1e-3


@pytest.mark.gpu
def test_gpu_streamed_rows_match_held_rows(monkeypatch):
    rng = np.random.RandomState(0)
    X = rng.randn(50000, 64).astype(np.float32)
    init = X[:50].copy()
    cuda = torch.device("cuda")
    held = _exact_torch.lloyd_torch(ArrayRows(X.copy()), init, max_iter=3, tol=0.0,
                                    comm=LOCAL, device=cuda)
    monkeypatch.setattr(_exact_torch, "HOLD_SHARE", 0.0)
    monkeypatch.setattr("skclusterfit.cluster._exact_torch.default_block_rows",
                        lambda n_features: 4096)  # 13 pinned blocks per pass
    streamed = _exact_torch.lloyd_torch(ArrayRows(X.copy()), init, max_iter=3, tol=0.0,
                                        comm=LOCAL, device=cuda)
    np.testing.assert_array_equal(streamed.labels, held.labels)
    np.testing.assert_allclose(streamed.centers, held.centers, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_gpu_deterministic_training_with_the_builtin_cnn(digits_small):
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        pytest.skip("set CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting Python")
    X, y = digits_small
    torch.use_deterministic_algorithms(True)
    try:
        fits = [NetClassifier(max_epochs=1, device="cuda", random_state=0).fit(X, y)
                for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(False)
    np.testing.assert_array_equal(fits[0].transform(X), fits[1].transform(X))
