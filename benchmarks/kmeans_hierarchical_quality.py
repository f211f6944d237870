"""Hierarchical k-means against flat exact Lloyd on small data: the tests' cases.

Inertia of ``KMeans(algorithm="hierarchical")`` (default two global
iterations, then 10 and 20) over flat exact Lloyd with its defaults
(``KMeans(algorithm="lloyd", assign="exact")``: greedy k-means++ on a sample,
20 iterations), on the L2-normalised mixtures of tests/test_kmeans_hierarchical.py
(24,000 x 64, K = 300, K/4, K/10 and K/100 modes) and on the penultimate
features of a CNN trained 3 epochs on MNIST-5k (5,000 x 128, K = 200).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/kmeans_hierarchical_quality.py
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))
from _conditions import header  # noqa: E402
from test_kmeans_hierarchical import mixture  # noqa: E402

from skclusterfit.cluster import KMeans  # noqa: E402


def compare(name, X, K):
    flat = KMeans(K, algorithm="lloyd", assign="exact", device="cpu", random_state=0).fit(X)
    cells = []
    for assign in ("auto", "exact"):
        for max_iter in ("auto", 10, 20):
            hier = KMeans(K, algorithm="hierarchical", assign=assign, max_iter=max_iter,
                          device="cpu", random_state=0).fit(X)
            cells.append(f"{hier.inertia_ / flat.inertia_:.4f}")
    print(f"| {name} | {K} | " + " | ".join(cells) + " |", flush=True)


def main():
    print(header(), flush=True)
    print("\ninertia / flat exact Lloyd's (defaults)\n")
    print("| data | K | walk, 2 it. (default) | walk, 10 | walk, 20 | exact, 2 | exact, 10 "
          "| exact, 20 |")
    print("|---|---|---|---|---|---|---|---|")
    for per in (4, 10, 100):
        compare(f"mixture 24,000 x 64, K/{per} modes", mixture(24000, 64, max(1, 300 // per)),
                300)
    from skclusterfit import NetClassifier
    from skclusterfit.data import load_mnist_images

    X, y = load_mnist_images()
    Z = NetClassifier(max_epochs=3, random_state=0).fit(X, y).transform(X)
    Z = (Z / np.linalg.norm(Z, axis=1, keepdims=True)).astype(np.float32)
    compare("MNIST-5k CNN features (3 epochs)", Z, 200)
    return 0


if __name__ == "__main__":
    sys.exit(main())
