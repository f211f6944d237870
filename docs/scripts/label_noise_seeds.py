"""The label-noise experiment over three seeds: raw output for the user guide.

The experiment of examples/paper/plot_label_noise.py (same code, same
settings), repeated over three train/test splits and seeds. Writes one line
per run to benchmarks/results/label_noise_seeds.txt, with the command, the
versions and the machine in its header. The documentation build turns that
file into the table of docs/user_guide/what_is_clusterfit.rst and the
summary on the landing page (docs/conf.py), and the gallery example checks
that its own seed-0 run equals the file's seed-0 lines, so the table cannot
go stale silently: after a change that moves the numbers, the docs build
fails until this script is run again::

    OMP_NUM_THREADS=1 python docs/scripts/label_noise_seeds.py

About 40 CPU-seconds per seed with one torch thread. The header records the
CPU model, the torch thread count and the versions: another CPU or thread
count rounds differently, and a few thousand SGD steps turn that into a
different test image here and there, so the example compares its run with
the file within the spread measured across CPUs and thread counts (see
``docs/user_guide/time_and_hardware.rst``), and only
``tests/test_label_noise_seeds.py``, which skips on any other machine,
compares bits. ``--out FILE`` writes elsewhere (to measure that spread
without replacing the file the docs use).
"""

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np
import sklearn
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

import skclusterfit
from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.data import add_label_noise, load_digits_images
from skclusterfit.evaluation import linear_probe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "label_noise_seeds.txt")
SEEDS = [0, 1, 2]
# With 10 classes, p = 0.9 draws every label uniformly (the true class and
# each of the 9 others with probability 0.1): a teacher trained on labels
# independent of the images. 0.75 is the paper's largest noise level.
NOISE = [0.0, 0.5, 0.75, 0.9]
COLUMNS = ["seed", "p", "n_pre", "n_cf", "teacher_fit_clean", "cpu_seconds"]


def run(seed, p, X, y):
    """One run of the experiment: the lines of plot_label_noise.py's loop."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=seed
    )
    y_noisy = add_label_noise(y_train, p, random_state=seed)
    teacher = NetClassifier(max_epochs=40, random_state=seed).fit(X_train, y_noisy)
    cf = ClusterFit(
        teacher=FrozenEstimator(teacher),
        K=100,
        student=NetClassifier(max_epochs=30),
        random_state=seed,
    ).fit(X_train)
    return {
        "n_pre": linear_probe(X_train, y_train, X_test, y_test, transformer=teacher),
        "n_cf": linear_probe(X_train, y_train, X_test, y_test, transformer=cf),
        # how far the teacher's predictions follow the clean labels it never saw
        "teacher_fit_clean": float(np.mean(teacher.predict(X_train) == y_train)),
    }


def read_results(path=RESULTS):
    """The runs of a results file: a list of dicts keyed by COLUMNS."""
    rows = []
    with open(path) as file:
        for line in file:
            if line.startswith("#") or not line.strip() or line.startswith("seed "):
                continue
            values = line.split()
            row = dict(zip(COLUMNS, map(float, values)))
            row["seed"] = int(row["seed"])
            rows.append(row)
    return rows


def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def read_machine(path=RESULTS):
    """What a results file records of its machine: ``{"cpu", "torch threads",
    "versions"}`` (None where the file predates the field)."""
    found = {"cpu": None, "torch threads": None, "versions": None}
    with open(path) as file:
        for line in file:
            if not line.startswith("#"):
                break
            text = line[1:].strip()
            for key in ("cpu", "torch threads"):
                if text.startswith(key + ": "):
                    found[key] = text[len(key) + 2:]
            if text.startswith("commit "):
                found["versions"] = text.split("; ", 1)[1]
    if found["torch threads"] is not None:
        found["torch threads"] = int(found["torch threads"])
    return found


def versions():
    """The versions line of the header, as :func:`read_machine` returns it."""
    return (f"skclusterfit {skclusterfit.__version__}, torch {torch.__version__}, "
            f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")


def _header():
    try:
        commit = subprocess.run(
            ["git", "-C", ROOT, "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return [
        "# " + " ".join(
            f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ
        ) + " python docs/scripts/label_noise_seeds.py"
        + "".join(f" {arg}" for arg in sys.argv[1:]),
        f"# commit {commit}; {versions()}",
        f"# machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; load average at start "
        + ", ".join(f"{x:.2f}" if isinstance(x, float) else x for x in load),
        f"# cpu: {cpu_model()}",
        f"# torch threads: {torch.get_num_threads()}",
        "# digits 8x8, 70/30 stratified split by seed; teacher NetClassifier(max_epochs=40) "
        "on labels with a fraction p replaced by another class; ClusterFit K=100, "
        "student NetClassifier(max_epochs=30); linear probe on clean labels",
        " ".join(COLUMNS),
    ]


def compare(paths):
    """Print how far the runs of several results files are apart, seed by seed.

    For each probe accuracy, the largest difference between any two files
    on the same seed and noise level, in points (one point is 5.4 of the 540
    test images).
    """
    runs = [{(r["seed"], r["p"]): r for r in read_results(path)} for path in paths]
    common = sorted(set.intersection(*(set(r) for r in runs)))
    for path in paths:
        machine = read_machine(path)
        print(f"# {path}: cpu {machine['cpu']}, torch threads {machine['torch threads']}")
    print("seed p " + " ".join(f"{key}[{i}]" for key in ("n_pre", "n_cf", "gain")
                               for i in range(len(paths))))
    largest = {"n_pre": 0.0, "n_cf": 0.0, "gain": 0.0}
    for seed, p in common:
        values = {
            "n_pre": [100 * r[seed, p]["n_pre"] for r in runs],
            "n_cf": [100 * r[seed, p]["n_cf"] for r in runs],
        }
        values["gain"] = [cf - pre for cf, pre in zip(values["n_cf"], values["n_pre"])]
        for key, vals in values.items():
            largest[key] = max(largest[key], max(vals) - min(vals))
        print(f"{seed} {p:.2f} " + " ".join(f"{v:.2f}" for vals in values.values() for v in vals))
    print("largest difference between files on one seed (points): "
          + ", ".join(f"{key} {value:.2f}" for key, value in largest.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=RESULTS, help="file to write (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    parser.add_argument("--compare", nargs="+", metavar="FILE",
                        help="compare the runs of these results files; run nothing")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
        return
    X, y = load_digits_images()
    lines = _header()
    print("\n".join(lines), flush=True)
    for seed in args.seeds:
        for p in NOISE:
            start = time.process_time()
            result = run(seed, p, X, y)
            line = (f"{seed} {p:.2f} {result['n_pre']:.6f} {result['n_cf']:.6f} "
                    f"{result['teacher_fit_clean']:.6f} {time.process_time() - start:.1f}")
            print(line, flush=True)
            lines.append(line)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as file:
        file.write("\n".join(lines) + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
