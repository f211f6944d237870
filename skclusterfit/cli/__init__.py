"""The command-line application: ``skclusterfit fit | transform | demo``.

``fit_folder`` and ``transform_folder`` are ``skclusterfit fit`` and
``skclusterfit transform`` in Python; ``write_report`` and the figure
functions draw the report of a run.
"""

from ._image_folder import fit_folder, transform_folder
from ._main import build_parser, main, parse_args
from ._report import (
    choose_clusters,
    cluster_distances,
    cluster_size_figure,
    exemplar_figure,
    label_agreement,
    probe_accuracies,
    probe_figure,
    read_labels,
    timings_figure,
    training_curve_figure,
    write_report,
)

__all__ = [
    "build_parser",
    "choose_clusters",
    "cluster_distances",
    "cluster_size_figure",
    "exemplar_figure",
    "fit_folder",
    "label_agreement",
    "main",
    "parse_args",
    "probe_accuracies",
    "probe_figure",
    "read_labels",
    "timings_figure",
    "training_curve_figure",
    "transform_folder",
    "write_report",
]
