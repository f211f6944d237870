"""Time of README.md's Usage snippet (the first Python block run by the tests).

For the duration stated above that block in README.md:

    OMP_NUM_THREADS=1 python benchmarks/readme_snippet_time.py

Runs the block as written in a temporary directory and prints its wall and
CPU time, the torch thread count and the load average.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_docs import markdown_blocks  # noqa: E402

block = next(b for b in markdown_blocks(ROOT / "README.md") if b.shown_only is None)
os.chdir(tempfile.mkdtemp())
load = os.getloadavg()[0]
start, cpu = time.perf_counter(), time.process_time()
exec(compile(block.code, str(block), "exec"), {"__name__": "__snippet__"})
print(f"README.md Usage block: {time.perf_counter() - start:.1f} s wall, "
      f"{time.process_time() - cpu:.1f} s CPU, {torch.get_num_threads()} torch thread(s), "
      f"load average at start {load:.2f} on {os.cpu_count()} cores")
