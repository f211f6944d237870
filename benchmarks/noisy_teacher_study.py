"""What decides ClusterFit's gain over a teacher trained on noisy labels (issue 14).

For every (dataset, label noise p, seed, teacher recipe) a teacher
``NetClassifier`` is trained on labels of which a fraction p was replaced by
another class; ClusterFit variants then train students on the clusters of its
features. Teacher (N_pre) and students (N_cf) are judged by a linear probe on
clean labels of held-out images. Datasets (all offline):

- ``digits8``: scikit-learn's 8x8 digits (1,257 train / 540 test);
- ``digits16``: the same upscaled to 16x16 (bilinear);
- ``mnist14`` / ``mnist28``: MNIST-5k at 14x14 and 28x28 (3,500 / 1,500).

Two plans:

- ``sweep``: one factor at a time from a baseline (K = 10x the classes, the
  default clusterer, the student a re-initialised copy of the teacher with
  its recipe), on the cheaper datasets and p in {0, 0.5, 0.75}: K, student
  epochs and schedule, preprocessing before k-means, balanced sampling, the
  student's augmentation, label smoothing, and the teacher's own recipe.
- ``final``: ``ClusterFit(teacher=FrozenEstimator(teacher), random_state=seed)``
  with every other parameter at the package's defaults, on all four
  datasets, p in {0, 0.25, 0.5, 0.75} and 3 seeds; p = 0.9 (labels
  independent of the images with 10 classes: a random-label teacher) is run
  as its own plan, ``random-labels``.

Each N_pre row also records candidate diagnostics computed from the teacher,
X and the noisy labels only (what a user has), to be compared with the gain
afterwards, and oracle quantities (which need the clean labels).

Every run is appended to ``--out`` as it finishes (one row, with the code's
commit, CPU seconds and the load average); rerunning skips finished rows and
reloads trained teachers from ``--cache``. Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/noisy_teacher_study.py \\
        --plan sweep --n-jobs 2
    python benchmarks/noisy_teacher_study.py --report   # tables and plots only
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _runlog import RunLog, cpu_seconds  # noqa: E402

N_CLASSES = 10
DATASETS = ["digits8", "digits16", "mnist14", "mnist28"]

# Teacher recipes: NetClassifier parameters on top of its defaults.
TEACHERS = {
    "default": {},
    "no-augment": {"augment": None},
    "2x-epochs": {"max_epochs": 60},
    "sgd": {"optimizer": "sgd", "batch_size": 128},
}

# ClusterFit variants of the sweep: (factor, ClusterFit settings). "K" is a
# multiple of the class count; "student" updates a clone of the teacher (the
# default student); "clusterer" gives KMeans parameters.
VARIANTS = {
    "baseline": ("baseline", {}),
    "K=2x": ("K", {"K": 2}),
    "K=5x": ("K", {"K": 5}),
    "K=30x": ("K", {"K": 30}),
    "K=100x": ("K", {"K": 100}),
    "student 0.5x epochs": ("student epochs", {"student": {"max_epochs": 15}}),
    "student 2x epochs": ("student epochs", {"student": {"max_epochs": 60}}),
    "student constant lr": ("student epochs", {"student": {"lr_schedule": "constant"}}),
    "no L2 normalisation": ("preprocessing", {"clusterer": {"normalize": False}}),
    "PCA-whiten 32 + L2": ("preprocessing", {"clusterer": {"whiten_dim": 32}}),
    "balanced sampler": ("balance", {"student": {"sampler": "balanced"}}),
    "student no augment": ("augmentation", {"student": {"augment": None}}),
    "label smoothing 0.1": ("label smoothing", {"student": {"label_smoothing": 0.1}}),
    "label smoothing 0.3": ("label smoothing", {"student": {"label_smoothing": 0.3}}),
}

PLANS = {
    "sweep": {
        "datasets": ["digits8", "digits16", "mnist14"], "noise": [0.0, 0.5, 0.75],
        "seeds": [0, 1], "teachers": list(TEACHERS), "variants": list(VARIANTS),
    },
    "final": {
        "datasets": DATASETS, "noise": [0.0, 0.25, 0.5, 0.75], "seeds": [0, 1, 2],
        "teachers": ["default"], "variants": ["defaults"],
    },
    "random-labels": {
        "datasets": DATASETS, "noise": [0.9], "seeds": [0, 1, 2],
        "teachers": ["default"], "variants": ["defaults"],
    },
}

FIELDS = [
    "dataset", "p", "seed", "teacher", "variant", "factor", "network", "K", "probe",
    # teacher (N_pre rows): what a user can compute ...
    "fit_noisy", "knn_agree", "pixel_knn_agree", "cluster_fit", "pred_purity",
    # ... and oracles that need the clean labels
    "fit_clean", "memorised",
    # clusters and student (N_cf rows)
    "clusters", "min_cluster", "small_clusters", "nmi_clean", "student_fit",
    "commit",
]
KEY = ["dataset", "p", "seed", "teacher", "variant"]


def commit():
    """The checkout's commit, with "+dirty" when files differ from it."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "../skclusterfit"],
                               cwd=here, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


