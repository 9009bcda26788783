"""Kernels of ``cnncalc/layers/attention.py``: multi-head self-attention and Swin's shifted-window
attention and patch merging, as PyTorch and torchvision compute them.

Every head and window at once: the projections are one GEMM over all tokens, QKᵀ and AV one batched
matmul over (sample, window, head), the softmax one pass over the scores; no Python loop over heads,
windows or tokens.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..layers.attention import MultiheadAttention, PatchMerging, ShiftedWindowAttention
from .base import _float_dtype, kernel
from .linear import linear
from .memory import _copy, _empty
from .parallel import halves
from .norm import layer_norm
from .weights import fixed, initialiser, uniform


def softmax_last(scores: np.ndarray, floor: float | None = None) -> np.ndarray:
    """Softmax over the last axis of a C-contiguous array, in place (max subtracted first, as
    PyTorch does).  ``floor``: scores more than this far below their row's maximum count as that
    far below (see ``MASKED_FLOOR``).  The row sums are one matrix-vector product: NumPy's sum over
    a short last axis took 0.19 ms for Swin's (9408, 49) scores, the product 0.02."""
    n = scores.shape[-1]
    rows = scores.reshape(-1, n)
    rows -= rows.max(-1, keepdims=True)
    if floor is not None:
        np.maximum(rows, np.asarray(-floor, rows.dtype), out=rows)
    np.exp(rows, out=rows)
    total = rows @ np.ones((n, 1), rows.dtype)
    rows *= np.reciprocal(total, out=total)
    return scores


#: How far below its row's maximum a masked score may go before its softmax.  Swin's shift mask adds
#: -100, so exp gives ~e-44: a float32 subnormal, on which x86 arithmetic is 10-100x slower -- Swin-T's
#: first shifted block took 11.3 ms against 5.9 unshifted, its AV product 3.0 ms against 0.3.  A weight
#: of e-80 (1.8e-35) instead changes an output by less than 1e-33 of the values it averages.
MASKED_FLOOR = 80.0


