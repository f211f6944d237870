"""The numbers of the table in docs/user_guide/what_is_clusterfit.rst.

The label-noise experiment of examples/paper/plot_label_noise.py, repeated
over three train/test splits and seeds. Prints one line per run and the
reStructuredText table (mean and range over seeds). About 3 CPU-minutes per
seed with one torch thread:

    OMP_NUM_THREADS=1 python docs/scripts/label_noise_seeds.py
"""

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skclusterfit import ClusterFit, NetClassifier
from skclusterfit.datasets import add_label_noise, load_digits_images
from skclusterfit.evaluation import linear_probe

SEEDS = [0, 1, 2]
NOISE = [0.0, 0.5, 0.8, 0.9]


def run(seed, p, X, y):
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
    return (
        linear_probe(teacher, X_train, y_train, X_test, y_test),
        linear_probe(cf, X_train, y_train, X_test, y_test),
    )


def main():
    X, y = load_digits_images()
    results = {}
    for seed in SEEDS:
        for p in NOISE:
            results[seed, p] = run(seed, p, X, y)
            print(seed, p, *results[seed, p], flush=True)
    print()
    print(".. list-table::\n   :header-rows: 1\n")
    print("   * - wrong labels\n     - teacher N_pre\n     - student N_cf\n     - gain (points)")
    for p in NOISE:
        pre = 100 * np.array([results[s, p][0] for s in SEEDS])
        cf = 100 * np.array([results[s, p][1] for s in SEEDS])
        gain = cf - pre
        cell = lambda a: f"{a.mean():.1f} ({a.min():.1f}-{a.max():.1f})"  # noqa: E731
        print(f"   * - {100 * p:.0f}%\n     - {cell(pre)}\n     - {cell(cf)}\n"
              f"     - {gain.mean():+.1f} ({gain.min():+.1f} to {gain.max():+.1f})")


if __name__ == "__main__":
    main()
