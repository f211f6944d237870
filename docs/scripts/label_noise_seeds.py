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

About 40 CPU-seconds per seed with one torch thread.
"""

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
        ) + " python docs/scripts/label_noise_seeds.py",
        f"# commit {commit}; skclusterfit {skclusterfit.__version__}, torch "
        f"{torch.__version__}, scikit-learn {sklearn.__version__}, numpy {np.__version__}",
        f"# machine: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}; torch threads "
        f"{torch.get_num_threads()}; load average at start "
        + ", ".join(f"{x:.2f}" if isinstance(x, float) else x for x in load),
        "# digits 8x8, 70/30 stratified split by seed; teacher NetClassifier(max_epochs=40) "
        "on labels with a fraction p replaced by another class; ClusterFit K=100, "
        "student NetClassifier(max_epochs=30); linear probe on clean labels",
        " ".join(COLUMNS),
    ]


def main():
    X, y = load_digits_images()
    lines = _header()
    print("\n".join(lines), flush=True)
    for seed in SEEDS:
        for p in NOISE:
            start = time.process_time()
            result = run(seed, p, X, y)
            line = (f"{seed} {p:.2f} {result['n_pre']:.6f} {result['n_cf']:.6f} "
                    f"{result['teacher_fit_clean']:.6f} {time.process_time() - start:.1f}")
            print(line, flush=True)
            lines.append(line)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as file:
        file.write("\n".join(lines) + "\n")
    print(f"written to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
