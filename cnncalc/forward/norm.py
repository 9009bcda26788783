"""Kernels of ``cnncalc/layers/norm.py``: batch, group and layer norm; BatchNorm folded into a conv.

An inference BatchNorm right after a convolution (``folds``) is folded into the convolution's
weights (``conv_with_batch_norm``), as inference engines do: the pass runs one GEMM for both.
"""
from __future__ import annotations

import math

import numpy as np

from ..layers.norm import BatchNorm, GroupNorm, LayerNorm, LayerNorm2d, TransformInput
from .base import _add_bias, _channel_shape, _float_dtype, _view, kernel
from .derived import derived
from .memory import _empty


def batch_norm(x, running_mean, running_var, weight, bias, eps):
    """Inference batch norm on ``x (N, C, *S)``: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    Folded into one per-channel scale and shift (computed in float64); weight/bias may be None.
    """
    scale = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    if weight is not None:
        scale = scale * weight
    shift = -np.asarray(running_mean, np.float64) * scale
    if bias is not None:
        shift = shift + bias
    return channel_affine(x, scale, shift)


def channel_affine(x, scale, shift, owned: bool = False) -> np.ndarray:
    """``x (N, C, *S)`` times ``scale[c]`` plus ``shift[c]`` on each channel c, in x's float type: into a
    new array, or over ``x`` when the pass owns it."""
    x = np.asarray(x, _float_dtype(x))
    out = x if owned else _empty(x.shape, x.dtype)
    np.multiply(x, _channel_shape(np.asarray(scale, x.dtype), x.ndim), out=out)
    out += _channel_shape(np.asarray(shift, x.dtype), x.ndim)
    return out


