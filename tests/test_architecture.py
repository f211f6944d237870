"""The package's layering: no import cycles, and lower layers never import higher ones.

Every ``import`` statement of every module counts, function-level ones
included: a cycle hidden inside a function is still a knot for the reader.
"""

import ast
import os
import pathlib

import pytest

import skclusterfit
from skclusterfit.runtime._moved import MOVED_MODULES

PACKAGE_DIR = pathlib.Path(skclusterfit.__file__).parent

# The layers, bottom up, as folders of the package. A module may import its
# own layer and the ones below. The modules directly in skclusterfit/ are the
# estimators (with their private plumbing), beside the clustering package.
LAYERS = [
    # Where and how a fit runs: processes, devices, seeds, progress, files.
    ("runtime", {"runtime"}),
    # What goes in: arrays, image files, datasets; what turns it into features.
    ("data", {"data"}),
    ("networks", {"networks"}),
    # What a fit keeps: saved estimators, checkpoints, fingerprints (by protocol).
    ("storage", {"storage"}),
    # The estimators users import: skclusterfit.*, skclusterfit.cluster.
    ("estimators", {"", "cluster"}),
    # The command-line application on top.
    ("application", {"cli", "__main__"}),
]
STUB_MODULES = set(MOVED_MODULES)


def folder_of(name):
    """The layer folder of module ``name``: its subpackage, or "" for top-level modules."""
    parts = name.split(".")[1:]
    if not parts:
        return ""
    if parts[0] == "__main__" or (PACKAGE_DIR / parts[0]).is_dir():
        return parts[0]
    return ""


def layer_of(name):
    folder = folder_of(name)
    return next(level for level, (_, folders) in enumerate(LAYERS) if folder in folders)


def module_name(path):
    relative = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_imports(path):
    """Every skclusterfit module ``path`` imports, at any depth of its code."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # "from . import _stages" imports the module _stages.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    modules = {module_name(p) for p in PACKAGE_DIR.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph():
    return {module_name(p): package_imports(p) for p in PACKAGE_DIR.rglob("*.py")}


def _is_package_init(name):
    return (PACKAGE_DIR.parent / pathlib.Path(*name.split(".")) / "__init__.py").exists()


def test_no_import_cycles(graph):
    # A package's __init__ only re-exports its submodules; the edge from a
    # submodule to its own package's __init__ (Python runs it first) is not a
    # dependency of the submodule's code, so it is left out.
    edges = {
        name: {
            target for target in targets
            if not (_is_package_init(target) and name.startswith(target + "."))
        }
        for name, targets in graph.items()
    }
    visiting, done, cycles = set(), set(), []

    def visit(node, trail):
        visiting.add(node)
        for target in sorted(edges[node]):
            if target in visiting:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in done:
                visit(target, trail + [target])
        visiting.discard(node)
        done.add(node)

    for node in sorted(edges):
        if node not in done:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_lower_layers_never_import_higher_ones(graph):
    for name, targets in graph.items():
        if name in STUB_MODULES:
            continue
        higher = {t for t in targets if layer_of(t) > layer_of(name)}
        assert not higher, (
            f"{name} ({LAYERS[layer_of(name)][0]}) imports higher modules {sorted(higher)}"
        )


def test_data_and_networks_are_independent(graph):
    other = {"data": "networks", "networks": "data"}
    for name, targets in graph.items():
        if folder_of(name) in other:
            crossing = {t for t in targets if folder_of(t) == other[folder_of(name)]}
            assert not crossing, (name, sorted(crossing))


def test_every_folder_is_a_layer():
    """A new subpackage is placed in a layer on purpose."""
    folders = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()}
    placed = set().union(*(folders for _, folders in LAYERS))
    assert folders <= placed, f"place these folders in LAYERS: {sorted(folders - placed)}"


def test_top_level_holds_estimators_and_stubs_only():
    """The flat modules of 0.1 left only as stubs; new code goes in a folder or is private."""
    top = {p.stem for p in PACKAGE_DIR.glob("*.py")}
    public = {name for name in top if not name.startswith("_")}
    stubs = {name.split(".")[1] for name in STUB_MODULES}
    assert public - stubs == {"evaluation", "pretext"}


def test_storage_and_runtime_know_no_estimator_class():
    # Not by name anywhere in their code (docstrings aside): a protocol, not a list.
    estimator_classes = {"FeatureExtractor", "NetClassifier", "RotNet", "ClusterFit", "KMeans"}
    for folder in ("runtime", "storage"):
        for path in (PACKAGE_DIR / folder).glob("*.py"):
            tree = ast.parse(path.read_text())
            used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
            used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
            assert not used & estimator_classes, (path.name, used & estimator_classes)


def _public_modules():
    for path in PACKAGE_DIR.rglob("*.py"):
        name = module_name(path)
        if not any(part.startswith("_") for part in name.split(".")[1:]):
            yield name, path


def _assigned_names(path):
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                names |= {e.id for e in elements if isinstance(e, ast.Name)}
    return names


def test_every_public_module_declares_all():
    missing = [name for name, path in _public_modules() if "__all__" not in _assigned_names(path)]
    assert not missing, missing


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_old_import_paths_work_with_a_warning(old):
    import importlib

    public, private = MOVED_MODULES[old]
    stub = importlib.import_module(old)
    code = importlib.import_module(private)
    name = (stub.__all__ or [n for n in vars(code) if not n.startswith("_")])[0]
    with pytest.warns(FutureWarning, match=f"{old} is deprecated.*import {name} from"):
        value = getattr(stub, name)
    assert value is getattr(code, name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        stub.no_such_name


def test_files_saved_by_0_1_name_classes_that_still_load():
    import warnings

    from skclusterfit import NetClassifier
    from skclusterfit.storage._persistence import _resolve_class

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _resolve_class("skclusterfit.training:NetClassifier") is NetClassifier


def test_no_private_scikit_learn_imports():
    """Only sklearn.utils._param_validation, the scikit-learn-contrib convention."""
    offending = []
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # "from sklearn.utils import _x" imports a private name too.
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for imported in names:
                parts = imported.split(".")
                if parts[0] == "sklearn" and any(p.startswith("_") for p in parts[1:]):
                    if not imported.startswith("sklearn.utils._param_validation"):
                        offending.append(f"{path.relative_to(PACKAGE_DIR)}: {imported}")
    assert not offending, offending


@pytest.mark.slow  # seconds, not milliseconds: CI's slow pass runs it
def test_importing_the_package_loads_neither_torchvision_nor_numba():
    """``from skclusterfit import ClusterFit`` pays for torch, not for model zoos
    or compiled k-means kernels it may never use (those load on first use)."""
    import subprocess
    import sys

    code = (
        "import sys; from skclusterfit import ClusterFit, FeatureExtractor, NetClassifier; "
        "print(sorted(m for m in ('torchvision', 'numba', 'pynndescent') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    assert out == "[]", out
