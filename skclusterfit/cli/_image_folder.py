"""From a folder of images to a ClusterFit model, clusters and a report.

:func:`fit_folder` is ``skclusterfit fit`` in Python and :func:`transform_folder`
is ``skclusterfit transform``. ``fit_folder`` writes into its output
directory::

    DIR/model           Pipeline(ImageReader, ClusterFit), skclusterfit.save format
    DIR/clusters.csv    path, cluster, distance (to the cluster's centre)
    DIR/report.html     the report (skclusterfit.cli.write_report), self-contained
    DIR/skipped.txt     every file left out, with the reason (tab-separated)
    DIR/checkpoint/     ClusterFit's stages: a second run on DIR resumes there
    DIR/previous_clusters.csv   after a refit: the clusters of the fit it refitted

A run on a DIR whose finished fit saw other images (some added or removed)
is a refit: its cluster ids are matched to the previous fit's on the images
of both (``ClusterFit(persistent_ids=previous clusters)``), and the report
says how many of those images kept their cluster id.
    DIR/scan.json       the files found decodable (so a resumed run does not decode twice)
    DIR/run.json        the settings of the run and the seconds of each stage
"""

import contextlib
import csv
import hashlib
import json
import os
import time
import warnings

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from .. import ClusterFit, FeatureExtractor
from ..runtime._atomic import atomic_write, remove_stale_temporaries
from ..runtime._progress import log
from ..storage._checkpoint import FEATURES_FILE, CheckpointMismatchError
from ..data._image_files import ImageFiles, ImageReader, list_image_files
from ..storage._persistence import load, save
from .._teachers import student_from
from ._renamed import renamed_arguments

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- the teacher, the student and the preprocessing they take -------------------------
def _load_teacher_file(path):
    estimator = load(path)
    if not hasattr(estimator, "transform"):
        raise ValueError(
            f"teacher={path!r} holds a {type(estimator).__name__}, which has no "
            "transform; save a fitted FeatureExtractor, NetClassifier or RotNet."
        )
    return estimator


