"""The kernel registry -- layer class -> kernel -- and the array helpers shared by the kernel files.

A kernel is registered next to its arithmetic's name: the kernel of a class in
``cnncalc/layers/conv.py`` is in ``cnncalc/forward/conv.py``, registered with ``@kernel(Conv)``.
The pass calls ``apply``, which finds the kernel of the layer's class (or of its nearest base
class that has one).  A registered function takes ``(layer, x (N, *S), params, owned)`` and
returns y: ``params`` the layer's state_dict arrays by name (``weight``, ``bias``, ...),
``owned`` whether the pass allocated ``x`` (so the kernel may overwrite it).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..layers.base import Layer

Kernel = Callable[..., np.ndarray]  # (layer, x, params, owned, **options) -> y
KERNELS: dict[type, Kernel] = {}


def kernel(*classes: type) -> Callable[[Kernel], Kernel]:
    """Register the decorated function as the kernel of each layer class in ``classes``."""
    def add(fn: Kernel) -> Kernel:
        for cls in classes:
            KERNELS[cls] = fn
        return fn
    return add


def apply(layer: Layer, x: np.ndarray, p: dict, owned: bool, **options) -> np.ndarray:
    """The layer's kernel on x; options ``relu=True`` (on relu(x): only kernels in the pass's
    TAKE_RELU are asked) and ``add_to`` (see the pass's ``takes_sum``)."""
    for cls in type(layer).__mro__:
        if cls in KERNELS:
            return KERNELS[cls](layer, x, p, owned, **options)
    raise NotImplementedError(f"no NumPy kernel for {layer.kind}")


def out_size(layer: Layer, x: np.ndarray) -> tuple:
    """Output spatial size for the array actually received (kernels that take it as an argument)."""
    return layer.out_shape(x.shape[1:])[1:]


def _view(a: np.ndarray, shape) -> np.ndarray:
    """``a.reshape(shape)`` that is guaranteed to be a view (used for ``out=`` targets)."""
    r = a.reshape(shape)
    if r.size and not np.may_share_memory(r, a):
        raise AssertionError("reshape of an output target would copy")
    return r


def _float_dtype(*arrays) -> np.dtype:
    """Result dtype of the arrays, at least float32 (None entries ignored)."""
    return np.result_type(np.float32, *[a for a in arrays if a is not None])


def _channel_shape(v: np.ndarray, ndim: int) -> np.ndarray:
    """Reshape a per-channel vector ``(C,)`` to broadcast over ``(N, C, *S)`` of rank ``ndim``."""
    return v.reshape((-1,) + (1,) * (ndim - 2))  # (C, 1, ..., 1)


def _add_bias(out: np.ndarray, bias) -> None:
    """In-place ``out += bias`` over the channel axis 1 of ``out (N, C, *S)``."""
    if bias is not None:
        out += _channel_shape(np.asarray(bias, out.dtype), out.ndim)

