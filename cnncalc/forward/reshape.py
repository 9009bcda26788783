"""Kernels of ``cnncalc/layers/reshape.py``: flatten, identity and dropout, padding, upsampling;
permute, unflatten, select and stochastic depth."""
from __future__ import annotations

import math

import numpy as np

from ..layers.reshape import (Flatten, Identity, Permute, Select, StochasticDepth, Unflatten, Upsample, ZeroPad,
                              _Dropout)
from . import blas
from .base import _axis_chunks, _float_dtype, kernel, out_size
from .memory import _copy, _empty


# --------------------------------------------------------------------------- padding

def _pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Source indices along one axis for padding modes reflect / replicate / circular."""
    i = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(i)
        i = i % (2 * n - 2)  # fold the infinite reflection into one period
        return np.where(i >= n, 2 * n - 2 - i, i)
    return i % n  # circular


def pad(x, pads, mode="zeros", value=0.0):
    """Pad the trailing ``len(pads)`` axes of ``x`` (normally the spatial axes of ``(N, C, *S)``).

    ``pads[i] = (lo, hi)`` for the i-th of those axes, first axis first (not F.pad's reversed
    flat order).  Modes follow ``torch.nn.functional.pad``: ``zeros``/``constant`` (fill with
    ``value``), ``reflect`` (mirror without repeating the edge), ``replicate`` (repeat the edge)
    and ``circular`` (wrap around).  Negative amounts crop.  Returns ``x`` itself when nothing
    changes.
    """
    if mode not in ("zeros", "constant", "reflect", "replicate", "circular"):
        raise ValueError(f"unknown padding mode {mode!r}")
    x = np.asarray(x)
    pads = [(int(lo), int(hi)) for lo, hi in pads]
    first = x.ndim - len(pads)
    crop = tuple(slice(max(0, -lo), n - max(0, -hi)) for (lo, hi), n in zip(pads, x.shape[first:]))
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        x = x[(Ellipsis,) + crop]  # negative pads crop first
        pads = [(max(0, lo), max(0, hi)) for lo, hi in pads]
    if not any(lo or hi for lo, hi in pads):
        return x
    if mode in ("zeros", "constant"):
        return _pad_constant(x, pads, value)
    for axis, ((lo, hi), n) in enumerate(zip(pads, x.shape[first:]), start=first):
        if lo or hi:
            x = np.take(x, _pad_index(n, lo, hi, mode), axis=axis)
    return x


def _pad_constant(x: np.ndarray, pads, value, out=None) -> np.ndarray:
    """Constant padding: copy ``x`` into the interior, fill only the border slabs with ``value``.

    Writes into ``out`` (of the padded shape) when given, e.g. a reused scratch buffer.
    """
    first = x.ndim - len(pads)
    shape = x.shape[:first] + tuple(n + lo + hi for (lo, hi), n in zip(pads, x.shape[first:]))
    out = _empty(shape, x.dtype) if out is None else out
    inner = tuple(slice(lo, lo + n) for (lo, hi), n in zip(pads, x.shape[first:]))
    out[(Ellipsis,) + inner] = x
    for i, (lo, hi) in enumerate(pads):  # border slabs, each over the full extent of other axes
        pre = (slice(None),) * (first + i)
        if lo:
            out[pre + (slice(0, lo),)] = value
        if hi:
            out[pre + (slice(shape[first + i] - hi, None),)] = value
    return out


# --------------------------------------------------------------------------- upsampling

def _source_coords(n, o, align_corners, scale, cubic, dtype):
    """PyTorch's ``area_pixel_compute_source_index`` for every output index, in ``dtype``."""
    i = np.arange(o, dtype=dtype)
    if align_corners:
        return i * dtype.type((n - 1) / (o - 1) if o > 1 else 0.0)
    step = dtype.type(1.0 / scale) if scale else dtype.type(n) / dtype.type(o)
    src = step * (i + dtype.type(0.5)) - dtype.type(0.5)
    return src if cubic else np.maximum(src, 0)


def _nearest_index(n, o, scale, exact=False):
    """PyTorch's ``nearest_idx`` (float32 arithmetic, as in ATen); ``exact`` samples pixel centres
    (``nearest-exact``: ⌊(i + ½)·step⌋)."""
    if o == n:
        return np.arange(o)
    if o == 2 * n:
        return np.arange(o) >> 1    # both rules agree here: ⌊(i + ½)/2⌋ = ⌊i/2⌋
    step = np.float32(1.0 / scale) if scale else np.float32(n) / np.float32(o)
    centre = np.float32(0.5 if exact else 0.0)
    return np.minimum(np.floor((np.arange(o, dtype=np.float32) + centre) * step).astype(np.int64), n - 1)


def _cubic_weights(t):
    """Keys cubic convolution weights (A = -0.75, as PyTorch) for taps -1, 0, 1, 2 at fraction t."""
    A = -0.75

    def near(u):  # |u| <= 1
        return ((A + 2) * u - (A + 3)) * u * u + 1

    def far(u):  # 1 < |u| < 2
        return ((A * u - 5 * A) * u + 8 * A) * u - 4 * A
    return far(t + 1), near(t), near(1 - t), far(2 - t)


