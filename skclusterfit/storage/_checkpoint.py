"""Checkpoints that let a long fit survive interruption and resume where it stopped.

A ClusterFit fit has three stages: teacher features, cluster assignment, and
student epochs. Each takes its result from a :class:`StageStore`: with
``checkpoint_dir`` the store is that directory, and each completed stage (and
each student epoch) is written to it, so fitting again with the same data and
parameters picks up from the last completed one; without it the store holds
nothing and every stage computes. Layout::

    checkpoint_dir/
      fingerprint.json        data and parameter fingerprint of the fit
      teacher_features.npy    stage 1: (n_samples, n_teacher_features) float32
                              (float16 with feature_dtype="float16"); under
                              torchrun one file per process, holding its rows:
                              teacher_features.rank0of2.npy, ...
      clusterer.skcf          stage 2: the fitted clusterer (skclusterfit.save)
      clusters.npz            stage 2: labels and centres (written last)
      student.pt              stage 3: epoch, network, optimizer, scheduler,
                              loss scaler and every random generator's state
                              (of every process, under torchrun)

In a distributed fit (torchrun) every process reads the directory, which must
then be on storage all of them see; process 0 alone writes the files shared
by all (fingerprint, clusters, student), each process its own features file.

Every file is written atomically (:mod:`skclusterfit.runtime._atomic`): a fit killed
mid-write leaves at most a ``.*.tmp`` file, which the next fit removes.
Nothing is unpickled on reading: arrays are read with ``allow_pickle=False``
(the teacher features as a memory map, which cannot hold objects),
the clusterer with :func:`skclusterfit.load` and ``student.pt`` with
``torch.load(weights_only=True)``.

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

import hashlib
import json
import os
import warnings
from numbers import Integral

import numpy as np
import torch

from ..runtime._atomic import atomic_write, remove_stale_temporaries
from ..runtime._out_of_core import StreamingMap
from ..runtime._distributed import LOCAL
from ._fingerprint import data_fingerprint, parameter_fingerprint
from ._persistence import load, save

FINGERPRINT_FILE = "fingerprint.json"
FEATURES_FILE = "teacher_features.npy"
CLUSTERS_FILE = "clusters.npz"
CLUSTERER_FILE = "clusterer.skcf"
STUDENT_FILE = "student.pt"
_STAGE_FILES = (FEATURES_FILE, CLUSTERS_FILE, CLUSTERER_FILE, STUDENT_FILE)
_TEMPORARY_SUFFIX = ".tmp"


def _silent(message):
    pass


class ArrayStage:
    """A stage whose result is one numpy array, stored as ``.npy``.

    Parameters
    ----------
    filename : str
    description : str
        Named in the "resuming from ..." message.
    per_rank : bool, default=False
        Each process computes and writes its own file (the rows of the
        teacher features it extracted) instead of process 0 writing one
        result shared by all.
    max_bytes : int or None, default=None
        A stored array larger than this is returned as a read-only memory
        map instead of being read into memory. None: always read.
    """

    def __init__(self, filename, description, per_rank=False, max_bytes=None):
        self.filename = filename
        self.description = description
        self.per_rank = per_rank
        self.max_bytes = max_bytes

    def load(self, store):
        path = store.path(self.filename)
        if not os.path.exists(path):
            return None
        store.log(f"resuming from {self.description} in {path}")
        array = StreamingMap.open(path)  # .npy of numbers: nothing to unpickle
        if self.max_bytes is None or array.nbytes <= self.max_bytes:
            array = np.asarray(array[:])  # read into memory, as computed
        return array

    def save(self, store, array):
        path = store.path(self.filename)
        written = getattr(array, "filename", None)
        if written is not None and _is_temporary_in(written, store.directory):
            # Already on disk beside its final name (out of core): rename, do
            # not copy gigabytes.
            os.replace(written, path)
            return
        atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def _is_temporary_in(filename, directory):
    filename = os.path.abspath(filename)
    return (os.path.dirname(filename) == os.path.abspath(directory)
            and os.path.basename(filename).startswith(".")
            and filename.endswith(_TEMPORARY_SUFFIX))


def features_stage(rank=0, world_size=1, max_bytes=None):
    """The teacher-features stage of process ``rank`` of ``world_size``.

    One process keeps ``teacher_features.npy``; under torchrun each process
    keeps the rows it extracted in ``teacher_features.rank<r>of<n>.npy``.
    """
    if world_size == 1:
        return ArrayStage(FEATURES_FILE, "teacher features", max_bytes=max_bytes)
    stem, ext = os.path.splitext(FEATURES_FILE)
    return ArrayStage(
        f"{stem}.rank{rank}of{world_size}{ext}",
        f"teacher features of process {rank}",
        per_rank=True,
        max_bytes=max_bytes,
    )


class ClusterStage:
    """The cluster assignment: ``(labels, centers, fitted clusterer)``.

    The clusterer is stored with :func:`skclusterfit.save`; the labels and
    centres file is written last, so its presence marks the stage complete.
    """

    description = "the cluster assignment"
    per_rank = False

    def load(self, store):
        path = store.path(CLUSTERS_FILE)
        if not os.path.exists(path):
            return None
        try:
            clusterer = load(store.path(CLUSTERER_FILE))
        except (OSError, ValueError) as exc:
            # Without the fitted clusterer, clusterer_ would be unfitted: cluster again.
            store.log(f"clustering again: the fitted clusterer cannot be restored ({exc})")
            return None
        with np.load(path, allow_pickle=False) as stored:
            labels, centers = stored["labels"], stored["centers"]
        store.log(f"resuming from {self.description} in {path}")
        return labels, centers, clusterer

    def save(self, store, result):
        labels, centers, clusterer = result
        try:
            save(clusterer, store.path(CLUSTERER_FILE))
        except TypeError as exc:  # a clusterer holding objects save() cannot store
            store.log(f"the cluster stage is not checkpointed: {exc}")
            return
        atomic_write(
            store.path(CLUSTERS_FILE),
            lambda f: np.savez(f, labels=labels, centers=centers),
        )


CLUSTERS = ClusterStage()


class StageStore:
    """Where the stages of one fit keep their results: a directory, or nowhere.

    ``stage(kind, compute)`` returns the stored result of a stage when there
    is one, else ``compute()``'s, which it stores. A store without a
    directory holds nothing: every stage computes and nothing is written, so
    a fit without checkpoint reads exactly like one with.

    Parameters
    ----------
    directory : str, path or None, default=None
        Created if missing. None: the store holds nothing.
    fingerprint : dict or None, default=None
        ``{"data": str, "parameters": {name: text}}``; a directory holding the
        checkpoint of another fingerprint is refused, naming what differs.
    log : callable, default=None
        Receives one-line progress messages ("resuming from ...").
    writer : bool, default=None
        Whether this process writes the shared files; None: process 0 of
        ``group`` does. In a distributed fit every process reads and only
        one writes, except the per-process stages (its teacher features).
    group : skclusterfit.runtime.ProcessGroup, default=LOCAL
        The processes of the fit. A shared stage is taken from the directory
        only if every process finds it there (else all compute it: the
        computation may be collective).

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.storage import StageStore
    >>> from skclusterfit.storage._checkpoint import features_stage
    >>> StageStore().stage(features_stage(), lambda: np.zeros(2)).tolist()
    [0.0, 0.0]
    """

    def __init__(self, directory=None, fingerprint=None, log=None, writer=None, group=LOCAL):
        self.directory = None if directory is None else os.fspath(directory)
        self.fingerprint = fingerprint
        self.log = log or _silent
        self.group = group
        self.writer = group.is_writer if writer is None else writer
        if self.directory is not None:
            self._open_directory()
            # No process writes a stage before process 0 has removed stale
            # temporaries and written the fingerprint.
            group.barrier()

    def path(self, name):
        return os.path.join(self.directory, name)

    def stage(self, kind, compute):
        """The stored result of stage ``kind``, or ``compute()``'s (then stored)."""
        if self.directory is not None:
            stored = kind.load(self)
            if not kind.per_rank and self.group.is_distributed:
                # The same decision on every process: a collective computation
                # must run everywhere or nowhere.
                if not all(self.group.all_gather_objects(stored is not None)):
                    stored = None
            if stored is not None:
                return stored
        result = compute()
        if self.directory is not None and (self.writer or kind.per_rank):
            kind.save(self, result)
        return result

    def epochs(self, filename=STUDENT_FILE):
        """The per-epoch checkpoint of a training loop (a no-op without directory)."""
        path = None if self.directory is None else self.path(filename)
        return EpochCheckpoint(path, log=self.log, writer=self.writer, group=self.group)

    def _open_directory(self):
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(
                f"checkpoint_dir={self.directory!r} is a file; it must be a directory "
                "(created if missing)."
            )
        os.makedirs(self.directory, exist_ok=True)
        if self.writer:
            remove_stale_temporaries(self.directory)
        self._check_fingerprint()

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
            if self.writer:
                text = json.dumps(self.fingerprint, indent=1).encode()
                atomic_write(path, lambda f: f.write(text))
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
    path : str, path or None
        File to write (torch.save of tensors and plain values only). None: a
        checkpoint that holds nothing (a training loop without checkpoint).
    fingerprint : str or None, default=None
        Stored in the file; a file with another fingerprint is refused.
    log : callable, default=print
        Receives "resuming from ..." messages.
    writer : bool, default=None
        Whether this process writes the file; None: process 0 of ``group``.
    group : skclusterfit.runtime.ProcessGroup, default=LOCAL
        The processes training together (DistributedDataParallel). They hold
        the same network, optimizer and epoch order but their own
        augmentation and dropout generators: :meth:`save` gathers those of
        every process into the file and :meth:`restore` gives each its own.
    """

    def __init__(self, path, fingerprint=None, log=print, writer=None, group=LOCAL):
        self.path = None if path is None else os.fspath(path)
        self.fingerprint = fingerprint
        self.log = log
        self.group = group
        self.writer = group.is_writer if writer is None else writer

    def restore(self, network, optimizer, scheduler, scaler, rng, generator):
        """Load the saved state into the given objects; return ``(epoch, history)``.

        ``(0, [])`` when there is no checkpoint yet.
        """
        if self.path is None or not os.path.exists(self.path):
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
        generators = self._own_generators(state)
        generator.set_state(generators["generator"])
        torch.set_rng_state(generators["torch_rng"])
        cuda_rng, index = generators["cuda_rng"], _cuda_index(network)
        if cuda_rng and index is not None:
            if len(cuda_rng) == 1:
                torch.cuda.set_rng_state(cuda_rng[0], index)
            elif len(cuda_rng) == torch.cuda.device_count():  # files of 0.2: every GPU's
                torch.cuda.set_rng_state_all(cuda_rng)
        self.log(f"resuming from epoch {state['epoch']} of the student in {self.path}")
        return int(state["epoch"]), list(state["history"])

    def _own_generators(self, state):
        """This process's generator states from a file written by 1 or more processes."""
        per_rank = state.get("ranks") or [
            {key: state[key] for key in ("generator", "torch_rng", "cuda_rng")}
        ]
        if len(per_rank) == self.group.world_size:
            return per_rank[self.group.rank]
        warnings.warn(
            f"the student checkpoint {self.path!r} was written by {len(per_rank)} "
            f"process(es) and is resumed by {self.group.world_size}: training goes on "
            "from the saved epoch, but the augmentation and dropout streams are "
            "those of process 0, so the result differs from an uninterrupted fit.",
            UserWarning,
            stacklevel=4,
        )
        return per_rank[0]

    def save(self, epoch, history, network, optimizer, scheduler, scaler, rng, generator):
        """Write the state after ``epoch`` completed epochs (atomically).

        Called by every process of a distributed fit (it gathers their
        generators); only the writer writes.
        """
        if self.path is None:
            return
        generators = {
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": _cuda_rng(network),
        }
        per_rank = self.group.all_gather_objects(generators)
        if not self.writer:
            return
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
            **generators,
        }
        if self.group.is_distributed:
            state["ranks"] = per_rank
        atomic_write(self.path, lambda f: torch.save(state, f))


