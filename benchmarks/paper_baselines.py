"""The paper's comparisons on the control experiment (``--experiments baselines``).

For each label noise p and seed, one teacher N_pre is trained on noisy labels
(as in the control experiment), and every alternative the paper compares
ClusterFit with is trained from it on the same 3,500 MNIST-14 images:

- ``N_pre``: the teacher itself;
- ``N_pre 2x``: the teacher trained for teacher + student epochs (the paper's
  "N_pre 2x": as many epochs as N_pre and N_cf together), the check that
  ClusterFit's gain is not extra compute;
- ``Distill``: a student on the teacher's soft targets at temperature T,
  mixed with the noisy labels (:class:`skclusterfit.Distillation`);
- ``Prototype``: ClusterFit whose clusters are the noisy classes' mean
  features, each image at its nearest (``PrototypeClusterer``; uses labels);
- ``Per-label``: ClusterFit with k-means inside each noisy label, k_l
  proportional to sqrt(n_l) (``PerLabelKMeans``; uses labels);
- ``N_cf``: ClusterFit (K clusters, no labels), and its rounds 2 and 3
  (``n_rounds=3``: each round's student teaches the next);
- ``N_cf multi``: ClusterFit on the noisy-label teacher and a RotNet
  (trained once per seed, without labels) together, ``teacher=[N_pre, RotNet]``.

Every network is judged on clean labels of the 1,500 held-out images by the
linear probe and by the kNN probe (DINO's: k=20, T=0.07). One CSV row is
appended per finished network, so a grid cut short resumes where it stopped
(fitted teachers are cached in ``--cache-dir``).
"""

import csv
import os
import subprocess
import sys
import time

import numpy as np

NETWORKS = [
    "N_pre", "N_pre 2x", "Distill", "Prototype", "Per-label",
    "N_cf", "N_cf round 2", "N_cf round 3", "N_cf multi",
]
USES_LABELS = {"N_pre", "N_pre 2x", "Distill", "Prototype", "Per-label"}
FIELDS = [
    "experiment", "network", "p", "K", "seed", "probe", "knn", "fit_noisy",
    "fit_clean", "seconds", "cpu_seconds", "load", "threads", "commit",
]
CSV_NAME = "baselines_runs.csv"


def add_arguments(parser):
    group = parser.add_argument_group("baselines (--experiments baselines)")
    group.add_argument("--baselines-noise", type=float, nargs="+",
                       default=[0.0, 0.5, 0.75, 0.9])
    group.add_argument("--baselines-K", type=int, default=200,
                       help="K of N_cf, its rounds, per-label and multi-teacher")
    group.add_argument("--temperature", type=float, default=4.0,
                       help="distillation temperature T")
    group.add_argument("--alpha", type=float, default=0.5,
                       help="distillation: weight of the soft targets (1 - alpha: labels)")
    group.add_argument("--cache-dir", default=None,
                       help="fitted teachers (default: <out>/baselines_cache)")


def git_commit():
    """The code's commit: $SKCLUSTERFIT_COMMIT (a run from an exported copy), else git's."""
    if os.environ.get("SKCLUSTERFIT_COMMIT"):
        return os.environ["SKCLUSTERFIT_COMMIT"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)), check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cached(path, fit):
    """A fitted estimator from ``path`` (skclusterfit.save), else ``fit()`` saved there."""
    import skclusterfit

    if os.path.exists(path):
        return skclusterfit.load(path)
    estimator = fit()
    skclusterfit.save(estimator, path)
    return estimator


def rotnet_job(seed, epochs, resolution, cache_dir):
    """The seed's RotNet teacher (no labels), fitted once and cached."""
    from paper_experiments import _limit_threads, load_data

    _limit_threads()
    from skclusterfit import NetClassifier
    from skclusterfit.pretext import RotNet

    X_train = load_data(seed, resolution)[0]
    path = os.path.join(cache_dir, f"rotnet-seed{seed}-e{epochs}-r{resolution}.skcf")
    wall, cpu = time.perf_counter(), time.process_time()
    _cached(path, lambda: RotNet(
        NetClassifier(max_epochs=epochs, device="cpu"), random_state=seed
    ).fit(X_train))
    return seed, path, time.perf_counter() - wall, time.process_time() - cpu


