"""Reproduce ClusterFit's two headline effects at CPU scale on MNIST-5k.

1. Control experiment (paper section 3.2, Fig. 3): a teacher N_pre trained on
   labels with a fraction p of uniform noise; ClusterFit (K clusters of its
   L2-normalised penultimate features) trains a student N_cf from scratch on
   the pseudo-labels; both are judged by a linear probe on clean labels of
   held-out data.
2. Self-supervised teacher (section 4.2, Table 6): a RotNet teacher trained
   without labels; ClusterFit on its features; linear probe of both.

Usage::

    python benchmarks/paper_experiments.py            # default grid
    python benchmarks/paper_experiments.py --quick    # a few minutes
    python benchmarks/paper_experiments.py --experiments baselines  # the paper's
        # comparisons: distillation, prototype, per-label, N_pre 2x, rounds,
        # multi-teacher (benchmarks/paper_baselines.py), resumable

Results go to ``--out`` (CSV per experiment, a text table and the Fig. 3
style plot). Each (p, seed) teacher is one job; ``--n-jobs`` processes run
side by side with one torch thread each.
"""

import argparse
import csv
import os
import sys
import time

import numpy as np

QUICK = {
    "noise": [0.0, 0.5, 0.9], "K": [100], "seeds": [0], "teacher_epochs": 20, "student_epochs": 15,
    "rotnet_epochs": 5, "rotnet_K": [100], "baselines_noise": [0.0, 0.9], "baselines_K": 100,
}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one seed, p in {0, 0.5, 0.9}, one K, shorter training")
    parser.add_argument("--experiments", nargs="+", default=["control", "rotnet"],
                        choices=["control", "rotnet", "layers", "baselines"],
        help="'layers' (not in the default): layer-wise probes of a RotNet "
        "teacher and its student, first seed, largest --rotnet-K; 'baselines' "
        "(not in the default): the paper's comparisons on the control "
        "experiment (benchmarks/paper_baselines.py)")
    parser.add_argument("--noise", type=float, nargs="+",
                        default=[0.0, 0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--K", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--student-epochs", type=int, default=20)
    parser.add_argument("--rotnet-epochs", type=int, default=10,
                        help="each epoch sees every image under all 4 rotations")
    parser.add_argument("--rotnet-K", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--resolution", type=int, default=14, choices=[14, 28],
                        help="MNIST side in pixels (14: 2x2 mean-pooled, 4x cheaper)")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--from-csv", metavar="RUNS_CSV",
                        help="train nothing: tables and plot from an earlier runs.csv "
                        "(e.g. of a grid cut short; a baselines_runs.csv gives the "
                        "baselines' tables)")
    _baselines().add_arguments(parser)
    return parser


