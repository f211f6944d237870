"""Time of README.md's Usage snippet (the first Python block run by the tests).

For the figures stated above and below that block in README.md:

    python benchmarks/readme_snippet_time.py > benchmarks/results/readme-usage-time.txt

Runs the block as written in a temporary directory and prints what it
printed, its wall and CPU time, the torch thread count, the machine and the
load average (lines starting with ``#``). tests/test_readme_figures.py
checks the README's figures against this file.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from _conditions import header

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_docs import markdown_blocks  # noqa: E402

for line in header().splitlines():
    print(f"# {line}", flush=True)

block = next(b for b in markdown_blocks(ROOT / "README.md") if b.shown_only is None)
os.chdir(tempfile.mkdtemp())
load = os.getloadavg()[0]
start, cpu = time.perf_counter(), time.process_time()
exec(compile(block.code, str(block), "exec"), {"__name__": "__snippet__"})
print(f"# README.md Usage block: {time.perf_counter() - start:.1f} s wall, "
      f"{time.process_time() - cpu:.1f} s CPU, {torch.get_num_threads()} torch thread(s), "
      f"load average at start {load:.2f}, after {os.getloadavg()[0]:.2f} on "
      f"{os.cpu_count()} cores")
