"""k-means: skclusterfit's KMeans against scikit-learn, faiss and fastkmeans.

Every method runs in **its own process** (a fresh Python per run), on the
same data (written once to a .npy file that each worker loads into memory)
and, for the Lloyd comparisons, from the same initial centres: torch, numba
and scikit-learn each bring an OpenMP runtime, and two of them spinning in
one process slow small work by 10-100x, so no method pays for another's
threads. Rounds are interleaved (each round runs every method once) and the
table gives medians over ``--repeats`` rounds.

Each worker reports wall seconds, CPU seconds (user + system: CPU / wall is
the number of cores it kept busy), the threads of each runtime it had, the
1-minute load average when it started, the peak resident memory above its
baseline after loading the data (sampled every 5 ms), and the inertia,
recomputed identically for every method (float64 sum of squared distances of
each row to the centre of the label the method returned).

Jobs (``--sizes``; each is one table):

- ``100k``: 100,000 x 128, K = 1000, 20 iterations; ``200k``: 200,000 x 128,
  K = 4000, 10 iterations (issue 16's exact Lloyd targets), from K random
  rows; ``100k-offset``/``200k-offset``: the same data shifted by 300.
- ``hard``: 50,000 x 128, K = 1000, 10 iterations, on 1000 well-separated
  modes (one per cluster: the centroid graph's hard case) and
  ``hard-100modes`` (100 modes: ClusterFit's regime); ``hard-4000``: the
  hard case at the size of ``200k`` (200,000 x 128, K = 4000, 4000 modes).
- ``e2e``: 100,000 x 128 L2-normalised rows, K = 2000, every method with
  its *defaults* (ours: ``KMeans(n_clusters=K, random_state=0)``;
  scikit-learn: ``KMeans(K, n_init=1, random_state=0)``), seeding included.
- ``1m``: 1,000,000 x 256, K = 16,000, 10 iterations, random-row init; the
  exact peers are timed for one iteration on 20,000 rows and projected.
- ``1m-defaults``: the same data L2-normalised (as ClusterFit's features),
  ``KMeans(16000, max_iter=10, random_state=0)`` as a user calls it (default
  seeding included).
- ``2048``: 1,000,000 x 2048, K = 16,000, 10 iterations, ``assign="ann"``,
  with and without ``whiten_dim=256``; ``2048-f16``: the same rows as a
  float16 memory map on disk (out of core). Inertia is compared with exact
  Lloyd on a 20,000-row subsample (both fitted there from the same init).
- Peers of 2026, SuperKMeans (``pip install superkmeans``) beside ours, each
  with its own defaults and seeding, on L2-normalised mixture rows (every
  method sees the same rows; no shared initial centres): ``peers-200k``
  (200,000 x 128, K = 4000, K/10 modes), ``peers-200k-m4`` and
  ``peers-200k-m100`` (K/4 and K/100 modes), ``peers-1m`` (1,000,000 x 256,
  K = 16,000), ``peers-clip`` (1,280,000 x 512, K = 10,000: the SuperKMeans
  paper's ImageNet-CLIP shape, as a mixture). Quality is recomputed alike for
  every method: the mean squared distance of a fixed sample of 50,000 rows to
  its nearest returned centre (lower is better). ``--iters 1,2,5,10`` sweeps
  each method's iteration knob (ours: ``max_iter``; SuperKMeans flat:
  ``iters``; SuperKMeans hierarchical: ``iters_refinement``, 0 included) and
  prints the time-to-quality table: the least time in which each method came
  within 1%, 0.3% and 0.1% of the best quality any run reached. Each run
  also reports its cluster sizes (smallest, 1st percentile, median, 99th,
  largest, empty clusters) of the labels it returns (SuperKMeans:
  ``assign_training_points``, not timed). The method ``ours hierarchical stage``
  is our default's mesocluster and per-group stages without its global
  iterations, timed like SuperKMeans' ``train`` (centres only; ``--iters``
  sweeps its Lloyd iterations per group): where our default's time goes.
- ``--device cuda``: ``gpu-1m`` (1M x 256, K = 20,000, 25 iterations, the
  faiss wiki's job) and ``gpu-2048`` (1M x 2048, K = 16,000, 10 iterations):
  our torch engine (its default iterations, bfloat16 on a GPU of compute
  capability 8.0 or more, and float32 iterations: exact Lloyd, the inertia
  reference) against faiss (faiss-gpu) and fastkmeans, each skipped with a
  message when it is not installed or no GPU is visible. Every worker warms
  up on the device (CUDA context, cuBLAS, kernels) before the timed fit and
  reports the peak GPU memory: ``torch.cuda.max_memory_allocated`` and the
  device's used memory above its level before the fit (sampled every 5 ms;
  faiss allocates outside torch). ``gpu-smoke`` (20,000 x 32, K = 200) is
  the same comparison at a size for ``--device cpu`` (a dry run).

Usage (from the repository root)::

    python benchmarks/kmeans.py --sizes 100k,200k --repeats 3
    python benchmarks/kmeans.py --sizes e2e --repeats 3
    python benchmarks/kmeans.py --sizes 1m --methods "ours ann"
    python benchmarks/kmeans.py --sizes 2048 --repeats 1
    python benchmarks/kmeans.py --device cuda --sizes gpu-1m,gpu-2048
    python benchmarks/kmeans.py --device cpu --sizes gpu-smoke   # dry run
    python benchmarks/kmeans.py --sizes peers-200k --iters 1,2,3,5,10
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _conditions import cpu_seconds, header, load, threads  # noqa: E402

# name -> (n_samples, n_features, n_clusters, n_iter, options)
SIZES = {
    "smoke": (5000, 16, 50, 5, {}),
    "100k": (100_000, 128, 1000, 20, {}),
    "200k": (200_000, 128, 4000, 10, {}),
    "100k-offset": (100_000, 128, 1000, 20, {"offset": 300.0}),
    "200k-offset": (200_000, 128, 4000, 10, {"offset": 300.0}),
    "e2e": (100_000, 128, 2000, None, {"normalize": True, "defaults": True}),
    "hard": (50_000, 128, 1000, 10, {"modes": 1000}),
    "hard-100modes": (50_000, 128, 1000, 10, {"modes": 100}),
    "hard-4000": (200_000, 128, 4000, 10, {"modes": 4000}),
    "1m": (1_000_000, 256, 16000, 10, {"project": True}),
    "1m-defaults": (1_000_000, 256, 16000, 10, {"defaults": True, "normalize": True}),
    "2048": (1_000_000, 2048, 16000, 10, {"subsample_exact": 20_000}),
    "2048-f16": (1_000_000, 2048, 16000, 10, {"float16_memmap": True}),
    "gpu-1m": (1_000_000, 256, 20000, 25, {"gpu": True}),
    "gpu-2048": (1_000_000, 2048, 16000, 10, {"gpu": True}),
    "gpu-smoke": (20_000, 32, 200, 5, {"gpu": True}),
    "peers-smoke": (20_000, 32, 400, None, {"peers": True, "normalize": True}),
    "peers-200k": (200_000, 128, 4000, None, {"peers": True, "normalize": True}),
    "peers-200k-m4": (200_000, 128, 4000, None, {"peers": True, "normalize": True, "modes": 1000}),
    "peers-200k-m100": (200_000, 128, 4000, None, {"peers": True, "normalize": True, "modes": 40}),
    "peers-1m": (1_000_000, 256, 16000, None, {"peers": True, "normalize": True}),
    "peers-clip": (1_280_000, 512, 10000, None, {"peers": True, "normalize": True}),
}
GPU_METHODS = ["ours torch", "ours torch fp32", "faiss", "fastkmeans"]
CPU_METHODS = ["ours exact", "ours ann", "sklearn KMeans", "sklearn MiniBatchKMeans",
               "faiss-cpu"]
DEFAULT_METHODS = {
    "e2e": ["ours defaults", "sklearn defaults"],
    "hard": ["ours exact", "ours ann", "sklearn KMeans"],
    "hard-100modes": ["ours exact", "ours ann", "sklearn KMeans"],
    "hard-4000": ["ours exact", "ours ann", "sklearn KMeans"],
    "1m": ["ours ann", "ours exact", "sklearn KMeans", "faiss-cpu"],
    "1m-defaults": ["ours defaults"],
    "2048": ["ours ann", "ours ann whiten256"],
    "2048-f16": ["ours ann", "ours ann whiten256"],
    "gpu-1m": GPU_METHODS,
    "gpu-2048": GPU_METHODS,
    "gpu-smoke": GPU_METHODS,
}
# Peers jobs: every method at its defaults ("defaults": one run) and the
# methods with an iteration knob once per --iters value.
PEER_METHODS = ["ours defaults", "ours exact", "ours flat", "superkmeans defaults",
                "superkmeans flat", "superkmeans hierarchical"]
for _name in ("peers-smoke", "peers-200k", "peers-200k-m4", "peers-200k-m100", "peers-1m",
              "peers-clip"):
    DEFAULT_METHODS[_name] = PEER_METHODS
REFERENCE = {"e2e": "sklearn defaults", "gpu-1m": "faiss", "gpu-2048": "faiss",
             "gpu-smoke": "faiss"}
# Exact Lloyd from the same initial centres: the inertia the others are held to.
EXACT = {"gpu-1m": "ours torch fp32", "gpu-2048": "ours torch fp32",
         "gpu-smoke": "ours torch fp32"}


# -- data --------------------------------------------------------------------------


def make_data(n_samples, n_features, n_modes, seed=0, out=None):
    """Float32 Gaussian mixture: ``n_modes`` N(0, I) means, unit-variance noise.

    ClusterFit's regime: K is about ten times the number of classes (the
    paper), so the data has ``n_modes = K // 10`` modes ("classes") that
    k-means over-segments. Built by blocks into ``out`` (any array of the
    right shape: memory, or a memory map) so no float64 copy ever exists.
    """
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_modes, n_features), dtype=np.float32)
    X = np.empty((n_samples, n_features), dtype=np.float32) if out is None else out
    for start in range(0, n_samples, 16384):
        stop = min(start + 16384, n_samples)
        block = rng.standard_normal((stop - start, n_features), dtype=np.float32)
        block += means[rng.integers(n_modes, size=stop - start)]
        X[start:stop] = block
    return X


def normalize_rows(X):
    for start in range(0, X.shape[0], 65536):
        block = X[start : start + 65536]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return X


def inertia_of(X, centers, labels, device="cpu"):
    """float64 sum of squared distances of the rows to their centres, by blocks."""
    if device == "cuda":
        import torch

        C = torch.as_tensor(np.asarray(centers), device="cuda").double()
        L = torch.as_tensor(np.asarray(labels).astype(np.int64).ravel(), device="cuda")
        total = torch.zeros((), dtype=torch.float64, device="cuda")
        for start in range(0, X.shape[0], 65536):
            block = torch.as_tensor(np.asarray(X[start : start + 65536]), device="cuda")
            total += ((block.double() - C[L[start : start + 65536]]) ** 2).sum()
        return float(total)
    centers = np.asarray(centers, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).ravel()
    total = 0.0
    for start in range(0, X.shape[0], 32768):
        block = np.asarray(X[start : start + 32768], dtype=np.float64)
        diff = block - centers[labels[start : start + 32768]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


# -- methods (run inside a worker) ---------------------------------------------------


def run_peer(method, X, n_iter, n_clusters):
    """Fit a peers-job method at its defaults, ``n_iter`` its iteration knob (None: default).

    Returns (centres, a function giving the labels, untimed, details dict).
    """
    details = {}
    if method == "ours hierarchical stage":
        # Our default's stages before its global iterations (mesoclusters, then
        # each group's k-means++ and Lloyd; ``n_iter``: the Lloyd iterations per
        # group), timed as SuperKMeans' ``train`` is: centres only, labels drawn
        # untimed. Where our default's time goes, and what its fine stage alone
        # gives at SuperKMeans' cost.
        from skclusterfit.cluster import _exact_cpu, _hierarchical
        from skclusterfit.cluster._rows import ArrayRows
        from skclusterfit.runtime import LOCAL

        shift = X.mean(0, dtype=np.float64).astype(np.float32)
        centers, _, _ = _hierarchical.hierarchical_centers(
            ArrayRows(X - shift), n_clusters, comm=LOCAL, seed=0, fine_iter=n_iter
        )
        centers = centers + shift
        details.update(fine_iter=n_iter or _hierarchical.FINE_ITER)
        return centers, lambda: _exact_cpu.gemm_nearest(X, centers), details
    if method.startswith("ours"):
        from skclusterfit.cluster import KMeans

        params = {"n_clusters": n_clusters, "random_state": 0}
        if n_iter is not None:
            params["max_iter"] = n_iter
        if method == "ours exact":
            params["assign"] = "exact"
        elif method == "ours flat":
            params["algorithm"] = "lloyd"
        km = KMeans(**params).fit(X)
        details.update(algorithm=km.algorithm_, engine=km.engine_, n_iter=km.n_iter_)
        return km.cluster_centers_, lambda: km.labels_, details
    if method.startswith("superkmeans"):
        import superkmeans

        params = {}
        if method == "superkmeans flat":
            # Its flat mode on every row (its flat default samples 30% of them).
            params = {"hierarchical": False, "sampling_fraction": 1.0}
            if n_iter is not None:
                params["iters"] = n_iter
        elif method == "superkmeans hierarchical":
            params = {"hierarchical": True}
            if n_iter is not None:
                params["iters_refinement"] = n_iter
        km = superkmeans.SuperKMeans(n_clusters, X.shape[1], **params)
        centers = km.train(X)
        details.update(hierarchical=bool(km.hierarchical_), params=params)
        return centers, lambda: km.assign_training_points(X, centers), details
    raise ValueError(f"unknown method {method!r}")


def nearest_quality(sample, centers):
    """Mean squared distance (float64) of the sample's rows to their nearest centre."""
    S = np.asarray(sample, dtype=np.float64)
    C = np.asarray(centers, dtype=np.float64)
    s_sq = np.einsum("ij,ij->i", S, S)
    best = np.full(len(S), np.inf)
    for start in range(0, len(C), 2048):
        c = C[start : start + 2048]
        d = s_sq[:, None] - 2 * (S @ c.T) + np.einsum("ij,ij->i", c, c)[None]
        np.minimum(best, d.min(1), out=best)
    return float(np.maximum(best, 0).mean())


