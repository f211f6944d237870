"""Clustering of teacher features: fast k-means and its preprocessing."""

from ._kmeans import KMeans
from ._preprocessing import PCAWhitening

__all__ = ["KMeans", "PCAWhitening"]
