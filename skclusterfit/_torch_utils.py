"""Small torch helpers shared by the estimators: devices, seeds, batching."""

import contextlib

import numpy as np
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


def torch_seed(random_state):
    """Draw a torch seed from a scikit-learn style ``random_state``."""
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


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


def batch_slices(n_samples, batch_size):
    """Yield ``slice`` objects covering ``range(n_samples)`` in order."""
    for start in range(0, n_samples, batch_size):
        yield slice(start, min(start + batch_size, n_samples))


def to_numpy_float32(tensor):
    return tensor.detach().to("cpu", torch.float32).numpy()


def autocast_context(device, enabled):
    """Mixed precision on CUDA (bf16 where supported, else fp16), off elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def check_finite_features(features, where):
    """Stop early, naming the batch, when a network emits NaN or inf."""
    if not torch.isfinite(features).all():
        raise ValueError(
            f"the network produced NaN or inf features in {where}; check the "
            "input scaling and the weights before clustering."
        )


__all__ = [
    "resolve_device",
    "torch_seed",
    "seeded",
    "batch_slices",
    "to_numpy_float32",
    "autocast_context",
    "check_finite_features",
]