def _interp_axis(y, axis, o, mode, align_corners, scale):
    """Resample one axis of ``y`` to length ``o`` (nearest, linear or cubic), in chunks of the
    leading axes (``_axis_chunks``): one gathered tap at a time is the only temporary."""
    n = y.shape[axis]
    if mode in ("nearest", "nearest-exact"):
        index = _nearest_index(n, o, scale, exact=mode == "nearest-exact")
        out, chunks = _axis_chunks(y, axis, o, 0)
        for src, dst in chunks:
            np.take(src, index, axis=1, out=dst, mode="clip")
        return out
    src_coords = _source_coords(n, o, align_corners, scale, mode == "cubic", y.dtype)
    i0 = np.floor(src_coords).astype(np.int64)
    t = src_coords - i0
    if mode == "cubic":
        taps = [np.clip(i0 + j, 0, n - 1) for j in (-1, 0, 1, 2)]
        weights = _cubic_weights(t)
    else:
        i0 = np.minimum(i0, n - 1)
        lam = np.clip(src_coords - i0, 0, 1).astype(y.dtype)
        taps, weights = [i0, np.minimum(i0 + 1, n - 1)], [1 - lam, lam]
    weights = [w.astype(y.dtype).reshape(-1, 1) for w in weights]  # per output, along the rest
    out, chunks = _axis_chunks(y, axis, o, y.dtype.itemsize)
    gathered = np.empty(chunks[0][1].shape, y.dtype)  # one tap of the largest chunk
    for src, dst in chunks:  # (rows, n, rest) -> (rows, o, rest)
        np.take(src, taps[0], axis=1, out=dst, mode="clip")
        dst *= weights[0]
        tap = gathered[:len(dst)]
        for index, weight in zip(taps[1:], weights[1:]):
            np.take(src, index, axis=1, out=tap, mode="clip")
            tap *= weight
            dst += tap
    return out


def upsample(x, out_size, mode="nearest", align_corners=None, scale_factor=None):
    """Resample ``x (N, C, *S)`` to ``(N, C, *out_size)`` like ``torch.nn.Upsample``.

    Modes: nearest, nearest-exact, linear / bilinear / trilinear (one linear pass per axis), bicubic.  When
    ``scale_factor`` (a number or per-axis tuple) is given, PyTorch's coordinate scale
    ``1 / scale_factor`` is used instead of ``in / out`` (recompute_scale_factor=None).
    """
    N, C, *S = x.shape
    y = np.asarray(x, _float_dtype(x))
    if scale_factor is None or np.ndim(scale_factor) == 0:
        scales = [scale_factor] * len(S)
    else:
        scales = list(scale_factor)
    kind = {"nearest": "nearest", "nearest-exact": "nearest-exact", "linear": "linear", "bilinear": "linear",
            "trilinear": "linear", "bicubic": "cubic"}.get(mode)
    if kind is None:
        raise ValueError(f"upsample: unknown mode {mode!r}")
    for axis, (o, sc) in enumerate(zip(out_size, scales), start=2):
        y = _interp_axis(y, axis, o, kind, bool(align_corners), sc)
    return y if y is not x else y.copy()


# --------------------------------------------------------------------------- kernels by layer type

@kernel(Flatten)
def _flatten(layer, x, p, owned):
    first, last = layer.span(x.shape[1:])
    first, last = first + 1, last + 1  # the batch is axis 0
    return x.reshape(*x.shape[:first], -1, *x.shape[last + 1:])


@kernel(Permute, copies=True)
def _permute(layer, x, p, owned):
    # a contiguous copy (from the block pool), as the kernels after it (GEMMs over the last axis, norms) read rows
    perm = layer.perm(x.shape[1:])
    moved = x.transpose(0, *(axis + 1 for axis in perm))
    turn = _turn(perm)
    if turn and x.flags.c_contiguous:  # each sample (R, C) -> (C, R): ConvNeXt's NCHW <-> NHWC
        out = _empty(moved.shape, moved.dtype)
        rows = math.prod(x.shape[1:turn + 1])
        pairs = zip(x.reshape(len(x), rows, -1), out.reshape(len(x), -1, rows))
        if all(blas.transpose(a, b) for a, b in pairs):
            return out
    return _copy(moved)


def _turn(perm) -> int:
    """k when ``perm`` moves its first k axes after the others, in order (a transpose of a matrix
    whose rows are the first k axes), else 0."""
    n = len(perm)
    for k in range(1, n):
        if tuple(perm) == (*range(k, n), *range(k)):
            return k
    return 0


@kernel(Unflatten)
def _unflatten(layer, x, p, owned):
    return x.reshape(x.shape[0], *layer.out_shape(x.shape[1:]))


@kernel(Select, copies=True)
def _select(layer, x, p, owned):
    axis, index = layer.position(x.shape[1:])
    return np.ascontiguousarray(np.take(x, index, axis=axis + 1))


@kernel(Identity, _Dropout, StochasticDepth)
def _identity(layer, x, p, owned):
    return x


@kernel(ZeroPad)
def _zero_pad(layer, x, p, owned):
    return pad(x, layer.pads)


@kernel(Upsample)
def _upsample(layer, x, p, owned):
    # With recompute_scale_factor PyTorch derives the coordinate scale from the sizes, as without one.
    scale = None if getattr(layer, "recompute_scale_factor", None) else layer.scale_factor
    return upsample(x, out_size(layer, x), layer.mode, layer.align_corners, scale)
