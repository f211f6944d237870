"""k-means: skclusterfit's KMeans against scikit-learn (KMeans, MiniBatchKMeans) and faiss.

All methods run in this one process, on the same data and from the same
initial centres, interleaved over ``--repeats`` rounds; the table gives
median seconds, the time ratio to scikit-learn's KMeans (< 1: faster than
it), the inertia ratio to it (> 1: worse clustering) and the peak resident
memory above the process's baseline while the method ran (sampled every
5 ms from /proc/self/status).

Inertia is recomputed the same way for every method: the sum of squared
distances of every point to the centre of the label the method returned.

A peer too slow for the largest size is timed on a slice of the data for a
few iterations, and its full time is *projected* as per-iteration time x
(rows / slice rows) x (iterations + 1); such rows are labelled "projected".

Numba compiles the graph walk on first use. This script points numba's cache
at a fresh temporary directory, so the first call compiles from scratch;
the compile time is printed on its own line, to be added to the first "ann"
run (users pay it once; numba's on-disk cache then loads the kernels).

Usage::

    python benchmarks/kmeans.py                 # the three sizes of issue 7
    python benchmarks/kmeans.py --sizes 100k --repeats 3
    python benchmarks/kmeans.py --sizes 200k --repeats 3 \
        --methods "ours exact,ours ann,sklearn KMeans"
"""

import argparse
import os
import sys
import tempfile
import time

# Before numba is imported (through skclusterfit): compile from scratch.
os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="numba-cache-"))

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.cluster import KMeans as SklearnKMeans  # noqa: E402
from sklearn.cluster import MiniBatchKMeans  # noqa: E402

from skclusterfit.cluster import KMeans  # noqa: E402
from skclusterfit.cluster import _ann  # noqa: E402
from skclusterfit.cluster._kmeans import squared_distances  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import PeakMemory, peak_rss  # noqa: E402

try:
    import faiss
except ImportError:
    faiss = None

# name -> (n_samples, n_features, n_clusters, n_iter)
SIZES = {
    "100k": (100_000, 128, 1000, 20),
    "200k": (200_000, 128, 4000, 10),
    "1m": (1_000_000, 256, 16000, 10),
}


def make_data(n_samples, n_features, n_modes, seed=0):
    """Float32 Gaussian mixture: ``n_modes`` N(0, I) means, unit-variance noise.

    ClusterFit's regime: K is about ten times the number of classes (the
    paper), so the data has ``n_modes = K // 10`` modes ("classes") that k-means
    over-segments.

    Built by blocks so that no float64 copy of the data ever exists.
    """
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_modes, n_features), dtype=np.float32)
    X = np.empty((n_samples, n_features), dtype=np.float32)
    for start in range(0, n_samples, 65536):
        stop = min(start + 65536, n_samples)
        X[start:stop] = rng.standard_normal((stop - start, n_features), dtype=np.float32)
        X[start:stop] += means[rng.integers(n_modes, size=stop - start)]
    return X


def inertia_of(X, centers, labels):
    centers = np.ascontiguousarray(centers, dtype=np.float32)
    return float(squared_distances(X, centers, np.asarray(labels)).sum(dtype=np.float64))


def run_ours(X, init, n_iter, assign):
    km = KMeans(
        init.shape[0], n_iter=n_iter, init=init, normalize=False, device="cpu",
        assign=assign, random_state=0,
    ).fit(X)
    return km.cluster_centers_, km.labels_


def run_sklearn(X, init, n_iter):
    km = SklearnKMeans(init.shape[0], init=init, n_init=1, max_iter=n_iter).fit(X)
    return km.cluster_centers_, km.labels_


def run_minibatch(X, init, n_iter):
    # Batches of 3 points per cluster (at least scikit-learn's 1024), and as
    # many steps as Lloyd iterations x n_samples / batch_size (equal passes).
    batch_size = max(1024, 3 * init.shape[0])
    km = MiniBatchKMeans(
        init.shape[0], init=init, n_init=1, batch_size=batch_size,
        max_iter=n_iter, random_state=0,
    ).fit(X)
    return km.cluster_centers_, km.labels_


def run_faiss(X, init, n_iter):
    n_clusters, n_features = init.shape
    km = faiss.Kmeans(
        n_features, n_clusters, niter=n_iter, seed=0, verbose=False,
        max_points_per_centroid=X.shape[0],  # no subsampling: same data as the others
    )
    km.train(X, init_centroids=init)
    _, labels = km.index.search(X, 1)
    return km.centroids, labels[:, 0]


