"""The kernel registry -- layer class -> kernel -- and the array helpers shared by the kernel files.

A kernel is registered next to its arithmetic's name: the kernel of a class in
``cnncalc/layers/conv.py`` is in ``cnncalc/forward/conv.py``, registered with ``@kernel(Conv)``.
The pass calls ``apply``, which finds the kernel of the layer's class (or of its nearest base
class that has one).  A registered function takes ``(layer, x (N, *S), params, owned)`` and
returns y: ``params`` the layer's state_dict arrays by name (``weight``, ``bias``, ...),
``owned`` whether the pass allocated ``x`` (so the kernel may overwrite it).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..analysis import allocates as analysis_allocates
from ..layers.base import Layer
from .memory import _empty

#: Bytes of temporaries per chunk of a kernel that gathers along one axis (``_axis_chunks``).
GATHER_CHUNK_BYTES = 8 << 20

Kernel = Callable[..., np.ndarray]  # (layer, x, params, owned, **options) -> y
KERNELS: dict[type, Kernel] = {}
#: Classes whose kernel returns a new array where PyTorch shares the input's storage (a view made
#: contiguous for the kernels after it; an in-place activation on an array the pass may not overwrite).
COPIES: set[type] = set()


def kernel(*classes: type, copies: bool = False) -> Callable[[Kernel], Kernel]:
    """Register the decorated function as the kernel of each layer class in ``classes``; ``copies``:
    it allocates its output even where ``analysis.allocates`` says PyTorch does not."""
    def add(fn: Kernel) -> Kernel:
        for cls in classes:
            KERNELS[cls] = fn
            if copies:
                COPIES.add(cls)
        return fn
    return add


def allocates(row) -> bool:
    """Whether the pass allocates this entry's output: where PyTorch does (``analysis.allocates``, at
    inference), and where this entry's kernel copies what PyTorch would share."""
    if analysis_allocates(row):
        return True
    for cls in type(row.node.layer).__mro__:
        if cls in KERNELS:
            return cls in COPIES
    return False


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



def _axis_chunks(y: np.ndarray, axis: int, o: int, temp_bytes: int):
    """For a kernel that resamples ``axis`` of ``y`` to length ``o`` (uneven adaptive pools,
    interpolation): ``(out, chunks)``, ``out`` the new array and each chunk a pair of views
    ``(src (rows, n, rest), dst (rows, o, rest))`` of ``y`` and ``out`` over a run of the leading
    axes, so that ``temp_bytes`` of temporaries per output value stay within GATHER_CHUNK_BYTES
    (one row at least)."""
    y = np.ascontiguousarray(y)
    rows, n, rest = math.prod(y.shape[:axis]), y.shape[axis], math.prod(y.shape[axis + 1:])
    out = _empty(y.shape[:axis] + (o,) + y.shape[axis + 1:], y.dtype)
    src, dst = y.reshape(rows, n, rest), out.reshape(rows, o, rest)  # views: both contiguous
    step = gather_rows(rows, o * rest, temp_bytes)
    return out, [(src[r:r + step], dst[r:r + step]) for r in range(0, rows, step)]


def gather_rows(rows: int, per_row: int, temp_bytes: int) -> int:
    """Rows per chunk of ``_axis_chunks``: ``per_row`` output values each."""
    return min(rows, max(1, GATHER_CHUNK_BYTES // max(1, per_row * temp_bytes)))
