"""Kernels of ``cnncalc/layers/attention.py``: multi-head self-attention and Swin's shifted-window
attention and patch merging, as PyTorch and torchvision compute them.

Every head and window at once: the projections are one GEMM over all tokens, QKᵀ and AV one batched
matmul over (sample, window, head), the softmax one pass over the scores; no Python loop over heads,
windows or tokens.
"""
from __future__ import annotations

import math

import numpy as np

from ..layers.attention import MultiheadAttention, PatchMerging, ShiftedWindowAttention
from .base import _float_dtype, kernel
from .linear import linear
from .norm import layer_norm
from .weights import fixed, initialiser, uniform


def softmax_last(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place (max subtracted first, as PyTorch does)."""
    scores -= scores.max(-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(-1, keepdims=True)
    return scores


def attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias=None) -> np.ndarray:
    """softmax(q·kᵀ/√d + bias)·v over stacked heads: q (..., L, d), k and v (..., S, d) -> (..., L, d).

    Every operand is made contiguous first: NumPy's stacked matmul calls BLAS only for slices it can
    pass as they are, and loops in C otherwise (QKᵀ of ViT-B/16 measured 5× slower on the strided
    views of the qkv projection)."""
    d = q.shape[-1]
    q = q * np.asarray(d ** -0.5, q.dtype)                                    # a contiguous copy
    scores = np.matmul(q, np.ascontiguousarray(np.swapaxes(k, -1, -2)))       # (..., L, S)
    if bias is not None:
        scores += bias
    return np.matmul(softmax_last(scores), np.ascontiguousarray(v))


def multihead_attention(x, num_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                        bias_k=None, bias_v=None, add_zero_attn=False):
    """torch.nn.MultiheadAttention(batch_first=True)(x, x, x) on ``x (N, L, E)`` -> ``(N, L, E)``;
    bias_k/bias_v (1, 1, E) append a learned key/value, add_zero_attn a zero one."""
    n, length, e = x.shape
    d = e // num_heads
    qkv = linear(x, in_proj_weight, in_proj_bias)                                  # (N, L, 3E)
    q, k, v = qkv.reshape(n, length, 3, num_heads, d).transpose(2, 0, 3, 1, 4)       # each (N, h, L, d)
    added = [np.broadcast_to(np.asarray(t, qkv.dtype).reshape(1, num_heads, 1, d), (n, num_heads, 1, d))
             for t in (bias_k, bias_v) if t is not None]
    if add_zero_attn:
        added += [np.zeros((n, num_heads, 1, d), qkv.dtype)] * 2
    if added:                                                                      # (N, h, S, d)
        k = np.concatenate([k, *added[0::2]], axis=2)
        v = np.concatenate([v, *added[1::2]], axis=2)
    out = attend(q, k, v).transpose(0, 2, 1, 3).reshape(n, length, e)              # heads side by side
    return linear(out, out_proj_weight, out_proj_bias)


def relative_position_index(window) -> np.ndarray:
    """Swin's index into the bias table for every pair (i, j) of a window's tokens, flattened:
    (Δrow + wh - 1)·(2ww - 1) + Δcol + ww - 1, Δ = token i's position minus token j's.

    >>> relative_position_index((2, 2)).reshape(4, 4)[0].tolist()
    [4, 3, 1, 0]
    """
    wh, ww = window
    rows, cols = np.divmod(np.arange(wh * ww), ww)
    return ((rows[:, None] - rows[None, :] + wh - 1) * (2 * ww - 1) + cols[:, None] - cols[None, :] + ww - 1).ravel()


def shift_mask(padded, window, shift, dtype) -> np.ndarray:
    """(windows, N, N): -100 between two tokens of a window that the cyclic roll brought from
    different regions of the map, 0 within one (torchvision's regions and value)."""
    (ph, pw), (wh, ww) = padded, window
    region = np.zeros((ph, pw), np.int64)
    for i, rows in enumerate(_bands(wh, shift[0])):
        for j, cols in enumerate(_bands(ww, shift[1])):
            region[rows, cols] = 3 * i + j
    region = region.reshape(ph // wh, wh, pw // ww, ww).transpose(0, 2, 1, 3).reshape(-1, wh * ww)
    return np.where(region[:, None, :] != region[:, :, None], dtype.type(-100.0), dtype.type(0.0))


def _bands(window: int, shift: int):
    """The three regions along one axis, with the slice bounds torchvision uses."""
    return slice(0, -window), slice(-window, -shift), slice(-shift, None)


def shifted_window_attention(x, window, shift, num_heads, table, index, qkv_weight, qkv_bias, proj_weight,
                             proj_bias):
    """torchvision's shifted_window_attention on ``x (N, H, W, C)``: pad to whole windows, roll by
    -shift (not along an axis one window covers), attention within each window plus the relative
    position bias (and the shift mask), roll back, crop."""
    n, h, w, c = x.shape
    (wh, ww), tokens, d = window, window[0] * window[1], c // num_heads
    ph, pw = -(-h // wh) * wh, -(-w // ww) * ww
    shift = [0 if win >= size else s for s, win, size in zip(shift, window, (ph, pw))]
    if (ph, pw) != (h, w):
        x = np.pad(x, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)))
    if any(shift):
        x = np.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
    # (N, H/wh, wh, W/ww, ww, C) -> windows (N·nW, N_tokens, C)
    windows = x.reshape(n, ph // wh, wh, pw // ww, ww, c).transpose(0, 1, 3, 2, 4, 5).reshape(-1, tokens, c)
    qkv = linear(windows, qkv_weight, qkv_bias)
    q, k, v = qkv.reshape(-1, tokens, 3, num_heads, d).transpose(2, 0, 3, 1, 4)      # each (N·nW, h, Nt, d)
    bias = np.asarray(table, qkv.dtype)[np.asarray(index).astype(np.int64)]
    bias = bias.reshape(tokens, tokens, num_heads).transpose(2, 0, 1)              # (h, Nt, Nt)
    if any(shift):                                                                 # + mask, per window
        mask = shift_mask((ph, pw), window, shift, qkv.dtype)                      # (nW, Nt, Nt)
        bias = (bias[None] + mask[:, None]).reshape(1, -1, num_heads, tokens, tokens)
        q, k, v = (t.reshape(n, -1, num_heads, tokens, d) for t in (q, k, v))
    out = attend(q, k, v, bias).reshape(-1, num_heads, tokens, d).transpose(0, 2, 1, 3).reshape(-1, tokens, c)
    out = linear(out, proj_weight, proj_bias)
    # windows back to the map: (N, H/wh, W/ww, wh, ww, C) -> (N, H, W, C)
    out = out.reshape(n, ph // wh, pw // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, ph, pw, c)
    if any(shift):
        out = np.roll(out, (shift[0], shift[1]), axis=(1, 2))
    return np.ascontiguousarray(out[:, :h, :w])


def patch_merging(x, reduction_weight, norm_weight, norm_bias, eps):
    """torchvision's PatchMerging on ``x (N, H, W, C)`` -> ``(N, ⌈H/2⌉, ⌈W/2⌉, 2C)``."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    x = np.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)
    return linear(layer_norm(x, 1, norm_weight, norm_bias, eps), reduction_weight, None)


@kernel(MultiheadAttention)
def _multihead_attention(layer, x, p, owned):
    return multihead_attention(x, layer.num_heads, p["in_proj_weight"], p.get("in_proj_bias"),
                               p["out_proj.weight"], p.get("out_proj.bias"), p.get("bias_k"), p.get("bias_v"),
                               layer.add_zero_attn)


@kernel(ShiftedWindowAttention)
def _shifted_window_attention(layer, x, p, owned):
    return shifted_window_attention(x, layer.window_size, layer.shift_size, layer.num_heads,
                                    p["relative_position_bias_table"], p["relative_position_index"],
                                    p["qkv.weight"], p.get("qkv.bias"), p["proj.weight"], p.get("proj.bias"))


@kernel(PatchMerging)
def _patch_merging(layer, x, p, owned):
    return patch_merging(x, p["reduction.weight"], p["norm.weight"], p["norm.bias"], layer.eps)


# --------------------------------------------------------------------------- initial weights, as PyTorch's

@initialiser(MultiheadAttention)
def _init_attention(layer, name, tensors, rng, dtype):
    """MultiheadAttention._reset_parameters: in_proj xavier_uniform, biases 0, bias_k/bias_v
    xavier_normal; out_proj keeps nn.Linear's U(±1/√E)."""
    shape = tensors[name]
    e = tensors["out_proj.weight"][0]
    if name == "in_proj_weight":
        return uniform(rng, shape, math.sqrt(6 / (e + 3 * e)), dtype)
    if name == "out_proj.weight":
        return uniform(rng, shape, 1 / math.sqrt(e), dtype)
    if name in ("bias_k", "bias_v"):
        return (rng.standard_normal(shape) / math.sqrt(e)).astype(dtype)
    return np.zeros(shape, dtype)


@fixed(ShiftedWindowAttention)
def _fixed_index(layer) -> dict:
    """The relative position index is a function of the window size (torchvision registers it as a buffer)."""
    return {"relative_position_index": relative_position_index(layer.window_size)}


@initialiser(ShiftedWindowAttention, PatchMerging)
def _init_swin(layer, name, tensors, rng, dtype):
    """nn.Linear's U(±1/√fan_in) for the linears' weights and biases, the bias table ~ N(0, 0.02²),
    the fixed index, LayerNorm's 1 and 0."""
    shape = tensors[name]
    if name == "relative_position_index":
        return relative_position_index(layer.window_size).astype(dtype)
    if name == "relative_position_bias_table":
        return (rng.standard_normal(shape) * 0.02).astype(dtype)
    if name.startswith("norm."):
        return np.full(shape, 1.0 if name.endswith("weight") else 0.0, dtype)
    weight = name.replace(".bias", ".weight")                   # qkv, proj, reduction
    return uniform(rng, shape, 1 / math.sqrt(tensors[weight][1]), dtype)
