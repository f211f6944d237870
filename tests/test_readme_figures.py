"""The figures README.md quotes are the figures of their raw files.

A passage of README.md between ``<!-- figures: PATH -->`` and
``<!-- /figures -->`` quotes the raw output committed in PATH (under
benchmarks/results/, with the command, machine, thread settings and load that
produced it):

- every line of an indented (4-space) block in the passage is a line of the
  raw file, and the block's lines follow one another there as in the passage;
- every number elsewhere in the passage (prose and inline code) appears in
  the raw file.

Text is compared with text: nothing is re-run here. The raw file records the
machine it came from, and another CPU may print other last digits; when the
code changes what a command prints, rerun the command, commit its raw output,
and quote it (the README and the raw file then change together).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_START = re.compile(r"<!--\s*figures:\s*(\S+)\s*-->")
_END = "<!-- /figures -->"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def quoted_passages(text):
    """``[(raw file path, passage text, line number)]`` of every marked passage."""
    passages = []
    for match in _START.finditer(text):
        end = text.find(_END, match.end())
        assert end != -1, f"{match.group(0)} has no {_END}"
        line = text.count("\n", 0, match.start()) + 1
        passages.append((match.group(1), text[match.end():end], line))
    return passages


def mismatches(passage, raw):
    """What in ``passage`` is not in ``raw`` (an empty list: it quotes it)."""
    problems = []
    raw_lines = raw.splitlines()
    raw_numbers = set(_NUMBER.findall(raw))
    block, prose = [], []
    for line in passage.splitlines() + [""]:
        if line.startswith("    ") and line.strip():
            block.append(line[4:])
            continue
        if block:
            if not _in_order(block, raw_lines):
                problems.append("block not in the raw file, line for line:\n    "
                                + "\n    ".join(block))
            block = []
        prose.append(line)
    for number in _NUMBER.findall("\n".join(prose)):
        if number not in raw_numbers:
            problems.append(f"the figure {number} is not in the raw file")
    return problems


def _in_order(block, raw_lines):
    n = len(block)
    return any(raw_lines[i:i + n] == block for i in range(len(raw_lines) - n + 1))


def _passages():
    text = (ROOT / "README.md").read_text()
    return [pytest.param(path, passage, id=f"README.md:{line}:{path}")
            for path, passage, line in quoted_passages(text)]


@pytest.mark.parametrize("path, passage", _passages())
def test_readme_figures_match_their_raw_file(path, passage):
    raw_path = ROOT / path
    assert raw_path.is_file(), f"README.md quotes {path}, which does not exist"
    raw = raw_path.read_text()
    for what in ("command", "machine", "thread", "load average"):
        assert what in raw, f"{path} does not record its {what}"
    assert mismatches(passage, raw) == []


def test_the_main_job_and_the_usage_snippet_are_quoted_from_raw_files():
    quoted = {path for path, _, _ in quoted_passages((ROOT / "README.md").read_text())}
    assert {"benchmarks/results/main-job.txt",
            "benchmarks/results/readme-usage-time.txt"} <= quoted


def test_a_changed_figure_is_caught():
    raw = "# command: python -m skclusterfit\nN_pre   0.9056\nN_cf   0.9704\n"
    assert mismatches("It printed\n\n    N_pre   0.9056\n    N_cf   0.9704\n\nso 0.9704.", raw) == []
    assert mismatches("\n    N_pre   0.8704\n    N_cf   0.9704\n", raw)  # a stale line
    assert mismatches("\n    N_cf   0.9704\n    N_pre   0.9056\n", raw)  # out of order
    assert mismatches("N_cf reached 0.9556.", raw) == ["the figure 0.9556 is not in the raw file"]
    text = "a\n<!-- figures: r.txt -->\nN_cf 0.97\n<!-- /figures -->\nb 0.5"
    assert quoted_passages(text) == [("r.txt", "\nN_cf 0.97\n", 2)]
