"""Layer types, one small class each, registered by their YAML names on import: the CNN types with
the package, the modules in `base.LATER` (attention, learned tensors, rearrangements) when a spec
first names one of their types (`lookup`) or every type is listed (`all_types`, `REGISTRY` here)."""
from . import activation, composite, conv, linear, norm, pool, reshape  # noqa: F401
from .base import Layer, all_types, lookup

__all__ = ["REGISTRY", "Layer", "all_types", "lookup"]


def __getattr__(name: str):
    if name == "REGISTRY":          # every type: the later modules imported first
        return all_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
