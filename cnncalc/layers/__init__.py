"""Layer types, one small class each, registered by their YAML names on import."""
from . import activation, attention, composite, conv, learned, linear, norm, pool, rearrange, reshape  # noqa: F401
from .base import REGISTRY, Layer, lookup

__all__ = ["REGISTRY", "Layer", "lookup"]
