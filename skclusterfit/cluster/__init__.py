"""Clustering of teacher features: fast k-means and its preprocessing."""

from ._kmeans import KMeans
from ._per_label import PerLabelKMeans
from ._preprocessing import PCAWhitening
from ._prototype import PrototypeClusterer

__all__ = ["KMeans", "PCAWhitening", "PerLabelKMeans", "PrototypeClusterer"]