def _cuda_index(network):
    """The GPU ``network`` trains on (None on the CPU): its generator drives dropout."""
    for tensor in network.parameters():
        return tensor.device.index if tensor.is_cuda else None
    return None


def _cuda_rng(network):
    # The training GPU's generator only: reading every GPU's (get_rng_state_all)
    # would initialise CUDA in a CPU fit and touch devices the fit never uses.
    index = _cuda_index(network)
    return [] if index is None else [torch.cuda.get_rng_state(index)]


def as_epoch_checkpoint(checkpoint, estimator, X, y, group=LOCAL):
    """``NetClassifier.fit``'s ``checkpoint`` argument as an :class:`EpochCheckpoint`."""
    if checkpoint is None:
        return EpochCheckpoint(None, group=group)
    if isinstance(checkpoint, EpochCheckpoint):
        return checkpoint
    if isinstance(checkpoint, (str, os.PathLike)):
        parameters = parameter_fingerprint(estimator)
        digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode())
        digest.update(data_fingerprint(X).encode())
        digest.update(np.ascontiguousarray(y).tobytes())
        log = print if getattr(estimator, "verbose", 0) else _silent
        return EpochCheckpoint(checkpoint, fingerprint=digest.hexdigest(), log=log, group=group)
    raise TypeError(
        f"checkpoint={checkpoint!r} must be a file path, an EpochCheckpoint or None."
    )


__all__ = [
    "CLUSTERS",
    "ArrayStage",
    "ClusterStage",
    "EpochCheckpoint",
    "StageStore",
    "as_epoch_checkpoint",
    "features_stage",
]