def cell_job(p, seed, args, done, csv_path, rotnet_path):
    """Every network of one (p, seed) cell not in ``done``; rows appended to the CSV."""
    from paper_experiments import _limit_threads, load_data

    _limit_threads()
    import torch
    from sklearn.frozen import FrozenEstimator

    import skclusterfit
    from skclusterfit import ClusterFit, Distillation, NetClassifier
    from skclusterfit.cluster import PerLabelKMeans, PrototypeClusterer
    from skclusterfit.data import add_label_noise
    from skclusterfit.evaluation import knn_probe, linear_probe

    X_train, X_test, y_train, y_test = load_data(seed, args.resolution)
    y_noisy = add_label_noise(y_train, p, random_state=seed)
    K, commit = args.baselines_K, git_commit()
    tag = f"p{p}-seed{seed}-e{args.teacher_epochs}-r{args.resolution}"

    def student():
        return NetClassifier(max_epochs=args.student_epochs)

    def record(network, estimator, seconds, cpu_seconds, teacher=None):
        train, test = estimator.transform(X_train), estimator.transform(X_test)
        row = {
            "experiment": "baselines", "network": network, "p": p,
            "K": 0 if network in ("N_pre", "N_pre 2x", "Distill") else K,
            "seed": seed,
            "probe": linear_probe(train, y_train, test, y_test),
            "knn": knn_probe(train, y_train, test, y_test, k=20, temperature=0.07),
            "fit_noisy": float(teacher.score(X_train, y_noisy)) if teacher else np.nan,
            "fit_clean": float(teacher.score(X_train, y_train)) if teacher else np.nan,
            "seconds": seconds, "cpu_seconds": cpu_seconds,
            "load": os.getloadavg()[0], "threads": torch.get_num_threads(),
            "commit": commit,
        }
        if network == "Prototype":
            row["K"] = 10
        line = ",".join(_csv_value(row[f]) for f in FIELDS) + "\n"
        with open(csv_path, "a") as f:  # one short write: whole rows under concurrency
            f.write(line)
        print(f"baselines p={p} seed={seed} {network:13} linear {row['probe']:.4f} "
              f"kNN {row['knn']:.4f} ({seconds:.0f}s, load {row['load']:.1f})", flush=True)

    def timed(fit):
        wall, cpu = time.perf_counter(), time.process_time()
        estimator = fit()
        return estimator, time.perf_counter() - wall, time.process_time() - cpu

    def todo(*networks):
        return any(n not in done for n in networks)

    cache = args.cache_dir
    teacher, seconds, cpu = timed(lambda: _cached(
        os.path.join(cache, f"teacher-{tag}.skcf"),
        lambda: NetClassifier(max_epochs=args.teacher_epochs, device="cpu",
                              random_state=seed).fit(X_train, y_noisy)))
    if todo("N_pre"):
        record("N_pre", teacher, seconds, cpu, teacher=teacher)
    frozen = FrozenEstimator(teacher)
    if todo("N_pre 2x"):
        longer, seconds, cpu = timed(lambda: NetClassifier(
            max_epochs=args.teacher_epochs + args.student_epochs, device="cpu",
            random_state=seed).fit(X_train, y_noisy))
        record("N_pre 2x", longer, seconds, cpu, teacher=longer)
    if todo("Distill"):
        distilled, seconds, cpu = timed(lambda: Distillation(
            frozen, temperature=args.temperature, alpha=args.alpha, student=student(),
            device="cpu", random_state=seed).fit(X_train, y_noisy))
        record("Distill", distilled, seconds, cpu)
    for network, clusterer in (("Prototype", PrototypeClusterer()),
                               ("Per-label", PerLabelKMeans())):
        if todo(network):
            cf, seconds, cpu = timed(lambda c=clusterer: ClusterFit(
                frozen, K=K, clusterer=c, student=student(), device="cpu",
                random_state=seed).fit(X_train, y_noisy))
            record(network, cf, seconds, cpu)
    rounds = ("N_cf", "N_cf round 2", "N_cf round 3")
    if todo(*rounds):
        cf, seconds, cpu = timed(lambda: ClusterFit(
            frozen, K=K, student=student(), device="cpu", random_state=seed,
            n_rounds=3).fit(X_train))
        for network, entry in zip(rounds, cf.rounds_):
            if todo(network):
                # Time and CPU of all three rounds, split evenly.
                record(network, entry["student"], seconds / 3, cpu / 3)
    if todo("N_cf multi"):
        rotnet = skclusterfit.load(rotnet_path)
        cf, seconds, cpu = timed(lambda: ClusterFit(
            [frozen, FrozenEstimator(rotnet)], K=K, student=student(), device="cpu",
            random_state=seed).fit(X_train))
        record("N_cf multi", cf, seconds, cpu)


