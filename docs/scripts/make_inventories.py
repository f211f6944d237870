"""Write the intersphinx inventories of docs/_inventories/ from installed packages.

The documentation links names of scikit-learn, NumPy, PyTorch, torchvision
and joblib to their official documentation, but its build has no network, so
intersphinx cannot download those projects' ``objects.inv``. This script
writes small inventories of our own instead: it walks the public names of the
installed packages and maps each to the URL where that project's own Sphinx
site documents it (the URL rules below follow each project's API reference
layout: e.g. scikit-learn documents ``sklearn.pipeline.Pipeline`` at
``modules/generated/sklearn.pipeline.Pipeline.html``).

Run it again after upgrading one of those packages, and commit the result::

    python docs/scripts/make_inventories.py

``tests/test_docs.py`` checks that the inventories load and that a few
names resolve to the URLs their projects use.
"""

import importlib
import inspect
import os
import zlib

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_inventories")

# Project -> (documentation root, inventory file). conf.py reads this table.
PROJECTS = {
    "sklearn": ("https://scikit-learn.org/stable/", "sklearn.inv"),
    "numpy": ("https://numpy.org/doc/stable/", "numpy.inv"),
    "torch": ("https://docs.pytorch.org/docs/stable/", "torch.inv"),
    "torchvision": ("https://docs.pytorch.org/vision/stable/", "torchvision.inv"),
    "joblib": ("https://joblib.readthedocs.io/en/stable/", "joblib.inv"),
    "python": ("https://docs.python.org/3/", "python.inv"),
}


def public_names(module):
    names = getattr(module, "__all__", None)
    if names is None:  # no __all__: what the module defines, not what it imports
        names = [
            n for n in dir(module) if not n.startswith("_")
            and getattr(getattr(module, n), "__module__", "").startswith(module.__name__)
        ]
    found = []
    for name in names:
        try:
            if not name.startswith("_") and hasattr(module, name):
                found.append(name)
        except ImportError:  # experimental names that need an explicit enable_* import
            pass
    return found


def public_methods(cls, inherited=True):
    """Public methods and properties of ``cls`` (with inherited ones if ``inherited``).

    scikit-learn's pages list inherited methods; PyTorch's and NumPy's class
    pages list only what the class itself defines.
    """
    for name, value in inspect.getmembers(cls):
        if name.startswith("_") or (not inherited and name not in vars(cls)):
            continue
        if isinstance(inspect.getattr_static(cls, name, None), property):
            yield name, "py:property"
        elif callable(value):
            yield name, "py:method"


class Inventory:
    def __init__(self, project, version):
        self.project, self.version = project, version
        self.entries = {}

    def add(self, name, role, uri, priority=1):
        # The first rule to name an object wins: specific rules run first.
        self.entries.setdefault((name, role), (priority, uri))

    def write(self, path):
        lines = [
            f"{name} {role} {priority} {uri} -"
            for (name, role), (priority, uri) in sorted(self.entries.items())
        ]
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {self.project}\n"
            f"# Version: {self.version}\n"
            "# The remainder of this file is compressed using zlib.\n"
        )
        with open(path, "wb") as file:
            file.write(header.encode())
            file.write(zlib.compress(("\n".join(lines) + "\n").encode()))
        return len(lines)


def sklearn_inventory():
    import sklearn

    inv = Inventory("scikit-learn", sklearn.__version__)
    skip = {"externals", "experimental", "callback", "tests"}
    modules = [m for m in sklearn.__all__ if inspect.ismodule(getattr(sklearn, m, None))
               or importlib.util.find_spec(f"sklearn.{m}") is not None]
    modules = [f"sklearn.{m}" for m in modules if m not in skip and "." not in m]
    # sklearn.utils' documented submodules
    modules += ["sklearn.utils.validation", "sklearn.utils.multiclass",
                "sklearn.utils.estimator_checks", "sklearn.utils.class_weight",
                "sklearn.metrics.cluster"]
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if module_name.count(".") == 1:
            inv.add(module_name, "py:module", f"api/{module_name}.html")
        for name in public_names(module):
            obj = getattr(module, name)
            full = f"{module_name}.{name}"
            page = f"modules/generated/{full}.html"
            if inspect.isclass(obj):
                inv.add(full, "py:class", f"{page}#$")
                for method, role in public_methods(obj):
                    inv.add(f"{full}.{method}", role, f"{page}#{full}.{method}", priority=2)
            elif callable(obj) and not inspect.ismodule(obj):
                inv.add(full, "py:function", f"{page}#$")
    for name in ("clone", "get_config", "set_config", "config_context", "show_versions"):
        inv.add(f"sklearn.{name}", "py:function", f"modules/generated/sklearn.{name}.html#$")
    inv.add("sklearn", "py:module", "api/index.html")
    # User-guide sections that inherited scikit-learn docstrings link to by label.
    labels = {
        "accuracy_score": "modules/model_evaluation.html#accuracy-score",
        "metadata_routing": "metadata_routing.html",
        "user_guide": "user_guide.html",
        "glossary": "glossary.html",
    }
    for label, uri in labels.items():
        inv.add(label, "std:label", uri)
    return inv


