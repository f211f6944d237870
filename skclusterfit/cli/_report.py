"""The report of a ClusterFit run on images: figures and one self-contained HTML page.

``skclusterfit fit`` writes ``DIR/report.html`` with :func:`write_report`; each
figure is also a function returning a matplotlib figure, for a notebook:

* :func:`cluster_size_figure`: how many images each cluster holds;
* :func:`exemplar_figure`: the images nearest to the centre of some clusters;
* :func:`training_curve_figure`: the student's loss per epoch;
* :func:`timings_figure`: the seconds of each stage;
* :func:`probe_figure`: linear and kNN probe accuracy of teacher and student.

:func:`label_agreement` gives NMI, ARI and purity of the clusters against
labels, and :func:`cluster_distances` each sample's distance to its centre in
the space the clusterer worked in. Needs matplotlib.
"""

import base64
import html
import io
import os

import numpy as np

from ..runtime._progress import log


# -- numbers ------------------------------------------------------------------------------
def cluster_space(clusterer, features):
    """``features`` as the clusterer saw them (PCA-whitened and/or L2-normalised)."""
    whitener = getattr(clusterer, "whitener_", None)
    if whitener is not None:
        return np.asarray(whitener.transform(features), dtype=np.float32)
    features = np.asarray(features, dtype=np.float32)
    if getattr(clusterer, "normalize", False):
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        return features / np.maximum(norms, 1e-12)
    return features


def cluster_distances(clusterer, features, labels, centers, block_rows=65536):
    """Euclidean distance of each sample to its cluster's centre.

    Parameters
    ----------
    clusterer : fitted estimator
        ClusterFit's ``clusterer_``: its preprocessing (``whitener_``,
        ``normalize``) is applied first, as the centres live in that space.
    features : array-like of shape (n_samples, n_features)
        The teacher features that were clustered.
    labels : array-like of shape (n_samples,)
        Cluster ids.
    centers : array-like of shape (n_clusters, n_space_features)
        ClusterFit's ``cluster_centers_``.
    block_rows : int, default=65536
        Rows processed at a time (memory-mapped features stream).

    Returns
    -------
    distances : ndarray of shape (n_samples,), float32

    Examples
    --------
    >>> import numpy as np
    >>> from skclusterfit.cluster import KMeans
    >>> from skclusterfit.cli import cluster_distances
    >>> X = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)  # L2-normalised rows
    >>> cluster_distances(km, X, km.labels_, km.cluster_centers_).round(3).tolist()
    [0.0, 0.0, 0.0]
    """
    labels = np.asarray(labels)
    centers = np.asarray(centers, dtype=np.float32)
    out = np.empty(len(labels), dtype=np.float32)
    for start in range(0, len(labels), block_rows):
        rows = slice(start, start + block_rows)
        z = cluster_space(clusterer, np.asarray(features[rows]))
        out[rows] = np.linalg.norm(z - centers[labels[rows]], axis=1)
    return out