def reader_settings(teacher, weights="auto", *, size=None, crop=None, mean=None,
                    std=None, mode=None, teacher_kwargs=None):
    """The :class:`ImageFiles` settings (mode, size, crop, mean, std) for a teacher.

    Explicit values win. Otherwise: the transforms of ``weights`` when it is
    a torchvision weight name, or a file named as torchvision names its
    download (``resnet50-11ad3fa6.pth``: IMAGENET1K_V2's resize 232, crop 224);
    for a torchvision model with another weights file (or none), ImageNet's
    (resize 256, crop 224, ImageNet mean and std); for a
    fitted estimator (or a saved one's path), its training input size
    unnormalised; for ``"cnn"``, 32x32 unnormalised; for a model library's
    name (``"timm:NAME"``, ...), the library's evaluation preprocessing from
    the model's own configuration (ImageNet's where it has none).
    """
    from ..networks._backbones import resolve_weights, torchvision_weights
    from ..networks._libraries import parse_spec

    defaults = {"mode": "RGB", "size": None, "crop": None, "mean": None, "std": None,
                "interpolation": "bilinear"}
    if isinstance(teacher, str) and parse_spec(teacher) is not None:
        library = _library_settings(teacher, resolve_weights(teacher, weights),
                                    teacher_kwargs)
        defaults.update(library or {"size": 256, "crop": 224, "mean": IMAGENET_MEAN,
                                    "std": IMAGENET_STD})
    elif not isinstance(teacher, str) or os.path.isfile(teacher):
        estimator = _load_teacher_file(teacher) if isinstance(teacher, str) else teacher
        if isinstance(estimator, FrozenEstimator):
            estimator = estimator.estimator
        shape = tuple(getattr(estimator, "input_shape_", ()))
        if len(shape) != 3:
            raise ValueError(
                f"teacher {teacher!r} was fitted on samples of shape {shape}, not "
                "images (C, H, W)."
            )
        channels, height, width = (
            (shape[0], shape[1], shape[2]) if shape[0] in (1, 3) else (shape[2], shape[0], shape[1])
        )
        defaults.update(mode="L" if channels == 1 else "RGB", size=(height, width))
    elif teacher == "cnn":
        defaults.update(size=32, crop=32)
    else:
        enum = torchvision_weights(teacher, resolve_weights(teacher, weights))
        if enum is None and weights is not None:
            enum = _torchvision_weights_of_file(teacher, weights)
        if enum is not None:
            transforms = enum.transforms()
            defaults.update(
                size=int(transforms.resize_size[0]), crop=int(transforms.crop_size[0]),
                mean=tuple(transforms.mean), std=tuple(transforms.std),
            )
        else:
            defaults.update(size=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    given = {"mode": mode, "size": size, "crop": crop, "mean": mean, "std": std,
             "interpolation": None}
    settings = {k: (given[k] if given[k] is not None else v) for k, v in defaults.items()}
    if size is not None and crop is None and defaults["crop"] is not None:
        default_crop = defaults["crop"]
        settings["crop"] = (
            min(default_crop, size) if isinstance(default_crop, int)
            else tuple(min(c, size) for c in default_crop)
        )
    for key in ("mean", "std"):
        if settings[key] is not None:
            settings[key] = tuple(float(v) for v in settings[key])
    return settings


def _library_settings(teacher, weights, model_kwargs=None):
    """A model library's evaluation preprocessing, read from the model's configuration.

    The architecture is built without weights (nothing is downloaded); a
    Hugging Face image processor is read from ``weights`` when it is the
    model's directory.
    """
    from ..networks._backbones import build_module
    from ..networks._libraries import library_preprocessing

    module = build_module(teacher, (), weights=None, model_kwargs=model_kwargs)
    return library_preprocessing(teacher, module, weights)


def _torchvision_weights_of_file(model, path):
    """The torchvision weights whose download has this file name (e.g.
    ``resnet50-11ad3fa6.pth`` is ResNet50_Weights.IMAGENET1K_V2), or None."""
    import torchvision

    try:
        candidates = list(torchvision.models.get_model_weights(model))
    except (ValueError, KeyError):
        return None
    name = os.path.basename(os.fspath(path))
    return next((w for w in candidates if os.path.basename(w.url) == name), None)


def make_teacher(teacher, weights="auto", layer=None, *, batch_size=64, num_workers=0,
                 device="auto", random_state=0, model_kwargs=None):
    """A frozen teacher for ClusterFit: a FeatureExtractor, or a saved model frozen."""
    if os.path.isfile(teacher):
        estimator = _load_teacher_file(teacher)
        if isinstance(estimator, FrozenEstimator):
            estimator = estimator.estimator
        _set_running(estimator, batch_size, num_workers, device)
        return FrozenEstimator(estimator)
    return FeatureExtractor(
        teacher, weights=weights, model_kwargs=model_kwargs, layer=layer, preprocess=None,
        batch_size=batch_size, num_workers=num_workers, device=device,
        random_state=random_state,
    )


def student_recipe(teacher, student=None, *, max_epochs=30, lr=None, batch_size=64,
                   num_workers=0, device="auto", verbose=0, model_kwargs=None):
    """The student NetClassifier with the command's training settings.

    ``student``'s architecture, else the teacher's: ClusterFit's own rule
    (``student_from``), so that the command and ``ClusterFit(student=None)``
    agree. ``model_kwargs`` (``--student-kwargs``) replace the ones it takes
    from the teacher.
    """
    network = student_from(student, teacher)
    if model_kwargs is not None:
        network.set_params(model_kwargs=model_kwargs)
    network.set_params(max_epochs=max_epochs, verbose=verbose)
    if lr is not None:
        network.set_params(lr=lr)
    _set_running(network, batch_size, num_workers, device)
    return network


def _set_running(estimator, batch_size, num_workers, device):
    params = estimator.get_params(deep=False)
    updates = {"batch_size": batch_size, "num_workers": num_workers, "device": device}
    estimator.set_params(**{k: v for k, v in updates.items() if k in params})


# -- reading the images ---------------------------------------------------------------------
def read_images(images, settings, out=None, *, num_workers=0, verbose=0, min_images=1):
    """The decodable images of ``images`` as an :class:`ImageFiles`, and what was left out.

    Every file is checked (header, then a full decode in ``num_workers``
    processes). With ``out``, the result is kept in ``out/scan.json`` and
    reused while the files (names, sizes, modification times) and settings
    are unchanged, so a resumed run does not decode everything again.

    Returns
    -------
    dataset : ImageFiles
    left_out : list of (str, str)
        Each file left out and why.
    """
    paths, ignored = list_image_files(images)
    if not paths:
        raise ValueError(f"images={images!r} holds no .jpg, .jpeg, .png or .webp file.")
    if len(paths) < min_images:  # before any decoding
        raise ValueError(
            f"K={min_images} clusters need at least as many images, but {images!r} "
            f"has {len(paths)} image files."
        )
    key = _scan_key(paths, settings)
    scan_path = None if out is None else os.path.join(out, "scan.json")
    if scan_path is not None and os.path.exists(scan_path):
        with open(scan_path, encoding="utf-8") as file:
            scan = json.load(file)
        if scan.get("key") == key:
            log("skclusterfit", f"reusing the image check of {scan_path}", verbose)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = ImageFiles(scan["kept"], **settings, on_error="skip")
            return dataset, ignored + [tuple(item) for item in scan["skipped"]]
    log("skclusterfit", f"checking {len(paths)} image files", verbose)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # counted and listed in skipped.txt instead
        dataset = ImageFiles(paths, **settings, on_error="skip")
        dataset.check_decode(num_workers=num_workers, verbose=verbose)
    if scan_path is not None:
        document = {"key": key, "kept": dataset.paths, "skipped": dataset.skipped}
        atomic_write(scan_path, lambda f: f.write(json.dumps(document).encode()))
    return dataset, ignored + list(dataset.skipped)


def _scan_key(paths, settings):
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in paths:
        try:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()


def _write_lines(path, rows):
    text = "".join("\t".join(str(v).replace("\t", " ").replace("\n", " ") for v in row) + "\n"
                   for row in rows)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# -- fit ---------------------------------------------------------------------------------
def fit_folder(
    images,
    out,
    *,
    teacher="resnet50",
    weights="auto",
    layer=None,
    K="auto",
    student=None,
    teacher_kwargs=None,
    student_kwargs=None,
    max_epochs=30,
    lr=None,
    random_state=0,
    size=None,
    crop=None,
    mean=None,
    std=None,
    mode=None,
    batch_size=64,
    device="auto",
    num_workers=0,
    labels=None,
    verbose=1,
    command=None,
    **renamed,
):
    """Run ClusterFit on the images of ``images`` and write model, clusters and report.

    The Python side of ``skclusterfit fit`` (its options, by the same names).
    Running it again on the same ``out`` resumes from the last completed
    stage or student epoch.

    Parameters
    ----------
    images : str or path
        A folder (recursive; .jpg, .jpeg, .png, .webp), a text file of paths,
        or a glob pattern.
    out : str or path
        Output directory (created).
    teacher : str, default="resnet50"
        A torchvision model name, "cnn", a model library's name
        (``"timm:NAME"``, ``"hf:NAME_OR_DIR"``, ``"open_clip:NAME"``,
        ``"hub:DIR:ENTRY"``), or the path of a fitted estimator saved by
        :func:`skclusterfit.save`.
    weights : str, path or None, default="auto"
        The teacher's weights: a local file, a torchvision weight name,
        "auto" (torchvision's pretrained default for a torchvision model name;
        needs network access or torch's hub cache) or None (random).
    layer : str or None, default=None
        The teacher's feature node; None: the penultimate layer.
    K : int or "auto", default="auto"
        Number of clusters; "auto" is ClusterFit's (ten times the classes of
        a teacher saved as a classifier, else one cluster per 20 images, at
        most 16,000).
    student : str or None, default=None
        The student's architecture; None: the teacher's.
    teacher_kwargs, student_kwargs : dict or None, default=None
        Keyword arguments of the call that builds the teacher (the
        student) by name: ``FeatureExtractor``'s and ``NetClassifier``'s
        ``model_kwargs``, e.g. ``{"img_size": 224}`` for a timm ViT. A
        student of the teacher's architecture takes the teacher's unless
        ``student_kwargs`` is given.
    max_epochs : int, default=30
        The student's epochs.
    lr : float or None, default=None
        The student's peak learning rate; None keeps NetClassifier's.
    random_state : int, default=0
        Seeds the clustering and the student.
    size, crop, mean, std, mode
        Preprocessing, as :class:`~skclusterfit.data.ImageReader` takes it
        (``size``: the shorter side after resizing); see
        :func:`reader_settings` for the defaults.
    batch_size : int, default=64
        Images per batch.
    device : str, default="auto"
        Torch device.
    num_workers : int, default=0
        DataLoader processes that decode images.
    labels : str, path or None, default=None
        A CSV of ``path,label`` rows for the report's agreement and probes.
    verbose : int, default=1
        Progress bars and stage messages.
    command : str or None, default=None
        The command line that started the run, shown in the report
        (``skclusterfit fit`` passes its own).
    **renamed
        The names of 0.1, ``epochs``, ``seed``, ``resize`` and ``workers``:
        deprecated (a FutureWarning) until 0.3.

    Returns
    -------
    model : Pipeline
        ``ImageReader`` then the fitted ``ClusterFit``, as saved in ``out/model``.
    """
    given = renamed_arguments("fit_folder", renamed, max_epochs=max_epochs,
                              random_state=random_state, size=size,
                              num_workers=num_workers)
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    try:
        return _fit_folder(
            images, out, teacher=teacher, weights=weights, layer=layer, K=K,
            student=student, teacher_kwargs=teacher_kwargs, student_kwargs=student_kwargs,
            lr=lr, crop=crop, mean=mean, std=std, mode=mode,
            batch_size=batch_size, device=device, labels=labels, verbose=verbose,
            command=command, **given,
        )
    except BaseException:
        if created and not os.path.exists(os.path.join(out, "checkpoint")):
            # Stopped before the fit started: nothing to resume, so nothing left behind.
            for name in _BOOKKEEPING_FILES:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(out, name))
            remove_stale_temporaries(out)
            with contextlib.suppress(OSError):
                os.rmdir(out)  # only if empty: never a file this run did not write
        raise


