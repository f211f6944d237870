"""Clustering of teacher features: fast torch k-means and its helpers."""

from ._kmeans import KMeans

__all__ = ["KMeans"]