def methods(n_clusters):
    out = {
        "ours exact": lambda X, init, it: run_ours(X, init, it, "exact"),
        "ours ann": lambda X, init, it: run_ours(X, init, it, "ann"),
        "sklearn KMeans": run_sklearn,
        "sklearn MiniBatchKMeans": run_minibatch,
    }
    if faiss is not None:
        out["faiss-cpu"] = run_faiss
    return out


def projected(method, X, init, n_iter, slice_rows, iterations=1):
    """Project a full run's time from ``iterations`` on ``slice_rows`` rows.

    A run of ``iterations`` Lloyd iterations makes ``iterations + 1`` passes
    over the data (the last assigns the final labels), so does a full run of
    ``n_iter``: time per pass x passes x rows ratio.
    """
    X_slice = X[:slice_rows]
    start = time.perf_counter()
    method(X_slice, init, iterations)
    per_pass = (time.perf_counter() - start) / (iterations + 1)
    return per_pass * (X.shape[0] / slice_rows) * (n_iter + 1)


def bench_size(name, repeats, project, only=None):
    n_samples, n_features, n_clusters, n_iter = SIZES[name]
    print(f"\n## {name}: {n_samples} x {n_features}, K={n_clusters}, {n_iter} iterations")
    X = make_data(n_samples, n_features, max(1, n_clusters // 10))
    rng = np.random.default_rng(1)
    # The same initial centres for every method: random rows (faiss's and
    # DeepCluster's seeding; greedy k-means++ at K=16000 alone would take longer
    # than the clustering).
    init = X[np.sort(rng.choice(n_samples, n_clusters, replace=False))].copy()
    runs = methods(n_clusters)
    if only:
        runs = {key: runs[key] for key in only}
    slow = set(project)
    times = {key: [] for key in runs}
    inertia = {}
    memory = {}
    for _ in range(repeats):
        for key, method in runs.items():
            if key in slow:
                continue
            with PeakMemory() as peak:
                start = time.perf_counter()
                centers, labels = method(X, init, n_iter)
                times[key].append(time.perf_counter() - start)
            inertia[key] = inertia_of(X, centers, labels)
            memory[key] = max(memory.get(key, 0), peak.above_base)
            print(f"  {key}: {times[key][-1]:.2f} s", flush=True)
    projected_times = {}
    for key in slow:
        slice_rows = min(n_samples, 20_000)
        projected_times[key] = projected(runs[key], X, init, n_iter, slice_rows)
        print(f"  {key}: projected {projected_times[key]:.1f} s", flush=True)
    reference_key = "sklearn KMeans"
    if reference_key in projected_times:
        reference_time = projected_times[reference_key]
    else:
        reference_time = float(np.median(times[reference_key]))
    reference_inertia = inertia.get(reference_key)
    print(f"\n| method | seconds | time / sklearn | inertia / sklearn | peak RSS above base |")
    print("|---|---|---|---|---|")
    for key in runs:
        if key in projected_times:
            print(
                f"| {key} | {projected_times[key]:.1f} (projected) | "
                f"{projected_times[key] / reference_time:.2f} | n/a | n/a |"
            )
            continue
        seconds = float(np.median(times[key]))
        ratio = (
            f"{inertia[key] / reference_inertia:.4f}" if reference_inertia else
            f"n/a ({inertia[key]:.6g})"
        )
        print(
            f"| {key} | {seconds:.2f} | {seconds / reference_time:.2f} | {ratio} | "
            f"{memory[key] / 2**30:.2f} GiB |"
        )
    print(f"process peak RSS so far (VmHWM): {peak_rss() / 2**30:.2f} GiB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,200k,1m")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--project", default="",
        help="comma-separated methods timed on a slice and projected, e.g. "
        "'sklearn KMeans,faiss-cpu' (default for 1m: all but 'ours ann')",
    )
    parser.add_argument(
        "--methods", default="",
        help="comma-separated subset of the methods to run (default: all)",
    )
    args = parser.parse_args(argv)
    only = [m for m in args.methods.split(",") if m]
    start = time.perf_counter()
    _ann.warm_up()
    compile_seconds = time.perf_counter() - start
    print(f"numba compile of the graph walk (cold cache): {compile_seconds:.1f} s")
    for name in args.sizes.split(","):
        project = [p for p in args.project.split(",") if p]
        if name == "1m" and not args.project:
            project = [
                key for key in methods(SIZES[name][2])
                if key != "ours ann" and (not only or key in only)
            ]
        bench_size(name, args.repeats, project, only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