_BOOKKEEPING_FILES = ("scan.json", "skipped.txt", "run.json")


def _fit_folder(images, out, *, teacher, weights, layer, K, student, teacher_kwargs,
                student_kwargs, max_epochs, lr, random_state, size, crop, mean, std, mode,
                batch_size, device, num_workers, labels, verbose, command):
    from ._report import cluster_distances, read_labels, write_report

    wall_start = time.perf_counter()
    timings = {}
    start = time.perf_counter()
    settings = reader_settings(teacher, weights, size=size, crop=crop, mean=mean,
                               std=std, mode=mode, teacher_kwargs=teacher_kwargs)
    dataset, left_out = read_images(images, settings, out, num_workers=num_workers,
                                    verbose=verbose, min_images=2 if K == "auto" else K)
    timings["checking images"] = time.perf_counter() - start
    if K != "auto" and K > len(dataset):
        raise ValueError(
            f"K={K} clusters need at least as many images, but {images!r} has "
            f"{len(dataset)} readable ones."
        )
    truth = read_labels(labels, dataset.paths, check=True) if labels is not None else None
    log("skclusterfit", f"{len(dataset)} images, {len(left_out)} files left out "
        f"(listed in {os.path.join(out, 'skipped.txt')})", verbose)
    _write_lines(os.path.join(out, "skipped.txt"), left_out)

    run_settings = locals_for_run(images, teacher, weights, layer, K, student, max_epochs,
                                  lr, random_state, settings, batch_size, device, num_workers)
    run_settings.update(teacher_kwargs=teacher_kwargs, student_kwargs=student_kwargs)
    previous = previous_fit(out, dataset)
    frozen_teacher = make_teacher(teacher, weights, layer, batch_size=batch_size,
                                  num_workers=num_workers, device=device,
                                  random_state=random_state, model_kwargs=teacher_kwargs)
    student_net = student_recipe(frozen_teacher, student, max_epochs=max_epochs, lr=lr,
                                 batch_size=batch_size, num_workers=num_workers,
                                 device=device, verbose=verbose, model_kwargs=student_kwargs)
    cf = ClusterFit(
        frozen_teacher, K, student=student_net, device=device, random_state=random_state,
        checkpoint_dir=os.path.join(out, "checkpoint"), verbose=verbose,
        # A refit's ids: matched to the previous fit's on the images of both.
        persistent_ids=False if previous is None else np.array(
            [previous.get(path, -1) for path in dataset.paths]),
    )
    if not os.path.exists(os.path.join(out, "run.json")):  # kept by a refused re-run
        _write_run(out, run_settings, timings, command)
    try:
        cf.fit(dataset)
    except CheckpointMismatchError as exc:
        # The user chose --out, not checkpoint_dir=: say it in the command's words.
        raise ValueError(
            f"--out {out!r} holds {exc.reason}; run with another --out, or delete "
            "that folder to start over."
        ) from None
    timings.update(cf.stage_seconds_)

    start = time.perf_counter()
    model = Pipeline([("images", ImageReader(**settings)), ("clusterfit", cf)])
    save(model, os.path.join(out, "model"))
    features = _teacher_features(cf, dataset, out)
    distances = cluster_distances(cf.clusterer_, features, cf.labels_, cf.cluster_centers_)
    failed = set(dataset.read_failures)  # files changed since the check: their rows are void
    clusters = np.where([p in failed for p in dataset.paths], -1, cf.labels_)
    rows = [("path", "cluster", "distance")] + [
        (path, int(c), f"{d:.6g}") for path, c, d in zip(dataset.paths, clusters, distances)
    ]
    atomic_write(
        os.path.join(out, "clusters.csv"),
        lambda f: f.write("".join(_csv_line(r) for r in rows).encode("utf-8")),
    )
    if failed:
        reason = "failed to decode during the fit (changed after the check); cluster -1"
        left_out = left_out + [(p, reason) for p in sorted(failed)]
        _write_lines(os.path.join(out, "skipped.txt"), left_out)
    timings["writing model and clusters"] = time.perf_counter() - start
    persistence = None if previous is None else id_persistence(
        previous, dataset.paths, clusters)
    if persistence is not None:
        log("skclusterfit", persistence, verbose)

    start = time.perf_counter()
    write_report(
        os.path.join(out, "report.html"), model=cf, dataset=dataset,
        teacher_features=features, distances=distances, timings=timings,
        labels_true=truth, left_out=left_out, seed=random_state, verbose=verbose,
        run={"command": command, "settings": run_settings,
             "wall_seconds": time.perf_counter() - wall_start},
        notes=[] if persistence is None else [persistence],
    )
    timings["report"] = time.perf_counter() - start
    _write_run(out, run_settings, timings, command,
               wall_seconds=time.perf_counter() - wall_start)
    log("skclusterfit", f"wrote {out}/model, clusters.csv, report.html, skipped.txt", verbose)
    return model