def size_summary(labels, n_clusters):
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=n_clusters)
    p1, p50, p99 = np.percentile(counts, [1, 50, 99])
    return {"min": int(counts.min()), "p1": float(p1), "median": float(p50), "p99": float(p99),
            "max": int(counts.max()), "empty": int(np.count_nonzero(counts == 0))}


def run_method(method, X, init, n_iter, n_clusters, device):
    """Fit ``method``; returns (centres, labels, details dict)."""
    details = {}
    if method.startswith("ours"):
        from skclusterfit.cluster import KMeans, _kmeans

        seeding = []
        original = _kmeans.KMeans._initial_centers

        def timed(self, *args, **kwargs):
            start = time.perf_counter()
            result = original(self, *args, **kwargs)
            seeding.append(time.perf_counter() - start)
            return result

        _kmeans.KMeans._initial_centers = timed
        if method == "ours defaults":
            params = {"n_clusters": n_clusters, "random_state": 0}
            if n_iter is not None:
                params["max_iter"] = n_iter
        else:
            params = {
                "n_clusters": n_clusters, "init": init, "max_iter": n_iter,
                "normalize": False, "random_state": 0, "tol": 0.0,
            }
            if "ann" in method:
                params["assign"] = "ann"
            elif "exact" in method:
                params["assign"] = "exact"
            if "whiten256" in method:
                params["whiten_dim"] = 256
                params["init"] = "random"  # init rows live in the raw space
            params["device"] = device if "torch" in method else "cpu"
            if "torch" in method:
                params["backend"] = "torch"
                params.pop("assign", None)
            if method == "ours torch fp32":
                from skclusterfit.cluster import _exact_torch

                _exact_torch.iteration_dtype_for = lambda device: None  # exact Lloyd
        km = KMeans(**params).fit(X)
        details.update(engine=km.engine_, n_iter=km.n_iter_, seeding_s=sum(seeding),
                       model_inertia=float(km.inertia_))
        if km.whitener_ is not None:
            details["inertia_space"] = "whitened"
        return km.cluster_centers_, km.labels_, details
    if method.startswith("sklearn"):
        from sklearn.cluster import KMeans as SklearnKMeans
        from sklearn.cluster import MiniBatchKMeans

        if method == "sklearn defaults":
            km = SklearnKMeans(n_clusters, n_init=1, random_state=0).fit(X)
        elif method == "sklearn KMeans":
            km = SklearnKMeans(n_clusters, init=init, n_init=1, max_iter=n_iter, tol=0.0)
            km.fit(X)
        else:
            # Batches of 3 points per cluster (at least 1024), and as many steps
            # as Lloyd iterations x n_samples / batch_size (equal passes).
            km = MiniBatchKMeans(
                n_clusters, init=init, n_init=1, batch_size=max(1024, 3 * n_clusters),
                max_iter=n_iter, random_state=0,
            ).fit(X)
        details["n_iter"] = int(km.n_iter_)
        return km.cluster_centers_, km.labels_, details
    if method in ("faiss-cpu", "faiss"):
        import faiss

        n_features = X.shape[1]
        km = faiss.Kmeans(
            n_features, n_clusters, niter=n_iter, seed=0, verbose=False,
            gpu=method == "faiss" and device == "cuda",
            max_points_per_centroid=X.shape[0],  # no subsampling: same data as the others
        )
        km.train(X, init_centroids=init)
        _, labels = km.index.search(X, 1)
        return km.centroids, labels[:, 0], details
    if method == "fastkmeans":
        from fastkmeans import FastKMeans

        # fastkmeans draws its own initial centres (seeded); the others start
        # from ``init``, so compare its time, and its inertia only loosely.
        km = FastKMeans(
            X.shape[1], n_clusters, niter=n_iter, tol=-1, gpu=device == "cuda", seed=0,
            max_points_per_centroid=X.shape[0],  # no subsampling (its default is 256)
        )
        km.train(X)
        return km.centroids, km.predict(X), {"note": "own random init"}
    raise ValueError(f"unknown method {method!r}")


