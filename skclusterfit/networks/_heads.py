"""A network's classification head, found and split off; weights read from a file.

The one rule for every network: the head is the network's last module, and
only when it is an ``nn.Linear``. Model libraries find theirs through their
own API instead (``skclusterfit.networks._libraries``).
"""

import os

import torch
from torch import nn


def read_state_dict(path):
    """Read a state dict from a local file without executing pickled code."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file {path!r} does not exist.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(
            f"weights file {path!r} holds a {type(state).__name__}, not a state dict."
        )
    return state


def find_head(module, what="the network"):
    """Qualified name of the classification head (a final ``nn.Linear``), or None.

    The head is the network's last module (in registration order), and only
    when it is an ``nn.Linear``: torchvision classifiers (``fc``,
    ``classifier[-1]``, ``heads.head``) and ``nn.Sequential`` heads register
    it last. A network without any ``nn.Linear``, or whose last module is an
    ``nn.Identity`` (a head already removed), has none: its output is the
    feature. A network whose last linear layer is inside it (a transformer
    block's MLP before a final norm) is refused, naming ``layer=``: splitting
    there would give other features, or fail in the forward pass.
    """
    leaves = [(n, m) for n, m in module.named_modules() if n and not any(m.children())]
    linear = [n for n, m in leaves if isinstance(m, nn.Linear)]
    if not linear:
        return None
    last_name, last = leaves[-1]
    if isinstance(last, nn.Linear):
        return last_name
    if isinstance(last, nn.Identity):
        return None
    raise ValueError(
        f"{what} does not end in a linear classification head: its last module is "
        f"{last_name!r} ({type(last).__name__}), and its last nn.Linear "
        f"({linear[-1]!r}) is inside the network, where a split would give other "
        "features. Choose the feature layer by name with layer=... (a node or "
        "module name, e.g. "
        f"layer={last_name!r}), or pass a network whose last module is its head."
    )


def replace_submodule(module, name, new):
    parent_name, _, attr = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, attr, new)


def split_head(module, what="the network"):
    """Split ``module`` into (backbone, head); the head becomes ``nn.Identity``.

    Returns ``(module, None)`` when the network has no head (see
    :func:`find_head`): its output is then the feature.
    """
    head_name = find_head(module, what)
    if head_name is None:
        return module, None
    head = module.get_submodule(head_name)
    replace_submodule(module, head_name, nn.Identity())
    return module, head