# NetClassifier parameters that do not change a one-process CPU training:
# left out of the teacher cache's name, so that adding one does not retrain.
NOT_TRAINING = {"distributed"}


def defaults_tag():
    """A short hash of NetClassifier's default parameters that shape training."""
    import joblib

    from skclusterfit import NetClassifier

    params = NetClassifier().get_params()
    return joblib.hash(sorted((k, v) for k, v in params.items()
                              if k not in NOT_TRAINING))[:8]


def load_dataset(name, seed):
    """(X_train, X_test, y_train, y_test), stratified 70/30, split by ``seed``."""
    from sklearn.model_selection import train_test_split

    from skclusterfit.data import load_digits_images, load_mnist_images

    if name.startswith("digits"):
        X, y = load_digits_images()
        if name == "digits16":
            import torch

            X = torch.nn.functional.interpolate(
                torch.from_numpy(X), size=(16, 16), mode="bilinear", align_corners=False
            ).numpy()
    else:
        X, y = load_mnist_images(resolution=int(name[5:]))
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def knn_majority(features, labels, k=10):
    """Majority label among each row's k nearest other rows (cosine)."""
    from sklearn.neighbors import NearestNeighbors

    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    index = NearestNeighbors(n_neighbors=k + 1).fit(features)
    neighbours = index.kneighbors(features, return_distance=False)[:, 1:]
    votes = np.zeros((len(labels), labels.max() + 1))
    np.add.at(votes, (np.arange(len(labels))[:, None], labels[neighbours]), 1)
    return votes.argmax(1)


def cluster_majority(clusters, labels):
    """Each sample's prediction by the majority label of its cluster."""
    table = np.zeros((clusters.max() + 1, labels.max() + 1))
    np.add.at(table, (clusters, labels), 1)
    return table.argmax(1)[clusters]


def teacher_diagnostics(teacher, X_train, y_noisy, y_train, seed):
    """Candidate predictors of ClusterFit's gain, and oracle quantities."""
    from skclusterfit.cluster import KMeans

    features = teacher.transform(X_train)
    predicted = teacher.predict(X_train)
    clusters = KMeans(n_clusters=10 * N_CLASSES, random_state=seed).fit_predict(features)
    corrupted = y_noisy != y_train
    pixels = X_train.reshape(len(X_train), -1).astype(np.float32)
    return {
        "fit_noisy": np.mean(predicted == y_noisy),
        "knn_agree": np.mean(knn_majority(features, y_noisy) == y_noisy),
        "pixel_knn_agree": np.mean(knn_majority(pixels, y_noisy) == y_noisy),
        "cluster_fit": np.mean(cluster_majority(clusters, y_noisy) == y_noisy),
        "pred_purity": np.mean(cluster_majority(clusters, predicted) == predicted),
        "fit_clean": np.mean(predicted == y_train),
        "memorised": np.mean(predicted[corrupted] == y_noisy[corrupted])
        if corrupted.any() else np.nan,
    }


HELD_OUT_FIELDS = ["dataset", "p", "seed", "teacher", "train_fit", "held_out_fit",
                   "held_out_clean", "commit"]