def numpy_inventory():
    import numpy as np

    inv = Inventory("NumPy", np.__version__)
    specific = {
        "numpy.random.RandomState": ("py:class", "reference/random/legacy.html#$"),
        "numpy.random.Generator": ("py:class", "reference/random/generator.html#$"),
        "numpy.random.default_rng": ("py:function", "reference/random/generator.html#$"),
        "numpy.random.SeedSequence": ("py:class", "reference/random/bit_generators/generated/numpy.random.SeedSequence.html#$"),
        "numpy.nan": ("py:data", "reference/constants.html#$"),
        "numpy.inf": ("py:data", "reference/constants.html#$"),
        "numpy.newaxis": ("py:data", "reference/constants.html#$"),
        "numpy.lib.format.open_memmap": ("py:function", "reference/generated/numpy.lib.format.open_memmap.html#$"),
        "numpy": ("py:module", "reference/index.html"),
        "numpy.random": ("py:module", "reference/random/index.html"),
    }
    for name, (role, uri) in specific.items():
        inv.add(name, role, uri)
    inv.add("array_like", "std:term", "glossary.html#term-array_like")
    for name in public_names(np):
        obj = getattr(np, name)
        full = f"numpy.{name}"
        if inspect.ismodule(obj):
            continue
        if inspect.isclass(obj) and issubclass(obj, np.generic):
            inv.add(full, "py:class", "reference/arrays.scalars.html#$")
        elif inspect.isclass(obj):
            page = f"reference/generated/{full}.html"
            inv.add(full, "py:class", f"{page}#$")
            if obj in (np.ndarray, np.dtype, np.memmap):
                for method, role in public_methods(obj, inherited=obj is not np.memmap):
                    inv.add(f"{full}.{method}", role,
                            f"reference/generated/{full}.{method}.html#$", priority=2)
        elif callable(obj):
            inv.add(full, "py:function", f"reference/generated/{full}.html#$")
    for name in public_names(np.random):
        obj = getattr(np.random, name)
        if callable(obj) and not inspect.isclass(obj):
            inv.add(f"numpy.random.{name}", "py:function",
                    f"reference/random/generated/numpy.random.{name}.html#$")
    return inv


def torch_inventory():
    import torch
    import torch.nn.functional
    import torch.utils.data

    inv = Inventory("PyTorch", torch.__version__.split("+")[0])
    attributes = "tensor_attributes.html#$"
    specific = {
        "torch": ("py:module", "torch.html"),
        "torch.nn": ("py:module", "nn.html"),
        "torch.nn.functional": ("py:module", "nn.functional.html"),
        "torch.utils.data": ("py:module", "data.html"),
        "torch.cuda": ("py:module", "cuda.html"),
        "torch.distributed": ("py:module", "distributed.html"),
        "torch.optim": ("py:module", "optim.html"),
        "torch.Tensor": ("py:class", "tensors.html#$"),
        "torch.device": ("py:class", attributes),
        "torch.dtype": ("py:class", attributes),
        "torch.layout": ("py:class", attributes),
        "torch.memory_format": ("py:class", attributes),
        "torch.Size": ("py:class", "size.html#$"),
        "torch.autocast": ("py:class", "amp.html#$"),
        "torch.amp.GradScaler": ("py:class", "amp.html#$"),
    }
    for name, (role, uri) in specific.items():
        inv.add(name, role, uri)
    for method, role in public_methods(torch.Tensor):
        inv.add(f"torch.Tensor.{method}", role, f"generated/torch.Tensor.{method}.html#$", priority=2)
    for name in public_names(torch):
        obj = getattr(torch, name)
        if inspect.ismodule(obj) or isinstance(obj, (torch.dtype, torch.memory_format)):
            continue
        if inspect.isclass(obj) and name in ("Generator", "no_grad", "enable_grad",
                                             "inference_mode", "set_grad_enabled"):
            inv.add(f"torch.{name}", "py:class", f"generated/torch.{name}.html#$")
        elif callable(obj) and not inspect.isclass(obj):
            inv.add(f"torch.{name}", "py:function", f"generated/torch.{name}.html#$")
    for name in public_names(torch.nn.modules):
        obj = getattr(torch.nn, name, None)
        if inspect.isclass(obj):
            inv.add(f"torch.nn.{name}", "py:class", f"generated/torch.nn.{name}.html#$")
            for method, role in public_methods(obj, inherited=obj is torch.nn.Module):
                inv.add(f"torch.nn.{name}.{method}", role,
                        f"generated/torch.nn.{name}.html#torch.nn.{name}.{method}", priority=2)
    for name in public_names(torch.nn.functional):
        obj = getattr(torch.nn.functional, name)
        if callable(obj) and not inspect.isclass(obj) and not inspect.ismodule(obj):
            inv.add(f"torch.nn.functional.{name}", "py:function",
                    f"generated/torch.nn.functional.{name}.html#$")
    for name in public_names(torch.utils.data):
        obj = getattr(torch.utils.data, name)
        role = "py:class" if inspect.isclass(obj) else "py:function"
        if callable(obj):
            inv.add(f"torch.utils.data.{name}", role, "data.html#$")
    for name in ("SGD", "Adam", "AdamW"):
        inv.add(f"torch.optim.{name}", "py:class", f"generated/torch.optim.{name}.html#$")
    import torch.optim.lr_scheduler as sched

    for name in public_names(sched):
        if inspect.isclass(getattr(sched, name)) and name != "LRScheduler":
            inv.add(f"torch.optim.lr_scheduler.{name}", "py:class",
                    f"generated/torch.optim.lr_scheduler.{name}.html#$")
    for name in public_names(torch.cuda):
        obj = getattr(torch.cuda, name)
        if inspect.isfunction(obj):
            inv.add(f"torch.cuda.{name}", "py:function", f"generated/torch.cuda.{name}.html#$")
    return inv


