"""Small torch helpers shared by the estimators: devices, seeds, batching."""

import contextlib

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
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# Device types whose 4-D batches and networks use the channels-last memory
# format (faster convolutions on CUDA tensor cores). Tests add "cpu" to run
# the same code path on a machine without a GPU.
CHANNELS_LAST_DEVICE_TYPES = {"cuda"}

_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def uses_channels_last(device):
    """Whether batches and networks on ``device`` use the channels-last format."""
    return device.type in CHANNELS_LAST_DEVICE_TYPES


def autocast_dtype(device, mixed_precision):
    """The autocast dtype for ``mixed_precision`` on ``device``, or None for float32.

    ``True`` means bf16 on CUDA where supported, else fp16, and float32 on
    other devices (CPU autocast is rarely faster for small networks);
    ``"bfloat16"`` or ``"float16"`` force that dtype on any device, which
    also lets the CPU run the GPU's mixed-precision code path.
    """
    if isinstance(mixed_precision, str):
        return _AUTOCAST_DTYPES[mixed_precision]
    if mixed_precision and device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast_context(device, mixed_precision):
    """Autocast to :func:`autocast_dtype`'s dtype, or a no-op for float32."""
    dtype = autocast_dtype(device, mixed_precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
    "check_finite_features",
    "draw_seed",
    "resolve_device",
    "seeded",
    "uses_channels_last",
]
