"""Small torch helpers shared by the estimators: devices, seeds, batching."""

import contextlib
import itertools
import os

import torch
from sklearn.utils import check_random_state


def resolve_device(device):
    """Turn the user's ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` picks CUDA when a GPU is visible, else the CPU. Any other
    string must name a device torch knows and that exists on this machine.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a device torch knows; use 'auto', 'cpu', "
            "'cuda' or 'cuda:N'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but no CUDA device is visible "
                "on this machine; use device='auto' or 'cpu'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} was requested but MPS is not available.")
    return resolved


def draw_seed(random_state):
    """One integer seed in [0, 2**31 - 1) drawn from a scikit-learn ``random_state``.

    The one way the package turns a ``random_state`` (None, an int or a
    RandomState, which advances) into the seed of a torch generator or of a
    component it builds.

    Examples
    --------
    >>> from skclusterfit.runtime._torch_utils import draw_seed
    >>> draw_seed(0) == draw_seed(0)
    True
    """
    return int(check_random_state(random_state).randint(2**31 - 1))


@contextlib.contextmanager
def seeded(seed, device):
    """Run a block under ``seed`` without disturbing the caller's global RNG.

    Weight initialisation and dropout draw from torch's global generator, so
    we fork it: a fit is reproducible and leaves the user's RNG untouched.
    Only the generators this block uses are seeded and restored: the CPU's,
    and on a CUDA ``device`` that GPU's. ``torch.manual_seed`` would also
    seed every other GPU (lazily, even when CUDA is not yet initialised),
    which ``fork_rng`` does not restore.
    """
    cuda_index = None
    if device.type == "cuda":
        cuda_index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.random.fork_rng(devices=[] if cuda_index is None else [cuda_index]):
        torch.random.default_generator.manual_seed(seed)
        if cuda_index is not None:
            torch.cuda.default_generators[cuda_index].manual_seed(seed)
        yield


# Device types whose 4-D batches and networks use the channels-last memory
# format (faster convolutions on CUDA tensor cores). Tests add "cpu" to run
# the same code path on a machine without a GPU.
CHANNELS_LAST_DEVICE_TYPES = {"cuda"}

_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def uses_channels_last(device):
    """Whether batches and networks on ``device`` use the channels-last format."""
    return device.type in CHANNELS_LAST_DEVICE_TYPES


def to_channels_last(network):
    """Put the 4-D weights of ``network`` (Conv2d) in the channels-last format, in place.

    ``network.to(memory_format=torch.channels_last)`` refuses a network with
    5-D weights (Conv3d: "required rank 4 tensor"); the 5-D weights of a
    video network keep torch's default format here (``channels_last_3d`` has
    not been measured to pay for them).
    """
    with torch.no_grad():
        for tensor in itertools.chain(network.parameters(), network.buffers()):
            if tensor.ndim == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return network


def cuda_capability(device):
    """The compute capability ``(major, minor)`` of the CUDA ``device`` (not the current one)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_capability(index)


def has_native_bf16(device):
    """Whether the CUDA ``device`` computes in bfloat16 natively (Ampere, capability 8.0, on).

    ``torch.cuda.is_bf16_supported()`` also counts emulation (T4, V100) and
    asks about the current device, not the one a fit runs on.
    """
    return cuda_capability(device) >= (8, 0)


def autocast_dtype(device, mixed_precision):
    """The autocast dtype for ``mixed_precision`` on ``device``, or None for float32.

    ``True`` means bf16 on a CUDA device with native bf16 (capability 8.0 or
    more: A100, H100, RTX 30xx on), fp16 with loss scaling on older ones
    (V100, T4), and float32 on other devices (CPU autocast is rarely faster
    for small networks);
    ``"bfloat16"`` or ``"float16"`` force that dtype on any device, which
    also lets the CPU run the GPU's mixed-precision code path.
    """
    if isinstance(mixed_precision, str):
        return _AUTOCAST_DTYPES[mixed_precision]
    if mixed_precision and device.type == "cuda":
        return torch.bfloat16 if has_native_bf16(device) else torch.float16
    return None


def autocast_context(device, mixed_precision):
    """Autocast to :func:`autocast_dtype`'s dtype, or a no-op for float32."""
    dtype = autocast_dtype(device, mixed_precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# What torch.use_deterministic_algorithms(True) needs from cuBLAS on CUDA.
_CUBLAS_WORKSPACE_CONFIGS = (":4096:8", ":16:8")
# Layers whose backward pass torch refuses on CUDA in deterministic mode
# (the list in torch.use_deterministic_algorithms's documentation).
_NO_DETERMINISTIC_CUDA_BACKWARD = (
    torch.nn.AdaptiveAvgPool2d,
    torch.nn.AdaptiveAvgPool3d,
    torch.nn.AdaptiveMaxPool2d,
    torch.nn.AvgPool3d,
    torch.nn.MaxPool3d,
    torch.nn.FractionalMaxPool2d,
    torch.nn.FractionalMaxPool3d,
)


def check_deterministic(device, network=None):
    """Fail before any work when deterministic algorithms cannot run on ``device``.

    With ``torch.use_deterministic_algorithms(True)`` (not ``warn_only``),
    CUDA matrix products need ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (or
    ``:16:8``) set before the process starts, and the backward pass of
    ``AdaptiveAvgPool2d`` (the pooling of ResNets) has no deterministic CUDA
    kernel: torch would stop at the first product or the first backward.
    ``network`` is the network to be trained (None for inference).
    """
    if device.type != "cuda" or not torch.are_deterministic_algorithms_enabled():
        return
    if torch.is_deterministic_algorithms_warn_only_enabled():
        return
    config = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if config not in _CUBLAS_WORKSPACE_CONFIGS:
        raise RuntimeError(
            "torch.use_deterministic_algorithms(True) is on, and CUDA matrix products "
            "are deterministic only with the environment variable "
            f"CUBLAS_WORKSPACE_CONFIG=:4096:8 (or :16:8); it is {config!r}. Set it "
            "before starting Python, or use "
            "torch.use_deterministic_algorithms(True, warn_only=True)."
        )
    if network is None:
        return
    refused = [
        (name, type(module).__name__) for name, module in network.named_modules()
        if isinstance(module, _NO_DETERMINISTIC_CUDA_BACKWARD)
    ]
    if refused:
        name, kind = refused[0]
        raise RuntimeError(
            "torch.use_deterministic_algorithms(True) is on, but the backward pass of "
            f"{kind} (module {name!r} of the network) has no deterministic CUDA "
            "implementation, so training would stop at its first step; use "
            "torch.use_deterministic_algorithms(True, warn_only=True), or train on "
            "the CPU."
        )


def check_finite_features(features, where):
    """Stop early, naming the batch, when a network emits NaN or inf."""
    if not torch.isfinite(features).all():
        raise ValueError(
            f"the network produced NaN or inf features in {where}; check the "
            "input scaling and the weights before clustering."
        )


__all__ = [
    "autocast_context",
    "autocast_dtype",
    "check_deterministic",
    "check_finite_features",
    "cuda_capability",
    "draw_seed",
    "has_native_bf16",
    "resolve_device",
    "seeded",
    "to_channels_last",
    "uses_channels_last",
]