def torchvision_inventory():
    import torchvision
    from torchvision import models
    from torchvision.transforms import v2

    inv = Inventory("Torchvision", torchvision.__version__.split("+")[0])
    inv.add("torchvision.models", "py:module", "models.html")
    inv.add("torchvision.models.feature_extraction", "py:module", "feature_extraction.html")
    for name in ("get_model", "get_model_weights", "get_weight", "list_models"):
        inv.add(f"torchvision.models.{name}", "py:function",
                f"models/generated/torchvision.models.{name}.html#$")
    for name in ("create_feature_extractor", "get_graph_node_names"):
        inv.add(f"torchvision.models.feature_extraction.{name}", "py:function",
                f"generated/torchvision.models.feature_extraction.{name}.html#$")
    for name in models.list_models(module=models):
        page = f"models/generated/torchvision.models.{name}.html"
        inv.add(f"torchvision.models.{name}", "py:function", f"{page}#$")
        weights = models.get_model_weights(name)
        inv.add(f"torchvision.models.{weights.__name__}", "py:class",
                f"{page}#torchvision.models.{weights.__name__}")
    for name in public_names(v2):
        if inspect.isclass(getattr(v2, name)):
            inv.add(f"torchvision.transforms.v2.{name}", "py:class",
                    f"generated/torchvision.transforms.v2.{name}.html#$")
    for name in ("ImageFolder", "MNIST", "CIFAR10", "FakeData"):
        inv.add(f"torchvision.datasets.{name}", "py:class",
                f"generated/torchvision.datasets.{name}.html#$")
    return inv


def joblib_inventory():
    import joblib

    inv = Inventory("joblib", joblib.__version__)
    for name in ("Memory", "Parallel"):
        inv.add(f"joblib.{name}", "py:class", f"generated/joblib.{name}.html#$")
        for method, role in public_methods(getattr(joblib, name)):
            inv.add(f"joblib.{name}.{method}", role,
                    f"generated/joblib.{name}.html#joblib.{name}.{method}", priority=2)
    for name in ("dump", "load", "hash", "delayed", "parallel_config", "cpu_count"):
        inv.add(f"joblib.{name}", "py:function", f"generated/joblib.{name}.html#$")
    return inv


def python_inventory():
    """The built-in names that numpydoc links in parameter types ("int", "dict")."""
    import sys

    inv = Inventory("Python", f"{sys.version_info.major}.{sys.version_info.minor}")
    for name in ("list", "tuple", "dict", "str", "set", "frozenset", "bytes", "range"):
        inv.add(name, "py:class", f"library/stdtypes.html#{name}")
    for name in ("int", "float", "bool", "complex", "object", "type"):
        inv.add(name, "py:class", f"library/functions.html#{name}")
    for name in ("callable", "len", "print", "isinstance"):
        inv.add(name, "py:function", f"library/functions.html#{name}")
    for name in ("None", "True", "False", "Ellipsis"):
        inv.add(name, "py:data", f"library/constants.html#{name}")
    for term in ("sequence", "iterable", "mapping", "generator", "path-like object"):
        inv.add(term, "std:term", f"glossary.html#term-{term.replace(' ', '-')}")
    inv.add("os.PathLike", "py:class", "library/os.html#os.PathLike")
    inv.add("pathlib.Path", "py:class", "library/pathlib.html#pathlib.Path")
    return inv


BUILDERS = {
    "sklearn": sklearn_inventory,
    "numpy": numpy_inventory,
    "torch": torch_inventory,
    "torchvision": torchvision_inventory,
    "joblib": joblib_inventory,
    "python": python_inventory,
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for key, build in BUILDERS.items():
        inventory = build()
        path = os.path.join(OUT, PROJECTS[key][1])
        n = inventory.write(path)
        print(f"{path}: {inventory.project} {inventory.version}, {n} objects, "
              f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
