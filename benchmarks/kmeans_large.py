"""The largest k-means job that fits this machine: hierarchical, rows streamed from disk.

Default job: 10,000,000 x 64 L2-normalised mixture rows (K/10 modes) stored
as a float16 ``.npy`` memory map (1.28 GB), clustered into K = 100,000 by
``KMeans(100_000, random_state=0)`` with every default (hierarchical:
mesoclusters, per-group k-means, then the mesoclusters' inverted-file
refinement from K = 50,000). The fit runs in a fresh process that sees only
the memory map; the script prints:

- wall and CPU seconds, and the seconds of each stage (mesoclusters, the
  grouping pass, the fine stage over all groups, the refinement), with the
  number of groups, so the per-group cost can be read off;
- the process's peak resident memory (VmHWM) and its peak above the state
  before the fit;
- the quality (mean squared distance of a fixed 50,000-row sample to its
  nearest centre) and the cluster sizes (smallest, percentiles, largest,
  empty);
- the same algorithm against flat exact Lloyd on a subsample with the
  same rows per cluster (``--sub-rows`` rows, K scaled down alike), both
  fitted there, their inertias compared: flat Lloyd at K = 100,000 on ten
  million rows does not fit in this machine's time.

Usage (from the repository root)::

    python benchmarks/kmeans_large.py
    python benchmarks/kmeans_large.py --rows 1000000 --clusters 10000   # smaller
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from _conditions import cpu_seconds, header, load, threads  # noqa: E402
from kmeans import nearest_quality, size_summary  # noqa: E402


def write_data(path, n_rows, n_features, n_modes):
    """The mixture of ``kmeans.make_data`` (N(0, I) means, unit noise), L2-normalised,
    written by blocks of a million rows into a float16 .npy memory map."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16,
                                    shape=(n_rows, n_features))
    means = np.random.default_rng(0).standard_normal((n_modes, n_features), dtype=np.float32)
    for start in range(0, n_rows, 1_000_000):
        stop = min(start + 1_000_000, n_rows)
        rng = np.random.default_rng(start + 1)
        X = rng.standard_normal((stop - start, n_features), dtype=np.float32)
        X += means[rng.integers(n_modes, size=stop - start)]
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        out[start:stop] = X
    out.flush()
    del out


def timed_stages():
    """Wrap the engine's stages to record their wall seconds (a dict, filled in)."""
    from skclusterfit.cluster import _hierarchical

    stages = {}

    def wrap(name):
        original = getattr(_hierarchical, name)

        def run(*args, **kwargs):
            start = time.perf_counter()
            result = original(*args, **kwargs)
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - start
            return result

        setattr(_hierarchical, name, run)

    for name in ("_mesoclusters", "_group_rows", "hierarchical_centers", "lloyd_groups",
                 "_fine_clusters"):
        wrap(name)
    return stages


def worker(spec):
    sys.path.insert(0, str(HERE.parent))
    from _memory import PeakMemory, peak_rss

    from skclusterfit.cluster import KMeans, _hierarchical, _kmeans

    X = np.load(spec["data"], mmap_mode="r" if spec.get("memmap") else None)
    # Compile/load the kernels first (not timed).
    warm = np.ascontiguousarray(X[:5000], dtype=np.float32)
    KMeans(200, algorithm="hierarchical", random_state=0).fit(warm)
    stages = timed_stages()
    params = dict(spec["params"])
    if spec.get("force_groups"):
        _kmeans._GROUPS_MIN_CLUSTERS = 1  # the big job's refinement at the subsample's K
    load_at_start = load()
    cpu_start = cpu_seconds()
    with PeakMemory() as peak:
        start = time.perf_counter()
        km = KMeans(**params).fit(X)
        seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    record = {
        "name": spec["name"], "seconds": seconds, "cpu_seconds": cpu, "load": load_at_start,
        "threads": threads(), "algorithm": km.algorithm_, "engine": km.engine_,
        "n_iter": km.n_iter_, "inertia": km.inertia_, "n_rows": int(X.shape[0]),
        "peak_above_base_gib": peak.above_base / 2**30, "process_peak_gib": peak_rss() / 2**30,
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "n_groups": _hierarchical.n_groups_for(km.n_clusters),
        "sizes": size_summary(km.labels_, km.n_clusters),
    }
    if spec.get("sample"):
        record["quality"] = nearest_quality(np.load(spec["sample"]), km.cluster_centers_)
    print("RESULT " + json.dumps(record), flush=True)


def spawn(spec, timeout):
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"name": spec["name"], "error": (out.stderr or out.stdout).strip()[-2000:]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--sub-rows", type=int, default=200_000)
    parser.add_argument("--dir", default=None, help="where the data file goes (default: a temp dir)")
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    print(header(), flush=True)
    with tempfile.TemporaryDirectory(prefix="kmeans-large-", dir=args.dir) as tmp:
        tmp = Path(tmp)
        path = tmp / "data-f16.npy"
        start = time.perf_counter()
        write_data(path, args.rows, args.features, args.clusters // 10)
        data = np.load(path, mmap_mode="r")
        print(f"data: {args.rows} x {args.features} float16 memory map "
              f"({path.stat().st_size / 1e9:.2f} GB on disk), {args.clusters // 10} modes, "
              f"written in {time.perf_counter() - start:.0f} s", flush=True)
        rng = np.random.default_rng(123)
        sample = np.asarray(data[np.sort(rng.choice(args.rows, 50_000, replace=False))],
                            dtype=np.float32)
        np.save(tmp / "sample.npy", sample)
        record = spawn({"name": "large", "data": str(path), "memmap": True,
                        "sample": str(tmp / "sample.npy"),
                        "params": {"n_clusters": args.clusters, "random_state": 0}},
                       args.timeout)
        print(json.dumps(record, indent=1), flush=True)
        # The subsample: same rows per cluster, hierarchical (the big job's
        # refinement forced) against flat exact Lloyd, in memory.
        sub_k = max(2, args.clusters * args.sub_rows // args.rows)
        sub = np.asarray(data[np.sort(rng.choice(args.rows, args.sub_rows, replace=False))],
                         dtype=np.float32)
        np.save(tmp / "sub.npy", sub)
        del sub, data
        runs = {
            "sub hierarchical (groups refinement, defaults)": {
                "params": {"n_clusters": sub_k, "random_state": 0,
                           "algorithm": "hierarchical"}, "force_groups": True},
            "sub flat exact Lloyd (20 it.)": {
                "params": {"n_clusters": sub_k, "random_state": 0, "algorithm": "lloyd",
                           "assign": "exact"}},
        }
        results = {}
        for name, extra in runs.items():
            results[name] = spawn(dict(extra, name=name, data=str(tmp / "sub.npy")), args.timeout)
            print(json.dumps(results[name]), flush=True)
        a, b = results.values()
        if "error" not in a and "error" not in b:
            print(f"subsample {args.sub_rows} rows, K={sub_k}: hierarchical inertia / flat "
                  f"exact = {a['inertia'] / b['inertia']:.5f} "
                  f"({a['seconds']:.1f} s vs {b['seconds']:.1f} s)")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