def _csv_value(value):
    if isinstance(value, float):
        return "nan" if np.isnan(value) else repr(value)
    return str(value)


def read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for name in ("p", "probe", "knn", "fit_noisy", "fit_clean", "seconds",
                     "cpu_seconds", "load"):
            r[name] = float(r[name]) if r[name] not in ("", "nan") else np.nan
        r["K"], r["seed"], r["threads"] = int(r["K"]), int(r["seed"]), int(r["threads"])
    return rows


def run(args):
    """Run (or resume) the grid; write the CSV, the tables and the plot."""
    from joblib import Parallel, delayed

    os.makedirs(args.out, exist_ok=True)
    args.cache_dir = args.cache_dir or os.path.join(args.out, "baselines_cache")
    os.makedirs(args.cache_dir, exist_ok=True)
    csv_path = os.path.join(args.out, CSV_NAME)
    if not os.path.exists(csv_path):
        with open(csv_path, "w") as f:
            f.write(",".join(FIELDS) + "\n")
    rows = read_rows(csv_path)
    done = {}
    for r in rows:
        done.setdefault((r["p"], r["seed"]), set()).add(r["network"])
    start, cpu_start = time.perf_counter(), time.process_time()
    bench_dir = os.path.dirname(os.path.abspath(__file__))
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    parallel = Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")
    todo_seeds = [s for s in args.seeds
                  if any(len(done.get((p, s), ())) < len(NETWORKS) for p in args.baselines_noise)]
    rotnets, rotnet_cpu = {}, 0.0
    for seed, path, _, cpu in parallel(
        delayed(rotnet_job)(seed, args.rotnet_epochs, args.resolution, args.cache_dir)
        for seed in todo_seeds
    ):
        rotnets[seed], rotnet_cpu = path, rotnet_cpu + cpu
    jobs = [
        delayed(cell_job)(p, seed, args, done.get((p, seed), set()), csv_path, rotnets[seed])
        for seed in args.seeds for p in args.baselines_noise
        if len(done.get((p, seed), ())) < len(NETWORKS)
    ]
    for _ in parallel(jobs):
        pass
    wall = (time.perf_counter() - start) / 60
    rows = read_rows(csv_path)
    settings = (
        f"MNIST-5k at {args.resolution}x{args.resolution} (3,500 train / 1,500 test), "
        f"SmallCNN, teacher {args.teacher_epochs} epochs (N_pre 2x: "
        f"{args.teacher_epochs + args.student_epochs}), students {args.student_epochs} "
        f"epochs, RotNet {args.rotnet_epochs} epochs, K={args.baselines_K}, distillation "
        f"T={args.temperature} alpha={args.alpha}, seeds {args.seeds}, p "
        f"{args.baselines_noise}; this invocation {wall:.1f} min wall with --n-jobs "
        f"{args.n_jobs} (RotNet teachers fitted or loaded: {rotnet_cpu / 60:.1f} CPU-min; "
        f"parent CPU {time.process_time() - cpu_start:.0f} s; every run's CPU seconds "
        f"are in the CSV)"
    )
    write_report(rows, settings, args.out)