def _baselines():
    """benchmarks/paper_baselines.py, importable however this script is run."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import paper_baselines

    return paper_baselines


def load_data(seed, resolution):
    """MNIST-5k, 3,500 train / 1,500 test, stratified, split by ``seed``."""
    from sklearn.model_selection import train_test_split

    from skclusterfit.data import load_mnist_images

    X, y = load_mnist_images(resolution=resolution)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def _limit_threads():
    import torch

    torch.set_num_threads(1)


def clusterfit_rows(teacher, Ks, student_epochs, seed, split, *, experiment, p):
    """ClusterFit on a fitted ``teacher`` for every K: one result row each."""
    from sklearn.frozen import FrozenEstimator

    from skclusterfit import ClusterFit, NetClassifier
    from skclusterfit.evaluation import linear_probe

    X_train, X_test, y_train, y_test = split
    rows = []
    for K in Ks:
        start = time.perf_counter()
        cf = ClusterFit(
            teacher=FrozenEstimator(teacher),
            K=K,
            student=NetClassifier(max_epochs=student_epochs),
            device="cpu",
            random_state=seed,
        ).fit(X_train)
        rows.append({
            "experiment": experiment, "network": "N_cf", "p": p, "K": K, "seed": seed,
            "probe": linear_probe(X_train, y_train, X_test, y_test, transformer=cf),
            "fit_noisy": np.nan, "fit_clean": np.nan,
            "seconds": time.perf_counter() - start,
        })
    return rows


def control_job(p, seed, Ks, teacher_epochs, student_epochs, resolution):
    """One noisy teacher, its probe, and ClusterFit for every K: a list of rows."""
    _limit_threads()
    from skclusterfit import NetClassifier
    from skclusterfit.data import add_label_noise
    from skclusterfit.evaluation import linear_probe

    X_train, X_test, y_train, y_test = load_data(seed, resolution)
    y_noisy = add_label_noise(y_train, p, random_state=seed)
    start = time.perf_counter()
    teacher = NetClassifier(max_epochs=teacher_epochs, device="cpu", random_state=seed)
    teacher.fit(X_train, y_noisy)
    seconds = time.perf_counter() - start
    rows = [{
        "experiment": "control", "network": "N_pre", "p": p, "K": 0, "seed": seed,
        "probe": linear_probe(X_train, y_train, X_test, y_test, transformer=teacher),
        # How much of the noise the teacher memorised: its accuracy on the
        # noisy labels it was trained on, and on the clean ones.
        "fit_noisy": float(teacher.score(X_train, y_noisy)),
        "fit_clean": float(teacher.score(X_train, y_train)),
        "seconds": seconds,
    }]
    rows += clusterfit_rows(
        teacher, Ks, student_epochs, seed, (X_train, X_test, y_train, y_test),
        experiment="control", p=p,
    )
    print(format_rows(rows), flush=True)
    return rows


def rotnet_job(seed, Ks, rotnet_epochs, student_epochs, resolution):
    """A RotNet teacher (no labels), its probe, and ClusterFit for every K."""
    _limit_threads()
    from skclusterfit import NetClassifier
    from skclusterfit.evaluation import linear_probe
    from skclusterfit.pretext import RotNet

    X_train, X_test, y_train, y_test = load_data(seed, resolution)
    start = time.perf_counter()
    rotnet = RotNet(
        NetClassifier(max_epochs=rotnet_epochs, device="cpu"), random_state=seed
    ).fit(X_train)
    rows = [{
        "experiment": "rotnet", "network": "N_pre", "p": np.nan, "K": 0, "seed": seed,
        "probe": linear_probe(X_train, y_train, X_test, y_test, transformer=rotnet),
        "fit_noisy": np.nan, "fit_clean": np.nan, "seconds": time.perf_counter() - start,
    }]
    rows += clusterfit_rows(
        rotnet, Ks, student_epochs, seed, (X_train, X_test, y_train, y_test),
        experiment="rotnet", p=np.nan,
    )
    print(format_rows(rows), flush=True)
    return rows


BLOCKS = {
    "conv1": "backbone.features.0",
    "conv2": "backbone.features.1",
    "conv3": "backbone.features.2",
}


def layers_job(seed, K, rotnet_epochs, student_epochs, resolution):
    """Layer-wise probes of a RotNet teacher and its ClusterFit student (paper Fig. 4)."""
    _limit_threads()
    from sklearn.frozen import FrozenEstimator

    from skclusterfit import ClusterFit, NetClassifier
    from skclusterfit.evaluation import layerwise_probe
    from skclusterfit.pretext import RotNet

    X_train, X_test, y_train, y_test = load_data(seed, resolution)
    rotnet = RotNet(
        NetClassifier(max_epochs=rotnet_epochs, device="cpu"), random_state=seed
    ).fit(X_train)
    cf = ClusterFit(
        teacher=FrozenEstimator(rotnet), K=K,
        student=NetClassifier(max_epochs=student_epochs), device="cpu",
        random_state=seed,
    ).fit(X_train)
    layers = list(BLOCKS.values())
    return {
        name: layerwise_probe(est, layers, X_train, y_train, X_test, y_test)
        for name, est in (("RotNet N_pre", rotnet), (f"N_cf K={K}", cf))
    }


def layers_table(results, seed):
    lines = [["network"] + [f"{name} (pooled)" for name in BLOCKS]]
    for network, accuracies in results.items():
        lines.append([network] + [f"{accuracies[node]:.3f}" for node in BLOCKS.values()])
    return _grid(lines) + f"\nlinear probe of each conv block, seed {seed}.\n"


def format_rows(rows):
    return "\n".join(
        f"{r['experiment']:8} {r['network']:5} p={r['p']!s:5} K={r['K']:<4} "
        f"seed={r['seed']} probe={r['probe']:.4f} ({r['seconds']:.0f}s)"
        for r in rows
    )


def summarise(rows):
    """Mean and standard deviation over seeds of every (experiment, network, p, K)."""
    groups = {}
    for r in rows:
        p = None if np.isnan(r["p"]) else r["p"]  # nan != nan would split groups
        key = (r["experiment"], r["network"], p, r["K"])
        groups.setdefault(key, []).append(r)
    out = []
    for (experiment, network, p, K), rs in groups.items():
        acc = np.array([r["probe"] for r in rs])
        out.append({
            "experiment": experiment, "network": network, "p": p, "K": K, "n": len(rs),
            "mean": acc.mean(), "std": acc.std(ddof=1) if len(rs) > 1 else 0.0,
            "fit_noisy": np.mean([r["fit_noisy"] for r in rs]),
        })
    return out


def control_table(summary):
    """Rows p, columns N_pre and N_cf per K: mean +- std of the probe accuracy."""
    control = [s for s in summary if s["experiment"] == "control"]
    if not control:
        return ""
    ps = sorted({s["p"] for s in control})
    Ks = sorted({s["K"] for s in control if s["network"] == "N_cf"})
    cell = {(s["network"], s["p"], s["K"]): s for s in control}
    header = ["p", "teacher fit to noisy labels", "N_pre"] + [f"N_cf K={K}" for K in Ks]
    lines = [header]
    for p in ps:
        pre = cell.get(("N_pre", p, 0))
        line = [f"{p:.2f}", f"{pre['fit_noisy']:.3f}" if pre else "-", _pm(pre)]
        line += [_pm(cell.get(("N_cf", p, K)), pre) for K in Ks]
        lines.append(line)
    n = sorted({s["n"] for s in control})
    seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]} to {n[-1]} (cells differ)"
    return _grid(lines) + f"\nmean +- std over {seeds} seeds; (+x) is N_cf - N_pre.\n"


def rotnet_table(summary):
    rot = sorted(
        (s for s in summary if s["experiment"] == "rotnet"), key=lambda s: s["K"]
    )
    if not rot:
        return ""
    pre = next((s for s in rot if s["network"] == "N_pre"), None)
    lines = [["network", "linear probe"]]
    for s in rot:
        name = "RotNet N_pre" if s["network"] == "N_pre" else f"N_cf K={s['K']}"
        lines.append([name, _pm(s, pre if s["network"] == "N_cf" else None)])
    return _grid(lines) + f"\nmean +- std over {rot[0]['n']} seeds.\n"


def _pm(s, reference=None):
    if s is None:
        return "-"
    text = f"{s['mean']:.3f} +- {s['std']:.3f}"
    if reference is not None:
        text += f" ({s['mean'] - reference['mean']:+.3f})"
    return text


def _grid(lines):
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    rule = "  ".join("=" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    return "\n".join([rule, body[0], rule, *body[1:], rule])


def plot(summary, rows, path):
    """Accuracy vs p: one line for N_pre, one per K for N_cf (paper Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    control = [s for s in summary if s["experiment"] == "control"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    series = sorted({(s["network"], s["K"]) for s in control})
    for network, K in series:
        pts = sorted((s["p"], s["mean"], s["std"]) for s in control
                     if s["network"] == network and s["K"] == K)
        p, mean, std = map(np.array, zip(*pts))
        label = "N_pre" if network == "N_pre" else f"N_cf, K={K}"
        style = {"color": "black", "marker": "o"} if network == "N_pre" else {"marker": "s"}
        ax.errorbar(100 * p, mean, yerr=std, capsize=3, label=label, **style)
    ax.set_xlabel("label noise p (%) in the teacher's training labels")
    ax.set_ylabel("linear-probe accuracy (clean labels)")
    n_seeds = len({r["seed"] for r in rows if r["experiment"] == "control"})
    ax.set_title(f"ClusterFit control experiment, MNIST-5k, {n_seeds} seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


FIELDS = ["experiment", "network", "p", "K", "seed", "probe", "fit_noisy",
          "fit_clean", "seconds"]


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    from joblib import Parallel, delayed

    os.makedirs(args.out, exist_ok=True)
    if args.from_csv and os.path.basename(args.from_csv) == _baselines().CSV_NAME:
        rows = _baselines().read_rows(args.from_csv)
        _baselines().write_report(
            rows, f"from {args.from_csv}: {len(rows)} runs", args.out
        )
        return 0
    if args.from_csv:
        rows = read_rows(args.from_csv)
        seeds = sorted({r["seed"] for r in rows})
        write_report(rows, f"from {args.from_csv}: {len(rows)} runs, seeds {seeds}",
                     args.out)
        return 0
    if "layers" in args.experiments:
        seed, K = args.seeds[0], max(args.rotnet_K)
        start = time.perf_counter()
        table = layers_table(
            layers_job(seed, K, args.rotnet_epochs, args.student_epochs,
                       args.resolution), seed)
        table += f"{(time.perf_counter() - start) / 60:.1f} min\n"
        print(table)
        with open(os.path.join(args.out, "layers.txt"), "w") as f:
            f.write("command: python " + " ".join(sys.argv) + "\n\n" + table)
        args.experiments = [e for e in args.experiments if e != "layers"]
        if not args.experiments:
            return 0
    if "baselines" in args.experiments:
        _baselines().run(args)
        args.experiments = [e for e in args.experiments if e != "baselines"]
        if not args.experiments:
            return 0
    jobs = []
    if "rotnet" in args.experiments:
        jobs += [delayed(rotnet_job)(seed, args.rotnet_K, args.rotnet_epochs,
                                     args.student_epochs, args.resolution)
                 for seed in args.seeds]
    if "control" in args.experiments:
        # Seed by seed, so that a grid cut short still has whole seeds.
        jobs += [delayed(control_job)(p, seed, args.K, args.teacher_epochs,
                                      args.student_epochs, args.resolution)
                 for seed in args.seeds for p in args.noise]
    settings = (
        f"MNIST-5k at {args.resolution}x{args.resolution} (3,500 train / 1,500 test), "
        f"SmallCNN, teacher {args.teacher_epochs} epochs, student "
        f"{args.student_epochs} epochs, RotNet {args.rotnet_epochs} epochs, "
        f"seeds {args.seeds}"
    )
    print(settings, flush=True)
    start = time.perf_counter()
    rows = []
    # Rows are written as each job finishes, so an interrupted grid keeps its results.
    with open(os.path.join(args.out, "runs.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for job_rows in Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")(jobs):
            writer.writerows(job_rows)
            f.flush()
            rows += job_rows
    minutes = (time.perf_counter() - start) / 60
    settings += f"; {minutes:.1f} min with --n-jobs {args.n_jobs}"
    write_report(rows, settings, args.out)
    return 0


def read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for name in ("p", "probe", "fit_noisy", "fit_clean", "seconds"):
            r[name] = float(r[name]) if r[name] not in ("", "nan") else np.nan
        r["K"], r["seed"] = int(r["K"]), int(r["seed"])
    return rows


def write_report(rows, settings, out):
    """Print and save the tables; plot the control experiment."""
    summary = summarise(rows)
    report = "\n\n".join(filter(None, [
        settings,
        "Control experiment (linear probe on clean held-out labels)",
        control_table(summary),
        "RotNet teacher",
        rotnet_table(summary),
    ]))
    print("\n" + report)
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write("command: python " + " ".join(sys.argv) + "\n\n" + report + "\n")
    if any(s["experiment"] == "control" for s in summary):
        plot(summary, rows, os.path.join(out, "control_experiment.png"))


if __name__ == "__main__":
    sys.exit(main())
