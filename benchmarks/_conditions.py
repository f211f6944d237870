"""The conditions a benchmark ran under: machine, load, threads, CPU time, commit.

Timings on a shared machine are noisy; every benchmark prints these beside its
figures so that a reader can tell a quiet run from a loaded one.
"""

import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds():
    """User + system CPU time of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def load():
    """The 1-minute load average, formatted."""
    return f"{os.getloadavg()[0]:.2f}"


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def commit():
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def threads():
    """Threads each runtime in this process would use (after its imports)."""
    parts = []
    if "torch" in sys.modules:
        import torch

        parts.append(f"torch {torch.get_num_threads()}")
    if "numba" in sys.modules:
        import numba

        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel numba kernel has run
            layer = "unused"
        parts.append(f"numba {numba.get_num_threads()} ({layer})")
    if "skclusterfit.cluster._parallel" in sys.modules:
        from skclusterfit.cluster._parallel import n_threads

        parts.append(f"skclusterfit pool {n_threads()}")
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            parts.append(f"{pool['internal_api']} {pool['num_threads']}")
    except Exception:  # pragma: no cover - threadpoolctl missing or a runtime refuses
        pass
    return ", ".join(parts)


def header(argv=None):
    """Lines describing the run: command, time, machine, load, commit, environment."""
    argv = sys.argv if argv is None else argv
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")
           if k in os.environ}
    return "\n".join([
        f"command: python {' '.join(argv)}",
        f"date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, commit {commit()}",
        f"machine: {os.cpu_count()} logical CPUs ({cpu_model()}), "
        f"Python {platform.python_version()}",
        "load average at start (1, 5, 15 min): "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        f"thread settings: {env or 'none (runtimes pick their defaults)'}",
    ])
