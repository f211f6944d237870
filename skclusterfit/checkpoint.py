"""Checkpoints that let a long fit survive interruption and resume where it stopped.

A ClusterFit fit has three stages: teacher features, cluster assignment, and
student epochs. With ``checkpoint_dir`` each completed stage (and each student
epoch) is written to that directory; fitting again with the same data and
parameters picks up from the last completed one. Layout::

    checkpoint_dir/
      fingerprint.json        data and parameter fingerprint of the fit
      teacher_features.npy    stage 1: (n_samples, n_teacher_features) float32
      clusterer.skcf          stage 2: the fitted clusterer (skclusterfit.save)
      clusters.npz            stage 2: labels and centres (written last)
      student.pt              stage 3: epoch, network, optimizer, scheduler,
                              loss scaler and every random generator's state

Every file is written to a temporary name in the same directory and renamed
over the final name (``os.replace``), so a file under its final name is always
complete: a fit killed mid-write leaves at most a ``.*.tmp`` file, which the
next fit removes. Nothing is unpickled on reading: arrays are read with
``allow_pickle=False`` and ``student.pt`` with ``torch.load(weights_only=True)``.

Examples
--------
>>> import tempfile
>>> from sklearn.datasets import load_digits
>>> from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
>>> X = load_digits().data[:300].astype("float32")
>>> def clusterfit(directory):
...     return ClusterFit(
...         teacher=FeatureExtractor("mlp", random_state=0), K=10,
...         student=NetClassifier(max_epochs=2), random_state=0,
...         checkpoint_dir=directory, verbose=1,
...     )
>>> directory = tempfile.mkdtemp()
>>> first = clusterfit(directory).fit(X)  # doctest: +ELLIPSIS
[ClusterFit] teacher features (300, 128) in ...
>>> again = clusterfit(directory).fit(X)  # doctest: +ELLIPSIS
[ClusterFit] resuming from teacher features in ...teacher_features.npy
...
[ClusterFit] resuming from epoch 2 of the student in ...student.pt
...
>>> bool((again.transform(X) == first.transform(X)).all())
True
"""

import contextlib
import glob
import hashlib
import json
import os
import tempfile
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.frozen import FrozenEstimator
from torch import nn

from .data import first_input

FINGERPRINT_FILE = "fingerprint.json"
FEATURES_FILE = "teacher_features.npy"
CLUSTERS_FILE = "clusters.npz"
CLUSTERER_FILE = "clusterer.skcf"
STUDENT_FILE = "student.pt"
_STAGE_FILES = (FEATURES_FILE, CLUSTERS_FILE, CLUSTERER_FILE, STUDENT_FILE)

# Parameters that change how a fit reports or where it runs, not what it computes:
# a checkpoint stays valid when they change (e.g. resuming a CPU fit on a GPU).
_IGNORED_PARAMETERS = {"verbose", "memory", "checkpoint_dir", "num_workers", "device"}
# Above this many bytes only a strided sample of rows is hashed (with the shape
# and dtype), so fingerprinting a memory-mapped dataset of terabytes stays cheap.
_FULL_HASH_BYTES = 2 * 2**30
_SAMPLED_ROWS = 4096


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file, then rename it to ``path``.

    A reader never sees a partial file under ``path``: an interruption (even
    KeyboardInterrupt) removes the temporary file and leaves any previous
    ``path`` untouched; SIGKILL leaves a ``.*.tmp`` file beside it.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
    # Makes the rename itself durable across a power loss; not possible everywhere.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def data_fingerprint(X):
    """A SHA-256 of the training data (array, torch Dataset or image files).

    Arrays up to 2 GiB are hashed in full; larger ones (memory maps) by shape,
    dtype and a strided sample of 4096 rows. Datasets are hashed by length,
    type and a sample of items; image-file datasets by their paths, sizes and
    modification times.
    """
    from .image_files import ImageFiles

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
        return f"{type(value).__qualname__}(weights sha256={_hash_arrays(state)})"
    if isinstance(value, np.random.RandomState):
        return f"RandomState(state sha256={_hash_arrays({'s': value.get_state()[1]})})"
    if isinstance(value, np.ndarray):
        return f"array(sha256={_hash_arrays({'a': value})})"
    if hasattr(value, "get_params") and not isinstance(value, type):
        return type(value).__qualname__  # its parameters are listed on their own
    if callable(value) and not isinstance(value, type):
        module = getattr(value, "__module__", "")
        return f"{module}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return repr(value)


