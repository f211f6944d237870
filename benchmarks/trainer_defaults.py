"""Which NetClassifier defaults train both a user's plain network and the built-in ones.

Issue 10, defect 4: with SGD (lr 0.05, batch 128) a plain CNN without
normalisation layers, Conv(1,16)-ReLU-Conv(16,32)-ReLU-AdaptiveAvgPool(2)-
Flatten-Linear(128,64)-ReLU-Linear(64,10), stays near chance on the 8x8
digits for the first epochs. This script trains that network and the
built-in ones under several optimizer settings and records held-out accuracy:

- ``plain-digits``: the plain CNN on digits 8x8 after 3 and 30 epochs;
- ``cnn-digits`` / ``mlp-digits``: the built-in SmallCNN on the 8x8 images and
  the built-in MLP on the 64-pixel vectors, 30 epochs;
- ``cnn-mnist14``: SmallCNN on MNIST-5k at 14x14, 30 epochs;
- ``cnn-mnist14-p0.75``: the same teacher on labels with 75% noise: linear
  probe on clean labels (the paper experiment's N_pre) and its fit to the
  noisy labels it saw.

Splits are stratified 70/30 and seeded by the run's seed. Every run is one
process with one torch thread; rows are appended to ``--out`` as they finish
and a rerun skips the rows already there.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/trainer_defaults.py --n-jobs 2
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _runlog import RunLog, cpu_seconds  # noqa: E402

CONFIGS = {
    "sgd lr=auto(0.05) bs=128 (old default)": {"optimizer": "sgd", "batch_size": 128},
    "adamw lr=1e-3 bs=128": {"optimizer": "adamw", "lr": 1e-3, "batch_size": 128},
    "adamw lr=5e-3 bs=64": {"optimizer": "adamw", "lr": 5e-3, "batch_size": 64},
    "adamw lr=1e-2 bs=64": {"optimizer": "adamw", "lr": 1e-2, "batch_size": 64},
    "adamw lr=3e-3 bs=32": {"optimizer": "adamw", "lr": 3e-3, "batch_size": 32},
    "adamw lr=5e-3 bs=32": {"optimizer": "adamw", "lr": 5e-3, "batch_size": 32},
    "adamw lr=1e-2 bs=32": {"optimizer": "adamw", "lr": 1e-2, "batch_size": 32},
}
# NetClassifier's defaults (commit dd94c72 on) are "adamw lr=5e-3 bs=32" with
# AdamW's weight decay of 0.05, as in every "adamw" row here.
# task -> (epochs to train, seeds)
TASKS = {
    "plain-digits": ([3, 30], [0, 1, 2, 3, 4]),
    "cnn-digits": ([30], [0, 1, 2]),
    "mlp-digits": ([30], [0, 1, 2]),
    "cnn-mnist14": ([30], [0, 1]),
    "cnn-mnist14-p0.75": ([30], [0, 1]),
}
FIELDS = ["task", "config", "epochs", "seed", "accuracy", "probe", "fit_noisy",
          "final_loss"]


def plain_cnn():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def load(task, seed):
    from sklearn.model_selection import train_test_split

    from skclusterfit.data import load_digits_images, load_mnist_images

    if task.startswith("cnn-mnist14"):
        X, y = load_mnist_images(resolution=14)
    else:
        X, y = load_digits_images()
        if task == "mlp-digits":
            X = X.reshape(len(X), -1)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)


def run(task, config, epochs, seed):
    import torch

    torch.set_num_threads(1)
    from skclusterfit import NetClassifier
    from skclusterfit.data import add_label_noise
    from skclusterfit.evaluation import linear_probe

    start_cpu, start = cpu_seconds(), time.perf_counter()
    X_train, X_test, y_train, y_test = load(task, seed)
    model = plain_cnn if task == "plain-digits" else "auto"
    y_fit = y_train
    if task.endswith("p0.75"):
        y_fit = add_label_noise(y_train, 0.75, random_state=seed)
    clf = NetClassifier(
        model, max_epochs=epochs, device="cpu", random_state=seed, **CONFIGS[config]
    ).fit(X_train, y_fit)
    row = {
        "task": task, "config": config, "epochs": epochs, "seed": seed,
        "accuracy": round(clf.score(X_test, y_test), 4),
        "final_loss": round(clf.history_[-1]["loss"], 4),
    }
    if task.endswith("p0.75"):
        row["probe"] = round(linear_probe(X_train, y_train, X_test, y_test, transformer=clf), 4)
        row["fit_noisy"] = round(clf.score(X_train, y_fit), 4)
    row["cpu_s"] = round(cpu_seconds() - start_cpu, 1)
    row["wall_s"] = round(time.perf_counter() - start, 1)
    row["load1"] = round(os.getloadavg()[0], 2)
    return row


def table(rows):
    """Mean (min) accuracy per task and config."""
    import numpy as np

    groups = {}
    for r in rows:
        key = (r["task"], int(r["epochs"]), r["config"])
        groups.setdefault(key, []).append(r)
    lines = [f"{'task':<20}{'ep':>4}  {'config':<40}{'n':>3}  {'mean':>6} {'min':>6}"
             f"  {'probe':>6} {'fitnoisy':>8} {'cpu_s':>6}"]
    for (task, epochs, config), rs in sorted(groups.items()):
        acc = np.array([float(r["accuracy"]) for r in rs])
        probe = [float(r["probe"]) for r in rs if r["probe"] not in ("", None)]
        fit = [float(r["fit_noisy"]) for r in rs if r["fit_noisy"] not in ("", None)]
        cpu = np.mean([float(r["cpu_s"]) for r in rs])
        lines.append(
            f"{task:<20}{epochs:>4}  {config:<40}{len(rs):>3}  {acc.mean():6.3f} "
            f"{acc.min():6.3f}  {np.mean(probe) if probe else float('nan'):6.3f} "
            f"{np.mean(fit) if fit else float('nan'):8.3f} {cpu:6.1f}"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/trainer_defaults.csv")
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args(argv)
    from joblib import Parallel, delayed

    log = RunLog(args.out, FIELDS, ["task", "config", "epochs", "seed"])
    jobs = [
        (task, config, epochs, seed)
        for task in args.tasks
        for config in args.configs
        for epochs in TASKS[task][0]
        for seed in TASKS[task][1]
        if not log.done(task=task, config=config, epochs=epochs, seed=seed)
    ]
    print(f"{len(jobs)} runs to do; load {os.getloadavg()}", flush=True)
    for row in Parallel(n_jobs=args.n_jobs, return_as="generator_unordered")(
        delayed(run)(*job) for job in jobs
    ):
        log.write(row)
        print(row, flush=True)
    text = table(log.rows)
    print(text)
    with open(os.path.splitext(args.out)[0] + ".txt", "w") as f:
        f.write(f"command: python {' '.join(sys.argv)}\n"
                "2-core CPU shared with other jobs, one torch thread per run; "
                "accuracy = held-out test accuracy, probe = linear probe on clean "
                "labels, mean/min over seeds; cpu_s = CPU seconds per run.\n\n"
                + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
