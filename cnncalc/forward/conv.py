"""Kernels of ``cnncalc/layers/conv.py``: convolution and transposed convolution.

The array functions (``conv``, ``conv_transpose``) work on plain NumPy arrays and know nothing of
specs or layers.  Layout is PyTorch's: batched channel-first arrays ``(N, C, *S)`` with 1, 2 or 3
spatial axes ``S``, and every argument means what it means in ``torch.nn.functional`` (a dilation
of 1 means no dilation, per-axis tuples are ordered like the spatial axes).  The dtype of the
input is kept: float32 in, float32 out (float64 works too).

Convolutions are GEMM-shaped: each chunk of samples (or of one sample's output rows) is
zero-padded into a reused buffer, viewed through a strided window view (``_windows``), copied
into a bounded, reused im2col buffer and multiplied with the weight matrix by one ``np.matmul``
that writes straight into the NCHW output; the bias is one more GEMM row (ones in the columns
against a bias column of the weights).  Three layouts of that GEMM are chosen by shape: plain
im2col (shallow strided first layers copy their columns from the input split into stride
phases); "stacked" for unit first strides (the first axis' taps become GEMM rows, im2col only
over the other axes, partial results summed with row shifts); "merged" for small outputs
(several samples side by side in one GEMM).  1x1 stride-1 convolutions are a plain matmul,
2-D depthwise convolutions one GEMM per channel over bands of output columns against banded
weights (other depthwise ones a broadcast multiply-add per kernel tap), and wide float32 3x3 stride-1
layers Winograd F(4x4, 3x3): 4x fewer multiplies, as batched GEMMs between two transform
GEMMs.  Weights laid out for a GEMM are prepared once per weight array (``derived``).  A ReLU
on a conv's input can be left to the kernel (``relu_input``), and a conv can add its result
into an existing array (``add_to``: a residual sum), which its GEMMs do with BLAS's beta = 1
where NumPy's own OpenBLAS is reachable (``blas``).  Scratch buffers and outputs come from
``memory``.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..layers.conv import Conv, ConvTranspose
from . import blas, parallel
from .activation import relu
from .base import _add_bias, _channel_shape, _float_dtype, _view, kernel
from .derived import derived
from .memory import _empty, _scratch
from .reshape import _pad_constant, pad

#: Upper bound, in bytes, of one im2col / col2im chunk (the batch, then output rows, are split).
CHUNK_BYTES = 8 << 20
#: Bytes of each of a depthwise convolution's two scratch arrays per chunk (a channel plane at least):
#: its chunk's padded input, sum and products stay in the L2 cache (2 MiB per core here), out of reach
#: of other processes' memory traffic.  mobilenet_v2's ten depthwise shapes at batch 1, best of 12
#: interleaved on the loaded machine: 12.5 ms in 128 KiB chunks, 13.3 in 256 KiB, 70-115 ms in 1-2 MiB
#: (its 96x112x112/2 layer 3.0 against 57-73 ms).
DEPTHWISE_CHUNK_BYTES = 128 << 10
#: 1x1 convolutions with at most SMALL_POINTWISE output values per call (1 MiB of float32) are a
#: matmul and a bias add: the bias column (a copy of the input with a row of ones) and BLAS's beta
#: = 1 (a copy of the bias first, a ctypes call) each save a pass over the output, which for an
#: output that stays in L2 costs less than they do.  Cold (caches flushed between calls, as in a
#: pass), 672 -> 28 channels at 1x1 took 103 us the long way and 46 this way.  One thread, the 1x1
#: convolutions timed inside passes, limits alternating pass by pass, best of 6 (batch 8: of 3),
#: 4096 -> 2^18: efficientnet_b0 11.6 -> 10.4 ms (batch 8 71.2 -> 70.3), mobilenet_v2 8.3 -> 7.6
#: (58.5 -> 56.2), mobilenet_v3_large 7.2, 7.1 -> 6.4, 6.4, resnet50 level (38.9, 38.5 -> 38.9,
#: 38.0); no limit at all lost at batch 8 (efficientnet_b0 74-75 ms).
SMALL_POINTWISE = 1 << 18
#: A chunk padded to rows of at most PAD_FILL_WIDTH values is zero-filled whole and its input
#: copied in; wider ones get only their border slabs filled (``_pad_constant``).  Filling the left
#: and right borders is a strided write of a few values per row, which costs as much as the copy on
#: short rows (127x14x14 padded by 3: 23 us against 12 for the fill and copy).  One thread, depthwise
#: convolutions timed inside passes, 0 and 64 alternating (benchmarks/conv_in_pass.py, best of 14;
#: batch 8: of 3-4): efficientnet_b0 16.4 -> 15.7 ms (batch 8 113 -> 110), convnext_tiny 23.6 ->
#: 22.8 (153 -> 145), mobilenet_v3_large 10.2 -> 9.7; resnet18's convolutions level (batch 8 241).
PAD_FILL_WIDTH = 64
#: Convolutions with fewer output pixels per sample put several samples side by side in one GEMM.
MERGE_PIXELS = 256
#: Convolutions with C_in/groups * taps of the other axes within [STACK_MIN_DEPTH,
#: STACK_MAX_DEPTH], first-axis taps * C_out/groups at most STACK_MAX_DEPTH, a unit first
#: stride and at least STACK_MIN_ROWS output rows stack the first axis' taps along the GEMM's
#: rows (tuned against plain im2col with OpenBLAS on resnet50/vgg16 layers, cold weights: a
#: 3x3 layer of 64 channels at 56x56 1.17 against 1.44 ms, 128 at 28x28 1.06 against 1.20,
#: 256 at 14x14 1.05 against 1.13; 512 at 7x7 is slower, 1.85 against 1.46, and 512 at
#: 14x14 a tie).
STACK_MIN_DEPTH, STACK_MAX_DEPTH = 64, 768
STACK_MIN_ROWS = 14
#: Shallow convolutions -- GEMM depth C_in/groups * prod(K) at most SHALLOW_DEPTH, e.g. a first
#: layer on RGB input -- spend more time copying columns than in GEMM flops: when strided they
#: copy their columns from the input split into stride phases (unit-stride copies) if the
#: columns are at least PHASE_SPLIT_GAIN times that split input.  Measured with OpenBLAS: the
#: split pays on resnet50's 7x7/2 stem (columns 11.6x its input, 2.9 -> 2.7 ms) but not on
#: alexnet's 11x11/4 (7x) or 3x3/2 stems (2.2x).
SHALLOW_DEPTH = 160
PHASE_SPLIT_GAIN = 8


def _windows(xp: np.ndarray, kernel, stride, dilation, out_size) -> np.ndarray:
    """Read-only strided view ``(N, C, *K, *O)`` of ``xp (N, C, *Sp)``.

    Element ``[n, c, *k, *o]`` is ``xp[n, c, *(o * s + k * d)]``: the im2col matrix of every
    sample, before any copy.
    """
    n_st, c_st, *sp_st = xp.strides
    strides = (n_st, c_st, *(a * d for a, d in zip(sp_st, dilation)),
               *(a * s for a, s in zip(sp_st, stride)))
    shape = (*xp.shape[:2], *kernel, *out_size)
    return as_strided(xp, shape, strides, writeable=False)


def _chunks(n: int, rows: int, bytes_per_row: int, limit: int = CHUNK_BYTES):
    """Split ``n`` samples x ``rows`` output rows into chunks of at most ``limit`` bytes.

    Yields ``(batch_slice, row_slice)``: whole samples while one fits, else rows of one sample.
    """
    per_sample = rows * bytes_per_row
    if per_sample <= limit:
        step = max(1, limit // max(per_sample, 1))
        for n0 in range(0, n, step):
            yield slice(n0, min(n, n0 + step)), slice(0, rows)
        return
    step = max(1, limit // max(bytes_per_row, 1))
    for n0 in range(n):
        for r0 in range(0, rows, step):
            yield slice(n0, n0 + 1), slice(r0, min(rows, r0 + step))


def _gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> None:
    """``out = a @ b``, or with ``accumulate`` ``out += a @ b``, with np.matmul's broadcasting
    over leading axes.  A sum is one BLAS GEMM with beta = 1 per matrix (``cnncalc.forward.blas``: no
    pass over ``out`` of its own), else a matmul into the "product" scratch and an add."""
    if not accumulate:
        np.matmul(a, b, out=out)
        return
    if out.size and blas.available() and not (np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        lead = out.shape[:-2]
        a = a if a.shape[:-2] == lead else np.broadcast_to(a, lead + a.shape[-2:])
        b = b if b.shape[:-2] == lead else np.broadcast_to(b, lead + b.shape[-2:])
        for i in np.ndindex(lead):
            if not blas.gemm_add(a[i], b[i], out[i]):  # a layout BLAS cannot take
                out[i] += a[i] @ b[i]
        return
    product = _scratch("product", out.shape, out.dtype)
    np.add(out, np.matmul(a, b, out=product), out=out)


def _put(dst: np.ndarray, src: np.ndarray, accumulate: bool) -> None:
    """``dst[...] = src``, or with ``accumulate`` ``dst += src``."""
    if accumulate:
        np.add(dst, src, out=dst)
    else:
        np.copyto(dst, src)


def _out_len(n: int, k: int, s: int, d: int) -> int:
    """Number of full windows of a (dilated) kernel over an already padded axis of length n."""
    return (n - d * (k - 1) - 1) // s + 1


def _padded_chunk(x: np.ndarray, ns: slice, pads, rows=None) -> np.ndarray:
    """Samples ``x[ns]`` zero-padded into a reused scratch buffer (a view when nothing to pad).

    ``rows = (a, b)`` keeps only padded rows ``[a, b)`` of the first spatial axis: the slab a
    chunk of output rows reads, padded right before its im2col copy (so it is still in cache).
    """
    part, slab_pads = _slab(x, ns, pads, rows)
    if not any(p_lo or p_hi for p_lo, p_hi in slab_pads):
        return part
    shape = part.shape[:2] + tuple(m + p_lo + p_hi
                                   for (p_lo, p_hi), m in zip(slab_pads, part.shape[2:]))
    return _pad_into(part, slab_pads, _scratch("pad", shape, x.dtype))


def _pad_into(part: np.ndarray, pads, out: np.ndarray) -> np.ndarray:
    """``part (nb, C, *S)`` zero-padded by per-axis ``pads`` into ``out``: filled whole, then the input
    copied in, when its rows are at most PAD_FILL_WIDTH long (else only its border slabs filled)."""
    if out.shape[-1] > PAD_FILL_WIDTH or not any(pads[-1]):
        return _pad_constant(part, pads, 0, out=out)
    out.fill(0)  # short rows: one contiguous fill beats a strided one per row and side
    out[(Ellipsis, *(slice(lo, lo + m) for (lo, _), m in zip(pads, part.shape[2:])))] = part
    return out


def _slab(x: np.ndarray, ns: slice, pads, rows=None):
    """``(part, slab_pads)``: the view of ``x[ns]`` that padded rows ``[a, b)`` (all when ``rows``
    is None) hold, and the zero padding around it that makes those rows."""
    part, (lo, hi), n = x[ns], pads[0], x.shape[2]
    a, b = rows if rows is not None else (0, lo + n + hi)
    top = min(max(lo - a, 0), b - a)  # slab rows above the input
    bottom = min(max(b - lo - n, 0), b - a - top)  # and below it
    part = part[:, :, max(a - lo, 0):max(a - lo, 0) + b - a - top - bottom]  # real rows inside
    return part, [(top, bottom)] + list(pads[1:])


# --------------------------------------------------------------------------- convolution

def conv(x, weight, bias, stride, padding, dilation, groups, padding_mode="zeros", relu_input=False,
         overwrite_input=False, add_to=None):
    """N-d convolution (cross-correlation) like ``torch.nn.functional.conv{1,2,3}d``.

    ``x (N, C_in, *S)``, ``weight (C_out, C_in // groups, *K)``, ``bias (C_out,)`` or None;
    ``stride`` and ``dilation`` per-axis ints; ``padding`` per-axis ``(lo, hi)`` pairs (already
    resolved); ``padding_mode`` zeros | reflect | replicate | circular (padding then applied
    with that mode, as nn.Conv does).  Returns ``(N, C_out, *O)``.  With ``relu_input`` the
    result is ``conv(relu(x))``: a 1x1 convolution applies the ReLU as it copies ``x`` in (no
    pass of its own); the others apply it first, in place when ``overwrite_input`` allows.
    (Into their strided im2col copies a ReLU costs more than its own contiguous pass.)  With
    ``add_to`` (an array of the output's shape and dtype) the result is ``add_to + conv(x)``,
    written into ``add_to`` and returned: the GEMM paths add their products in (BLAS beta = 1)
    instead of writing an output that a second pass adds -- a residual block's last convolution.
    """
    N, C, *S = x.shape
    Co, Cg, *K = weight.shape
    if C != Cg * groups or Co % groups:
        raise ValueError(f"conv: {C} input channels, weight {weight.shape}, groups={groups}")
    dtype = _float_dtype(x, weight)
    x, weight = np.asarray(x, dtype), np.asarray(weight, dtype)
    pads = [(int(lo), int(hi)) for lo, hi in padding]
    if padding_mode != "zeros" or any(lo < 0 or hi < 0 for lo, hi in pads):
        x, pads = pad(x, pads, padding_mode), [(0, 0)] * len(pads)  # pad first, as nn.Conv does
    O = tuple(_out_len(n + lo + hi, k, s, d)
              for n, (lo, hi), k, s, d in zip(x.shape[2:], pads, K, stride, dilation))
    if add_to is not None:
        if add_to.shape != (N, Co, *O) or add_to.dtype != dtype or not add_to.flags.writeable:
            raise ValueError(f"conv: add_to {add_to.shape} {add_to.dtype}, output {(N, Co, *O)} {dtype}")
        if np.may_share_memory(add_to, x) or not add_to.flags.c_contiguous:  # (GEMMs would
            # overwrite input still to be read; the kernels write C-contiguous outputs)
            add_to += conv(x, weight, bias, stride, pads, dilation, groups, relu_input=relu_input)
            return add_to
    accumulate = add_to is not None
    out = add_to if accumulate else _empty((N, Co, *O), dtype)
    b = None if bias is None else np.asarray(bias, dtype)  # the GEMM paths take it as a row
    depthwise = groups == C and Cg == 1 and groups > 1
    merged = not depthwise and N > 1 and math.prod(O) < MERGE_PIXELS
    pointwise = all(k == 1 for k in K) and all(s == 1 for s in stride) and not any(map(any, pads))
    if relu_input and (depthwise or merged or not pointwise):
        x = np.maximum(x, 0, out=x) if overwrite_input else relu(x)
    if depthwise and banded_suits(weight.shape, groups):
        _conv_banded(x, pads, weight, b, stride, dilation, out, accumulate)
    elif depthwise:
        _conv_depthwise(x, pads, weight, stride, dilation, out, accumulate)
        _add_bias(out, b)
    elif winograd_suits(x.shape, weight.shape, stride, dilation, groups, O, dtype):
        _conv_winograd(x, pads, weight, out, accumulate)
        _add_bias(out, b)
    elif merged:
        _conv_merged(x, pads, weight, b, stride, dilation, groups, out, accumulate)
    elif pointwise:
        _conv_pointwise(x, weight, b, groups, out, bool(relu_input), accumulate)
    elif (stride[0] == 1 and K[0] > 1 and O[0] >= STACK_MIN_ROWS
          and STACK_MIN_DEPTH <= Cg * math.prod(K[1:]) <= STACK_MAX_DEPTH
          and K[0] * Co // groups <= STACK_MAX_DEPTH):
        _conv_stacked(x, pads, weight, b, stride, dilation, groups, out, accumulate)
    else:
        _conv_im2col(x, pads, weight, b, stride, dilation, groups, out, accumulate)
    return out


def _conv_pointwise(x, weight, bias, groups, out, relu_input=False, accumulate=False) -> None:
    """1x1 stride-1 unpadded convolution: one matmul per sample and group, no im2col.

    A layer that widens (C_in < C_out) takes its bias inside the GEMM: a bias column against a row
    of ones under a copy of the input, per chunk of samples -- a pass over the input instead of
    one over the wider output.  Otherwise, with BLAS's beta = 1 (``cnncalc.forward.blas``), the output
    starts as the bias and the GEMM adds its products in: a pass BLAS would spend zero-filling
    the output instead of one adding the bias afterwards.  With ``relu_input`` the input is
    copied (through the ReLU) per chunk too.  Outputs of at most SMALL_POINTWISE values that are
    not added into ``add_to`` skip both: a matmul (of a ReLU'd copy) and a bias add.
    """
    N, C, *S = x.shape
    Co, P = weight.shape[0], math.prod(S)
    xg = x.reshape(N, groups, C // groups, P)  # (N, G, Cin/G, P); a copy only if x is not contiguous
    out_g = _view(out, (N, groups, Co // groups, P))
    if out.size <= SMALL_POINTWISE and not accumulate:  # (a residual's sum still adds in the GEMM)
        _gemm(weight.reshape(groups, Co // groups, C // groups), relu(xg) if relu_input else xg, out_g)
        _add_bias(out, bias)
        return
    ones = int(bias is not None and C < Co)  # GEMM rows of ones per group, against a bias column
    if bias is not None and not ones and not accumulate and blas.available():
        np.copyto(out, _channel_shape(bias, out.ndim))
        bias, accumulate = None, True  # the GEMMs add to it
    per_sample = (C + groups * ones) * P * x.dtype.itemsize
    if not (ones or relu_input) or per_sample > CHUNK_BYTES:
        if relu_input:  # samples too large for a chunk: a ReLU'd copy of the input
            xg = relu(xg)
        _gemm(weight.reshape(groups, Co // groups, C // groups), xg, out_g, accumulate)
        _add_bias(out, bias)
        return
    w = _with_bias_column(weight, groups, bias) if ones else weight.reshape(groups, Co // groups, C // groups)
    for ns, _ in _chunks(N, 1, per_sample):
        cols = _scratch("cols", (ns.stop - ns.start, groups, C // groups + ones, P), x.dtype)
        if relu_input:  # contiguous runs: no dearer than a plain copy
            np.maximum(xg[ns], 0, out=cols[:, :, :C // groups])
        else:
            np.copyto(cols[:, :, :C // groups], xg[ns])
        if ones:
            cols[:, :, -1] = 1  # against the bias column of w
        _gemm(w, cols, out_g[ns], accumulate)
    if not ones:
        _add_bias(out, bias)


def _conv_im2col(x, pads, weight, bias, stride, dilation, groups, out, accumulate=False) -> None:
    """General convolution: per chunk of samples (or of one sample's output rows), im2col into a
    reused buffer and one matmul writing straight into ``out``.

    The bias is one more GEMM row: ones in the columns against the bias as a last column of the
    weights (prepared once per weight array), so no pass over the output adds it -- vgg16's
    first layer 3.4 -> 2.6 ms, resnet50's pass about 0.5 ms less.  Shallow GEMMs (depth at most
    SHALLOW_DEPTH), when ``_splits_phases``, copy their columns from the input split into
    stride phases.
    """
    N, C, *S = x.shape
    Co, Cg, *K = weight.shape
    _, _, O0, *O1 = out.shape
    G, taps, rest = groups, Cg * math.prod(K), (slice(None),) * len(O1)
    depth = taps + (bias is not None)  # GEMM rows: taps, then ones
    chunks = list(_chunks(N, O0, G * depth * math.prod(O1) * x.dtype.itemsize))
    s0, span0 = stride[0], dilation[0] * (K[0] - 1) + 1
    slab = [(rs.start * s0, (rs.stop - 1) * s0 + span0) for _, rs in chunks]  # padded rows read
    first = chunks[0][1]
    phases = ([_axis_phases(*axis) for axis in zip(K, stride, dilation)]
              if taps <= SHALLOW_DEPTH and _splits_phases(x.shape, pads, K, stride, slab[0],
                                                           (first.stop - first.start, *O1))
              else None)
    w = (_gemm_weight(weight, G, phases, bias) if phases or bias is None  # (G, Cout/G, depth)
         else _with_bias_column(weight, G, bias))
    out_g = _view(out, (N, G, Co // G, O0, *O1))  # output channels split by group
    for (ns, rs), rows in zip(chunks, slab):
        nb, r, row = ns.stop - ns.start, rs.stop - rs.start, 0
        cols = _scratch("cols", (nb, G, depth, r * math.prod(O1)), x.dtype)
        for src in _column_views(x, ns, pads, rows, K, stride, dilation, (r, *O1), phases):
            block = src.reshape(nb, G, Cg, *src.shape[2:])  # (nb, G, Cg, *taps, r, *O1)
            n = math.prod(block.shape[2:3 + len(K)])  # GEMM rows of this block
            np.copyto(_view(cols[:, :, row:row + n], block.shape), block)
            row += n
        if depth > taps:
            cols[:, :, taps] = 1  # against the bias column of w
        dst = out_g[ns][(Ellipsis, rs) + rest]
        _gemm(w, cols, _view(dst, dst.shape[:3] + (-1,)), accumulate)


class _Phase(NamedTuple):
    """The taps of one kernel axis that read one stride phase of the input.

    With stride s and dilation d, tap t reads padded position s * (o + t*d // s) + t*d % s for
    output o: row o + t*d // s of phase t*d % s (positions s*j + phase).  The taps of a phase
    are an arithmetic run, and within the phase they form a unit-stride (dilated) kernel.
    """
    phase: int  # positions s*j + phase
    taps: slice  # which taps of the axis
    count: int  # how many
    first: int  # phase row the first tap reads for output 0
    step: int  # phase rows between consecutive taps


def _axis_phases(k: int, s: int, d: int) -> list[_Phase]:
    """The taps of one axis (kernel k, stride s, dilation d) grouped by stride phase."""
    phases = []
    for p in range(s):
        taps = [t for t in range(k) if t * d % s == p]
        if taps:
            step = taps[1] - taps[0] if len(taps) > 1 else 1
            phases.append(_Phase(p, slice(taps[0], taps[-1] + 1, step), len(taps),
                                 taps[0] * d // s, step * d // s))
    return phases


def _splits_phases(x_shape, pads, kernel, stride, rows, out_size) -> bool:
    """Whether a shallow convolution copies its columns from stride phases: when strided, and when
    the columns of its first (largest) chunk -- output rows ``out_size[0]`` reading padded rows
    ``rows`` -- are at least PHASE_SPLIT_GAIN times its split input (so the split also fits
    the "pad" scratch the memory estimate sizes like the columns)."""
    if all(s == 1 for s in stride):
        return False
    extents = [rows[1] - rows[0]] + [n + lo + hi for n, (lo, hi) in zip(x_shape[3:], pads[1:])]
    split = math.prod(-(-e // s) * s for e, s in zip(extents, stride))
    return PHASE_SPLIT_GAIN * split <= math.prod(kernel) * math.prod(out_size)


def _gemm_weight(weight, groups, phases, bias) -> np.ndarray:
    """The GEMM's left matrix ``(G, C_out/G, depth)``: taps in the order of ``_column_views``
    (by stride phase when ``phases`` is given), then ``bias`` as a last column when given."""
    Co, Cg, *K = weight.shape
    w = weight.reshape(groups, Co // groups, Cg, *K)
    blocks = [w] if phases is None else [w[(Ellipsis, *(ph.taps for ph in combo))]
                                         for combo in itertools.product(*phases)]
    blocks = [b.reshape(groups, Co // groups, -1) for b in blocks]  # (G, Cout/G, Cg * taps)
    if bias is not None:
        blocks.append(bias.reshape(groups, Co // groups, 1))
    return np.concatenate(blocks, axis=2) if len(blocks) > 1 else blocks[0]


def _with_bias_column(weight, groups, bias) -> np.ndarray:
    """``_gemm_weight`` without stride phases, with ``bias`` as the last column: prepared once per
    weight array (``derived``)."""
    return derived("conv with bias column", (weight, bias), lambda: _gemm_weight(weight, groups, None, bias))


def _column_views(x, ns, pads, rows, kernel, stride, dilation, out_size, phases) -> list:
    """Read-only views ``(nb, C, *taps, *out_size)`` whose taps, in order, are the im2col columns
    of samples ``x[ns]`` (padded rows ``rows``): one window view of the padded chunk, or with
    ``phases`` (``_axis_phases`` of every axis) one unit-stride view per combination of phases
    of the chunk split by ``_split_padded``."""
    if phases is None:
        return [_windows(_padded_chunk(x, ns, pads, rows), kernel, stride, dilation, out_size)]
    split, H = _split_padded(*_slab(x, ns, pads, rows), stride, phases)
    views = []
    for combo in itertools.product(*phases):
        start = tuple(slice(ph.phase * h + ph.first, None) for ph, h in zip(combo, H))
        views.append(_windows(split[(Ellipsis, *start)], [ph.count for ph in combo],
                              [1] * len(combo), [ph.step for ph in combo], out_size))
    return views


def _split_padded(part: np.ndarray, pads, stride, phases):
    """``part (nb, C, *n)`` zero-padded by ``pads`` and split into stride phases, into the reused
    "pad" scratch: along axis i, phase p (padded positions s_i * j + p) fills rows
    ``[p * H_i, p * H_i + its length)``, ``H_i = ceil(padded extent / s_i)``.  Only the phases in
    ``phases`` are written, and no window reads past a phase's length.  Returns the array, H."""
    nb, C, *n = part.shape
    extents = [m + lo + hi for m, (lo, hi) in zip(n, pads)]
    H = [-(-e // s) for e, s in zip(extents, stride)]
    split = _scratch("pad", (nb, C, *(s * h for s, h in zip(stride, H))), part.dtype)
    for combo in itertools.product(*phases):
        src, dst, phase_pads = [], [], []
        for ph, s, h, m, (lo, _), e in zip(combo, stride, H, n, pads, extents):
            length = len(range(ph.phase, e, s))  # padded positions in this phase
            before = min(max(-(-(lo - ph.phase) // s), 0), length)  # of them in the low padding
            real = max(min(length, -(-(lo + m - ph.phase) // s)) - before, 0)  # and inside part
            start = ph.phase + s * before - lo  # index in part of the first real one
            src.append(slice(start, start + s * real, s) if real else slice(0, 0))
            dst.append(slice(ph.phase * h, ph.phase * h + length))
            phase_pads.append((before, length - before - real))
        _pad_constant(part[(Ellipsis, *src)], phase_pads, 0, out=split[(Ellipsis, *dst)])
    return split, H


def _conv_stacked(x, pads, weight, bias, stride, dilation, groups, out, accumulate=False) -> None:
    """Unit stride along the first axis: its K0 taps stacked along the GEMM's rows.

    im2col runs over the other axes only (K0 times less copying), the GEMM gets K0 * C_out rows
    (much faster for thin layers), and the K0 row-shifted partial results are summed into
    ``out`` (added to it, with ``accumulate``).  The bias rides in the GEMM: a row of ones in
    the columns against a bias column that only the first tap's rows have.  Chunks cover
    samples or output rows (plus the taps' halo of input rows).  The GEMM's weights are
    prepared once per weight array.  (One GEMM per tap adding into ``out`` with BLAS's beta = 1
    was 2-5% slower on resnet50's 3x3 layers.)
    """
    N, C, *S = x.shape
    Co, Cg, K0, *Kr = weight.shape
    _, _, O0, *Or = out.shape
    G, Cog, d0 = groups, Co // groups, dilation[0]
    halo, taps, rest = d0 * (K0 - 1), Cg * math.prod(Kr), (slice(None),) * len(Or)
    depth = taps + (bias is not None)  # GEMM rows: taps of the other axes, then ones
    w = derived("stacked conv weight", (weight, bias), lambda: _stacked_weight(weight, groups, bias))
    out_g = _view(out, (N, G, Cog, O0, *Or))  # output channels split by group
    row_bytes = (C * math.prod(Kr) + G + K0 * Co) * math.prod(Or) * x.dtype.itemsize
    for ns, rs in _chunks(N, O0, row_bytes):
        xp = _padded_chunk(x, ns, pads, (rs.start, rs.stop + halo))  # the rows this chunk reads
        nb, r = xp.shape[0], rs.stop - rs.start
        win = _windows(xp, (1, *Kr), (1, *stride[1:]), (1, *dilation[1:]),
                       (r + halo, *Or))  # (nb, C, 1, *Kr, r + halo, *Or)
        cols = _scratch("cols", (nb, G, depth, math.prod(win.shape[-1 - len(Or):])), x.dtype)
        block = win.reshape(nb, G, Cg, *win.shape[2:])  # (nb, G, Cg, 1, *Kr, r + halo, *Or)
        np.copyto(_view(cols[:, :, :taps], block.shape), block)
        if depth > taps:
            cols[:, :, taps] = 1  # against the first tap's bias column
        part = _scratch("gemm", (nb, G, K0, Cog, r + halo, *Or), x.dtype)
        # (G, K0*Cog, depth) @ (nb, G, depth, pixels): per-tap partial sums (nb, G, K0*Cog, pixels)
        np.matmul(w, cols, out=part.reshape(nb, G, K0 * Cog, -1))
        dst = out_g[ns][(Ellipsis, rs) + rest]  # (nb, G, Cog, r, *Or)
        if not accumulate:  # the first two taps' sum written in one pass
            np.add(part[:, :, 0, :, :r], part[:, :, 1, :, d0:d0 + r], out=dst)
        for k in range(0 if accumulate else 2, K0):
            dst += part[:, :, k, :, k * d0:k * d0 + r]


def _stacked_weight(weight, groups, bias) -> np.ndarray:
    """``_conv_stacked``'s GEMM weights ``(G, K0 * C_out/G, depth)``: rows ordered (first-axis tap,
    output channel), columns the other taps, then the bias for the first tap's rows (0 below)."""
    Co, Cg, K0, *Kr = weight.shape
    w = weight.reshape(groups, Co // groups, Cg, K0, -1).transpose(0, 3, 1, 2, 4)  # (G, K0, Cog, Cg, taps)
    w = w.reshape(groups, K0 * (Co // groups), -1)
    if bias is None:
        return w
    column = np.zeros((groups, K0, Co // groups, 1), weight.dtype)
    column[:, 0, :, 0] = bias.reshape(groups, -1)
    return np.concatenate([w, column.reshape(groups, -1, 1)], axis=2)


def _conv_merged(x, pads, weight, bias, stride, dilation, groups, out, accumulate=False) -> None:
    """Small outputs: a chunk of samples side by side in one GEMM, then one transposing copy (or
    add, with ``accumulate``)."""
    N, C, *S = x.shape
    Co, Cg, *K = weight.shape
    O = out.shape[2:]
    P, rows = math.prod(O), Cg * math.prod(K)
    w = weight.reshape(groups, Co // groups, rows)  # (G, Cout/G, Cin/G * prod(K))
    per_sample = C * math.prod(K) * P * x.dtype.itemsize
    limit = max(CHUNK_BYTES, per_sample * -(-MERGE_PIXELS // P))  # >= MERGE_PIXELS GEMM columns
    for ns, _ in _chunks(N, 1, per_sample, limit):
        nb = ns.stop - ns.start
        win = _windows(_padded_chunk(x, ns, pads), K, stride, dilation, O)  # (nb, C, *K, *O)
        src = np.moveaxis(win, 0, 1 + len(K))  # (C, *K, nb, *O): samples beside their pixels
        cols = _scratch("cols", src.shape, x.dtype)
        np.copyto(cols, src)
        res = _scratch("gemm", (groups, Co // groups, nb * P), x.dtype)
        np.matmul(w, cols.reshape(groups, rows, nb * P), out=res)  # (G, Cout/G, nb * P)
        res = res.reshape(Co, nb, P).transpose(1, 0, 2)  # (Cout, nb, P) -> NCHW order (nb, Cout, P)
        _put(_view(out[ns], (nb, Co, P)), res, accumulate)
        _add_bias(out[ns], bias)


#: Output columns per band of a banded depthwise convolution (``band_width``): wider bands make
#: longer GEMM rows but more zero taps.  Measured on mobilenet/efficientnet/convnext shapes at batch
#: 1 against bands of 4 and 8 (16: 96x56x56 7x7 2.95 ms against 4.1 and 10.5; 32x112x112 3x3 1.1
#: against 1.7 and 2.6).
BAND_COLUMNS = 16
#: Depthwise kernels at least this high and wide are banded (smaller: a multiply-add per tap).
BANDED_MIN_SIDE = 2


def banded_suits(weight_shape, groups: int) -> bool:
    """Whether a depthwise convolution (groups == C_in) runs as banded GEMMs: 2-D, one output channel
    per input channel, a kernel at least BANDED_MIN_SIDE wide and high."""
    Co, Cg, *K = weight_shape
    return Cg == 1 and Co == groups and len(K) == 2 and min(K) >= BANDED_MIN_SIDE


def band_width(out_width: int) -> int:
    """Output columns per band: the widest row split into equal bands of at most BAND_COLUMNS
    (56 -> 14, 112 -> 16, 7 -> 7); rows that do not split evenly go through a canvas."""
    bands = -(-out_width // BAND_COLUMNS)
    return -(-out_width // bands)


class Bands(NamedTuple):
    """The layout of a banded depthwise convolution (``banded_layout``)."""

    band: int    # output columns per band
    bands: int   # bands per output row
    span: int    # input columns one band reads
    depth: int   # GEMM depth: kernel rows x span, + 1 for a bias
    width: int   # padded input columns all bands read (more than the padding gives when bands overhang)


def banded_layout(weight_shape, stride, dilation, out_width: int, bias: bool) -> Bands:
    """How ``_conv_banded`` lays out a depthwise convolution (shared with the memory estimate)."""
    Kh, Kw = weight_shape[2:]
    band = band_width(out_width)
    bands = -(-out_width // band)
    span = stride[1] * (band - 1) + dilation[1] * (Kw - 1) + 1
    return Bands(band, bands, span, Kh * span + int(bias), stride[1] * band * (bands - 1) + span)


def _banded_weight(weight, bias, stride, dilation, band, span) -> np.ndarray:
    """``(C, depth, band)`` banded GEMM weights of a depthwise convolution: row ``i * span + m`` and
    column ``q`` hold tap ``(i, k)`` where ``m = q * stride + k * dilation`` (0 elsewhere); a last
    row holds the bias, against a column of ones (prepared once per weight array)."""
    def make():
        C, _, Kh, Kw = weight.shape
        w = np.zeros((C, Kh, span, band), weight.dtype)
        for q, k in itertools.product(range(band), range(Kw)):
            w[:, :, q * stride[1] + k * dilation[1], q] = weight[:, 0, :, k]
        w = w.reshape(C, Kh * span, band)
        if bias is None:
            return w
        return np.concatenate([w, np.broadcast_to(bias.reshape(C, 1, 1), (C, 1, band))], axis=1)
    return derived(f"banded depthwise stride={tuple(stride)} dilation={tuple(dilation)} band={band}",
                   (weight,) if bias is None else (weight, bias), make)


def _conv_banded(x, pads, weight, bias, stride, dilation, out, accumulate=False) -> None:
    """2-D depthwise convolution as one GEMM per channel over bands of output columns.

    A band is ``band`` output columns of one output row; it reads ``span`` input columns of every
    kernel row, gathered (with a 1 for the bias) as one GEMM row: ``(bands of a channel, depth) @
    (depth, band)`` against the channel's banded weights (``_banded_weight``), whose zeros skip
    the taps a column does not see.  So the taps are summed by BLAS instead of by a multiply and
    an add per tap over the planes: 96x56x56 7x7 2.0 ms against 4.1 (the ``_conv_depthwise`` way).
    The GEMM writes NCHW rows straight into ``out`` when the bands tile the row (else into a
    canvas).  Chunks of samples, or of one sample's channels, keep the gathered rows within
    BANDED_CHUNK_BYTES (one channel at least).  Small planes (``banded_merges``) put a chunk's samples
    into one GEMM per channel, through a canvas and one transposing copy: a GEMM per channel and
    sample costs more in calls than in flops there.
    """
    N, C, H, W = x.shape
    Ho, Wo = out.shape[2:]
    band, bands, span, depth, width = banded_layout(weight.shape, stride, dilation, Wo, bias is not None)
    w = _banded_weight(weight, bias, stride, dilation, band, span)  # (C, depth, band)
    (top, bottom), (left, right) = pads
    right = max(right, width - left - W)  # zeros under the last band's overhang
    merged = banded_merges(N, Ho, bands)
    direct = bands * band == Wo and not merged
    nb, cb = banded_chunk(N, C, Ho * bands * depth * x.dtype.itemsize)
    taps = weight.shape[2] * span
    for n0, c0 in itertools.product(range(0, N, nb), range(0, C, cb)):
        ns, cs = slice(n0, min(N, n0 + nb)), slice(c0, min(C, c0 + cb))
        xp = _padded_chunk(x[:, cs], ns, [(top, bottom), (left, right)])  # (nb, cb, Hp, Wp)
        sN, sC, sH, sW = xp.strides
        # [n, c, ho, j, i, m] = xp[n, c, ho * sh + i * dh, j * band * sw + m]: a band's inputs, row by row
        win = as_strided(xp, (*xp.shape[:2], Ho, bands, weight.shape[2], span),
                         (sN, sC, stride[0] * sH, band * stride[1] * sW, dilation[0] * sH, sW), writeable=False)
        lead = xp.shape[1::-1] if merged else xp.shape[:2]  # GEMM rows of (channel, sample) or (sample, channel)
        cols = _scratch("cols", (*lead, Ho * bands, depth), x.dtype)
        np.copyto(_view(cols[..., :taps], (*lead, *win.shape[2:])), win.swapaxes(0, 1) if merged else win)
        if depth > taps:
            cols[..., taps] = 1  # against the bias row
        dst = out[ns, cs]
        if direct:
            _gemm(cols, w[cs], _view(dst, (*dst.shape[:2], Ho * bands, band)), accumulate)
            continue
        canvas = _scratch("canvas", (*lead, Ho, bands * band), x.dtype)
        if merged:  # (channel, sample x rows x bands, depth) @ (channel, depth, band)
            np.matmul(cols.reshape(lead[0], -1, depth), w[cs], out=canvas.reshape(lead[0], -1, band))
            _put(dst, canvas[..., :Wo].swapaxes(0, 1), accumulate)
        else:
            np.matmul(cols, w[cs], out=canvas.reshape(*lead, Ho * bands, band))
            _put(dst, canvas[..., :Wo], accumulate)


#: A banded depthwise convolution with fewer GEMM rows per channel and sample (output rows x bands)
#: puts the samples of a chunk into one GEMM per channel (``banded_merges``).  One thread, CPU time,
#: batch 8, a GEMM per sample -> merged: 768x7x7 7x7 4.8 -> 4.2 ms, 1152x7x7 5x5 5.9 -> 4.7,
#: 672x14x14 5x5/2 5.5 -> 4.9; at 14 rows (384x14x14 7x7) no gain (6.0 -> 6.3).
BANDED_MERGE_ROWS = 14
#: Bytes of gathered rows per chunk of a banded depthwise convolution (one channel at least): its
#: padded input, gathered rows and GEMM output stay in the L2 cache (2 MiB per core here) from the
#: padding copy to the GEMM.  One thread, depthwise layers timed inside whole passes, settings
#: alternating pass by pass in one process, best of 8 (batch 8: of 3), CHUNK_BYTES (8 MiB) -> 1 MiB:
#: convnext_tiny 23.8 -> 20.1 ms (batch 8: 156 -> 139), efficientnet_b0 13.9 -> 13.5 (batch 8: 100 ->
#: 99), mobilenet_v2 10.0 -> 9.9; 2 MiB and 512 KiB were no better.
BANDED_CHUNK_BYTES = 1 << 20


def banded_merges(N: int, Ho: int, bands: int) -> bool:
    """Whether ``_conv_banded`` puts several samples into one GEMM per channel."""
    return N > 1 and Ho * bands < BANDED_MERGE_ROWS


def banded_chunk(N: int, C: int, channel_bytes: int) -> tuple[int, int]:
    """(samples, channels) per chunk of ``_conv_banded``: whole samples while their gathered rows
    (``channel_bytes`` per channel) fit BANDED_CHUNK_BYTES, else channels of one (one at least)."""
    return _samples_or_channels(N, C, channel_bytes, BANDED_CHUNK_BYTES)


def _samples_or_channels(N: int, C: int, channel_bytes: int, limit: int) -> tuple[int, int]:
    """(samples, channels) per chunk of a per-channel kernel: whole samples while their ``channel_bytes``
    per channel fit ``limit``, else channels of one sample (one at least)."""
    per_sample = C * channel_bytes
    if per_sample <= limit:
        return min(N, max(1, limit // max(per_sample, 1))), C
    return 1, min(C, max(1, limit // max(channel_bytes, 1)))


def _conv_depthwise(x, pads, weight, stride, dilation, out, accumulate=False) -> None:
    """Depthwise convolution (groups == C_in): a broadcast multiply-add per kernel tap, into
    ``out`` (added to it, with ``accumulate``).

    Chunks of samples, or of one sample's channels (``depthwise_chunk``), are zero-padded into
    the reused "pad" scratch and summed tap by tap in two reused scratch arrays of at most
    DEPTHWISE_CHUNK_BYTES (one channel plane at least).  With unit strides each channel plane is
    one flat line: outputs are computed at the padded row pitch (a few extra columns, dropped at
    the end), so every multiply-add covers whole planes rather than single rows.
    """
    N, C, *S = x.shape
    Co, _, *K = weight.shape
    m, O, dtype = Co // C, out.shape[2:], out.dtype
    Sp = [n + lo + hi for n, (lo, hi) in zip(S, pads)]
    out_m = _view(out, (N, C, m, *O))  # output channel c * m + j
    flat = all(s == 1 for s in stride)
    if flat:
        pitch = [math.prod(Sp[i + 1:]) for i in range(len(Sp))]  # element step of each axis
        span = sum((o - 1) * p for o, p in zip(O, pitch)) + 1  # flat run covering every output
        offsets = [sum(k * d * p for k, d, p in zip(tap, dilation, pitch)) for tap in np.ndindex(*K)]
        plane = (m, span)
    else:
        plane = (m, *O)
    w = weight.reshape(C, m, -1, *(1,) * (len(plane) - 1))  # (C, mult, prod(K), 1...)
    nb, cb = depthwise_chunk(N, C, math.prod(plane) * dtype.itemsize)
    for n0, c0 in itertools.product(range(0, N, nb), range(0, C, cb)):
        ns, cs = slice(n0, min(N, n0 + nb)), slice(c0, min(C, c0 + cb))
        xp = _padded_chunk(x[:, cs], ns, pads)  # (a view when nothing is padded: contiguous)
        shape = (xp.shape[0], xp.shape[1], *plane)
        acc = (_scratch("dw_acc", shape, dtype) if flat or accumulate
               else out_m[ns, cs])  # strided taps sum straight into the output
        tmp = _scratch("dw_tmp", shape, dtype)
        if flat:
            lines = xp.reshape(*xp.shape[:2], 1, -1)  # (nb, cb, 1, prod(Sp))
        else:
            win = _windows(xp, K, stride, dilation, O)[:, :, None]  # (nb, cb, 1, *K, *O)
        for t, tap in enumerate(np.ndindex(*K)):
            if flat:
                xt = lines[..., offsets[t]:offsets[t] + span]  # (nb, cb, 1, span)
            else:
                xt = win[(slice(None),) * 3 + tap]  # (nb, cb, 1, *O)
            np.multiply(xt, w[cs, :, t], out=acc if t == 0 else tmp)
            if t:
                acc += tmp
        if flat:  # pick the real outputs out of the flat lines
            steps = acc.strides[:3] + tuple(p * dtype.itemsize for p in pitch)
            acc = as_strided(acc, (*shape[:3], *O), steps, writeable=False)
        if flat or accumulate:
            _put(out_m[ns, cs], acc, accumulate)


def depthwise_chunk(N: int, C: int, plane_bytes: int) -> tuple[int, int]:
    """(samples, channels) per chunk of ``_conv_depthwise``: whole samples while their planes
    (``plane_bytes`` each, per scratch array) fit DEPTHWISE_CHUNK_BYTES, else channels of one."""
    return _samples_or_channels(N, C, plane_bytes, DEPTHWISE_CHUNK_BYTES)


# --------------------------------------------------------------------------- Winograd F(4x4, 3x3)
# Lavin & Gray's minimal filtering: a 4x4 output tile comes from a 6x6 input tile with 36
# multiplies per (input, output) channel pair instead of 144, so a 3x3 stride-1 layer needs 4x
# fewer GEMM flops.  Per tile: Y = AT [(G g G^T) * (BT d B)] A; with the tiles as columns, both
# 2-D transforms are one GEMM each with a Kronecker product (the (i, j) tap pairs flattened).
_WINO_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
_WINO_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)
_WINO_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                     [0, 1, -1, 8, -8, 1]], np.float64)
_WINO_INPUT = np.kron(_WINO_BT, _WINO_BT).astype(np.float32)     # (36, 36): tile (i, j) -> (xi, nu)
_WINO_OUTPUT = np.kron(_WINO_AT, _WINO_AT).astype(np.float32)    # (16, 36): (xi, nu) -> output (a, b)
_WINO_FILTER = np.kron(_WINO_G, _WINO_G).astype(np.float32)     # (36, 9): tap (k, l) -> (xi, nu)

#: Winograd is used for float32 3x3 stride-1 undilated ungrouped 2-D convolutions with at least
#: WINOGRAD_MIN_CHANNELS input channels, outputs at least WINOGRAD_MIN_SIDE on each side, at least
#: WINOGRAD_MIN_TILES 4x4 output tiles per chunk of samples, and transformed tensors (36 x channels
#: x tiles) of at most WINOGRAD_MAX_BYTES per sample: past that its transforms run from main memory and the direct GEMM is faster.  Samples go
#: through it in chunks of at most WINOGRAD_CHUNK_BYTES of transforms (``winograd_chunk``).  With
#: fewer channels the transforms cost more than the flops saved; with fewer tiles its 36 GEMMs,
#: (C_out x C_in) @ (C_in x tiles), are bound by reading the transformed filters (4x the weights).
#: Measured one thread, best of several, against the direct paths: at batch 1, 64 channels at
#: 56x56 1.6 ms against 2.1, 128 at 28x28 1.2 against 1.9, 256 at 14x14 (16 tiles) 1.5 against 1.9,
#: 512 at 7x7 (4 tiles) 4.9 against 2.7; at batch 32 in 4 MiB chunks, alexnet's 13x13 layers 39,
#: 57 and 38 ms against 53, 76 and 49, resnet18's 128 at 28x28 39 against 58 (16 MiB chunks: 45,
#: 65, 47, 51).  float64 keeps the direct path: Winograd's error (about 1e-5 relative in float32)
#: is above the 1e-12 agreement float64 promises.
#: Those one-thread gains shrink or turn on two threads (the default), where its 36 small GEMMs and
#: transforms scale worse than one large GEMM: from 64 channels and 16 tiles, resnet18's batch-1
#: pass took 31 ms against 28-30 with these limits, alexnet's 19 against 17-18, resnet50's 61-63
#: against 59-60 (two rounds alternating, idle); at batch 32 level (resnet18 0.77-0.79 s against
#: 0.76-0.78, alexnet 0.28-0.29 both), with less memory kept for transformed filters.
WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_SIDE, WINOGRAD_MIN_TILES = 128, 28, 16
#: Where each GEMM runs on one thread -- in a lane of samples or a half (``parallel.in_half``), or on
#: one core -- the one-thread gains above hold: from 64 input channels, on outputs of any side.
WINOGRAD_ONE_THREAD_MIN_CHANNELS = 64
WINOGRAD_MAX_BYTES, WINOGRAD_CHUNK_BYTES = 16 << 20, 4 << 20


def winograd_suits(x_shape, weight_shape, stride, dilation, groups, out_size, dtype, one_thread=None) -> bool:
    """Whether ``conv`` computes this convolution with Winograd F(4x4, 3x3); ``one_thread``: whether
    each of its GEMMs runs on one thread (by default: whether this thread is a lane or a half, or
    there is one core)."""
    if one_thread is None:
        one_thread = parallel.in_half() or not parallel.TWO_CORES
    channels, side = ((WINOGRAD_ONE_THREAD_MIN_CHANNELS, 1) if one_thread
                      else (WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_SIDE))
    N, C, *_ = x_shape
    Co, _, *K = weight_shape
    if (tuple(K) != (3, 3) or groups != 1 or np.dtype(dtype) != np.float32
            or any(s != 1 for s in stride) or any(d != 1 for d in dilation)):
        return False
    per_sample = _winograd_sample_bytes(x_shape, weight_shape, out_size)
    tiles = winograd_chunk(x_shape, weight_shape, out_size) * math.prod(-(-o // 4) for o in out_size)
    return (C >= channels and min(out_size) >= side and tiles >= WINOGRAD_MIN_TILES
            and per_sample <= WINOGRAD_MAX_BYTES)


def winograd_bytes(x_shape, weight_shape, out_size) -> int:
    """Bytes of the largest Winograd scratch array of one chunk of samples (``winograd_chunk``): 36
    transformed values per tile and channel (the padded input, 4 + 2 rows and columns per tile,
    and the output tiles are smaller)."""
    return winograd_chunk(x_shape, weight_shape, out_size) * _winograd_sample_bytes(x_shape, weight_shape, out_size)


def winograd_chunk(x_shape, weight_shape, out_size) -> int:
    """Samples per chunk of ``_conv_winograd``: as many as keep its transforms within
    WINOGRAD_CHUNK_BYTES (one at least)."""
    per_sample = _winograd_sample_bytes(x_shape, weight_shape, out_size)
    return min(x_shape[0], max(1, WINOGRAD_CHUNK_BYTES // per_sample))


def _winograd_sample_bytes(x_shape, weight_shape, out_size) -> int:
    """Bytes of 36 transformed float32 values per tile and channel of one sample."""
    return 36 * max(x_shape[1], weight_shape[0]) * math.prod(-(-o // 4) for o in out_size) * 4


def _winograd_filters(weight: np.ndarray) -> np.ndarray:
    """``G g G^T`` of every filter as ``(36, C_out, C_in)``, prepared once per weight array."""
    def transform():  # in float32: 3e-8 from float64's result, against Winograd's own 1e-5
        Co, C = weight.shape[:2]
        taps = weight.reshape(Co * C, 9).T  # (9, C_out * C_in), a transposed view BLAS reads as is
        return np.matmul(_WINO_FILTER, taps).reshape(36, Co, C)
    return derived("winograd filters", (weight,), transform)


def _conv_winograd(x, pads, weight, out, accumulate=False) -> None:
    """3x3 stride-1 convolution by Winograd F(4x4, 3x3) (see ``winograd_suits``) into ``out``.

    Chunks of samples (``winograd_chunk``) keep the transformed tensors near the cache.  Per chunk
    the input is zero-padded to whole 6x6 tiles at stride 4; the tiles are gathered with tap
    pairs first, transformed by one GEMM, multiplied by the filters as 36 GEMMs (one per
    transformed tap), transformed back by one GEMM and scattered into ``out`` (through a scratch
    canvas when the output sides are not multiples of 4) -- or with ``accumulate`` added to it.
    """
    N = x.shape[0]
    nb = winograd_chunk(x.shape, weight.shape, out.shape[2:])
    filters = _winograd_filters(weight)
    for n0 in range(0, N, nb):
        ns = slice(n0, min(N, n0 + nb))
        _winograd_samples(x[ns], pads, filters, out[ns], accumulate)


def _winograd_samples(x, pads, filters, out, accumulate) -> None:
    """``_conv_winograd`` of one chunk of samples, with the transformed ``filters``."""
    N, C, H, W = x.shape
    Co = filters.shape[1]
    Ho, Wo = out.shape[2:]
    th, tw = -(-Ho // 4), -(-Wo // 4)  # tiles per column and row
    P = N * th * tw
    (top, _), (left, _) = pads
    Hp, Wp = 4 * th + 2, 4 * tw + 2
    tile_pads = [(top, Hp - H - top), (left, Wp - W - left)]
    xp = _pad_into(x, tile_pads, _scratch("pad", (N, C, Hp, Wp), x.dtype))
    sN, sC, sH, sW = xp.strides
    tiles = _scratch("cols", (6, 6, C, N, th, tw), x.dtype)  # [i, j, c, n, ty, tx] = xp[n, c, 4ty+i, 4tx+j]
    np.copyto(tiles, as_strided(xp, tiles.shape, (sH, sW, sC, sN, 4 * sH, 4 * sW), writeable=False))
    v = _scratch("gemm", (36, C, P), x.dtype)
    np.matmul(_WINO_INPUT, tiles.reshape(36, -1), out=v.reshape(36, -1))
    m = _scratch("cols", (36, Co, P), x.dtype)  # the tiles are consumed: reuse their buffer
    np.matmul(filters, v, out=m)
    y = _scratch("pad", (4, 4, Co, N, th, tw), x.dtype)  # so is the padded input
    np.matmul(_WINO_OUTPUT, m.reshape(36, -1), out=y.reshape(16, -1))
    tiled = y.transpose(3, 2, 4, 0, 5, 1)  # (N, C_out, ty, a, tx, b)
    if (Ho, Wo) == (4 * th, 4 * tw):
        _put(_view(out, (N, Co, th, 4, tw, 4)), tiled, accumulate)
    else:
        canvas = _scratch("gemm", (N, Co, 4 * th, 4 * tw), x.dtype)  # v is consumed
        np.copyto(canvas.reshape(N, Co, th, 4, tw, 4), tiled)
        _put(out, canvas[:, :, :Ho, :Wo], accumulate)


def conv_transpose(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """Transposed convolution like ``torch.nn.functional.conv_transpose{1,2,3}d``.

    ``x (N, C_in, *S)``, ``weight (C_in, C_out // groups, *K)``, ``bias (C_out,)`` or None;
    ``stride``, ``padding``, ``output_padding``, ``dilation`` per-axis ints.  Output size per axis
    is ``(n - 1) * s - 2 * p + d * (k - 1) + op + 1``.  Computed as one matmul per chunk giving
    every tap's contribution (col2im), scattered with one strided add per kernel tap.
    """
    N, Ci, *S = x.shape
    _, Cog, *K = weight.shape
    if Ci % groups:
        raise ValueError(f"conv_transpose: {Ci} input channels, groups={groups}")
    G, Co, dtype = groups, Cog * groups, _float_dtype(x, weight)
    full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip(S, stride, dilation, K)]
    O = tuple(f - 2 * p + op for f, p, op in zip(full, padding, output_padding))
    span = tuple(max(f, p + o) for f, p, o in zip(full, padding, O))  # col2im canvas per axis
    crop = (slice(None), slice(None)) + tuple(slice(p, p + o) for p, o in zip(padding, O))
    w = np.asarray(weight, dtype).reshape(G, Ci // G, -1).swapaxes(1, 2)  # (G, Cog*K, Cig)
    xg = np.ascontiguousarray(x, dtype).reshape(N, G, Ci // G, -1)  # (N, G, Cin/G, P)
    out = _empty((N, Co, *O), dtype)
    direct = span == O and not any(padding)  # the canvas is the output itself
    per_sample = Co * math.prod(K) * math.prod(S) * np.dtype(dtype).itemsize
    for ns, _ in _chunks(N, 1, per_sample):
        nb = ns.stop - ns.start
        cols = _scratch("cols", (nb, G, w.shape[1], xg.shape[-1]), dtype)
        np.matmul(w, xg[ns], out=cols)
        cols = cols.reshape(nb, Co, *K, *S)  # every tap's contribution per input pixel
        canvas = out[ns] if direct else _scratch("canvas", (nb, Co, *span), dtype)
        canvas.fill(0)
        for tap in np.ndindex(*K):
            dst = tuple(slice(t * d, t * d + (n - 1) * s + 1, s)
                        for t, d, n, s in zip(tap, dilation, S, stride))
            canvas[(slice(None), slice(None)) + dst] += cols[(slice(None), slice(None)) + tap]
        if not direct:
            out[ns] = canvas[crop]
    _add_bias(out, bias)
    return out


# --------------------------------------------------------------------------- kernels by layer type

@kernel(Conv)
def _conv(layer, x, p, owned, relu=False, add_to=None):
    return conv(x, p["weight"], p.get("bias"), layer.stride, layer.pads, layer.dilation, layer.groups,
                layer.padding_mode, relu_input=relu, overwrite_input=owned, add_to=add_to)


@kernel(ConvTranspose)
def _conv_transpose(layer, x, p, owned):
    return conv_transpose(x, p["weight"], p.get("bias"), layer.stride, layer.padding,
                          layer.output_padding, layer.dilation, layer.groups)