def _hash_arrays(arrays):
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
    """
    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    arrays = {}
    _collect_fitted(estimator, type(estimator).__qualname__, arrays)
    return _hash_arrays(arrays)


def _collect_fitted(value, prefix, arrays):
    if isinstance(value, nn.Module):
        for key, tensor in value.state_dict().items():
            arrays[f"{prefix}.{key}"] = tensor.detach().cpu().numpy()
    elif isinstance(value, BaseEstimator):
        # Fitted attributes, and the estimators a meta-estimator holds as
        # parameters (a Pipeline's steps, a FrozenEstimator's estimator).
        for name, attribute in sorted(vars(value).items()):
            if name.startswith("_"):
                continue
            if name.endswith("_") or _holds_estimator(attribute):
                _collect_fitted(attribute, f"{prefix}.{name}", arrays)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _collect_fitted(item, f"{prefix}[{index}]", arrays)
    elif isinstance(value, np.ndarray) and value.dtype != object:
        arrays[prefix] = value
    else:
        arrays[prefix] = np.frombuffer(describe_value(value).encode(), dtype=np.uint8)


def _holds_estimator(value):
    if isinstance(value, BaseEstimator):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_estimator(v) for v in value)


def parameter_fingerprint(estimator):
    """``{parameter: text}`` for every (nested) parameter that affects the result."""
    params = estimator.get_params(deep=True)
    return {
        name: describe_value(value)
        for name, value in sorted(params.items())
        if name.rsplit("__", 1)[-1] not in _IGNORED_PARAMETERS
    }


class FitCheckpoint:
    """The checkpoint directory of one ClusterFit fit.

    Parameters
    ----------
    directory : str or path
        Created if missing.
    fingerprint : dict
        ``{"data": str, "parameters": {name: text}}``; an existing checkpoint
        with another fingerprint is refused.
    log : callable
        Receives one-line progress messages ("resuming from ...").
    """

    def __init__(self, directory, fingerprint, log=print):
        self.directory = os.fspath(directory)
        self.fingerprint = fingerprint
        self.log = log
        os.makedirs(self.directory, exist_ok=True)
        self._remove_stale_temporaries()
        self._check_fingerprint()

    def path(self, name):
        return os.path.join(self.directory, name)

    def _remove_stale_temporaries(self):
        # Left by a process killed mid-write; never mistaken for a stage.
        for tmp in glob.glob(os.path.join(glob.escape(self.directory), ".*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _check_fingerprint(self):
        path = self.path(FINGERPRINT_FILE)
        if not os.path.exists(path):
            stages = [name for name in _STAGE_FILES if os.path.exists(self.path(name))]
            if stages:  # written first, so its absence means these came from elsewhere
                raise ValueError(
                    f"checkpoint_dir={self.directory!r} holds {', '.join(stages)} but no "
                    f"{FINGERPRINT_FILE}, so they cannot be matched to this fit; use an "
                    "empty directory."
                )
            atomic_write(path, lambda f: f.write(json.dumps(self.fingerprint, indent=1).encode()))
            return
        with open(path, encoding="utf-8") as file:
            stored = json.load(file)
        if stored.get("data") != self.fingerprint["data"]:
            raise ValueError(
                f"checkpoint_dir={self.directory!r} holds a checkpoint of a fit on "
                "other data; use another checkpoint_dir, or delete this one to "
                "start over."
            )
        mine, theirs = self.fingerprint["parameters"], stored.get("parameters", {})
        differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if differing:
            details = "; ".join(
                f"{k}: {theirs.get(k, '<absent>')} there, {mine.get(k, '<absent>')} here"
                for k in differing[:5]
            )
            raise ValueError(
                f"checkpoint_dir={self.directory!r} holds a checkpoint of a fit with "
                f"other parameters ({details}); use another checkpoint_dir, or "
                "delete this one to start over."
            )

    # -- stage 1: teacher features -------------------------------------------------
    def load_features(self):
        path = self.path(FEATURES_FILE)
        if not os.path.exists(path):
            return None
        self.log(f"resuming from teacher features in {path}")
        return np.load(path, allow_pickle=False)

    def save_features(self, features):
        atomic_write(self.path(FEATURES_FILE), lambda f: np.save(f, features, allow_pickle=False))

    # -- stage 2: cluster assignment -----------------------------------------------
    def load_clusters(self):
        path = self.path(CLUSTERS_FILE)
        if not os.path.exists(path):
            return None
        from .persistence import load

        try:
            clusterer = load(self.path(CLUSTERER_FILE))
        except (OSError, ValueError) as exc:
            # Without the fitted clusterer, clusterer_ would be unfitted: cluster again.
            self.log(f"clustering again: the fitted clusterer cannot be restored ({exc})")
            return None
        with np.load(path, allow_pickle=False) as stored:
            labels, centers = stored["labels"], stored["centers"]
        self.log(f"resuming from the cluster assignment in {path}")
        return labels, centers, clusterer

    def save_clusters(self, labels, centers, clusterer):
        from .persistence import save

        try:
            save(clusterer, self.path(CLUSTERER_FILE))
        except TypeError as exc:  # a clusterer holding objects save() cannot store
            self.log(f"the cluster stage is not checkpointed: {exc}")
            return
        # Written last: its presence marks the stage complete.
        atomic_write(
            self.path(CLUSTERS_FILE),
            lambda f: np.savez(f, labels=labels, centers=centers),
        )

    # -- stage 3: student epochs ------------------------------------------------------
    def student(self):
        """The per-epoch checkpoint of the student's training."""
        return EpochCheckpoint(self.path(STUDENT_FILE), log=self.log)


