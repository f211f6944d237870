"""The work of ClusterFit's stages, each a plain function of its inputs.

``ClusterFit.fit`` decides what runs where (and what a checkpoint already
holds); these functions do the work: the teacher's features in chunks, the
clustering and its centres. Each takes the
:class:`~skclusterfit.runtime.ProcessGroup` of the fit: under torchrun a
process extracts the features of its own contiguous rows only and the
clusterer fits on those shards together; the pseudo-labels (small) are then
gathered so that every process holds all of them.
"""

import os

import numpy as np
from joblib import Memory
from sklearn.utils.validation import check_memory

from .runtime._estimators import final_step, unfrozen
from .runtime._progress import progress
from .data._sources import take_rows
from .storage._fingerprint import estimator_fingerprint

# Samples per call of the teacher's transform: large enough to keep a GPU
# busy, a power of two so that it is a whole number of the teacher's batches
# (batch boundaries, hence float32 results, are those of one big call).
_CHUNK_SAMPLES = 8192


def chunk_size(teacher):
    """Samples per teacher call: a whole number of the teacher's batches."""
    batch_size = getattr(unfrozen(teacher), "batch_size", None)
    if isinstance(batch_size, int) and batch_size > 0:
        return batch_size * max(1, _CHUNK_SAMPLES // batch_size)
    return _CHUNK_SAMPLES


def shard_alignment(teacher):
    """Rows a shard boundary falls on: the teacher's batch size (or 1).

    Aligned shards make each process run exactly the batches one process
    would, so the features are the same bit for bit.
    """
    batch_size = getattr(unfrozen(teacher), "batch_size", None)
    return batch_size if isinstance(batch_size, int) and batch_size > 0 else 1


def feature_rows(teacher, X, group):
    """The rows of ``X`` whose teacher features this process extracts (a lazy view)."""
    start, stop = group.shard(len(X), align=shard_alignment(teacher))
    return take_rows(X, start, stop) if group.is_distributed else X


def teacher_features(teacher, X, group, storage, *, memory=None, verbose=0,
                     dtype="float32"):
    """The teacher-features stage: the features of this process's rows (all
    rows in one process), cached by ``memory``, kept where ``storage`` says
    (:class:`~skclusterfit.runtime._out_of_core.FeatureStorage`: memory, or a
    file when above its budget), in ``dtype``."""
    if isinstance(memory, (str, os.PathLike)):
        # A cache given as a path hands large cached features back as memory maps.
        memory = Memory(memory, mmap_mode="r", verbose=0)
    features = teacher_outputs(
        teacher, feature_rows(teacher, X, group), memory=memory, verbose=verbose,
        out=storage.allocate, dtype=dtype,
    )
    if isinstance(features, np.memmap) and storage.fits_in_memory(*features.shape):
        features = np.array(features)  # from the cache: small enough to hold
    return features


def check_memory_location(memory):
    """Refuse a ``memory`` cache folder that cannot be created (a file on its path)."""
    location = memory if isinstance(memory, (str, os.PathLike)) else getattr(
        memory, "location", None)
    if location is None:
        return
    path = os.path.abspath(os.fspath(location))
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(
            f"memory={memory!r}: {existing!r} is a file, so the cache folder "
            f"{path!r} cannot be created there; give a folder path (created if missing)."
        )


def _cached_outputs(fingerprint, compute, teacher, X, verbose, out=None, dtype="float32"):
    """Module-level so joblib.Memory can cache it; ``fingerprint`` names the teacher.

    ``dtype`` is part of the cache key (float16 features are other features);
    ``out`` (where they are written) is not.
    """
    return compute(teacher, X, verbose=verbose, out=out)


def teacher_outputs(teacher, X, *, compute=None, memory=None, verbose=0, out=None,
                    dtype="float32"):
    """``compute(teacher, X, verbose=, out=)`` for the fitted teacher, cached by ``memory``.

    ``compute`` defaults to :func:`transform_in_chunks` (the teacher's
    features); Distillation passes its class scores. joblib's cache key is the
    teacher's fingerprint (class, parameters and fitted state), ``compute``,
    ``X`` and ``dtype``.
    """
    compute = transform_in_chunks if compute is None else compute
    check_memory_location(memory)
    memory = check_memory(memory)
    fingerprint = estimator_fingerprint(teacher) if memory.location is not None else None
    extract = memory.cache(_cached_outputs, ignore=["teacher", "verbose", "out"])
    return extract(fingerprint, compute, teacher, X, verbose, out, dtype)


def transform_in_chunks(teacher, X, *, verbose=0, out=None):
    """The teacher's outputs for every sample of ``X``, chunk by chunk.

    Parameters
    ----------
    teacher : fitted transformer
        Called on one chunk of ``X`` at a time, so any transformer (a frozen
        scikit-learn one included) works, and a progress bar can follow it.
    X : validated input (array, memory map or Dataset)
    verbose : int, default=0
        Show a progress bar over samples.
    out : callable, default=None
        ``out(n_samples, n_features)`` returns the array to fill; default a
        new in-memory float32 array. It may instead return a writer of
        consecutive row slices with a ``finish()`` method that gives the
        array back (:class:`skclusterfit.runtime._out_of_core.NpyWriter`: features
        written to disk, returned as a memory map).

    Returns
    -------
    features : ndarray of shape (n_samples, n_features)
        float32, or the dtype of the array ``out`` gave.
    """
    n_samples = len(X)
    step = chunk_size(teacher)
    features = None
    with progress(total=n_samples, desc="teacher features", unit="sample",
                  verbose=verbose) as bar:
        for start in range(0, n_samples, step):
            stop = min(start + step, n_samples)
            part = np.asarray(teacher.transform(take_rows(X, start, stop)), dtype=np.float32)
            if part.ndim != 2 or len(part) != stop - start:
                raise ValueError(
                    f"the teacher returned features of shape {part.shape} for "
                    f"{stop - start} samples; it must return (n_samples, n_features)."
                )
            if not np.isfinite(part).all():
                raise ValueError(
                    f"the teacher produced NaN or inf features for samples {start}.."
                    f"{stop - 1}; check its weights and the input scaling before "
                    "clustering."
                )
            if features is None:
                allocate = out or (lambda n, d: np.empty((n, d), dtype=np.float32))
                features = allocate(n_samples, part.shape[1])
            features[start:stop] = part
            bar.update(stop - start)
    finish = getattr(features, "finish", None)
    return finish() if finish is not None else features


def check_distributable(clusterer, group):
    """Refuse, before any work, a clusterer that cannot fit on sharded features.

    Under torchrun the features stay on the process that extracted them
    (1M x 2048 float32 is 8 GB per copy), so the clusterer must reduce
    across processes itself: ``skclusterfit.cluster.KMeans`` does.
    """
    if not group.is_distributed:
        return
    if "distributed" not in clusterer.get_params(deep=False):
        raise ValueError(
            f"clusterer={clusterer!r} cannot fit on teacher features split over "
            f"{group.world_size} processes (it has no 'distributed' parameter); "
            "use skclusterfit.cluster.KMeans, or ClusterFit(distributed=False) to "
            "run the whole fit in every process."
        )


def clusters(clusterer, features, group, y=None):
    """The cluster stage's result: ``(labels, centers, fitted clusterer)``.

    ``features`` are this process's rows; the labels returned are those of
    all rows, in order, on every process (and become the clusterer's
    ``labels_``, so that every process holds the same fitted clusterer).
    ``y`` goes to a clusterer that needs labels (one that runs in one
    process: :func:`check_distributable` refuses it across processes).
    """
    labels = group.all_gather_rows(cluster_labels(clusterer, features, y))
    centers = cluster_centers(clusterer, features, labels)
    if group.is_distributed and hasattr(clusterer, "labels_"):
        clusterer.labels_ = labels
    return labels, centers, clusterer


def cluster_labels(clusterer, features, y=None):
    """Fit ``clusterer`` and return its labels as a 1-D int64 array."""
    # y only when there is one: a user's clusterer may take fit(X) alone.
    args = (features,) if y is None else (features, y)
    if hasattr(clusterer, "fit_predict"):
        labels = clusterer.fit_predict(*args)
    else:
        labels = getattr(clusterer.fit(*args), "labels_", None)
        if labels is None:
            raise TypeError(
                f"clusterer={clusterer!r} has no fit_predict and sets no labels_ "
                "after fit; ClusterFit needs one of them."
            )
    labels = np.asarray(labels)
    if labels.shape != (len(features),):
        raise ValueError(
            f"the clusterer returned labels of shape {labels.shape}; expected "
            f"({len(features)},)."
        )
    return labels.astype(np.int64)


def cluster_centers(clusterer, features, labels):
    """The clusterer's centres if it has them, else the mean feature per cluster."""
    clusterer = final_step(clusterer)
    for name in ("cluster_centers_", "means_"):
        centers = getattr(clusterer, name, None)
        if centers is not None:
            return np.asarray(centers, dtype=np.float32)
    n_clusters = int(labels.max()) + 1
    sums = np.zeros((n_clusters, features.shape[1]))
    np.add.at(sums, labels, features)
    counts = np.bincount(labels, minlength=n_clusters)[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def persist_ids(labels, centers, reference):
    """``labels`` and ``centers`` renumbered to keep the ids of ``reference``.

    ``reference`` is ``("centers", array)`` (Hungarian matching of centres in
    one feature space), ``("labels", array)`` (previous ids of the same rows,
    -1 where none: matching by overlap) or None (ids kept). Returns ``(labels, centers, id_map)``: the
    clusterer's cluster ``i`` is now cluster ``id_map[i]``.
    """
    from .cluster import match_cluster_ids  # imported on use: numba kernels

    id_map = np.arange(len(centers))
    if reference is None:
        return labels, centers, id_map
    on, previous = reference
    current = centers
    if on == "centers" and previous.shape[-1:] != centers.shape[1:]:
        raise ValueError(
            f"persistent_ids: the reference centres have shape {previous.shape} but "
            f"this fit's have {centers.shape}; they must live in one feature space "
            "(same teacher and clusterer preprocessing)."
        )
    if on == "labels":
        if previous.shape != labels.shape:
            raise ValueError(
                f"persistent_ids: {len(previous)} previous cluster ids for "
                f"{len(labels)} rows; give one per row of X (-1: none)."
            )
        known = previous >= 0  # rows of X that had a cluster before
        previous, current = previous[known], labels[known]
    mapping = match_cluster_ids(previous, current, on=on)
    id_map[: len(mapping)] = mapping  # empty last clusters (by labels) keep their ids
    return id_map[labels], centers[np.argsort(id_map)], id_map


def curate(curation, features, seed):
    """``(fitted curation, row weights, seconds)``: a clone of ``curation`` fitted on
    the features; each row weighs as often as its ``sample_indices_`` lists it."""
    import time

    from sklearn.base import clone

    start = time.perf_counter()
    curation = clone(curation)
    if "random_state" in curation.get_params(deep=False) and seed is not None:
        curation.set_params(random_state=seed)
    curation.fit(np.asarray(features))
    rows = getattr(curation, "sample_indices_", None)
    if rows is None:
        raise TypeError(
            f"curation={curation!r} set no sample_indices_ in fit; ClusterFit trains "
            "the student on the rows it lists."
        )
    weights = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(features))
    return curation, weights, time.perf_counter() - start


def slowest(seconds, group):
    """``{stage: seconds}`` of the slowest process, the same on every process
    (a stage ends when its last process does)."""
    names = list(seconds)
    values = group.all_reduce(np.array([seconds[name] for name in names]), op="max")
    return {name: float(value) for name, value in zip(names, values)}