def available(method, device):
    """None if ``method`` can run here, else why not."""
    try:
        if method.startswith("superkmeans"):
            import superkmeans  # noqa: F401
        if method.startswith("faiss"):
            import faiss

            if method == "faiss" and device == "cuda" and faiss.get_num_gpus() == 0:
                return ("faiss sees no GPU (install skclusterfit[bench-gpu] matching "
                        "torch's CUDA major on a GPU machine)")
        if method == "fastkmeans":
            import fastkmeans  # noqa: F401
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "no CUDA device visible"
    except ImportError as exc:
        return f"not installed ({exc.name})"
    return None


def worker(spec):
    """Run one method in this (fresh) process and print one JSON line."""
    sys.path.insert(0, str(HERE.parent))
    from _memory import PeakMemory

    # In memory: read straight into an array (a copy from a memory map would
    # leave the mapped file pages counted in this process's RSS as well).
    X = np.load(spec["data"], mmap_mode="r" if spec.get("memmap") else None)
    init = np.load(spec["init"]) if spec.get("init") else None
    # Imports are not timed.
    if spec["method"].startswith("sklearn"):
        import sklearn.cluster  # noqa: F401
    elif spec["method"].startswith("faiss"):
        import faiss  # noqa: F401
    elif spec["method"] == "fastkmeans":
        import fastkmeans  # noqa: F401
    elif spec["method"].startswith("superkmeans"):
        import superkmeans  # noqa: F401
    # Warm up (numba's kernels load from cache or compile; on a GPU the CUDA
    # context, cuBLAS and the kernels): reported, not timed.
    device = spec["device"]
    start = time.perf_counter()
    warm_up(spec["method"], X, device, peers=spec.get("peers"))
    compile_s = time.perf_counter() - start
    gpu = GpuMemory(device)
    load_at_start = load()
    cpu_start = cpu_seconds()
    with PeakMemory() as peak, gpu:
        start = time.perf_counter()
        if spec.get("peers"):
            centers, labels, details = run_peer(
                spec["method"], X, spec["n_iter"], spec["n_clusters"]
            )
        else:
            centers, labels, details = run_method(
                spec["method"], X, init, spec["n_iter"], spec["n_clusters"], device
            )
        gpu.synchronize()
        seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    if spec.get("peers"):
        # Not timed: the quality on the fixed sample, the cluster sizes.
        details["quality"] = nearest_quality(np.load(spec["sample"]), centers)
        details["sizes"] = size_summary(labels(), spec["n_clusters"])
        inertia = float("nan")
    elif details.get("inertia_space") == "whitened":
        inertia = float("nan")  # another space: not comparable with the others
    else:
        inertia = inertia_of(X, centers, labels, device)
    details.update(gpu.report())
    record = {
        "method": spec["method"], "seconds": seconds, "cpu_seconds": cpu,
        "cores_busy": cpu / seconds, "load": load_at_start, "threads": threads(),
        "inertia": inertia, "peak_above_base_gib": peak.above_base / 2**30,
        "process_peak_gib": peak.peak / 2**30, "compile_s": compile_s, **details,
    }
    print("RESULT " + json.dumps(record), flush=True)