def _normalize(x, axes, eps):
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` with the biased variance."""
    mean = x.mean(axis=axes, keepdims=True)
    xc = x - mean
    var = np.mean(np.square(xc), axis=axes, keepdims=True)
    xc /= np.sqrt(var + eps)
    return xc


def group_norm(x, num_groups, weight, bias, eps):
    """Group norm on ``x (N, C, *S)``: statistics over each group's ``C/G * prod(S)`` values."""
    N, C, *S = x.shape
    x = np.asarray(x, _float_dtype(x))
    y = _normalize(x.reshape(N, num_groups, -1), 2, eps).reshape(x.shape)  # (N, G, C/G*prod(S))
    if weight is not None:
        y *= _channel_shape(np.asarray(weight, y.dtype), y.ndim)
    _add_bias(y, bias)
    return y


#: Bytes of input per block of rows of ``layer_norm``: a block's values, its output and its statistics
#: stay in cache through the norm's five passes.  One thread, best of 7: convnext_tiny's LayerNorm of
#: 56x56 rows of 96 at batch 1 0.63 ms, against 1.25 for whole-array passes with whole-array temporaries
#: (torch 0.26); 8x14x14 rows of 384 1.1 against 2.6 ms; ViT's 197 rows of 768 0.27 against 0.29.
#: The row means as a matrix-vector product and a multiply by the reciprocal deviation, rather than
#: NumPy's sum over the short last axis and a divide: 0.46 -> 0.37 ms for 3136 rows of 96.
NORM_BLOCK_BYTES = 256 << 10


def layer_norm(x, normalized_ndim, weight, bias, eps):
    """Layer norm over the last ``normalized_ndim`` axes of ``x (N, ...)``.

    Biased variance, as PyTorch; weight/bias of that trailing shape, or None.  Rows (the
    normalised values of one position) in blocks of NORM_BLOCK_BYTES: mean, centre into the output,
    variance as a row dot product, scale, then the affine map -- no temporaries the size of x.
    """
    x = np.asarray(x, _float_dtype(x))
    shape, size = x.shape, math.prod(x.shape[x.ndim - normalized_ndim:])
    rows = x.reshape(-1, size)  # (positions, normalised values); a copy only if x is not contiguous
    out = _empty(shape, x.dtype)
    out_rows = _view(out, rows.shape)
    w = None if weight is None else np.asarray(weight, x.dtype).reshape(-1)
    b = None if bias is None else np.asarray(bias, x.dtype).reshape(-1)
    step = max(1, NORM_BLOCK_BYTES // max(1, size * x.dtype.itemsize))
    averaging = np.full((size, 1), 1.0 / size, x.dtype)  # row means as one matrix-vector product
    for r in range(0, len(rows), step):
        xb, ob = rows[r:r + step], out_rows[r:r + step]                 # (rows, size)
        np.subtract(xb, xb @ averaging, out=ob)
        scale = np.einsum("ij,ij->i", ob, ob)[:, None]                  # size x the biased variance
        scale *= 1.0 / size
        scale += eps
        np.sqrt(scale, out=scale)
        ob *= np.reciprocal(scale, out=scale)
        if w is not None:
            ob *= w
        if b is not None:
            ob += b
    return out


# --------------------------------------------------------------------------- kernels by layer type

@kernel(BatchNorm)
def _batch_norm(layer, x, p, owned):
    if "running_mean" not in p:  # track_running_stats=False: PyTorch uses the batch's statistics
        axes = (0, *range(2, x.ndim))
        return batch_norm(x, x.mean(axis=axes), x.var(axis=axes), p.get("weight"), p.get("bias"), layer.eps)
    if "scale" not in p:  # folded once per layer into y = x·scale + shift
        shape = (-1,) + (1,) * (x.ndim - 2)  # (C, 1, …)
        p["scale"], p["shift"] = (v.astype(x.dtype).reshape(shape) for v in _batch_norm_affine(p, layer.eps))
    y = np.multiply(x, p["scale"], out=x if owned else None)
    y += p["shift"]
    return y


def _batch_norm_affine(p: dict, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm as a per-channel (scale, shift), in float64: y = x·scale + shift."""
    scale = 1.0 / np.sqrt(p["running_var"].astype(np.float64) + eps)
    if "weight" in p:
        scale *= p["weight"]
    shift = -p["running_mean"] * scale
    if "bias" in p:
        shift += p["bias"]
    return scale, shift


def _conv_with_batch_norm(conv_p: dict, bn_p: dict, eps: float) -> dict:
    """Convolution parameters computing conv-then-BatchNorm: weight·scale, bias·scale + shift per
    output channel (prepared once per set of weights, see cnncalc.forward.derived)."""
    weight, bias = conv_p["weight"], conv_p.get("bias")

    def fold() -> dict:
        scale, shift = _batch_norm_affine(bn_p, eps)  # float64; the weights are scaled in their own dtype
        per_output = scale.astype(weight.dtype).reshape((-1,) + (1,) * (weight.ndim - 1))  # (C_out, 1, …)
        return {"weight": weight * per_output,
                "bias": (shift if bias is None else bias * scale + shift).astype(weight.dtype)}
    sources = (weight, bias, *(bn_p.get(k) for k in ("running_mean", "running_var", "weight", "bias")))
    return derived(f"conv+batchnorm eps={eps!r}", sources, fold)


@kernel(GroupNorm)
def _group_norm(layer, x, p, owned):
    return group_norm(x, layer.num_groups, p.get("weight"), p.get("bias"), layer.eps)


@kernel(LayerNorm)
def _layer_norm(layer, x, p, owned):
    return layer_norm(x, len(layer.normalized(x.shape[1:])), p.get("weight"), p.get("bias"), layer.eps)


def layer_norm_2d(x, weight, bias, eps):
    """torchvision's LayerNorm2d: layer norm over the channels of ``x (N, C, *S)`` at every position."""
    y = _normalize(np.asarray(x, _float_dtype(x)), (1,), eps)
    if weight is not None:
        y *= _channel_shape(np.asarray(weight, y.dtype), y.ndim)
    _add_bias(y, bias)
    return y


@kernel(LayerNorm2d)
def _layer_norm_2d(layer, x, p, owned):
    return layer_norm_2d(x, p.get("weight"), p.get("bias"), layer.eps)


@kernel(TransformInput)
def _transform_input(layer, x, p, owned):
    # torchvision's x[:, c] * (std/0.5) + (mean - 0.5)/0.5
    return channel_affine(x, *layer.scale_shift(), owned=owned)
