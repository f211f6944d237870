"""Import cost: ``from skclusterfit import ClusterFit`` against ``import torch``.

Each statement runs in a fresh interpreter (so nothing is cached in the
process), ``--repeats`` times alternating; the script prints the median wall
time and the peak resident memory of each, and their ratios. Goal (issue 10):
under 2x ``import torch``, i.e. no model zoo or compiled kernels loaded before
they are used.

    python benchmarks/import_cost.py --repeats 7
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

STATEMENTS = {
    "import torch": "import torch",
    "from skclusterfit import ClusterFit": "from skclusterfit import ClusterFit",
    "import skclusterfit (all public names)": (
        "import skclusterfit; from skclusterfit import ClusterFit, FeatureExtractor, "
        "NetClassifier, load, save"
    ),
}


def measure(statement):
    """Wall seconds and peak RSS (MB) of a fresh interpreter running ``statement``."""
    code = (
        "import resource, sys\n"
        f"{statement}\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return time.perf_counter() - start, int(out.split()[-1]) / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, repeats {args.repeats}")
    results = {name: [] for name in STATEMENTS}
    for _ in range(args.repeats):
        for name, statement in STATEMENTS.items():
            results[name].append(measure(statement))
    base_time = statistics.median(t for t, _ in results["import torch"])
    base_rss = statistics.median(r for _, r in results["import torch"])
    print(f"{'statement':<40}{'median s':>10}{'peak MB':>10}{'time x':>9}{'RSS x':>8}")
    for name, runs in results.items():
        seconds = statistics.median(t for t, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(f"{name:<40}{seconds:>10.2f}{rss:>10.0f}{seconds / base_time:>9.2f}"
              f"{rss / base_rss:>8.2f}")
    print(f"children CPU time {resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime:.1f} s")


if __name__ == "__main__":
    main()