def held_out_fits(cache, out):
    """The teacher's fit to noisy labels of images it never saw, for every cached teacher.

    The held-out labels get noise of the same p, drawn with another seed. A
    teacher that memorised its noisy labels fits its own far better than
    these: the gap is the diagnostic that needs no clean label.
    """
    import re

    import torch

    torch.set_num_threads(1)
    from skclusterfit import NetClassifier, load
    from skclusterfit.data import add_label_noise

    defaults = defaults_tag()
    log = RunLog(out, HELD_OUT_FIELDS, KEY[:4])
    pattern = re.compile(rf"teacher-(\w+)-p([\d.]+)-s(\d+)-([\w-]+)-{defaults}\.skcf$")
    code = commit()
    for name in sorted(os.listdir(cache)):
        match = pattern.match(name)
        if match is None:
            continue
        dataset, p, seed, recipe = match[1], float(match[2]), int(match[3]), match[4]
        if log.done(dataset=dataset, p=p, seed=seed, teacher=recipe):
            continue
        start_cpu, start = cpu_seconds(), time.perf_counter()
        X_train, X_test, y_train, y_test = load_dataset(dataset, seed)
        teacher = load(os.path.join(cache, name))
        y_noisy = add_label_noise(y_train, p, random_state=seed)
        y_test_noisy = add_label_noise(y_test, p, random_state=seed + 1000)
        predicted = teacher.predict(X_test)
        log.write(_rounded({
            "dataset": dataset, "p": p, "seed": seed, "teacher": recipe,
            "train_fit": np.mean(teacher.predict(X_train) == y_noisy),
            "held_out_fit": np.mean(predicted == y_test_noisy),
            "held_out_clean": np.mean(predicted == y_test), "commit": code,
            "cpu_s": cpu_seconds() - start_cpu, "wall_s": time.perf_counter() - start,
            "load1": os.getloadavg()[0],
        }))


def get_teacher(dataset, p, seed, recipe, split, cache):
    """The trained teacher, from ``cache`` when an earlier run saved it."""
    from skclusterfit import NetClassifier, load
    from skclusterfit.data import add_label_noise

    X_train, _, y_train, _ = split
    y_noisy = add_label_noise(y_train, p, random_state=seed)
    # The defaults are part of the name: a teacher trained under other
    # NetClassifier defaults is never reused.
    defaults = defaults_tag()
    path = os.path.join(
        cache, f"teacher-{dataset}-p{p}-s{seed}-{recipe}-{defaults}.skcf"
    )
    if os.path.exists(path):
        return load(path), y_noisy, 0.0
    start = cpu_seconds()
    teacher = NetClassifier(device="cpu", random_state=seed, **TEACHERS[recipe])
    teacher.fit(X_train, y_noisy)
    seconds = cpu_seconds() - start
    os.makedirs(cache, exist_ok=True)
    teacher.save(path)
    return teacher, y_noisy, seconds


def make_clusterfit(variant, teacher, seed):
    from sklearn.base import clone
    from sklearn.frozen import FrozenEstimator

    from skclusterfit import ClusterFit
    from skclusterfit.cluster import KMeans

    if variant == "defaults":
        return ClusterFit(teacher=FrozenEstimator(teacher), device="cpu", random_state=seed)
    settings = VARIANTS[variant][1]
    kwargs = {"K": N_CLASSES * settings.get("K", 10)}
    if "student" in settings:
        kwargs["student"] = clone(teacher).set_params(**settings["student"])
    if "clusterer" in settings:
        kwargs["clusterer"] = KMeans(**settings["clusterer"])
    return ClusterFit(teacher=FrozenEstimator(teacher), device="cpu", random_state=seed,
                      **kwargs)