def previous_fit(out, dataset):
    """The clusters of the fit that this run refits on other images, or None.

    A refit: ``out``'s clusters.csv lists other images than ``dataset``'s.
    Those clusters are copied to previous_clusters.csv (a rerun of the refit,
    finished or interrupted, matches its ids to the same ones and so resumes)
    and the finished fit's checkpoint, of other data, is removed; the
    checkpoint of an interrupted refit of these images is kept. Returns
    ``{path: cluster}``.
    """
    import shutil

    from ..storage._checkpoint import FINGERPRINT_FILE
    from ..storage._fingerprint import data_fingerprint

    def read(path):
        with open(path, newline="", encoding="utf-8") as file:
            return {row["path"]: int(row["cluster"]) for row in csv.DictReader(file)}

    current, previous = (os.path.join(out, name)
                         for name in ("clusters.csv", "previous_clusters.csv"))
    if os.path.exists(current) and set(read(current)) != set(dataset.paths):
        fingerprint = os.path.join(out, "checkpoint", FINGERPRINT_FILE)
        if os.path.exists(fingerprint):
            with open(fingerprint, encoding="utf-8") as file:
                if json.load(file).get("data") != data_fingerprint(dataset):
                    shutil.rmtree(os.path.join(out, "checkpoint"))  # the finished fit's
        with open(current, "rb") as file:
            text = file.read()
        atomic_write(previous, lambda f: f.write(text))
    return read(previous) if os.path.exists(previous) else None


