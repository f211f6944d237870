"""Clustering of teacher features: fast k-means and its preprocessing."""

from ._curation import HierarchicalCuration
from ._kmeans import KMeans
from ._matching import match_cluster_ids
from ._per_label import PerLabelKMeans
from ._preprocessing import PCAWhitening
from ._prototype import PrototypeClusterer

__all__ = [
    "HierarchicalCuration",
    "KMeans",
    "PCAWhitening",
    "PerLabelKMeans",
    "PrototypeClusterer",
    "match_cluster_ids",
]