def job(dataset, p, seed, recipe, variants, out, cache):
    """One teacher and its ClusterFit variants; each row written as it ends."""
    import torch

    torch.set_num_threads(1)
    from sklearn.metrics import normalized_mutual_info_score

    from skclusterfit.evaluation import linear_probe

    log = RunLog(out, FIELDS, KEY)
    code = commit()
    key = {"dataset": dataset, "p": p, "seed": seed, "teacher": recipe}
    todo = [v for v in ["N_pre", *variants] if not log.done(**key, variant=v)]
    if not todo:
        return 0
    split = load_dataset(dataset, seed)
    X_train, X_test, y_train, y_test = split
    start_wall = time.perf_counter()
    teacher, y_noisy, teacher_cpu = get_teacher(dataset, p, seed, recipe, split, cache)
    if "N_pre" in todo:
        row = {**key, "variant": "N_pre", "factor": "teacher", "network": "N_pre", "K": 0,
               "probe": linear_probe(X_train, y_train, X_test, y_test, transformer=teacher),
               **teacher_diagnostics(teacher, X_train, y_noisy, y_train, seed),
               "commit": code, "cpu_s": teacher_cpu,
               "wall_s": time.perf_counter() - start_wall, "load1": os.getloadavg()[0]}
        log.write(_rounded(row))
        print(_brief(row), flush=True)
    for variant in todo:
        if variant == "N_pre":
            continue
        start_cpu, start_wall = cpu_seconds(), time.perf_counter()
        cf = make_clusterfit(variant, teacher, seed).fit(X_train)
        sizes = np.bincount(cf.labels_, minlength=cf.K_)
        row = {
            **key, "variant": variant,
            "factor": "defaults" if variant == "defaults" else VARIANTS[variant][0],
            "network": "N_cf", "K": cf.K_,
            "probe": linear_probe(X_train, y_train, X_test, y_test, transformer=cf),
            "clusters": int((sizes > 0).sum()), "min_cluster": int(sizes.min()),
            "small_clusters": float(np.mean(sizes < 3)),
            "nmi_clean": normalized_mutual_info_score(y_train, cf.labels_),
            "student_fit": float(np.mean(cf.student_.predict(X_train) == cf.labels_)),
            "commit": code, "cpu_s": cpu_seconds() - start_cpu,
            "wall_s": time.perf_counter() - start_wall, "load1": os.getloadavg()[0],
        }
        log.write(_rounded(row))
        print(_brief(row), flush=True)
    return len(todo)


def _rounded(row):
    return {k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v
            for k, v in row.items()}


def _brief(row):
    return (f"{row['dataset']:8} p={row['p']:<4} seed={row['seed']} {row['teacher']:10} "
            f"{row['variant']:22} probe={row['probe']:.4f} cpu={row['cpu_s']:.0f}s "
            f"load={row['load1']:.1f}")


def plan_jobs(plan, args):
    spec = dict(PLANS[plan])
    for name in ("datasets", "noise", "seeds", "teachers", "variants"):
        if getattr(args, name):
            spec[name] = getattr(args, name)
    jobs = []
    for seed in spec["seeds"]:  # seed-major: a plan cut short has whole seeds
        for dataset in spec["datasets"]:
            for p in spec["noise"]:
                for recipe in spec["teachers"]:
                    variants = spec["variants"] if recipe == "default" else ["baseline"]
                    if plan in ("final", "random-labels"):
                        variants = ["defaults"]
                    if args.teachers_only:
                        variants = []
                    jobs.append((dataset, p, seed, recipe, variants))
    return jobs


def read_csv(path):
    import csv

    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for name in FIELDS + ["cpu_s", "wall_s", "load1"]:
            if name in ("dataset", "teacher", "variant", "factor", "network", "commit"):
                continue
            r[name] = float(r[name]) if r.get(name) not in ("", None) else np.nan
    return rows


def pairs(rows, variant):
    """(N_pre row, N_cf row of ``variant``) for every teacher that has both."""
    teachers = {tuple(r[k] for k in KEY[:4]): r for r in rows if r["variant"] == "N_pre"}
    return [(teachers[key], r) for r in rows if r["variant"] == variant
            and (key := tuple(r[k] for k in KEY[:4])) in teachers]


def mean_std(values):
    values = np.asarray(values, dtype=float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} +- {std:.3f}"