def warm_up(method, X, device, peers=False):
    """Run ``method`` once on a small slice, on the device it will be timed on."""
    small = np.ascontiguousarray(X[:2000], dtype=np.float32)
    if method.startswith("ours"):
        from skclusterfit.cluster import KMeans

        if "torch" in method:
            KMeans(8, max_iter=2, backend="torch", device=device, random_state=0).fit(small)
        else:
            for assign in ("exact", "ann"):
                KMeans(8, max_iter=2, assign=assign, device="cpu", random_state=0).fit(small)
        if peers:
            # The hierarchical engine's kernels too (the groups search included).
            for assign in ("auto", "exact"):
                KMeans(200, max_iter=1, assign=assign, algorithm="hierarchical",
                       random_state=0).fit(small)
    elif method.startswith("sklearn"):
        import sklearn.cluster  # noqa: F401
    elif method.startswith("faiss"):
        run_method(method, small, None, 2, 8, device)
    elif method == "fastkmeans":
        run_method(method, small, None, 2, 8, device)


class GpuMemory:
    """Peak GPU memory of a block: torch's allocator peak and the device's used memory.

    The device-wide figure (total minus free, above its level at entry,
    sampled every 5 ms) also sees allocators other than torch's (faiss).
    """

    def __init__(self, device):
        self.on_gpu = device == "cuda"

    def __enter__(self):
        if self.on_gpu:
            import torch

            self.torch = torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_allocated = torch.cuda.memory_allocated()
            self.base_used = self._used()
            self.peak_used = self.base_used
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _used(self):
        free, total = self.torch.cuda.mem_get_info()
        return total - free

    def _sample(self):
        while not self._stop.is_set():
            self.peak_used = max(self.peak_used, self._used())
            time.sleep(0.005)

    def synchronize(self):
        if self.on_gpu:
            self.torch.cuda.synchronize()

    def __exit__(self, *exc):
        if self.on_gpu:
            self._stop.set()
            self._thread.join()
            self.peak_used = max(self.peak_used, self._used())

    def report(self):
        if not self.on_gpu:
            return {}
        torch = self.torch
        return {
            "gpu_max_allocated_gib": (torch.cuda.max_memory_allocated() - self.base_allocated)
            / 2**30,
            "gpu_used_above_base_gib": (self.peak_used - self.base_used) / 2**30,
            "gpu": torch.cuda.get_device_name(),
        }


