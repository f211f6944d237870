"""The package's layering: no import cycles, and lower layers never import higher ones.

Every ``import`` statement of every module counts, function-level ones
included: a cycle hidden inside a function is still a knot for the reader.
"""

import ast
import os
import pathlib

import pytest

import skclusterfit

PACKAGE_DIR = pathlib.Path(skclusterfit.__file__).parent

# Layers from the bottom up; a module may import its own layer and the ones below.
LAYERS = [
    # Data and networks: arrays, datasets, devices, network construction.
    {
        "skclusterfit._atomic", "skclusterfit._estimators", "skclusterfit._progress",
        "skclusterfit._torch_utils", "skclusterfit.augment", "skclusterfit.backbones",
        "skclusterfit.data", "skclusterfit.datasets", "skclusterfit.image_files",
        "skclusterfit.models",
    },
    # Shared estimator plumbing that knows no estimator class.
    {"skclusterfit._base", "skclusterfit._validation", "skclusterfit.fingerprint"},
    # Services: saving and checkpointing, by protocol.
    {"skclusterfit.persistence", "skclusterfit.checkpoint"},
]
# Everything else (the estimators, evaluation, the command line) sits above.
SERVICES_AND_BELOW = set().union(*LAYERS)
ESTIMATOR_MODULES = {
    "skclusterfit.features", "skclusterfit.training", "skclusterfit.pretext",
    "skclusterfit._clusterfit",
}


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
    for level, layer in enumerate(LAYERS):
        allowed = set().union(*LAYERS[: level + 1])
        for name in layer:
            higher = graph[name] - allowed
            assert not higher, f"{name} (layer {level}) imports higher modules {higher}"


def test_services_know_no_estimator_class(graph):
    for name in SERVICES_AND_BELOW:
        assert not graph[name] & ESTIMATOR_MODULES, name
    # Nor by name anywhere in their code (docstrings aside): a protocol, not a list.
    estimator_classes = {"FeatureExtractor", "NetClassifier", "RotNet", "ClusterFit", "KMeans"}
    for module in ("persistence", "checkpoint", "fingerprint"):
        tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert not used & estimator_classes, (module, used & estimator_classes)


def test_no_private_scikit_learn_imports():
    """Only sklearn.utils._param_validation, the scikit-learn-contrib convention."""
    offending = []
    for path in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for imported in names:
                parts = imported.split(".")
                if parts[0] == "sklearn" and any(p.startswith("_") for p in parts):
                    if imported != "sklearn.utils._param_validation":
                        offending.append(f"{path.name}: {imported}")
    assert not offending, offending


def test_the_layer_table_covers_every_module(graph):
    """A new module is placed in a layer on purpose, or is an estimator/front end."""
    front = {
        "skclusterfit", "skclusterfit.__main__", "skclusterfit.cli",
        "skclusterfit.evaluation", "skclusterfit._stages", "skclusterfit._demo",
        "skclusterfit.image_folder", "skclusterfit.report",
    }
    unplaced = {
        name for name in graph
        if name not in SERVICES_AND_BELOW and name not in ESTIMATOR_MODULES
        and name not in front and not name.startswith("skclusterfit.cluster")
    }
    assert not unplaced, f"place these modules in tests/test_architecture.py: {unplaced}"


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