def grid(lines):
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rule = "  ".join("=" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join([rule, body[0], rule, *body[1:], rule])


def outcome_table(rows, variant="defaults", teacher="default"):
    """Per dataset and p: N_pre, N_cf and the gain, mean +- std over seeds."""
    cells = {}
    for pre, cf in pairs(rows, variant):
        if pre["teacher"] == teacher:
            cells.setdefault((pre["dataset"], pre["p"]), []).append((pre, cf))
    if not cells:
        return ""
    lines = [["dataset", "p", "seeds", "teacher fit to noisy labels", "N_pre", "N_cf",
              "gain N_cf - N_pre", "condition"]]
    for (dataset, p), cell in sorted(cells.items(), key=lambda c: (DATASETS.index(c[0][0]),
                                                                 c[0][1])):
        gain = np.array([cf["probe"] - pre["probe"] for pre, cf in cell])
        needed = -0.01 if p == 0 else 0.0
        met = "met" if gain.mean() >= needed else f"NOT met (needs >= {needed:+.2f})"
        if p not in (0.0, 0.5, 0.75):
            met = "-"
        lines.append([dataset, f"{p:.2f}", str(len(cell)),
                      f"{np.mean([pre['fit_noisy'] for pre, _ in cell]):.3f}",
                      mean_std([pre["probe"] for pre, _ in cell]),
                      mean_std([cf["probe"] for _, cf in cell]),
                      f"{gain.mean():+.4f} (min {gain.min():+.3f})", met])
    return grid(lines)


def sweep_table(rows):
    """Mean gain of every variant per (dataset, p) over seeds, default teacher."""
    columns = sorted({(r["dataset"], r["p"]) for r in rows if r["variant"] == "N_pre"},
                     key=lambda c: (DATASETS.index(c[0]), c[1]))
    header = ["factor", "variant"] + [f"{d} p={p:g}" for d, p in columns] + [
        "mean", "cells > 0"]
    lines = [header]
    for variant, (factor, _) in VARIANTS.items():
        by_cell = {}
        for pre, cf in pairs(rows, variant):
            if pre["teacher"] == "default":
                by_cell.setdefault((pre["dataset"], pre["p"]), []).append(
                    cf["probe"] - pre["probe"])
        if not by_cell:
            continue
        means = [np.mean(by_cell[c]) if c in by_cell else np.nan for c in columns]
        lines.append([factor, variant] + [
            f"{m * 100:+.1f}" if not np.isnan(m) else "-" for m in means] + [
            f"{np.nanmean(means) * 100:+.2f}",
            f"{sum(m > 0 for m in means if not np.isnan(m))}/"
            f"{sum(not np.isnan(m) for m in means)}"])
    return grid(lines)


def teacher_table(rows):
    """Per teacher recipe and p: memorisation, N_pre, and the baseline's gain."""
    cells = {}
    for pre, cf in pairs(rows, "baseline"):
        cells.setdefault((pre["teacher"], pre["p"]), []).append((pre, cf))
    lines = [["teacher recipe", "p", "cells", "fit to noisy labels",
              "noisy labels memorised", "N_pre", "N_cf (baseline)", "gain"]]
    for (recipe, p), cell in sorted(cells.items(), key=lambda c: (list(TEACHERS).index(
            c[0][0]), c[0][1])):
        lines.append([recipe, f"{p:g}", str(len(cell)),
                      f"{np.mean([a['fit_noisy'] for a, _ in cell]):.3f}",
                      f"{np.nanmean([a['memorised'] for a, _ in cell]):.3f}"
                      if p > 0 else "-",
                      f"{np.mean([a['probe'] for a, _ in cell]):.3f}",
                      f"{np.mean([b['probe'] for _, b in cell]):.3f}",
                      f"{np.mean([b['probe'] - a['probe'] for a, b in cell]) * 100:+.2f}"])
    return grid(lines)


DIAGNOSTICS = {
    # name: (function of an N_pre row, direction: +1 if larger means "helps")
    "fit to noisy labels": (lambda r: r["fit_noisy"], -1),
    "kNN agreement of noisy labels (teacher features)": (lambda r: r["knn_agree"], -1),
    "kNN agreement of noisy labels (pixels)": (lambda r: r["pixel_knn_agree"], -1),
    "cluster-majority fit to noisy labels": (lambda r: r["cluster_fit"], -1),
    "fit minus kNN agreement (memorisation gap)":
        (lambda r: r["fit_noisy"] - r["knn_agree"], +1),
    "fit minus cluster-majority fit":
        (lambda r: r["fit_noisy"] - r["cluster_fit"], +1),
    "cluster purity w.r.t. teacher predictions": (lambda r: r["pred_purity"], -1),
    # evaluation.noise_fit's memorisation, from study_held_out.csv (--held-out)
    "noise_fit memorisation (train minus held-out fit)":
        (lambda r: r.get("noise_fit_memorisation", np.nan), +1),
}
# Rules with a fixed threshold (no fitting): name -> (diagnostic, threshold).
FIXED_RULES = {
    "noise_fit likely_to_help (memorisation > 0.05)":
        ("noise_fit memorisation (train minus held-out fit)", 0.05),
    "previous rule (memorisation > 0.1)":
        ("noise_fit memorisation (train minus held-out fit)", 0.1),
}


def diagnostic_table(rows, variant):
    """How well each diagnostic, thresholded, predicts the sign of the gain.

    "best threshold" is fitted on all pairs (optimistic); "leave one dataset
    out" fits it on the other datasets and scores the held-out one.
    """
    data = pairs(rows, variant)
    if len(data) < 4:
        return ""
    gain = np.array([cf["probe"] - pre["probe"] for pre, cf in data])
    sign = gain > 0
    datasets = np.array([pre["dataset"] for pre, _ in data])
    lines = [["diagnostic", "helps when", "best threshold", "correct (all)",
              "correct (leave one dataset out)", "Spearman with gain"]]
    from scipy.stats import spearmanr

    for name, (fn, direction) in DIAGNOSTICS.items():
        value = direction * np.array([fn(pre) for pre, _ in data], dtype=float)
        have = ~np.isnan(value)  # e.g. noise_fit only where --held-out ran
        if have.sum() < 4:
            continue
        value, s, g, ds = value[have], sign[have], gain[have], datasets[have]
        threshold, correct = _best_threshold(value, s)
        held = 0
        for d in np.unique(ds):
            train = ds != d
            if not train.any():
                continue
            t, _ = _best_threshold(value[train], s[train])
            held += np.sum((value[~train] > t) == s[~train])
        shown = direction * threshold
        lines.append([name, f"{'>' if direction > 0 else '<'} {shown:.3f}", f"{shown:.3f}",
                      f"{correct}/{len(value)}", f"{held}/{len(value)}",
                      f"{direction * spearmanr(value, g).statistic:+.2f}"])
    for name, (diagnostic, threshold) in FIXED_RULES.items():
        fn, direction = DIAGNOSTICS[diagnostic]
        value = np.array([fn(pre) for pre, _ in data], dtype=float)
        have = ~np.isnan(value)
        if have.sum() < 4:
            continue
        correct = int(np.sum((value[have] > threshold) == sign[have]))
        lines.append([name, f"> {threshold:g}", f"{threshold:g} (fixed)",
                      f"{correct}/{have.sum()}", f"{correct}/{have.sum()} (nothing fitted)",
                      ""])
    always = max(sign.sum(), (~sign).sum())
    return grid(lines) + (
        f"\n{len(data)} teachers; ClusterFit ({variant}) helped on {sign.sum()}; "
        f"always predicting the majority sign is right on {always}/{len(data)}.")


def attach_held_out(rows, held_out):
    """noise_fit's memorisation (study_held_out.csv) onto the N_pre rows."""
    gaps = {(h["dataset"], float(h["p"]), int(float(h["seed"])), h["teacher"]):
            float(h["train_fit"]) - float(h["held_out_fit"]) for h in held_out}
    for r in rows:
        key = (r["dataset"], float(r["p"]), int(float(r["seed"])), r["teacher"])
        if r["variant"] == "N_pre" and key in gaps:
            r["noise_fit_memorisation"] = gaps[key]
    return rows


def _best_threshold(value, sign):
    """The cut "value > t means helps" with most correct signs (ties: the middle)."""
    order = np.unique(value)
    cuts = np.concatenate([[order[0] - 1], (order[:-1] + order[1:]) / 2, [order[-1] + 1]])
    scores = [int(np.sum((value > t) == sign)) for t in cuts]
    best = max(scores)
    winners = [t for t, sc in zip(cuts, scores) if sc == best]
    return winners[len(winners) // 2], best


def report(out_dir, static_dir):
    """Tables of every plan's CSV into ``study_report.txt``; plots into ``static_dir``."""
    sweep = read_csv(os.path.join(out_dir, "study_sweep.csv"))
    final = read_csv(os.path.join(out_dir, "study_final.csv"))
    random_labels = read_csv(os.path.join(out_dir, "study_random_labels.csv"))
    held_path = os.path.join(out_dir, "study_held_out.csv")
    if os.path.exists(held_path):
        import csv

        with open(held_path, newline="") as f:
            held_out = list(csv.DictReader(f))
        for rows in (sweep, final, random_labels):
            attach_held_out(rows, held_out)
    parts = []
    if final:
        parts += ["Final: ClusterFit with every default, teacher NetClassifier() on noisy "
                  "labels (linear probe on clean held-out labels)",
                  outcome_table(final)]
    if random_labels:
        parts += ["p = 0.9: labels independent of the images (a random-label teacher)",
                  outcome_table(random_labels)]
    if sweep:
        parts += ["Sweep: baseline and one factor at a time (default teacher)",
                  outcome_table(sweep, "baseline"),
                  "Gain N_cf - N_pre in points, mean over seeds, per variant",
                  sweep_table(sweep),
                  "Teacher recipe (baseline ClusterFit)", teacher_table(sweep),
                  "Diagnostics against the sign of the sweep baseline's gain "
                  "(all teacher recipes)", diagnostic_table(sweep, "baseline")]
    if final:
        parts += ["Diagnostics against the sign of the final defaults' gain "
                  "(p <= 0.75)", diagnostic_table(final, "defaults")]
    text = "\n\n".join(p for p in parts if p)
    with open(os.path.join(out_dir, "study_report.txt"), "w") as f:
        f.write("command: python benchmarks/noisy_teacher_study.py --report\n\n"
                + text + "\n")
    print(text)
    plots(sweep, final, random_labels, static_dir)


def plots(sweep, final, random_labels, static_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(static_dir, exist_ok=True)
    if final:
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), sharey=False)
        for ax, dataset in zip(axes, DATASETS):
            for network, style in (("N_pre", dict(color="black", marker="o")),
                                   ("N_cf", dict(color="C0", marker="s"))):
                pts = {}
                for pre, cf in pairs(final + random_labels, "defaults"):
                    if pre["dataset"] == dataset:
                        r = pre if network == "N_pre" else cf
                        pts.setdefault(pre["p"], []).append(r["probe"])
                if not pts:
                    continue
                ps = sorted(pts)
                ax.errorbar([100 * p for p in ps], [np.mean(pts[p]) for p in ps],
                            yerr=[np.std(pts[p]) for p in ps], capsize=3,
                            label=network, **style)
            if random_labels:  # p = 0.9 is another kind of teacher: shade it
                ax.axvspan(85, 95, color="0.9")
            ax.set_title(dataset)
            ax.set_xlabel("label noise p (%)")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("linear probe (clean labels)")
        axes[0].legend()
        fig.suptitle("ClusterFit defaults on a NetClassifier() teacher"
                     + ("; grey: p=0.9, random labels" if random_labels else ""),
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(os.path.join(static_dir, "study_final.png"), dpi=110)
        plt.close(fig)
    if sweep:
        names = [v for v in VARIANTS if pairs(sweep, v)]
        noise = sorted({r["p"] for r in sweep})
        fig, ax = plt.subplots(figsize=(7, 0.32 * len(names) + 1.2))
        for j, p in enumerate(noise):
            means = []
            for v in names:
                g = [cf["probe"] - pre["probe"] for pre, cf in pairs(sweep, v)
                     if pre["p"] == p and pre["teacher"] == "default"]
                means.append(100 * np.mean(g) if g else np.nan)
            ax.barh(np.arange(len(names)) + (j - 1) * 0.27, means, height=0.27,
                    label=f"p={p:g}")
        ax.set_yticks(np.arange(len(names)), names)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("gain N_cf - N_pre (points), mean over datasets and seeds")
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(static_dir, "study_sweep.png"), dpi=110)
        plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="sweep")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS)
    parser.add_argument("--noise", type=float, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--teachers", nargs="+", choices=list(TEACHERS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS))
    parser.add_argument("--teachers-only", action="store_true",
                        help="train (and probe) the teachers of the plan, no ClusterFit")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", default=None,
                        help="CSV of runs (default benchmarks/results/study_<plan>.csv)")
    parser.add_argument("--cache", default="benchmarks/.study_cache",
                        help="trained teachers, reused by later runs and plans")
    parser.add_argument("--static", default="docs/_static",
                        help="where --report writes the plots")
    parser.add_argument("--held-out", action="store_true",
                        help="train nothing: every cached teacher's fit to noisy "
                        "labels of held-out images (study_held_out.csv)")
    parser.add_argument("--report", action="store_true",
                        help="train nothing: print the tables from the CSV files")
    args = parser.parse_args(argv)
    out = args.out or f"benchmarks/results/study_{args.plan.replace('-', '_')}.csv"
    if args.report:
        report(os.path.dirname(out), args.static)
        return 0
    if args.held_out:
        held_out_fits(args.cache, os.path.join(os.path.dirname(out), "study_held_out.csv"))
        return 0
    if not args.report:
        from joblib import Parallel, delayed

        jobs = plan_jobs(args.plan, args)
        print(f"{len(jobs)} jobs, plan {args.plan}, load {os.getloadavg()}", flush=True)
        for _ in Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")(
            delayed(job)(*j, out, args.cache) for j in jobs
        ):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