def label_agreement(labels_pred, labels_true):
    """NMI, ARI and purity of cluster ids against true labels.

    Purity: the fraction of samples whose cluster's most common label is
    their own.

    Parameters
    ----------
    labels_pred, labels_true : array-like of shape (n_samples,)

    Returns
    -------
    scores : dict with keys "NMI", "ARI", "purity"

    Examples
    --------
    >>> from skclusterfit.cli import label_agreement
    >>> label_agreement([0, 0, 1, 1, 1], ["a", "a", "b", "b", "a"])["purity"]
    0.8
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    labels_pred, labels_true = np.asarray(labels_pred), np.asarray(labels_true)
    table = contingency_matrix(labels_true, labels_pred)
    return {
        "NMI": float(normalized_mutual_info_score(labels_true, labels_pred)),
        "ARI": float(adjusted_rand_score(labels_true, labels_pred)),
        "purity": float(table.max(axis=0).sum() / table.sum()),
    }


def read_labels(path, paths, check=False):
    """Labels from a CSV of ``path,label`` rows, aligned with ``paths`` (None: unlabelled).

    A row matches an image by its absolute path, by its path relative to the
    CSV's folder, or by its file name when that is unique. A header row
    (``path,label``) is allowed.

    With ``check``, a file of which no row matches an image is refused
    (ValueError) and one that leaves some images unlabelled gets a warning:
    the report's comparison with the labels would otherwise be missing, or
    computed on a part of the images, without a word.
    """
    import csv

    folder = os.path.dirname(os.path.abspath(path))
    by_path, by_name, seen_names = {}, {}, {}
    n_lines = n_rows = 0
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.reader(file):
            n_lines += bool(row)
            if len(row) < 2 or row[0].strip().lower() == "path":
                continue
            n_rows += 1
            name, label = row[0].strip(), row[1].strip()
            absolute = name if os.path.isabs(name) else os.path.join(folder, name)
            by_path[os.path.normpath(absolute)] = label
            base = os.path.basename(name)
            seen_names[base] = seen_names.get(base, 0) + 1
            by_name[base] = label
    out = []
    for p in paths:
        label = by_path.get(os.path.normpath(os.path.abspath(p)))
        if label is None and seen_names.get(os.path.basename(p)) == 1:
            label = by_name[os.path.basename(p)]
        out.append(label)
    out = np.array(out, dtype=object)
    if check:
        _check_label_matches(path, out, n_lines, n_rows)
    return out


def _check_label_matches(path, labels, n_lines, n_rows):
    import warnings

    n_matched = sum(label is not None for label in labels)
    if n_matched == 0:
        why = (f"none of its {n_lines} lines is a path,label row (comma-separated)"
               if n_rows == 0 else
               f"none of its {n_rows} path,label rows names one of the {len(labels)} "
               "images (by absolute path, path relative to the file, or unique file name)")
        raise ValueError(f"--labels {path!r}: {why}.")
    if n_matched < len(labels):
        warnings.warn(
            f"--labels {path!r} labels {n_matched} of the {len(labels)} images; the "
            "report compares the clusters with the labels on those only.",
            UserWarning, stacklevel=3,
        )


def choose_clusters(labels, distances, labels_true=None, n=6, random_state=0):
    """Clusters to show: a random sample, and the most mixed ones.

    "Mixed" is the lowest label purity when labels are given, else the
    largest mean distance to the centre. Clusters of one image are not shown.

    Returns
    -------
    sample, mixed : list of int
    """
    labels = np.asarray(labels)
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    candidates = ids[counts >= 2] if (counts >= 2).any() else ids
    rng = np.random.RandomState(random_state)
    sample = sorted(rng.choice(candidates, size=min(n, len(candidates)), replace=False))
    if labels_true is not None and any(v is not None for v in labels_true):
        truth = np.asarray(labels_true, dtype=object)
        score = []
        for c in candidates:
            known = [t for t in truth[labels == c] if t is not None]
            values, freq = np.unique(np.array(known, dtype=str), return_counts=True)
            score.append(freq.max() / len(known) if len(known) else 1.0)
        order = np.argsort(score, kind="stable")  # least pure first
    else:
        spread = [float(np.mean(distances[labels == c])) for c in candidates]
        order = np.argsort(spread, kind="stable")[::-1]
    mixed = [int(candidates[i]) for i in order[:n]]
    return [int(c) for c in sample], mixed


# -- figures --------------------------------------------------------------------------------
def _pyplot():
    import matplotlib.pyplot as plt  # imported on first use: matplotlib is slow to import

    return plt


def cluster_size_figure(labels):
    """Histogram of cluster sizes, with the sizes sorted on the right.

    Parameters
    ----------
    labels : array-like of shape (n_samples,)
        Cluster ids (negative ids are left out).

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    plt = _pyplot()
    labels = np.asarray(labels)
    sizes = np.bincount(labels[labels >= 0])
    sizes = sizes[sizes > 0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    bins = min(50, max(5, len(np.unique(sizes))))
    left.hist(sizes, bins=bins, color="#3b75af")
    left.set_xlabel("images in the cluster")
    left.set_ylabel("clusters")
    left.set_title(f"{len(sizes)} clusters: median {int(np.median(sizes))} images")
    right.plot(np.arange(1, len(sizes) + 1), np.sort(sizes)[::-1], color="#3b75af")
    right.set_xlabel("cluster rank")
    right.set_ylabel("images")
    _plain_log_axis(right.yaxis)
    from matplotlib.ticker import MaxNLocator

    for axis in (left.yaxis, right.xaxis):  # counts and ranks: whole numbers
        axis.set_major_locator(MaxNLocator(integer=True))
    right.set_title(f"largest {sizes.max()}, smallest {sizes.min()}")
    fig.tight_layout()
    return fig


def _plain_log_axis(axis):
    """A log scale labelled 1, 2, 5, 10, 20, ... in plain numbers.

    matplotlib's default labels only powers of ten (in math text), so an axis
    spanning less than a decade, as cluster sizes often do, had no readable
    label, or crowded minor labels such as 2x10^1.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.axes.set_yscale("log") if axis.axis_name == "y" else axis.axes.set_xscale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _thumbnail(path, side):
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            # Scaled to fit the square (up as well as down: small images stay legible).
            image = ImageOps.contain(image.convert("RGB"), (side, side))
            canvas = Image.new("RGB", (side, side), (255, 255, 255))
            canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            return np.asarray(canvas)
    except (OSError, ValueError, SyntaxError):
        return np.full((side, side, 3), 200, dtype=np.uint8)


def _nearest_members(labels, distances, cluster, per_cluster):
    """A cluster's members, and the ``per_cluster`` of them nearest to its centre."""
    members = np.flatnonzero(labels == cluster)
    return members, members[np.argsort(distances[members], kind="stable")][:per_cluster]


def exemplar_figure(paths, labels, distances, clusters, *, per_cluster=8,
                    labels_true=None, title=None, side=64):
    """A grid of thumbnails: one row per cluster, its images nearest to the centre.

    Parameters
    ----------
    paths : sequence of str
        Image file of each sample.
    labels, distances : array-like of shape (n_samples,)
        Cluster id and distance to the centre of each sample.
    clusters : sequence of int
        Clusters to show, one per row.
    per_cluster : int, default=8
        Images per row (fewer if the cluster is smaller).
    labels_true : array-like or None, default=None
        Shown under each thumbnail when given.
    title : str or None
        Figure title.
    side : int, default=64
        Thumbnail side in pixels.

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    plt = _pyplot()
    labels, distances = np.asarray(labels), np.asarray(distances)
    rows = max(1, len(clusters))
    fig, axes = plt.subplots(
        rows, per_cluster, squeeze=False,
        figsize=(0.95 * per_cluster + 0.9, 0.95 * rows + 0.45),
        gridspec_kw={"wspace": 0.04, "hspace": 0.04},
    )
    for row, cluster in enumerate(clusters):
        members, nearest = _nearest_members(labels, distances, cluster, per_cluster)
        for col in range(per_cluster):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(nearest):
                ax.imshow(_thumbnail(paths[nearest[col]], side))
                if labels_true is not None and labels_true[nearest[col]] is not None:
                    ax.text(0.03, 0.03, str(labels_true[nearest[col]]), fontsize=7,
                            transform=ax.transAxes, va="bottom", ha="left",
                            bbox={"facecolor": "white", "alpha": 0.8, "pad": 1,
                                  "linewidth": 0})
        axes[row, 0].set_ylabel(f"#{cluster}\n({len(members)})", rotation=0,
                                ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.9 / (0.95 * per_cluster + 0.9), right=0.99, bottom=0.02,
                        top=1 - 0.4 / (0.95 * rows + 0.45))
    return fig


def training_curve_figure(history):
    """The student's mean training loss per epoch.

    Parameters
    ----------
    history : list of dict
        ``NetClassifier.history_`` (keys "epoch", "loss", "seconds").

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    losses = [h["loss"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(epochs, losses, marker="o", markersize=3, color="#c0504d")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy on the pseudo-labels")
    seconds = sum(h.get("seconds", 0.0) for h in history)
    ax.set_title(f"student: {len(history)} epochs, {seconds:.0f} s")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def timings_figure(timings):
    """Seconds of each stage, as horizontal bars.

    Parameters
    ----------
    timings : dict of str to float

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    plt = _pyplot()
    names = list(timings)
    seconds = [timings[n] for n in names]
    fig, ax = plt.subplots(figsize=(5, 0.45 * len(names) + 1))
    ax.barh(names[::-1], seconds[::-1], color="#7f7f7f")
    for y, value in enumerate(seconds[::-1]):
        ax.text(value, y, f" {value:.1f} s", va="center", fontsize=8)
    ax.set_xlabel("seconds")
    ax.set_xlim(0, max(seconds + [1e-3]) * 1.3)
    ax.set_title(f"total {sum(seconds):.0f} s")
    fig.tight_layout()
    return fig


def probe_figure(probes):
    """Linear and kNN probe accuracy of teacher and student, as grouped bars.

    Parameters
    ----------
    probes : dict
        ``{"teacher": {"linear": a, "kNN": b}, "student": {...}}``.

    Returns
    -------
    figure : matplotlib.figure.Figure
    """
    plt = _pyplot()
    kinds = list(next(iter(probes.values())))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    width = 0.8 / len(probes)
    for i, (network, scores) in enumerate(probes.items()):
        x = np.arange(len(kinds)) + i * width
        values = [scores[k] for k in kinds]
        ax.bar(x, values, width, label=network)
        for xi, v in zip(x, values):
            ax.text(xi, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(kinds)) + width * (len(probes) - 1) / 2, kinds)
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.08)
    # Beside the axes, not inside: inside, it covered a bar whatever the corner.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


# -- probes ---------------------------------------------------------------------------------
def probe_accuracies(teacher_features, student_features, labels_true, random_state=0):
    """Linear and kNN probe accuracy of teacher and student on a 70/30 split.

    The report's probes: both networks' frozen features, the same
    stratified split (where every label has two images), the probes of
    :mod:`skclusterfit.evaluation`.

    Parameters
    ----------
    teacher_features, student_features : ndarray of shape (n_samples, n_features)
        Features of the same images, in the same order.
    labels_true : array-like of shape (n_samples,)
        Their labels (compared as strings).
    random_state : int, default=0
        Seed of the split.

    Returns
    -------
    probes : dict
        ``{"teacher": {"linear": a, "kNN": b}, "student": {...}}``.
    n_train, n_test : int
    """
    from sklearn.model_selection import train_test_split

    from ..evaluation import knn_probe, linear_probe

    y = np.asarray(labels_true).astype(str)
    _, counts = np.unique(y, return_counts=True)
    stratify = y if counts.min() >= 2 else None
    train, test = train_test_split(np.arange(len(y)), test_size=0.3, stratify=stratify,
                                   random_state=random_state)
    k = min(20, len(train))
    probes = {}
    for name, features in (("teacher", teacher_features), ("student", student_features)):
        features = np.asarray(features, dtype=np.float32)
        probes[name] = {
            "linear": linear_probe(features[train], y[train], features[test], y[test]),
            "kNN": knn_probe(features[train], y[train], features[test], y[test], k=k),
        }
    return probes, len(train), len(test)


# -- the page ------------------------------------------------------------------------------
def figure_to_data_uri(figure, dpi=110):
    """A ``data:image/png;base64,...`` URI of ``figure`` (closed afterwards)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
.summary{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{background:#f4f6f8;border-radius:6px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.4em} img{max-width:100%} table{border-collapse:collapse}
td,th{padding:.3em .8em;border-bottom:1px solid #e4e4e4;text-align:right} th{text-align:left}
.note{color:#666;font-size:.9em}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start} .row img{max-width:48%}
.exemplar-files{font-size:.8em;margin:.3em 0 1.2em} .exemplar-files td{text-align:left}
.caveat{background:#fff4e5;border-left:4px solid #e69500;padding:.6em 1em;margin:1em 0}
"""


def _cards(items):
    return "<div class='summary'>" + "".join(
        f"<div class='card'><b>{html.escape(str(v))}</b>{html.escape(k)}</div>" for k, v in items
    ) + "</div>"


def _table(header, rows):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(path, *, model, dataset, teacher_features, distances, timings,
                 labels_true=None, n_left_out=0, seed=0, verbose=0, left_out=None,
                 run=None, notes=()):
    """Write the self-contained HTML report of a fitted ClusterFit on image files.

    Parameters
    ----------
    path : str or path
        The HTML file to write.
    model : ClusterFit
        Fitted on ``dataset``.
    dataset : ImageFiles
        The images of the fit (their ``paths`` give the thumbnails).
    teacher_features : array-like of shape (n_images, n_teacher_features)
        The features that were clustered.
    distances : array-like of shape (n_images,)
        From :func:`cluster_distances`.
    timings : dict of str to float
        Seconds of each stage.
    labels_true : array-like of shape (n_images,) or None, default=None
        True labels (None for unlabelled images): adds NMI/ARI/purity and the
        probes of teacher and student.
    n_left_out : int, default=0
        Files that could not be read (when ``left_out`` is not given).
    seed : int, default=0
        Seeds the choice of clusters shown and the probes' split.
    verbose : int, default=0
        Progress messages.
    left_out : list of (str, str) or None, default=None
        Each file left out and why: listed by name in the report.
    run : dict or None, default=None
        What started the run, shown at the top: ``"command"`` (the command
        line), ``"settings"`` (a dict of its settings) and ``"wall_seconds"``
        (from its start to the report).
    notes : sequence of str, default=()
        Lines shown under the summary (e.g. how many images of a refit kept
        their cluster id).

    Returns
    -------
    path : str or path
    """
    from torch.utils.data import Subset

    from ..runtime._atomic import atomic_write

    labels = np.asarray(model.labels_)
    paths = dataset.paths
    sizes = np.bincount(labels[labels >= 0])
    history = getattr(model.student_, "history_", [])
    run = dict(run or {})
    if left_out is not None:
        n_left_out = len(left_out)
    log("skclusterfit", "writing the report", verbose)
    sections = []
    wall = run.get("wall_seconds")
    cards = [
        ("images", f"{len(paths):,}"), ("files left out", f"{n_left_out:,}"),
        ("K", f"{getattr(model, 'K_', model.K):,}"),
        ("non-empty clusters", f"{int((sizes > 0).sum()):,}"),
        ("student epochs", len(history)),
        ("wall time of the run" if wall is not None else "seconds of the stages",
         _duration(wall if wall is not None else sum(timings.values()))),
    ]
    figures = {"sizes": figure_to_data_uri(cluster_size_figure(labels))}
    sample, mixed = choose_clusters(labels, distances, labels_true, random_state=seed)
    figures["sample"] = figure_to_data_uri(exemplar_figure(
        paths, labels, distances, sample, labels_true=labels_true,
        title="A random sample of clusters: the images nearest to each centre"))
    mixed_title = ("The least pure clusters (by the given labels)" if labels_true is not None
                   else "The most spread-out clusters (largest mean distance to the centre)")
    figures["mixed"] = figure_to_data_uri(exemplar_figure(
        paths, labels, distances, mixed, labels_true=labels_true, title=mixed_title))
    if history:
        figures["curve"] = figure_to_data_uri(training_curve_figure(history))
    figures["timings"] = figure_to_data_uri(timings_figure(timings))

    agreement = probes = None
    if labels_true is not None:
        known = np.flatnonzero([t is not None for t in labels_true])
        if len(known) >= 10 and len(set(labels_true[known])) >= 2:
            agreement = label_agreement(labels[known], labels_true[known].astype(str))
            log("skclusterfit", f"probes on {len(known)} labelled images", verbose)
            student_features = model.transform(Subset(dataset, known.tolist()))
            probes, n_train, n_test = probe_accuracies(
                np.asarray(teacher_features)[known], student_features,
                labels_true[known], random_state=seed)
            figures["probes"] = figure_to_data_uri(probe_figure(probes))
            cards += [("NMI", f"{agreement['NMI']:.3f}"), ("purity", f"{agreement['purity']:.3f}")]

    sections.append(_cards(cards))
    sections.append(_run_section(run, model))
    sections += [f"<p class='note'>{html.escape(note)}</p>" for note in notes]
    sections.append("<h2>Cluster sizes</h2>"
                    f"<img alt='cluster sizes' src='{figures['sizes']}'>")
    root = _common_folder(paths)
    sections.append(
        "<h2>Exemplars</h2><p class='note'>Each row is one cluster (its id and "
        "size on the left), its images sorted by distance to the centre in the "
        "teacher's feature space; the files of each row are listed under the grid"
        + (f", relative to {html.escape(root)}" if root else "") + ".</p>"
        f"<img alt='sample of clusters' src='{figures['sample']}'>"
        + _exemplar_names(paths, labels, distances, sample, root)
        + f"<img alt='mixed clusters' src='{figures['mixed']}'>"
        + _exemplar_names(paths, labels, distances, mixed, root))
    if agreement is not None:
        sections.append(
            "<h2>Against the labels</h2>"
            + _table(["", "value"], [(k, f"{v:.4f}") for k, v in agreement.items()])
            + f"<p class='note'>Probes on {n_train} labelled images, scored on {n_test} "
            "others: a logistic regression (linear) and DINO's weighted 20-NN vote (kNN) "
            "on frozen features.</p>"
            + "<div class='row'><div>"
            + _table(["network", "linear probe", "kNN probe"],
                     [(n, f"{s['linear']:.4f}", f"{s['kNN']:.4f}") for n, s in probes.items()])
            + f"</div><img alt='probes' src='{figures['probes']}'></div>"
            + _student_below_teacher(probes, len(paths), len(history),
                                     getattr(model, "K_", model.K)))
    curve = (f"<img alt='training curve' src='{figures['curve']}'>"
             if "curve" in figures else "")
    sections.append("<h2>Student training and time per stage</h2><div class='row'>"
                    f"{curve}<img alt='timings' src='{figures['timings']}'></div>"
                    "<p class='note'>A stage resumed from the checkpoint counts the time "
                    "to read it back"
                    + ("; the wall time of the run also counts writing the model and "
                       "clusters, and starts after the program's imports" if wall is not None
                       else "") + ".</p>")
    if left_out:
        sections.append(_left_out_section(left_out))
    teacher = getattr(model.teacher_, "estimator", model.teacher_)
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        "<title>ClusterFit report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>ClusterFit report</h1>"
        f"<p class='note'>teacher: {html.escape(_describe(teacher))}; student: "
        f"{html.escape(_describe(model.student_))}</p>"
        + "".join(sections) + "</body></html>"
    )
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    return path


def _duration(seconds):
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 120:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _run_section(run, model):
    """The command line and settings of the run (the teacher's file among them)."""
    rows = []
    if run.get("command"):
        rows.append(("command", run["command"]))
    for key, value in (run.get("settings") or {}).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
        rows.append((key, "default" if value is None else value))
    if not rows:
        return ""
    return ("<h2>The run</h2>"
            + _table(["setting", "value"], rows).replace("<td>", "<td style='text-align:left'>")
            + "<p class='note'>Settings as given (default: the command's own); K used: "
            f"{getattr(model, 'K_', model.K)}.</p>")


def _common_folder(paths):
    try:
        root = os.path.commonpath([os.path.abspath(p) for p in paths])
    except ValueError:  # paths on different drives
        return ""
    return root if os.path.isdir(root) else os.path.dirname(root)


def _exemplar_names(paths, labels, distances, clusters, root, per_cluster=8):
    """The files of an exemplar grid, row by row, so that an outlier can be traced."""
    rows = []
    for cluster in clusters:
        _, nearest = _nearest_members(labels, distances, cluster, per_cluster)
        names = [os.path.relpath(os.path.abspath(paths[i]), root) if root else paths[i]
                 for i in nearest]
        rows.append(f"<tr><th>#{int(cluster)}</th><td class='names'>"
                    + " &middot; ".join(html.escape(n) for n in names) + "</td></tr>")
    return f"<table class='exemplar-files'>{''.join(rows)}</table>"


def _left_out_section(left_out, limit=500):
    rows = [(path, reason) for path, reason in left_out[:limit]]
    more = (f" The first {limit} of {len(left_out)}; all are in skipped.txt."
            if len(left_out) > limit else "")
    return ("<h2>Files left out</h2>"
            f"<p class='note'>{len(left_out)} files were not used, each with the reason."
            f"{more}</p>" + _table(["file", "reason"], rows).replace(
                "<td>", "<td style='text-align:left'>"))


def _student_below_teacher(probes, n_images, n_epochs, K):
    """Plain words when the student's features probe below the teacher's."""
    teacher, student = probes.get("teacher", {}), probes.get("student", {})
    behind = [kind for kind in ("linear", "kNN")
              if kind in teacher and kind in student and student[kind] < teacher[kind]]
    if not behind:
        return ""
    scores = "; ".join(f"{kind} probe {student[kind]:.3f} against {teacher[kind]:.3f}"
                       for kind in behind)
    return (
        "<div class='caveat'><b>The student's features score below the teacher's</b> "
        f"({scores}). ClusterFit's student helps when the teacher learned a noisy or "
        "proxy objective whose quirks the clusters drop; a student trained briefly on "
        "few images, or a teacher that already fits these images well, leaves it "
        f"behind. This run trained {n_epochs} epochs on {n_images:,} images with "
        f"K = {K:,} clusters. What to change: more epochs (<code>--max-epochs</code>; the "
        "paper trains the student as long as the teacher), more images, or another K "
        "(<code>--K</code>: about one cluster per 20 images or fewer on small data). "
        "To know beforehand whether ClusterFit can help a teacher trained on labels, "
        "<code>skclusterfit.evaluation.noise_fit(teacher, X, y, X_held_out, "
        "y_held_out)</code> measures how much it memorised its training labels "
        "(<code>likely_to_help</code> above 5 points).</div>"
    )


def _describe(estimator):
    params = estimator.get_params(deep=False)
    model = params.get("model")
    name = model if isinstance(model, str) else type(model).__name__
    return f"{type(estimator).__name__}({name})"