def summarise(rows):
    """Mean and std over seeds of both probes for every (network, p)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["network"], r["p"]), []).append(r)
    return {
        key: {
            "n": len(rs),
            **{f"{probe}_mean": np.mean([r[probe] for r in rs]) for probe in ("probe", "knn")},
            **{f"{probe}_std": (np.std([r[probe] for r in rs], ddof=1) if len(rs) > 1 else 0.0)
               for probe in ("probe", "knn")},
        }
        for key, rs in groups.items()
    }


def table(summary, probe):
    from paper_experiments import _grid

    ps = sorted({p for _, p in summary})
    networks = [n for n in NETWORKS if any((n, p) in summary for p in ps)]
    lines = [["network", "labels"] + [f"p={p:.2f}" for p in ps]]
    for network in networks:
        line = [network, "yes" if network in USES_LABELS else "no"]
        for p in ps:
            cell, ref = summary.get((network, p)), summary.get(("N_pre", p))
            if cell is None:
                line.append("-")
                continue
            text = f"{cell[probe + '_mean']:.3f} +- {cell[probe + '_std']:.3f}"
            if ref is not None and network != "N_pre":
                text += f" ({cell[probe + '_mean'] - ref[probe + '_mean']:+.3f})"
            line.append(text)
        lines.append(line)
    n = sorted({s["n"] for s in summary.values()})
    seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]} to {n[-1]} (cells differ)"
    return _grid(lines) + (
        f"\nmean +- std over {seeds} seeds; (+x): difference from N_pre at the same p; "
        "'labels': the (noisy) labels are used beyond the teacher.\n"
    )


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=False)
    styles = {
        "N_pre": dict(color="black", marker="o"), "N_pre 2x": dict(color="gray", marker="o",
                                                                 linestyle="--"),
        "Distill": dict(color="tab:purple", marker="v"),
        "Prototype": dict(color="tab:brown", marker="D", linestyle=":"),
        "Per-label": dict(color="tab:olive", marker="D", linestyle=":"),
        "N_cf": dict(color="tab:blue", marker="s", linewidth=2),
        "N_cf round 2": dict(color="tab:cyan", marker="s", linestyle="--"),
        "N_cf round 3": dict(color="tab:green", marker="s", linestyle="--"),
        "N_cf multi": dict(color="tab:red", marker="^"),
    }
    for ax, probe, name in zip(axes, ("probe", "knn"), ("linear probe", "kNN probe (k=20)")):
        for network in NETWORKS:
            points = sorted((p, s[probe + "_mean"], s[probe + "_std"])
                            for (n, p), s in summary.items() if n == network)
            if not points:
                continue
            p, mean, std = map(np.array, zip(*points))
            ax.errorbar(100 * p, 100 * mean, yerr=100 * std, capsize=2, label=network,
                        **styles[network])
        ax.set_xlabel("label noise p (%) of the teacher's training labels")
        ax.set_ylabel("accuracy on clean held-out labels (%)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    n_seeds = max(s["n"] for s in summary.values())
    fig.suptitle(f"ClusterFit and the paper's baselines, MNIST-5k, {n_seeds} seed(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(rows, settings, out):
    if not rows:
        print("no baseline runs to report")
        return
    summary = summarise(rows)
    cpu_hours = np.nansum([r["cpu_seconds"] for r in rows]) / 3600
    loads = [r["load"] for r in rows]
    report = "\n\n".join([
        settings,
        f"{len(rows)} runs, {cpu_hours:.2f} CPU-hours of training inside the runs "
        f"(RotNet teachers not included), 1 torch thread per process, load average "
        f"{min(loads):.1f} to {max(loads):.1f} while they ran; commits "
        f"{sorted({r['commit'] for r in rows})}",
        "Linear probe (clean held-out labels)",
        table(summary, "probe"),
        "kNN probe (k=20, T=0.07, L2-normalised features)",
        table(summary, "knn"),
    ])
    print("\n" + report)
    with open(os.path.join(out, "baselines_summary.txt"), "w") as f:
        f.write("command: python " + " ".join(sys.argv) + "\n\n" + report + "\n")
    plot(summary, os.path.join(out, "baselines.png"))