def id_persistence(previous, paths, clusters):
    """The report's line on cluster ids kept from the previous fit (``previous``: path -> id)."""
    both = [(previous[p], int(c)) for p, c in zip(paths, clusters)
            if p in previous and previous[p] >= 0 and c >= 0]
    kept = sum(a == b for a, b in both)
    added = sum(p not in previous for p in paths)
    gone = len(set(previous) - set(paths))
    share = kept / len(both) if both else float("nan")
    return (f"Refit of the previous fit in this folder ({len(previous):,} images then, "
            f"{len(paths):,} now: {added:,} added, {gone:,} gone), cluster ids matched to "
            f"its clusters: {kept:,} of the {len(both):,} images in both fits ({share:.1%}) "
            "kept their cluster id.")


def locals_for_run(images, teacher, weights, layer, K, student, max_epochs, lr,
                   random_state, settings, batch_size, device, num_workers):
    return {
        "images": os.fspath(images), "teacher": teacher, "weights": weights,
        "layer": layer, "K": K, "student": student, "max_epochs": max_epochs, "lr": lr,
        "random_state": random_state, "preprocessing": settings, "batch_size": batch_size,
        "device": device, "num_workers": num_workers,
    }


def _write_run(out, settings, timings, command=None, wall_seconds=None):
    from .. import __version__

    document = {"skclusterfit": __version__, "command": command, "settings": settings,
                "seconds": timings, "wall_seconds": wall_seconds}
    atomic_write(os.path.join(out, "run.json"),
                 lambda f: f.write(json.dumps(document, indent=1).encode()))