def split_heads(qkv: np.ndarray, num_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """q, kᵀ and v of a ``(B, L, 3E)`` projection, contiguous: q and v ``(B, heads, L, d)``, q
    already scaled by 1/√d, and kᵀ ``(B, heads, d, L)``.  Contiguous, because NumPy's stacked matmul
    calls BLAS only for slices it can pass as they are and loops in C otherwise (QKᵀ of ViT-B/16
    measured 5× slower on the strided views of the projection); kᵀ, because a transposed k is
    still slower (Swin-T's first block: 0.44 ms for QKᵀ on k's transposed view, 0.37 for a copy of
    kᵀ and the product)."""
    b, length, e3 = qkv.shape
    d = e3 // (3 * num_heads)
    view = qkv.reshape(b, length, 3, num_heads, d)
    q, kt, v = (_empty(shape, qkv.dtype) for shape in ((b, num_heads, length, d), (b, num_heads, d, length),
                                                        (b, num_heads, length, d)))
    np.multiply(view[:, :, 0].transpose(0, 2, 1, 3), np.asarray(d ** -0.5, qkv.dtype), out=q)
    np.copyto(kt, view[:, :, 1].transpose(0, 2, 3, 1))
    np.copyto(v, view[:, :, 2].transpose(0, 2, 1, 3))
    return q, kt, v


#: Scores (values) from which ``attend`` splits its work over two threads (``parallel.halves``).
PARALLEL_SCORES = 1 << 16


def attend(q: np.ndarray, kt: np.ndarray, v: np.ndarray, biases=(), floor=None) -> np.ndarray:
    """softmax(q·kᵀ + biases)·v over stacked heads, from ``split_heads``: q (..., heads, L, d) already
    scaled by 1/√d, kᵀ (..., heads, d, S), v (..., heads, S, d) -> (..., L, heads·d), the heads side
    by side (each head's product written into its columns: no copy after); ``floor`` as in
    ``softmax_last``.  Each bias broadcasts against the scores (..., heads, L, S), added in turn.

    Halves of the first stacked axis longer than 1 (samples, windows or heads) run on two threads,
    each with single-threaded BLAS: the products are many small GEMMs (ViT-B/16: 12 per sample, of
    197×64×197), which OpenBLAS threads one by one, and the softmax's passes otherwise run on one
    core.  ViT-B/16's attention at batch 8 took 17 ms so, 32-36 ms before (best of 9, the other
    core busy)."""
    *lead, heads, length, d = q.shape
    out = _empty((*lead, length, heads * d), q.dtype)
    heads_apart = np.swapaxes(out.reshape(*lead, length, heads, d), -2, -3)       # (..., heads, L, d) view
    stacked = q.shape[:-2]
    axis = next((i for i, n in enumerate(stacked) if n > 1), 0)             # (stacked: at least the heads)

    def run(part: slice) -> None:
        def cut(a: np.ndarray) -> np.ndarray:                   # a's part, a broadcasting along axis whole
            at = axis - (q.ndim - a.ndim)
            return a[(slice(None),) * at + (part,)] if at >= 0 and a.shape[at] > 1 else a
        qp, ktp = cut(q), cut(kt)
        scores = np.matmul(qp, ktp, out=_empty(qp.shape[:-1] + ktp.shape[-1:], q.dtype))   # (..., L, S)
        for bias in biases:
            scores += cut(bias)
        np.matmul(softmax_last(scores, floor), cut(v), out=cut(heads_apart))

    if math.prod(stacked) * length * kt.shape[-1] >= PARALLEL_SCORES:
        halves(run, stacked[axis])
    else:
        run(slice(None))
    return out


def multihead_attention(x, num_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
                        bias_k=None, bias_v=None, add_zero_attn=False):
    """torch.nn.MultiheadAttention(batch_first=True)(x, x, x) on ``x (N, L, E)`` -> ``(N, L, E)``;
    bias_k/bias_v (1, 1, E) append a learned key/value, add_zero_attn a zero one."""
    n, length, e = x.shape
    d = e // num_heads
    q, kt, v = split_heads(linear(x, in_proj_weight, in_proj_bias), num_heads)     # (N, h, L|d, d|L)
    added = [np.broadcast_to(np.asarray(t, q.dtype).reshape(1, num_heads, 1, d), (n, num_heads, 1, d))
             for t in (bias_k, bias_v) if t is not None]
    if add_zero_attn:
        added += [np.zeros((n, num_heads, 1, d), q.dtype)] * 2
    if added:                                                                      # S = L + added
        kt = np.concatenate([kt, *(np.swapaxes(t, 2, 3) for t in added[0::2])], axis=3)
        v = np.concatenate([v, *added[1::2]], axis=2)
    return linear(attend(q, kt, v), out_proj_weight, out_proj_bias)


def relative_position_index(window) -> np.ndarray:
    """Swin's index into the bias table for every pair (i, j) of a window's tokens, flattened:
    (Δrow + wh - 1)·(2ww - 1) + Δcol + ww - 1, Δ = token i's position minus token j's.

    >>> relative_position_index((2, 2)).reshape(4, 4)[0].tolist()
    [4, 3, 1, 0]
    """
    wh, ww = window
    rows, cols = np.divmod(np.arange(wh * ww), ww)
    return ((rows[:, None] - rows[None, :] + wh - 1) * (2 * ww - 1) + cols[:, None] - cols[None, :] + ww - 1).ravel()


@functools.lru_cache(maxsize=32)
def shift_mask(padded, window, shift, dtype) -> np.ndarray:
    """(windows, N, N): -100 between two tokens of a window that the cyclic roll brought from
    different regions of the map, 0 within one (torchvision's regions and value).  Made once per
    map size, window and shift (read-only): every shifted block of a stage has the same."""
    (ph, pw), (wh, ww) = padded, window
    region = np.zeros((ph, pw), np.int64)
    for i, rows in enumerate(_bands(wh, shift[0])):
        for j, cols in enumerate(_bands(ww, shift[1])):
            region[rows, cols] = 3 * i + j
    region = region.reshape(ph // wh, wh, pw // ww, ww).transpose(0, 2, 1, 3).reshape(-1, wh * ww)
    mask = np.where(region[:, None, :] != region[:, :, None], dtype.type(-100.0), dtype.type(0.0))
    mask.flags.writeable = False
    return mask


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
    # rolled by -shift, as windows (N·nW, N_tokens, C): the map's (N, H/wh, wh, W/ww, ww, C) in window order
    windows = _copy(_rolled(x, [-s for s in shift]).reshape(n, ph // wh, wh, pw // ww, ww, c).transpose(0, 1, 3, 2, 4, 5))
    windows = windows.reshape(-1, tokens, c)
    qkv = linear(windows, qkv_weight, qkv_bias)
    q, kt, v = split_heads(qkv, num_heads)                                         # (N·nW, h, Nt|d, d|Nt)
    bias = np.asarray(table, qkv.dtype)[np.asarray(index).astype(np.int64)]
    biases = [bias.reshape(tokens, tokens, num_heads).transpose(2, 0, 1)]         # (h, Nt, Nt)
    if any(shift):  # + the mask, per window: scores as (N, nW, h, Nt, Nt), the mask (nW, 1, Nt, Nt)
        biases.append(shift_mask((ph, pw), tuple(window), tuple(shift), qkv.dtype)[:, None])
        q, kt, v = (t.reshape(n, -1, *t.shape[1:]) for t in (q, kt, v))
    out = attend(q, kt, v, biases, MASKED_FLOOR if any(shift) else None).reshape(-1, tokens, c)
    out = linear(out, proj_weight, proj_bias)
    # windows back to the map: (N, H/wh, W/ww, wh, ww, C) -> (N, H, W, C), rolled back
    out = _copy(out.reshape(n, ph // wh, pw // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)).reshape(n, ph, pw, c)
    return np.ascontiguousarray(_rolled(out, shift)[:, :h, :w])


def _rolled(x: np.ndarray, shift) -> np.ndarray:
    """``np.roll(x, shift, axis=(1, 2))`` as four block copies into a pooled array; ``x`` itself when
    ``shift`` is zero."""
    if not any(shift):
        return x
    out = _empty(x.shape, x.dtype)
    rows, cols = (_roll_pieces(step % size) for step, size in zip(shift, x.shape[1:3]))
    for dst_rows, src_rows in rows:
        for dst_cols, src_cols in cols:
            out[:, dst_rows, dst_cols] = x[:, src_rows, src_cols]
    return out


def _roll_pieces(step: int) -> list:
    """(destination, source) slice pairs of a roll by ``0 <= step < size`` along one axis."""
    if not step:
        return [(slice(None), slice(None))]
    return [(slice(step, None), slice(None, -step)), (slice(None, step), slice(-step, None))]


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
