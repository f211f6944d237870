"""Behaviour shared by the estimators that hold a torch network."""

import copy
import itertools

import numpy as np
import torch
from sklearn.base import ClassNamePrefixFeaturesOutMixin
from torch import nn

from .runtime._torch_utils import (
    autocast_context,
    check_deterministic,
    check_finite_features,
    to_channels_last,
    uses_channels_last,
)
from .data._sources import iter_batches


class TorchStateMixin:
    """Pickle networks on the CPU so a model fitted or built on a GPU loads anywhere.

    Every network the estimator holds is concerned: fitted attributes and
    parameters alike (``FeatureExtractor(model=net.cuda())``). Pickling never
    changes the object itself: a network that lives on a GPU is copied to the
    CPU for the pickle and stays where it is.
    """

    def __getstate__(self):
        # A copy: object.__getstate__ returns the instance's own __dict__.
        state = dict(super().__getstate__())
        for key, value in state.items():
            if isinstance(value, nn.Module) and _off_cpu(value):
                state[key] = copy.deepcopy(value).to("cpu")
        return state


def _off_cpu(module):
    tensors = itertools.chain(module.parameters(), module.buffers())
    return any(t.device.type != "cpu" for t in tensors)


class NetworkFeaturesMixin(ClassNamePrefixFeaturesOutMixin):
    """Transformers whose output is ``n_features_out_`` float32 network features.

    Feature names are ``<classname><i>``; the tags tell scikit-learn's checks
    that the output is float32 whatever the input dtype.
    """

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def prepare_network(network, device):
    """Move ``network`` to ``device`` in eval mode (channels-last where it pays).

    Channels-last applies to the 4-D (Conv2d) weights only, so video
    networks with Conv3d layers run too.
    """
    network.to(device).eval()
    if uses_channels_last(device):
        to_channels_last(network)
    return network


def to_device(x, device):
    """A batch on ``device`` (non-blocking from pinned memory), channels-last where used."""
    x = x.to(device, non_blocking=True)
    if x.ndim == 4 and uses_channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def run_network(
    network, source, *, batch_size, device, forward=None, preprocess=None,
    mixed_precision=True
):
    """Apply ``forward`` (default ``network``) batch by batch; float32 numpy out.

    No gradients are kept; batches go to the device with non-blocking copies
    from pinned memory when it is a GPU.
    """
    forward = forward or network
    check_deterministic(device)
    prepare_network(network, device)
    out = None
    with torch.inference_mode():
        for x, index in iter_batches(source, batch_size, pin_memory=device.type == "cuda"):
            x = to_device(x, device)
            if preprocess is not None:
                x = preprocess(x)
            with autocast_context(device, mixed_precision):
                result = forward(x)
            result = torch.flatten(result.float(), 1)
            check_finite_features(result, _describe_batch(index))
            if out is None:
                out = np.empty((len(source), result.shape[1]), dtype=np.float32)
            out[index] = result.cpu().numpy()
    if out is None:
        raise ValueError("cannot extract features from an empty input.")
    return out


def _describe_batch(index):
    if isinstance(index, slice):
        return f"the batch of samples {index.start}..{index.stop - 1}"
    return f"the batch of samples {int(index[0])}..{int(index[-1])}"
