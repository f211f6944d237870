"""Deprecated (removed in 0.3): this module moved to :mod:`skclusterfit`."""

from .runtime._moved import stub

__getattr__, __dir__, __all__ = stub(__name__)
