"""The documentation's code works when copied, and its metadata is consistent.

Every Python code block of README.md and docs/**/*.rst is executed, page by
page: the blocks of one page run in order in one namespace (as a reader
copies them one after another), in a temporary working directory. A block
that cannot run here says so just before it, with its reason:

- reStructuredText: ``.. shown-only:: needs a GPU.`` (rendered for the
  reader by docs/_ext/snippets.py);
- Markdown: ``<!-- shown-only: needs a GPU. -->``, with the reason also in
  the visible text.

A page whose blocks take more than a few seconds is marked
``.. snippet: slow`` / ``<!-- snippet: slow -->`` anywhere in the page, and
its test runs with the slow tests.
"""

import os
import re
import textwrap
import zlib
from pathlib import Path

import pytest

import skclusterfit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# A shown-only block must name what it needs that the tests do not have.
REASON_WORDS = ("gpu", "network", "weights", "images", "hours", "size", "download",
                "folder", "interrupt", "file", "imagenet")

_RST_BLOCK = re.compile(r"^(\s*)\.\. (?:code-block|code|sourcecode):: *(?:python|Python|py)\s*$")
_RST_SHOWN_ONLY = re.compile(r"^\s*\.\. shown-only::\s*(.*)$")
_MD_SHOWN_ONLY = re.compile(r"^\s*<!--\s*shown-only:\s*(.*?)\s*-->\s*$")


class Block:
    def __init__(self, path, line, code, shown_only=None):
        self.path, self.line, self.code, self.shown_only = path, line, code, shown_only

    def __repr__(self):
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _previous_nonblank(lines, index):
    index -= 1
    while index >= 0 and not lines[index].strip():
        index -= 1
    return lines[index] if index >= 0 else ""


def rst_blocks(path):
    lines = path.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = _RST_BLOCK.match(lines[i])
        if not match:
            i += 1
            continue
        start = i
        indent = len(match.group(1))
        i += 1
        while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):  # directive options
            i += 1
        body = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        shown = _RST_SHOWN_ONLY.match(_previous_nonblank(lines, start))
        blocks.append(Block(path, start + 1, textwrap.dedent("\n".join(body)).strip() + "\n",
                            shown.group(1) if shown else None))
    return blocks


def markdown_blocks(path):
    lines = path.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() not in ("```python", "```py"):
            i += 1
            continue
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        shown = _MD_SHOWN_ONLY.match(_previous_nonblank(lines, start))
        blocks.append(Block(path, start + 1, "\n".join(body) + "\n",
                            shown.group(1) if shown else None))
    return blocks


def documented_pages():
    pages = [ROOT / "README.md"]
    pages += sorted(
        p for p in DOCS.rglob("*.rst")
        if not any(part.startswith(("_", ".")) or part in ("generated", "auto_examples",
                                                            "gen_modules")
                   for part in p.relative_to(DOCS).parts)
    )
    return pages


def page_blocks(page):
    return markdown_blocks(page) if page.suffix == ".md" else rst_blocks(page)


def _is_slow(page):
    text = page.read_text()
    return ".. snippet: slow" in text or "<!-- snippet: slow -->" in text


def _page_params():
    params = []
    for page in documented_pages():
        if not any(b.shown_only is None for b in page_blocks(page)):
            continue
        marks = [pytest.mark.slow] if _is_slow(page) else []
        params.append(pytest.param(page, id=str(page.relative_to(ROOT)), marks=marks))
    return params


