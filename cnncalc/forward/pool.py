"""Kernels of ``cnncalc/layers/pool.py``: max, average and adaptive pooling.

Pools are separable: one strided-slice reduction per spatial axis over the taps that fall inside
the input (padding is never copied).
"""
from __future__ import annotations

import math

import numpy as np

from ..layers.pool import AdaptiveAvgPool, AdaptiveMaxPool, AvgPool, MaxPool
from .activation import relu
from .base import _axis_chunks, _float_dtype, kernel, out_size
from .memory import _empty


def _tap_outputs(n, k, s, d, p, o) -> list[tuple[int, int, int]]:
    """Window taps along one axis of n real positions, windows at stride s starting p before the
    first (dilation d, o outputs): ``(j, lo, hi)`` for each tap j that reads a real position,
    for the outputs ``[lo, hi)`` where it does (output t's tap j reads position t*s - p + j*d)."""
    taps = []
    for j in range(k):
        lo, hi = max(0, -((j * d - p) // s)), min(o, (n - 1 + p - j * d) // s + 1)
        if lo < hi:
            taps.append((j, lo, hi))
    return taps


def _covers(n, k, s, d, p, o) -> bool:
    """Whether every window along the axis (see ``_tap_outputs``) holds a real position."""
    reached = 0
    for _, lo, hi in sorted(_tap_outputs(n, k, s, d, p, o), key=lambda tap: tap[1]):
        if lo > reached:
            return False
        reached = max(reached, hi)
    return reached >= o


def _reduce_axis(y, axis, k, s, d, p, o, op, fill):
    """Separable window reduction along one axis: ``op`` over the k taps, each a strided slice of
    ``y`` clipped to the real positions (see ``_tap_outputs``), so padding -- ``p`` positions
    before, and after as far as the last window reaches -- is never copied: it counts as
    ``fill``, ``op``'s identity, where a window holds nothing else."""
    n, pre = y.shape[axis], (slice(None),) * axis
    taps = []  # (outputs, strided slice of y) per tap
    for j, lo, hi in _tap_outputs(n, k, s, d, p, o):
        first = lo * s - p + j * d
        taps.append((slice(lo, hi), y[pre + (slice(first, first + (hi - lo - 1) * s + 1, s),)]))
    acc = _empty(y.shape[:axis] + (o,) + y.shape[axis + 1:], y.dtype)
    whole = [src for rows, src in taps if rows == slice(0, o)][:2]  # taps every output has
    if len(whole) == 2:
        op(*whole, out=acc)
    elif whole:
        np.copyto(acc, whole[0])
    else:
        acc.fill(fill)
    for rows, src in taps:
        if not any(src is w for w in whole):
            part = acc[pre + (rows,)]
            op(part, src, out=part)
    return acc


def max_pool(x, kernel, stride, padding, dilation, out_size, relu_input=False):
    """Max pooling like ``F.max_pool{1,2,3}d`` on ``x (N, C, *S)`` -> ``(N, C, *out_size)``.

    ``padding`` per-axis ints (implicit -inf); ``out_size`` from the caller (encodes ceil_mode);
    positions a last window runs past the right edge count as -inf.  With ``relu_input`` the
    result is ``max_pool(relu(x))``: max and ReLU commute, so the ReLU is applied to the smaller
    output -- unless a window holds only padding (its -inf must stay), then to the input first.
    """
    N, C, *S = x.shape
    x = np.asarray(x)
    fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    axes = list(zip(S, kernel, stride, dilation, padding, out_size))
    relu_after = relu_input and all(_covers(*axis) for axis in axes)
    y = relu(x) if relu_input and not relu_after else x
    for axis, (n, k, s, d, p, o) in enumerate(axes, start=2):
        y = _reduce_axis(y, axis, k, s, d, p, o, np.maximum, fill)
    if relu_after:
        np.maximum(y, 0, out=y)  # y is the last reduction's own array
    return y


def avg_pool(x, kernel, stride, padding, out_size, count_include_pad=True, divisor_override=None):
    """Average pooling like ``F.avg_pool{1,2,3}d`` on ``x (N, C, *S)`` -> ``(N, C, *out_size)``.

    Divisor per window exactly as PyTorch: ``divisor_override`` if given; else with
    ``count_include_pad`` the window clipped to ``[-p, n + p)`` (so ceil_mode windows running
    past the padded edge count only up to it); else the number of real input elements.
    """
    N, C, *S = x.shape
    x = np.asarray(x, _float_dtype(x))
    y = x
    for axis, (n, k, s, p, o) in enumerate(zip(S, kernel, stride, padding, out_size), start=2):
        y = _reduce_axis(y, axis, k, s, 1, p, o, np.add, 0)  # zero padding adds nothing
        if divisor_override is None:
            start = np.arange(o) * s - p
            hi = np.minimum(start + k, n + p) if count_include_pad else np.minimum(start + k, n)
            lo = start if count_include_pad else np.maximum(start, 0)
            y /= (hi - lo).astype(y.dtype).reshape((-1,) + (1,) * (y.ndim - axis - 1))  # along axis
    if divisor_override is not None:
        y /= y.dtype.type(divisor_override)
    return y


#: Temporary bytes per output value of an uneven adaptive average beside one gathered tap: the
#: float64 sums, and the float64 copy of the tap that adding it into them makes.
AVG_TEMP_BYTES = 16


def _adaptive_bounds(n: int, o: int):
    """PyTorch's adaptive windows: start = floor(i * n / o), end = ceil((i + 1) * n / o)."""
    i = np.arange(o)
    return (i * n) // o, -((-(i + 1) * n) // o)


def _adaptive_axis(y, axis, o, kind):
    """Adaptive max/avg along one axis: uniform windows as a k-tap pooling, else gathers."""
    n = y.shape[axis]
    if n % o == 0:  # uniform windows: a pooling with kernel = stride = n // o
        k = n // o
        r = _reduce_axis(y, axis, k, k, 1, 0, o, np.maximum if kind == "max" else np.add, 0)
        if kind != "max":
            r /= y.dtype.type(k)
        return r
    start, end = _adaptive_bounds(n, o)
    taps, last = int((end - start).max()), end - 1
    if kind == "max":  # clamped taps repeat a window's last element, harmless for max
        out, chunks = _axis_chunks(y, axis, o, y.dtype.itemsize)
        gathered = np.empty(chunks[0][1].shape, y.dtype)  # one tap of the largest chunk
        for src, dst in chunks:  # (rows, n, rest) -> (rows, o, rest)
            np.take(src, start, axis=1, out=dst, mode="clip")
            tap = gathered[:len(dst)]
            for j in range(1, taps):
                np.maximum(dst, np.take(src, np.minimum(start + j, last), axis=1, out=tap, mode="clip"), out=dst)
        return out
    # Each window summed tap by tap in float64 (not as a difference of prefix sums, where one
    # infinite value would make every later window inf - inf = NaN).
    out, chunks = _axis_chunks(y, axis, o, AVG_TEMP_BYTES + y.dtype.itemsize)
    counts = (end - start).reshape(-1, 1)  # per window, broadcast along the rest
    gathered = np.empty(chunks[0][1].shape, y.dtype)  # one tap of the largest chunk
    sums = np.empty(chunks[0][1].shape, np.float64)
    for src, dst in chunks:
        total, tap = sums[:len(dst)], gathered[:len(dst)]
        total.fill(0)
        for j in range(taps):
            inside = (start + j < end).reshape(-1, 1)  # windows that still have a tap j
            np.take(src, np.minimum(start + j, last), axis=1, out=tap, mode="clip")
            np.add(total, tap, out=total, where=inside)
        np.divide(total, counts, out=dst)
    return out


def adaptive_avg_pool(x, out_size):
    """Adaptive average pooling like ``F.adaptive_avg_pool{1,2,3}d``.

    ``(N, C, *S) -> (N, C, *out_size)`` with PyTorch's (possibly uneven, overlapping) windows.
    """
    N, C, *S = x.shape
    y = np.asarray(x, _float_dtype(x))
    if all(o == 1 for o in out_size):  # global average: one matrix-vector product
        P = math.prod(S)
        planes = np.ascontiguousarray(y).reshape(N * C, P)  # one row per (sample, channel)
        mean = planes @ np.full(P, 1.0 / P, y.dtype)
        return mean.reshape(N, C, *out_size)  # (N * C,) -> (N, C, 1, ...)
    for axis, o in enumerate(out_size, start=2):
        y = _adaptive_axis(y, axis, o, "avg")
    return y


def adaptive_max_pool(x, out_size):
    """Adaptive max pooling like ``F.adaptive_max_pool{1,2,3}d``.

    ``(N, C, *S) -> (N, C, *out_size)`` with PyTorch's (possibly uneven, overlapping) windows.
    """
    y = np.asarray(x)
    for axis, o in enumerate(out_size, start=2):
        y = _adaptive_axis(y, axis, o, "max")
    return y


# --------------------------------------------------------------------------- kernels by layer type

@kernel(MaxPool)
def _max_pool(layer, x, p, owned, relu=False):
    return max_pool(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation, out_size(layer, x),
                    relu_input=relu)


@kernel(AvgPool)
def _avg_pool(layer, x, p, owned):
    return avg_pool(x, layer.kernel_size, layer.stride, layer.padding, out_size(layer, x),
                    layer.count_include_pad, layer.divisor_override)


@kernel(AdaptiveAvgPool)
def _adaptive_avg_pool(layer, x, p, owned):
    return adaptive_avg_pool(x, out_size(layer, x))


@kernel(AdaptiveMaxPool)
def _adaptive_max_pool(layer, x, p, owned):
    return adaptive_max_pool(x, out_size(layer, x))