class EpochCheckpoint:
    """Save and restore the state of a training loop after every epoch.

    Holds everything the next epoch depends on: the epoch reached, the loss
    history, the network, optimizer, learning-rate scheduler and loss scaler
    state, and the state of every random generator (the numpy RandomState
    that orders the epochs, the torch Generator of the augmentation, and
    torch's global CPU and CUDA generators used by dropout). Resuming from it
    gives the same weights as never stopping.

    Parameters
    ----------
    path : str or path
        File to write (torch.save of tensors and plain values only).
    fingerprint : str or None, default=None
        Stored in the file; a file with another fingerprint is refused.
    log : callable, default=print
        Receives "resuming from ..." messages.
    """

    def __init__(self, path, fingerprint=None, log=print):
        self.path = os.fspath(path)
        self.fingerprint = fingerprint
        self.log = log

    def restore(self, network, optimizer, scheduler, scaler, rng, generator):
        """Load the saved state into the given objects; return ``(epoch, history)``.

        ``(0, [])`` when there is no checkpoint yet.
        """
        if not os.path.exists(self.path):
            return 0, []
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # includes a pickle payload weights_only refuses
            raise ValueError(
                f"the student checkpoint {self.path!r} cannot be read safely ({exc}); "
                "delete it to restart the student's training."
            ) from exc
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"the student checkpoint {self.path!r} belongs to another fit "
                "(other data or parameters); delete it, or use another path."
            )
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved by a disabled scaler (CPU, bf16)
            scaler.load_state_dict(state["scaler"])
        numpy_state = state["numpy_rng"]
        rng.set_state(
            (
                "MT19937",
                numpy_state["keys"].numpy().astype(np.uint32),
                int(numpy_state["pos"]),
                int(numpy_state["has_gauss"]),
                float(numpy_state["cached_gaussian"]),
            )
        )
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and len(state["cuda_rng"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.log(f"resuming from epoch {state['epoch']} of the student in {self.path}")
        return int(state["epoch"]), list(state["history"])

    def save(self, epoch, history, network, optimizer, scheduler, scaler, rng, generator):
        """Write the state after ``epoch`` completed epochs (atomically)."""
        _, keys, pos, has_gauss, cached_gaussian = rng.get_state()
        state = {
            "fingerprint": self.fingerprint,
            "epoch": int(epoch),
            "history": [
                {k: (int(v) if isinstance(v, Integral) else float(v)) for k, v in entry.items()}
                for entry in history
            ],
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict(),
            "numpy_rng": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            },
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        atomic_write(self.path, lambda f: torch.save(state, f))


def as_epoch_checkpoint(checkpoint, estimator, X, y):
    """``NetClassifier.fit``'s ``checkpoint`` argument as an :class:`EpochCheckpoint`."""
    if checkpoint is None or isinstance(checkpoint, EpochCheckpoint):
        return checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        parameters = parameter_fingerprint(estimator)
        digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode())
        digest.update(data_fingerprint(X).encode())
        digest.update(np.ascontiguousarray(y).tobytes())
        log = print if getattr(estimator, "verbose", 0) else (lambda message: None)
        return EpochCheckpoint(checkpoint, fingerprint=digest.hexdigest(), log=log)
    raise TypeError(
        f"checkpoint={checkpoint!r} must be a file path, an EpochCheckpoint or None."
    )


__all__ = [
    "EpochCheckpoint",
    "FitCheckpoint",
    "atomic_write",
    "data_fingerprint",
    "parameter_fingerprint",
    "fitted_fingerprint",
]
