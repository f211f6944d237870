"""The README's main job, run as its set-up line runs it, with the conditions.

    python benchmarks/main_job.py > benchmarks/results/main-job.txt
    python benchmarks/main_job.py --threads 1     # the same with OMP_NUM_THREADS=1

Runs ``python -m skclusterfit`` (and any further arguments) in a fresh
process, prints its output verbatim between lines starting with ``#`` that
give the command, machine (CPU model), thread settings, commit, load average
before and after, and the wall and CPU seconds of the process. README.md
quotes the output block; tests/test_readme_figures.py checks that every line
it quotes is in this file.
"""

import argparse
import os
import resource
import subprocess
import sys
import time

from _conditions import header


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the job (default: as in this shell)")
    parser.add_argument("args", nargs="*", help="arguments of python -m skclusterfit")
    options = parser.parse_args()
    if options.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(options.threads)  # the job's, and the header's
    env = dict(os.environ)
    command = [sys.executable, "-m", "skclusterfit", *options.args]
    shown = " ".join(["python", "-m", "skclusterfit", *options.args])
    if options.threads is not None:
        shown = f"OMP_NUM_THREADS={options.threads} {shown}"
    for line in header([shown]).splitlines():
        print(f"# {line.replace('command: python ', 'command: ', 1)}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sys.stdout.write(result.stdout)
    if result.returncode:
        sys.stdout.write(result.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"# exit status {result.returncode}; wall {wall:.1f} s, CPU {cpu:.1f} s "
          "(user + system, all threads)")
    print("# load average after (1, 5, 15 min): "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