@pytest.mark.parametrize("page", _page_params())
def test_code_blocks_run(page, tmp_path, monkeypatch):
    """Every block not marked shown-only runs, in order, in one namespace per page."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__snippet__"}
    for block in page_blocks(page):
        if block.shown_only is not None:
            continue
        try:
            exec(compile(block.code, str(block), "exec"), namespace)
        except Exception as exc:
            raise AssertionError(
                f"the code block at {block!r} failed when run as written:\n\n"
                f"{block.code}\n{type(exc).__name__}: {exc}"
            ) from exc


def test_shown_only_blocks_say_why():
    blocks = [b for page in documented_pages() for b in page_blocks(page)]
    assert sum(b.shown_only is None for b in blocks) >= 10, "too few executed blocks"
    for block in blocks:
        if block.shown_only is None:
            continue
        assert any(word in block.shown_only.lower() for word in REASON_WORDS), (
            f"the shown-only block at {block!r} gives no reason the tests cannot "
            f"run it (one of {REASON_WORDS}): {block.shown_only!r}"
        )
        compile(block.code, str(block), "exec")  # still valid Python


def test_extractor_reads_markers(tmp_path):
    page = tmp_path / "page.rst"
    page.write_text(
        "Text.\n\n.. code-block:: python\n\n   x = 1\n   if x:\n\n       y = 2\n\n"
        "After.\n\n.. shown-only:: needs a GPU.\n\n.. code-block:: python\n   :caption: c\n\n"
        "   import cuda_only\n"
    )
    first, second = rst_blocks(page)
    assert first.code == "x = 1\nif x:\n\n    y = 2\n" and first.shown_only is None
    assert second.code == "import cuda_only\n" and second.shown_only == "needs a GPU."
    readme = tmp_path / "README.md"
    readme.write_text("<!-- shown-only: needs network. -->\n```python\nimport a\n```\n"
                      "```python\nb = 1\n```\n")
    first, second = markdown_blocks(readme)
    assert (first.shown_only, second.shown_only) == ("needs network.", None)
    assert second.code == "b = 1\n"


# -- metadata -----------------------------------------------------------------


def test_citation_and_changelog_match_the_version():
    # CITATION.cff is YAML; these few keys are read without a YAML parser.
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(r"^version: (\S+)$", citation, re.M).group(1) == skclusterfit.__version__
    assert re.search(r"^license: (\S+)$", citation, re.M).group(1) == "BSD-3-Clause"
    assert 'title: "ClusterFit: Improving Generalization of Visual Representations"' in citation
    assert re.findall(r"family-names: (\w+)", citation) == [
        "Yan", "Misra", "Gupta", "Ghadiyaram", "Mahajan"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {skclusterfit.__version__}" in changelog
    from skclusterfit.storage._persistence import FORMAT_VERSION

    # each release states the .skcf format version it writes
    assert f"`.skcf` format version {FORMAT_VERSION}" in changelog
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    citing = (DOCS / "user_guide" / "citing.rst").read_text()
    assert f"version = {{{skclusterfit.__version__}}}" in citing
    assert "pages     = {6509--6518}" in citing


def _read_inventory(path):
    with open(path, "rb") as file:
        header = [file.readline() for _ in range(4)]
        body = zlib.decompress(file.read()).decode()
    assert header[0].startswith(b"# Sphinx inventory version 2")
    entries = {}
    for line in body.splitlines():
        name, role, _priority, uri, _display = line.split(" ", 4)
        entries[name, role] = uri[:-1] + name if uri.endswith("$") else uri
    return entries


@pytest.mark.parametrize(
    "inventory, name, role, url",
    [
        ("sklearn", "sklearn.pipeline.Pipeline", "py:class",
         "modules/generated/sklearn.pipeline.Pipeline.html#sklearn.pipeline.Pipeline"),
        ("sklearn", "sklearn.frozen.FrozenEstimator", "py:class",
         "modules/generated/sklearn.frozen.FrozenEstimator.html#sklearn.frozen.FrozenEstimator"),
        ("numpy", "numpy.ndarray", "py:class",
         "reference/generated/numpy.ndarray.html#numpy.ndarray"),
        ("numpy", "numpy.random.RandomState", "py:class",
         "reference/random/legacy.html#numpy.random.RandomState"),
        ("torch", "torch.nn.Module", "py:class",
         "generated/torch.nn.Module.html#torch.nn.Module"),
        ("torch", "torch.utils.data.Dataset", "py:class", "data.html#torch.utils.data.Dataset"),
        ("torch", "torch.device", "py:class", "tensor_attributes.html#torch.device"),
        ("torchvision", "torchvision.models.feature_extraction.create_feature_extractor",
         "py:function",
         "generated/torchvision.models.feature_extraction.create_feature_extractor.html"
         "#torchvision.models.feature_extraction.create_feature_extractor"),
        ("joblib", "joblib.Memory", "py:class", "generated/joblib.Memory.html#joblib.Memory"),
    ],
)
def test_inventories_point_to_official_pages(inventory, name, role, url):
    """The committed inventories (docs/scripts/make_inventories.py) map names to
    the pages where their projects document them."""
    entries = _read_inventory(DOCS / "_inventories" / f"{inventory}.inv")
    assert entries[name, role] == url


def test_docs_build_uses_only_local_inventories():
    conf = (DOCS / "conf.py").read_text()
    assert "intersphinx_mapping" in conf
    for name in ("sklearn", "numpy", "torch", "torchvision", "joblib"):
        assert os.path.isfile(DOCS / "_inventories" / f"{name}.inv")