def _csv_line(row):
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def _teacher_features(cf, dataset, out):
    """The teacher features of the fit: read from the checkpoint, else extracted again."""
    path = os.path.join(out, "checkpoint", FEATURES_FILE)
    if os.path.exists(path):
        features = np.load(path, mmap_mode="r", allow_pickle=False)
        if features.shape[0] == len(dataset):
            return features
    return cf.teacher_.transform(dataset)


def fit_from_args(args):
    """``skclusterfit fit`` for parsed arguments."""
    return fit_folder(
        args.images, args.out, teacher=args.teacher, weights=args.weights,
        layer=args.layer, K=args.K, student=args.student,
        teacher_kwargs=args.teacher_kwargs, student_kwargs=args.student_kwargs,
        max_epochs=args.max_epochs,
        lr=args.lr, random_state=args.random_state, size=args.size, crop=args.crop,
        mean=args.mean, std=args.std, mode=args.mode, batch_size=args.batch_size,
        device=args.device, num_workers=args.num_workers, labels=args.labels,
        verbose=0 if args.quiet else 1, command=getattr(args, "command_line", None),
    )


# -- transform ------------------------------------------------------------------------------
def transform_folder(model, images, out=None, *, batch_size=64, device="auto", num_workers=0,
                     verbose=0, **renamed):
    """The student's features of the images of ``images``, read as in training.

    Parameters
    ----------
    model : Pipeline, str or path
        Written by :func:`fit_folder` (``DIR/model``), or that file's path.
    images : str or path
        A folder, a text file of paths, or a glob pattern.
    out : str, path or None, default=None
        Write the features here (``.npy``) and the paths, one per line, to
        the same name with ``.paths.txt`` instead of ``.npy``; files left out
        go to ``.skipped.txt``.
    batch_size, device, num_workers, verbose
        As in :func:`fit_folder` (``workers``, 0.1's name of ``num_workers``,
        is deprecated until 0.3).

    Returns
    -------
    features : ndarray of shape (n_images, n_features), float32
    paths : list of str
        The images of the rows, in order (unreadable files left out).
    """
    num_workers = renamed_arguments("transform_folder", renamed,
                                    num_workers=num_workers)["num_workers"]
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    reader, cf = model.named_steps["images"], model.named_steps["clusterfit"]
    settings = {k: v for k, v in reader.get_params().items() if k != "on_error"}
    dataset, left_out = read_images(images, settings, num_workers=num_workers,
                                    verbose=verbose)
    _set_running(cf.student_, batch_size, num_workers, device)
    features = cf.transform(dataset)
    failed = set(dataset.read_failures)
    keep = np.array([p not in failed for p in dataset.paths])
    features, paths = features[keep], [p for p, k in zip(dataset.paths, keep) if k]
    left_out = left_out + [(p, "failed to decode when read") for p in sorted(failed)]
    if out is not None:
        out = os.fspath(out)
        stem = out[:-4] if out.endswith(".npy") else out
        atomic_write(out, lambda f: np.save(f, features, allow_pickle=False))
        _write_lines(stem + ".paths.txt", [(p,) for p in paths])
        if left_out:
            _write_lines(stem + ".skipped.txt", left_out)
        log("skclusterfit", f"wrote {features.shape} features to {out}; "
            f"{len(left_out)} files left out", verbose)
    return features, paths


def transform_from_args(args):
    """``skclusterfit transform`` for parsed arguments."""
    return transform_folder(
        args.model, args.images, args.out, batch_size=args.batch_size,
        device=args.device, num_workers=args.num_workers, verbose=0 if args.quiet else 1,
    )