def spawn(spec, timeout):
    """Run ``spec`` in a fresh Python; the worker's record, or an error record."""
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"method": spec["method"], "error": f"timed out after {timeout} s"}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
    return {"method": spec["method"], "error": " | ".join(tail)}


# -- the parent: data, rounds, tables --------------------------------------------------


def projected_spec(spec, slice_rows, workdir):
    """The same method for 1 iteration on the first ``slice_rows`` rows (projected)."""
    data = np.load(spec["data"], mmap_mode="r")
    path = workdir / f"slice-{slice_rows}.npy"
    if not path.exists():
        np.save(path, np.array(data[:slice_rows]))
    return dict(spec, data=str(path), n_iter=1)


DEVICE = {"name": "cpu"}


def device_for(name, options):
    """The gpu-* jobs run on ``--device`` (cuda, or cpu for a dry run); the others on the CPU."""
    return DEVICE["name"] if options.get("gpu") else "cpu"
def bench_peers(name, methods, iters, repeats, workdir, timeout):
    """A peers job: every method at its defaults, then the sweep of ``iters``."""
    n_samples, n_features, n_clusters, _, options = SIZES[name]
    modes = options.get("modes", max(1, n_clusters // 10))
    print(f"\n## {name}: {n_samples} x {n_features}, K={n_clusters}, {modes} modes, "
          "L2-normalised rows; quality = mean squared distance of a fixed 50,000-row "
          "sample to its nearest returned centre", flush=True)
    data_path = workdir / f"{name}-data.npy"
    X = make_data(n_samples, n_features, modes)
    normalize_rows(X)
    np.save(data_path, X)
    sample = X[np.sort(np.random.default_rng(123).choice(n_samples, min(50_000, n_samples),
                                                          replace=False))]
    sample_path = workdir / f"{name}-sample.npy"
    np.save(sample_path, sample)
    del X, sample
    runnable = []
    for method in methods:
        reason = available(method, "cpu")
        if reason:
            print(f"  {method}: skipped, {reason}", flush=True)
        else:
            runnable.append(method)
    base = {"data": str(data_path), "sample": str(sample_path), "n_clusters": n_clusters,
            "device": "cpu", "peers": True, "init": None}
    # (method, n_iter): the defaults of every method, then each knob of the sweep.
    runs = [(m, None) for m in runnable]
    runs += [(m, i) for i in iters for m in runnable if m != "superkmeans defaults"
             and not (m == "ours defaults" and i is None)]
    runs += [("superkmeans hierarchical", 0)] if iters and "superkmeans hierarchical" in runnable \
        else []
    records = []
    for round_index in range(repeats):
        for method, n_iter in runs:
            record = spawn(dict(base, method=method, n_iter=n_iter), timeout)
            record["knob"] = n_iter
            records.append(record)
            if "error" in record:
                print(f"  round {round_index + 1}: {method} [{n_iter}]: ERROR {record['error']}",
                      flush=True)
                continue
            print(f"  round {round_index + 1}: {method} [iterations {'default' if n_iter is None else n_iter}]: "
                  f"{record['seconds']:.2f} s wall, {record['cpu_seconds']:.1f} s CPU "
                  f"({record['cores_busy']:.2f} cores busy), load {record['load']}, quality "
                  f"{record['quality']:.6f}, peak RSS +{record['peak_above_base_gib']:.2f} GiB, "
                  f"sizes {record['sizes']}, {record.get('algorithm', '')} "
                  f"{record.get('engine', '')} n_iter {record.get('n_iter', '')}; "
                  f"threads: {record['threads']}", flush=True)
    print_peers(records)


def print_peers(records):
    ok = [r for r in records if "error" not in r]
    if not ok:
        return
    grouped = {}
    for r in ok:
        grouped.setdefault((r["method"], r["knob"]), []).append(r)
    points = {
        key: (float(np.median([r["seconds"] for r in rs])),
              float(np.median([r["quality"] for r in rs])))
        for key, rs in grouped.items()
    }
    best = min(q for _, q in points.values())
    print(f"\n| method | iterations | seconds (median of {max(map(len, grouped.values()))}) "
          "| quality | quality / best |")
    print("|---|---|---|---|---|")
    for (method, knob), (t, q) in points.items():
        print(f"| {method} | {'default' if knob is None else knob} | {t:.2f} | {q:.6f} | "
              f"{q / best:.5f} |")
    print(f"\nTime to quality (least seconds of a run within x of the best, {best:.6f}):")
    print("\n| method | within 1% | within 0.3% | within 0.1% |")
    print("|---|---|---|---|")
    methods = list(dict.fromkeys(m for m, _ in points))
    for method in methods:
        cells = []
        for level in (0.01, 0.003, 0.001):
            times = [t for (m, _), (t, q) in points.items() if m == method
                     and q <= best * (1 + level)]
            cells.append(f"{min(times):.2f}" if times else "not reached")
        print(f"| {method} | " + " | ".join(cells) + " |")
    loads = sorted({r["load"] for r in ok})
    print(f"load averages seen by the runs: {loads}")


def bench_size(name, methods, repeats, workdir, timeout):
    n_samples, n_features, n_clusters, n_iter, options = SIZES[name]
    print(f"\n## {name}: {n_samples} x {n_features}, K={n_clusters}, "
          f"{'default' if n_iter is None else n_iter} iterations {options or ''}", flush=True)
    data_path = workdir / f"{name}-data.npy"
    start = time.perf_counter()
    if options.get("float16_memmap"):
        mapped = np.lib.format.open_memmap(
            data_path, mode="w+", dtype=np.float16, shape=(n_samples, n_features)
        )
        make_data(n_samples, n_features, max(1, n_clusters // 10), out=mapped)
        mapped.flush()
        del mapped
    else:
        X = make_data(n_samples, n_features, options.get("modes", max(1, n_clusters // 10)))
        X += np.float32(options.get("offset", 0.0))
        if options.get("normalize"):
            normalize_rows(X)
        np.save(data_path, X)
        del X
    data = np.load(data_path, mmap_mode="r")
    rng = np.random.default_rng(1)
    init_path = None
    if not options.get("defaults"):
        # The same initial centres for every method: K random rows (faiss's
        # and DeepCluster's seeding).
        init = np.asarray(data[np.sort(rng.choice(n_samples, n_clusters, replace=False))],
                          dtype=np.float32)
        init_path = workdir / f"{name}-init.npy"
        np.save(init_path, init)
    print(f"data: {data.dtype} {'memory map' if options.get('float16_memmap') else 'in memory'}"
          f", made in {time.perf_counter() - start:.0f} s", flush=True)
    device = device_for(name, options)
    runnable = []
    for method in methods:
        reason = available(method, device)
        if reason:
            print(f"  {method}: skipped, {reason}", flush=True)
        else:
            runnable.append(method)
    base = {"data": str(data_path), "init": init_path and str(init_path), "n_iter": n_iter,
            "n_clusters": n_clusters, "device": device,
            "memmap": bool(options.get("float16_memmap"))}
    project = options.get("project") and n_samples > 20_000
    records = {m: [] for m in runnable}
    for round_index in range(repeats):
        for method in runnable:
            spec = dict(base, method=method)
            if project and method != "ours ann":
                sliced = projected_spec(spec, 20_000, workdir)
                record = spawn(sliced, timeout)
                if "error" not in record:
                    # 1 iteration = 2 passes (the second assigns the labels);
                    # n_iter iterations make n_iter + 1 passes.
                    per_pass = record["seconds"] / 2
                    record["projected_seconds"] = per_pass * (n_samples / 20_000) * (n_iter + 1)
                    record["inertia"] = float("nan")
            else:
                record = spawn(spec, timeout)
            records[method].append(record)
            print(f"  round {round_index + 1}: {format_record(record)}", flush=True)
    if options.get("subsample_exact"):
        exact_on_subsample(data, base, runnable, options["subsample_exact"], workdir, timeout)
    print_table(name, records)


def format_record(record):
    if "error" in record:
        return f"{record['method']}: ERROR {record['error']}"
    text = (f"{record['method']}: {record['seconds']:.2f} s wall, {record['cpu_seconds']:.2f} s "
            f"CPU ({record['cores_busy']:.2f} cores busy), load {record['load']}, "
            f"peak RSS +{record['peak_above_base_gib']:.2f} GiB "
            f"(process {record['process_peak_gib']:.2f} GiB), inertia {record['inertia']:.6g}")
    if "projected_seconds" in record:
        text += f", projected full run {record['projected_seconds']:.0f} s"
    if record.get("seeding_s"):
        text += f", seeding {record['seeding_s']:.2f} s"
    if record.get("compile_s"):
        text += f", warm-up/compile {record['compile_s']:.1f} s (not timed)"
    if "gpu_max_allocated_gib" in record:
        text += (f", GPU peak: torch max_memory_allocated +"
                 f"{record['gpu_max_allocated_gib']:.2f} GiB, device used +"
                 f"{record['gpu_used_above_base_gib']:.2f} GiB ({record['gpu']})")
    return text + f"; threads: {record['threads']}"


def print_table(name, records):
    ok = {m: [r for r in rs if "error" not in r] for m, rs in records.items()}
    ok = {m: rs for m, rs in ok.items() if rs}
    if not ok:
        return

    def seconds(rs):
        return float(np.median([r.get("projected_seconds", r["seconds"]) for r in rs]))

    def median(rs, key):
        return float(np.median([r.get(key, float("nan")) for r in rs]))

    reference = REFERENCE.get(name, "sklearn KMeans")
    if reference not in ok:
        reference = next(iter(ok))
    ref_time = seconds(ok[reference])
    ref_inertia = median(ok[reference], "inertia")
    exact = EXACT.get(name)
    exact_inertia = median(ok[exact], "inertia") if exact in ok else float("nan")
    on_gpu = any("gpu_max_allocated_gib" in r for rs in ok.values() for r in rs)
    extra = ""
    if exact is not None:
        extra += " inertia / exact |"
    if on_gpu:
        extra += " GPU max_memory_allocated | GPU used above base |"
    print(f"\n| method | seconds (median of {max(len(r) for r in ok.values())}) | "
          f"time / {reference} | inertia / {reference} | CPU s | cores busy | "
          "peak RSS above data | seeding s |" + extra)
    print("|---" * (8 + extra.count("|")) + "|")
    for method, rs in ok.items():
        t = seconds(rs)
        projected = " (projected)" if "projected_seconds" in rs[0] else ""
        inertia = median(rs, "inertia")
        ratio = inertia / ref_inertia if np.isfinite(inertia) and np.isfinite(ref_inertia) else None
        row = (
            f"| {method} | {t:.2f}{projected} | {t / ref_time:.3f} | "
            f"{'n/a' if ratio is None else f'{ratio:.5f}'} | "
            f"{np.median([r['cpu_seconds'] for r in rs]):.1f} | "
            f"{np.median([r['cores_busy'] for r in rs]):.2f} | "
            f"{np.median([r['peak_above_base_gib'] for r in rs]):.2f} GiB | "
            f"{np.median([r.get('seeding_s', 0.0) for r in rs]):.2f} |"
        )
        if exact is not None:
            row += f" {inertia / exact_inertia:.5f} |" if np.isfinite(exact_inertia) else " n/a |"
        if on_gpu:
            row += (f" {median(rs, 'gpu_max_allocated_gib'):.2f} GiB |"
                    f" {median(rs, 'gpu_used_above_base_gib'):.2f} GiB |")
        print(row)
    loads = sorted({r["load"] for rs in ok.values() for r in rs})
    print(f"load averages seen by the runs: {loads}")


def exact_on_subsample(data, base, methods, rows, workdir, timeout):
    """Inertia of ours (ann) against exact Lloyd, both fitted on the same subsample."""
    path = workdir / f"subsample-{rows}.npy"
    np.save(path, np.asarray(data[:rows], dtype=np.float32))
    sub = dict(base, data=str(path), memmap=False, n_clusters=min(base["n_clusters"], rows // 4))
    init = np.load(base["init"])[: sub["n_clusters"]] if base["init"] else None
    if init is not None:
        np.save(workdir / "subsample-init.npy", init)
        sub["init"] = str(workdir / "subsample-init.npy")
    print(f"  inertia against exact on the first {rows} rows, K={sub['n_clusters']} "
          "(the same initial centres; whitened runs compared in their whitened space, "
          "the whitening fitted on the subsample alike):")
    exact_runs = {}
    for method in [m for m in methods if m.startswith("ours ann")]:
        reference = "ours exact whiten256" if "whiten256" in method else "ours exact"
        if reference not in exact_runs:
            exact_runs[reference] = spawn(dict(sub, method=reference), timeout)
        exact = exact_runs[reference]
        ann = spawn(dict(sub, method=method), timeout)
        if "error" in ann or "error" in exact:
            print(f"    {method}: {ann.get('error') or exact.get('error')}")
            continue
        print(f"    {method}: inertia / {reference} = "
              f"{ann['model_inertia'] / exact['model_inertia']:.5f} "
              f"({ann['seconds']:.1f} s vs exact {exact['seconds']:.1f} s)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,200k")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", default="",
                        help="comma-separated methods (default: the job's own list)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--iters", default="",
                        help="peers jobs: comma-separated iteration counts to sweep")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds allowed per run before it is reported as timed out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    print(header(), flush=True)
    if args.device == "cuda" and args.sizes == "100k,200k":
        args.sizes = "gpu-1m,gpu-2048"
    DEVICE["name"] = args.device
    # A fresh numba cache shared by the workers: the first compiles (its
    # warm-up time is printed), the others load the kernels.
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cache-")
    only = [m for m in args.methods.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="kmeans-bench-") as tmp:
        for name in args.sizes.split(","):
            if name not in SIZES:
                parser.error(f"unknown size {name!r}; choose from {', '.join(SIZES)}")
            if args.device == "cuda" and not name.startswith("gpu"):
                parser.error(f"--device cuda runs the gpu-* jobs, not {name!r}")
            methods = only or DEFAULT_METHODS.get(name, CPU_METHODS)
            if SIZES[name][4].get("peers"):
                iters = [int(i) for i in args.iters.split(",") if i]
                bench_peers(name, methods, iters, args.repeats, Path(tmp), args.timeout)
            else:
                bench_size(name, methods, args.repeats, Path(tmp), args.timeout)
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
