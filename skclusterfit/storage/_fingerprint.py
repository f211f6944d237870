"""Fingerprints of data, parameters and fitted state: the one place that says
when two fits, or two teachers, are the same.

Used by the checkpoint (is this directory a checkpoint of this fit?) and by
ClusterFit's ``memory`` cache (are these the features of this teacher?).
Nothing here is a cryptographic commitment to every byte of terabytes of
data: large arrays are sampled (see :func:`data_fingerprint`).
"""

import hashlib
import os

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from ..runtime._estimators import unfrozen
from ..data._sources import first_input
from ..data._image_files import ImageFiles

# Parameters that change how a fit reports or where it runs, not what it computes:
# a checkpoint stays valid when they change (e.g. resuming a CPU fit on a GPU,
# or with a larger feature_budget: the same features, in memory or on disk).
IGNORED_PARAMETERS = frozenset(
    {"verbose", "memory", "checkpoint_dir", "num_workers", "device", "distributed",
     "feature_budget"}
)
# Above this many bytes only a strided sample of rows is hashed (with the shape
# and dtype), so fingerprinting a memory-mapped dataset of terabytes stays cheap.
_FULL_HASH_BYTES = 2 * 2**30
_SAMPLED_ROWS = 4096


def data_fingerprint(X):
    """A SHA-256 of the training data (array, torch Dataset or image files).

    Arrays up to 2 GiB are hashed in full; larger ones (memory maps) by shape,
    dtype and a strided sample of 4096 rows. Datasets are hashed by length,
    type and a sample of items; image-file datasets by their paths, sizes and
    modification times.

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.storage import data_fingerprint
    >>> X = np.zeros((3, 2), dtype=np.float32)
    >>> data_fingerprint(X) == data_fingerprint(X.copy())
    True
    >>> data_fingerprint(X) == data_fingerprint(X + 1)
    False
    """
    digest = hashlib.sha256()
    if isinstance(X, ImageFiles):
        digest.update(X.fingerprint_text().encode())
        for path in X.paths:
            stat = os.stat(path)
            digest.update(f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()
    if isinstance(X, torch.utils.data.Dataset):
        n = len(X)
        digest.update(f"dataset|{type(X).__qualname__}|{n}".encode())
        for i in np.unique(np.linspace(0, n - 1, num=min(n, 64)).astype(np.int64)):
            item = first_input(X[int(i)]).detach().cpu().contiguous()
            digest.update(item.numpy().tobytes())
        return digest.hexdigest()
    X = np.asarray(X)
    digest.update(f"array|{X.dtype.str}|{X.shape}".encode())
    rows = np.arange(len(X))
    if X.nbytes > _FULL_HASH_BYTES:
        rows = np.unique(np.linspace(0, len(X) - 1, num=_SAMPLED_ROWS).astype(np.int64))
    block = max(1, 2**24 // max(1, X[:1].nbytes))  # ~16 MB of rows at a time
    for start in range(0, len(rows), block):
        digest.update(np.ascontiguousarray(X[rows[start : start + block]]).tobytes())
    return digest.hexdigest()


def describe_value(value):
    """A stable text for a parameter value (no memory addresses)."""
    if isinstance(value, nn.Module):
        state = {k: v.detach().cpu().numpy() for k, v in value.state_dict().items()}
        return f"{type(value).__qualname__}(weights sha256={hash_arrays(state)})"
    if isinstance(value, np.random.RandomState):
        return f"RandomState(state sha256={hash_arrays({'s': value.get_state()[1]})})"
    if isinstance(value, np.ndarray):
        return f"array(sha256={hash_arrays({'a': value})})"
    if hasattr(value, "get_params") and not isinstance(value, type):
        return type(value).__qualname__  # its parameters are listed on their own
    if callable(value) and not isinstance(value, type):
        module = getattr(value, "__module__", "")
        return f"{module}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return repr(value)


def hash_arrays(arrays):
    """A short SHA-256 of a dict of arrays: keys, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def fitted_fingerprint(estimator):
    """A hash of everything ``estimator`` learned or built in fit, recursively.

    Network weights (moved to the CPU, so the device does not matter), fitted
    arrays and the fitted state of nested estimators: the teacher's fitted
    state, not its name, defines the features, so a weight file replaced on
    disk, or a teacher retrained with the same parameters, changes the hash.
    Wall-clock timings (``stage_seconds_``, the seconds of each epoch) are
    left out: two equal fits have the same fingerprint.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skclusterfit.storage import fitted_fingerprint
    >>> X = np.random.RandomState(0).rand(20, 4)
    >>> fitted_fingerprint(PCA(2).fit(X)) == fitted_fingerprint(PCA(2).fit(X))
    True
    >>> fitted_fingerprint(PCA(2).fit(X)) == fitted_fingerprint(PCA(2).fit(X[::-1] ** 2))
    False
    """
    estimator = unfrozen(estimator)
    arrays = {}
    _collect_fitted(estimator, type(estimator).__qualname__, arrays)
    return hash_arrays(arrays)


# Wall-clock measurements kept beside what a fit learned (ClusterFit's
# stage_seconds_, the "seconds" of each epoch in history_): two equal fits
# differ in them, so they are no part of what the fit is.
_WALL_CLOCK = frozenset({"stage_seconds_", "seconds"})


def _collect_fitted(value, prefix, arrays):
    if isinstance(value, nn.Module):
        for key, tensor in value.state_dict().items():
            arrays[f"{prefix}.{key}"] = tensor.detach().cpu().numpy()
    elif isinstance(value, BaseEstimator):
        # Fitted attributes, and the estimators a meta-estimator holds as
        # parameters (a Pipeline's steps, a FrozenEstimator's estimator).
        for name, attribute in sorted(vars(value).items()):
            if name.startswith("_") or name in _WALL_CLOCK:
                continue
            if name.endswith("_") or _holds_estimator(attribute):
                _collect_fitted(attribute, f"{prefix}.{name}", arrays)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _collect_fitted(item, f"{prefix}[{index}]", arrays)
    elif isinstance(value, dict) and all(isinstance(key, str) for key in value):
        # e.g. ClusterFit.rounds_: its students by content, not by repr (whose
        # object addresses differ between processes and runs).
        for key in sorted(value):
            if key not in _WALL_CLOCK:  # e.g. the seconds of a history_ epoch
                _collect_fitted(value[key], f"{prefix}[{key!r}]", arrays)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        arrays[prefix] = value
    else:
        arrays[prefix] = np.frombuffer(describe_value(value).encode(), dtype=np.uint8)


def _holds_estimator(value):
    if isinstance(value, BaseEstimator):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_estimator(v) for v in value)


def parameter_fingerprint(estimator):
    """``{parameter: text}`` for every (nested) parameter that affects the result.

    Examples
    --------
    >>> from skclusterfit.cluster import KMeans
    >>> from skclusterfit.storage import parameter_fingerprint
    >>> parameter_fingerprint(KMeans(n_clusters=3))["n_clusters"]
    '3'
    >>> "verbose" in parameter_fingerprint(KMeans())
    False
    """
    params = estimator.get_params(deep=True)
    return {
        name: describe_value(value)
        for name, value in sorted(params.items())
        if name.rsplit("__", 1)[-1] not in IGNORED_PARAMETERS
    }


def estimator_fingerprint(estimator):
    """One hash of an estimator's class, parameters and fitted state.

    Two teachers with the same fingerprint compute the same features: the
    ``memory`` cache key and the checkpoint's teacher entry.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from skclusterfit.storage import estimator_fingerprint
    >>> X = np.random.RandomState(0).rand(20, 4)
    >>> estimator_fingerprint(PCA(2).fit(X)) == estimator_fingerprint(PCA(3).fit(X))
    False
    """
    inner = unfrozen(estimator)
    digest = hashlib.sha256()
    digest.update(type(inner).__qualname__.encode())
    for name, text in parameter_fingerprint(inner).items():
        digest.update(f"\n{name}={text}".encode())
    digest.update(f"\nfitted={fitted_fingerprint(inner)}".encode())
    return digest.hexdigest()
