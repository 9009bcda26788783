"""Tests of the array kernels in cnncalc.forward (conv, pool, norm, linear, reshape, activation).

Every kernel is checked twice: against a naive loop definition written here (float64, small
sizes) and, where torch is importable, against ``torch.nn.functional`` -- including hypothesis
property tests over random shapes, strides, paddings, dilations and groups.  Tolerance: relative
error (max abs difference over max abs reference) <= 1e-4 in float32.
"""
from __future__ import annotations

import contextlib
import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cnncalc.forward import activation, blas, conv, linear, memory, norm, pool, reshape

RTOL = 1e-4
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def torch():
    """torch with autograd off; tests that use it are skipped when it is not installed."""
    t = pytest.importorskip("torch")
    t.set_grad_enabled(False)
    yield t
    t.set_grad_enabled(True)   # later modules (receptive fields) back-propagate


def rand(*shape, seed=0, dtype=np.float32):
    """Standard normal array of ``shape``."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(got, want, rtol=RTOL, dtype=np.float32):
    """Same shape, expected dtype, same infinities, and max |got - want| <= rtol * max |want|."""
    want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == dtype, got.dtype
    inf = np.isinf(want)  # e.g. a max-pool window lying wholly in the padding
    assert np.array_equal(got[inf], want[inf])
    got, want = np.where(inf, 0, got), np.where(inf, 0, want)
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
    assert err <= rtol * scale, f"relative error {err / scale:.3g}"


def flat_pads(pads):
    """Per-axis (lo, hi) pairs -> torch.nn.functional.pad's flat, last-axis-first list."""
    return [p for lo_hi in reversed(pads) for p in lo_hi]


# =========================================================================== naive definitions

def naive_conv(x, w, b, stride, pads, dilation, groups):
    """Direct loop over outputs, input channels and taps of the zero-padded input."""
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(pads))
    N, C, *S = x.shape
    Co, Cg, *Kk = w.shape
    O = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(S, Kk, stride, dilation)]
    out = np.zeros((N, Co, *O))
    for n, co in itertools.product(range(N), range(Co)):
        g = co // (Co // groups)
        for o in itertools.product(*map(range, O)):
            acc = 0.0 if b is None else float(b[co])
            for ci, k in itertools.product(range(Cg), itertools.product(*map(range, Kk))):
                idx = tuple(oi * s + ki * d for oi, ki, s, d in zip(o, k, stride, dilation))
                acc += x[(n, g * Cg + ci) + idx] * w[(co, ci) + k]
            out[(n, co) + o] = acc
    return out


def naive_conv_transpose(x, w, b, stride, padding, output_padding, dilation, groups):
    """Scatter every input pixel times every tap, then crop ``padding`` / extend ``output_padding``."""
    N, Ci, *S = x.shape
    _, Cog, *Kk = w.shape
    Cig = Ci // groups
    full = [(n - 1) * s + d * (k - 1) + 1 + op for n, s, d, k, op
            in zip(S, stride, dilation, Kk, output_padding)]
    canvas = np.zeros((N, Cog * groups, *full))
    for n, ci in itertools.product(range(N), range(Ci)):
        g = ci // Cig
        for i in itertools.product(*map(range, S)):
            for co, k in itertools.product(range(Cog), itertools.product(*map(range, Kk))):
                idx = tuple(ii * s + ki * d for ii, ki, s, d in zip(i, k, stride, dilation))
                canvas[(n, g * Cog + co) + idx] += x[(n, ci) + i] * w[(ci, co) + k]
    O = [f - 2 * p for f, p in zip(full, padding)]
    out = canvas[(Ellipsis,) + tuple(slice(p, p + o) for p, o in zip(padding, O))]
    if b is not None:
        out = out + b.reshape((-1,) + (1,) * len(S))
    return out


def pool_out(n, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length (what the caller computes and passes in)."""
    num = n + 2 * p - d * (k - 1) - 1
    o = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def naive_max_pool(x, kernel, stride, padding, dilation, out_size):
    """Max over the in-range taps of every window."""
    N, C, *S = x.shape
    out = np.empty((N, C, *out_size))
    for o in itertools.product(*map(range, out_size)):
        taps = [[oi * s - p + j * d for j in range(k) if 0 <= oi * s - p + j * d < n]
                for oi, s, p, d, k, n in zip(o, stride, padding, dilation, kernel, S)]
        window = x[np.ix_(range(N), range(C), *taps)]
        out[(slice(None), slice(None)) + o] = window.reshape(N, C, -1).max(axis=2)
    return out


def naive_avg_pool(x, kernel, stride, padding, out_size, count_include_pad, divisor_override):
    """PyTorch's avg_pool definition: pool_size from the window clipped to [-p, n + p)."""
    N, C, *S = x.shape
    out = np.empty((N, C, *out_size))
    for o in itertools.product(*map(range, out_size)):
        starts = [oi * s - p for oi, s, p in zip(o, stride, padding)]
        ends = [min(a + k, n + p) for a, k, n, p in zip(starts, kernel, S, padding)]
        pool_size = math.prod(e - a for a, e in zip(starts, ends))
        real = [range(max(a, 0), min(e, n)) for a, e, n in zip(starts, ends, S)]
        total = x[np.ix_(range(N), range(C), *real)].reshape(N, C, -1).sum(axis=2)
        if divisor_override:
            div = divisor_override
        elif count_include_pad:
            div = pool_size
        else:
            div = math.prod(len(r) for r in real)
        out[(slice(None), slice(None)) + o] = total / div
    return out


def naive_adaptive(x, out_size, reduce):
    """Windows [floor(i * n / o), ceil((i + 1) * n / o)) per axis."""
    N, C, *S = x.shape
    out = np.empty((N, C, *out_size))
    for o in itertools.product(*map(range, out_size)):
        rng = [range(math.floor(i * n / m), math.ceil((i + 1) * n / m))
               for i, n, m in zip(o, S, out_size)]
        out[(slice(None), slice(None)) + o] = reduce(
            x[np.ix_(range(N), range(C), *rng)].reshape(N, C, -1), axis=2)
    return out


def naive_linear_1d(v, o, align_corners, scale_factor=None):
    """1-d linear resampling of the last axis by PyTorch's documented coordinate rule."""
    n = v.shape[-1]
    out = np.empty(v.shape[:-1] + (o,))
    for i in range(o):
        if align_corners:
            src = i * (n - 1) / (o - 1) if o > 1 else 0.0
        else:
            step = 1 / scale_factor if scale_factor else n / o
            src = max((i + 0.5) * step - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n - 1)
        i1 = min(i0 + 1, n - 1)
        lam = src - i0
        out[..., i] = v[..., i0] * (1 - lam) + v[..., i1] * lam
    return out


# =========================================================================== pad

@pytest.mark.parametrize("mode, np_mode", [("reflect", "reflect"), ("replicate", "edge"),
                                           ("circular", "wrap")])
def test_pad_modes_match_numpy_pad(mode, np_mode):
    x = rand(2, 3, 5, 6)
    pads = ((2, 1), (0, 3))
    assert_close(reshape.pad(x, pads, mode), np.pad(x, [(0, 0), (0, 0), *pads], mode=np_mode))


def test_pad_constant_value_and_crop():
    x = rand(1, 2, 4, 4)
    got = reshape.pad(x, ((1, 2), (3, 0)), "zeros", value=-7.0)
    assert_close(got, np.pad(x, [(0, 0), (0, 0), (1, 2), (3, 0)], constant_values=-7.0))
    assert_close(reshape.pad(x, ((-1, 2), (0, -2))), np.pad(x[:, :, 1:, :2], [(0, 0)] * 2 + [(0, 2), (0, 0)]))
    assert reshape.pad(x, ((0, 0), (0, 0))) is x


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_vs_torch(torch, mode):
    for x, pads in [(rand(2, 3, 7), ((3, 2),)), (rand(1, 2, 5, 6), ((1, 4), (2, 0))),
                    (rand(1, 2, 4, 5, 6), ((1, 2), (3, 0), (2, 2)))]:
        want = torch.nn.functional.pad(torch.from_numpy(x), flat_pads(pads), mode=mode)
        assert_close(reshape.pad(x, pads, mode), want)


# =========================================================================== conv

CONV_CASES = [  # x shape, weight shape, stride, pads, dilation, groups
    ((2, 4, 7), (6, 2, 3), (2,), ((1, 2),), (2,), 2),
    ((1, 3, 6, 7), (4, 3, 3, 2), (1, 2), ((1, 1), (0, 2)), (1, 1), 1),
    ((2, 6, 7, 6), (6, 1, 3, 3), (2, 1), ((1, 1), (1, 1)), (1, 2), 6),  # depthwise
    ((1, 4, 6, 6), (8, 1, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 4),  # depthwise, multiplier 2
    ((2, 5, 9, 20), (5, 1, 7, 7), (1, 1), ((3, 3), (3, 3)), (1, 1), 5),  # depthwise 7x7: rows in 2 bands
    ((1, 3, 10, 35), (3, 1, 3, 5), (2, 1), ((0, 1), (4, 2)), (2, 3), 3),  # bands overhanging the row
    ((2, 4, 8, 8), (4, 1, 2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1), 4),  # depthwise 2x2/2, nothing padded
    ((3, 4, 7, 7), (4, 1, 5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1), 4),  # small planes: samples in one GEMM
    ((1, 3, 9), (3, 1, 3), (1,), ((1, 1),), (1,), 3),  # depthwise 1-D: tap by tap
    ((2, 6, 5, 5), (4, 6, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),  # pointwise
    ((2, 3, 5, 4), (8, 3, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),  # pointwise, widening: bias in the GEMM
    ((3, 4, 3, 3), (8, 2, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 2),  # the same, grouped
    ((1, 4, 5, 6), (6, 2, 1, 1), (2, 1), ((0, 0), (1, 0)), (1, 1), 2),  # strided grouped 1x1
    ((1, 2, 6, 6), (3, 2, 2, 4), (1, 1), ((0, 1), (1, 2)), (1, 1), 1),  # 'same', even kernel
    ((1, 4, 4, 5, 5), (4, 2, 2, 3, 2), (1, 2, 1), ((1, 0), (1, 1), (0, 1)), (2, 1, 2), 2),
    ((1, 3, 13, 12), (4, 3, 7, 7), (2, 2), ((3, 3), (3, 3)), (1, 1), 1),  # a resnet stem
    ((2, 4, 11, 10), (6, 2, 3, 4), (3, 2), ((2, 0), (1, 3)), (2, 3), 2),  # taps across phases
    ((1, 2, 9, 10), (3, 2, 2, 2), (3, 3), ((0, 2), (1, 0)), (1, 1), 1),  # phases no tap reads
]


CONV_PATHS = {  # kernel thresholds that force each GEMM layout of conv
    "im2col": dict(MERGE_PIXELS=0, STACK_MIN_ROWS=10 ** 9, SHALLOW_DEPTH=0),
    "phases": dict(MERGE_PIXELS=0, STACK_MIN_ROWS=10 ** 9, SHALLOW_DEPTH=10 ** 9,
                   PHASE_SPLIT_GAIN=0),  # ... and every strided input split into stride phases
    "merged": dict(MERGE_PIXELS=10 ** 9, STACK_MIN_ROWS=10 ** 9),
    "stacked": dict(MERGE_PIXELS=0, STACK_MIN_ROWS=1, STACK_MIN_DEPTH=1, STACK_MAX_DEPTH=10 ** 9),
    "default": {},
    "tap by tap": dict(BANDED_MIN_SIDE=10 ** 9),  # depthwise: a multiply-add per tap, not banded GEMMs
    "small chunks": dict(CHUNK_BYTES=512, DEPTHWISE_CHUNK_BYTES=64, BANDED_CHUNK_BYTES=512,  # chunks of samples,
                         SMALL_POINTWISE=0,  # then channels (and small 1x1 outputs the long way too,
                         PAD_FILL_WIDTH=0),  # and only the borders of padded chunks zero-filled)
}


@contextlib.contextmanager
def conv_path_forced(name):
    """Temporarily set the kernel thresholds of CONV_PATHS[name]."""
    saved = {key: getattr(conv, key) for key in CONV_PATHS[name]}
    try:
        for key, value in CONV_PATHS[name].items():
            setattr(conv, key, value)
        yield
    finally:
        for key, value in saved.items():
            setattr(conv, key, value)


@pytest.fixture(params=["im2col", "phases", "merged", "stacked", "tap by tap", "small chunks"])
def conv_path(request):
    """Run a test once per GEMM layout of conv (merged only matters for N > 1, stacked for
    kernels with more than one tap along the first axis and unit stride there, phases for
    strided convolutions)."""
    with conv_path_forced(request.param):
        yield request.param


@pytest.mark.parametrize("xs, ws, stride, pads, dil, groups", CONV_CASES)
def test_conv_vs_naive(conv_path, xs, ws, stride, pads, dil, groups):
    x, w, b = rand(*xs), rand(*ws, seed=1), rand(ws[0], seed=2)
    assert_close(conv.conv(x, w, b, stride, pads, dil, groups),
                 naive_conv(x, w, b, stride, pads, dil, groups))


@pytest.mark.parametrize("xs, ws, stride, pads, dil, groups", CONV_CASES)
@pytest.mark.parametrize("overwrite", [False, True])
def test_conv_relu_input_is_conv_of_relu(conv_path, xs, ws, stride, pads, dil, groups, overwrite):
    """relu_input=True gives conv(relu(x)) on every path -- applied in a 1x1 conv's input copy, before
    the others -- and leaves x alone unless overwrite_input allows."""
    x, w, b = rand(*xs), rand(*ws, seed=1), rand(ws[0], seed=2)
    given = x.copy()
    got = conv.conv(given, w, b, stride, pads, dil, groups, relu_input=True, overwrite_input=overwrite)
    np.testing.assert_array_equal(got, conv.conv(np.maximum(x, 0), w, b, stride, pads, dil, groups))
    if not overwrite:
        np.testing.assert_array_equal(given, x)


@pytest.fixture(params=["blas", "numpy"])
def gemm_sums(request, monkeypatch):
    """Run a test with sums of GEMMs done by BLAS (beta = 1, cnncalc.forward.blas) and by matmul and add."""
    if request.param == "numpy":
        monkeypatch.setattr(blas, "_GEMMS", {})
    elif not blas.available():
        pytest.skip("NumPy's scipy-openblas not found")
    return request.param


@pytest.mark.parametrize("xs, ws, stride, pads, dil, groups", CONV_CASES)
def test_conv_add_to_adds_into_it(conv_path, gemm_sums, xs, ws, stride, pads, dil, groups):
    """add_to=s gives s + conv(x), written into s (which is returned), on every path, also with
    relu_input; x is left alone."""
    x, w, b = rand(*xs), rand(*ws, seed=1), rand(ws[0], seed=2)
    want = naive_conv(x, w, b, stride, pads, dil, groups)
    total = rand(*want.shape, seed=3)
    expected = total + want
    given = x.copy()
    got = conv.conv(given, w, b, stride, pads, dil, groups, add_to=total)
    assert got is total
    assert_close(got, expected)
    np.testing.assert_array_equal(given, x)
    relu_want = naive_conv(np.maximum(x, 0), w, b, stride, pads, dil, groups)
    assert_close(conv.conv(x, w, b, stride, pads, dil, groups, relu_input=True, add_to=rand(*want.shape, seed=3)),
                 rand(*want.shape, seed=3) + relu_want)


@pytest.mark.parametrize("ws", [(4, 4, 1, 1), (4, 4, 3, 3)])
def test_conv_add_to_that_is_the_input_or_not_contiguous(gemm_sums, ws):
    """add_to may be x itself (a residual's shortcut the pass owns) or a strided view: the
    convolution is computed first, then added."""
    x, w, b = rand(1, 4, 6, 6), rand(*ws, seed=1), rand(4, seed=2)
    pads = ((ws[2] // 2,) * 2,) * 2
    given = x.copy()
    assert conv.conv(given, w, b, (1, 1), pads, (1, 1), 1, relu_input=True, overwrite_input=True,
                  add_to=given) is given
    assert_close(given, x + naive_conv(np.maximum(x, 0), w, b, (1, 1), pads, (1, 1), 1))
    strided = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # x's values, F-ordered planes
    assert_close(conv.conv(x, w, b, (1, 1), pads, (1, 1), 1, add_to=strided),
                 x + naive_conv(x, w, b, (1, 1), pads, (1, 1), 1))
    with pytest.raises(ValueError, match="add_to"):
        conv.conv(x, w, b, (1, 1), pads, (1, 1), 1, add_to=rand(1, 4, 5, 6))


@pytest.mark.parametrize("chunk", [10 ** 9, 4 * 4 * 9 * 4, 1])
@pytest.mark.parametrize("cout", [2, 9])
def test_pointwise_bias_first_then_the_products(gemm_sums, monkeypatch, chunk, cout):
    """A narrowing 1x1 conv starts its output as the bias and adds the GEMM to it (with BLAS) or
    adds the bias after (without); widening ones take it in the GEMM -- the result the same."""
    x, w, b = rand(1, 9, 4, 4), rand(cout, 9, 1, 1, seed=1), rand(cout, seed=2)
    args = (w, b, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    monkeypatch.setattr(conv, "SMALL_POINTWISE", 0)  # (else these small outputs take a plain matmul)
    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk)
    assert_close(conv.conv(x, *args), naive_conv(x, *args))


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("chunk", [10 ** 9, 4 * 4 * 9 * 4, 1])
@pytest.mark.parametrize("cout", [2, 9])
def test_pointwise_relu_input_in_every_chunking(monkeypatch, batch, chunk, cout):
    """A 1x1 conv applies the ReLU as it copies its input per chunk of samples -- or, a sample larger
    than a chunk, into a ReLU'd copy -- narrowing or widening (bias row), the result the same."""
    x, w, b = rand(batch, 3, 4, 4), rand(cout, 3, 1, 1, seed=1), rand(cout, seed=2)
    args = (w, b, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    monkeypatch.setattr(conv, "SMALL_POINTWISE", 0)  # (else these small outputs take a plain matmul)
    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(conv, "MERGE_PIXELS", 0)  # (small outputs of several samples go merged)
    assert_close(conv.conv(x, *args, relu_input=True), naive_conv(np.maximum(x, 0), *args))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("relu_input", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("cout", [2, 12])
def test_small_pointwise_is_a_matmul_and_a_bias_add(monkeypatch, groups, relu_input, bias, cout):
    """1x1 convs with at most SMALL_POINTWISE output values (squeeze-and-excitation's 1x1 maps) skip
    the bias column and BLAS's beta = 1: narrowing or widening, grouped, with a ReLU'd input, the
    result is the definition's; one value over the limit takes the long way, with the same result."""
    x, w = rand(1, 6, 1, 2), rand(cout, 6 // groups, 1, 1, seed=1)  # (batches of small maps go merged)
    args = (w, rand(cout, seed=2) if bias else None, (1, 1), ((0, 0), (0, 0)), (1, 1), groups)
    want = naive_conv(np.maximum(x, 0) if relu_input else x, *args)
    long_way = []
    monkeypatch.setattr(conv, "_chunks", lambda *a: long_way.append(1) or iter([(slice(0, 1), slice(0, 1))]))
    monkeypatch.setattr(conv.blas, "gemm_add", lambda *a: long_way.append(1) or False)
    monkeypatch.setattr(conv, "SMALL_POINTWISE", 2 * cout)
    assert_close(conv.conv(x, *args, relu_input=relu_input), want)
    assert not long_way
    monkeypatch.setattr(conv, "SMALL_POINTWISE", 2 * cout - 1)
    assert_close(conv.conv(x, *args, relu_input=relu_input), want)
    assert long_way or not bias and not relu_input  # (no bias, no ReLU: one matmul either way)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_mode_pads_then_convolves(mode):
    x, w = rand(1, 2, 6, 5), rand(3, 2, 3, 3, seed=1)
    pads = ((1, 1), (2, 1))
    want = naive_conv(reshape.pad(x, pads, mode), w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    assert_close(conv.conv(x, w, None, (1, 1), pads, (1, 1), 1, padding_mode=mode), want)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_chunking_matches_unchunked(conv_path, monkeypatch, groups):
    """Batch chunks and output-row chunks (tiny chunk limit) give the same result."""
    x, w, b = rand(3, 4, 9, 8), rand(6, 4 // groups, 3, 3, seed=1), rand(6, seed=2)
    args = (w, b, (1, 2), ((1, 1), (2, 0)), (2, 1), groups)
    whole = conv.conv(x, *args)
    assert_close(whole, naive_conv(x, *args))
    monkeypatch.setattr(conv, "CHUNK_BYTES", 4 * 4 * 9 * 4 * 3)  # a few output rows of one sample
    assert_close(conv.conv(x, *args), whole, rtol=1e-6)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)  # one row at a time
    assert_close(conv.conv(x, *args), whole, rtol=1e-6)


@pytest.mark.parametrize("chunk", [10 ** 9, 4 * 4 * 9 * 4, 1])
def test_widening_pointwise_bias_per_sample_chunk(monkeypatch, chunk):
    """The bias row of a widening 1x1 conv: whole batch, one sample per chunk, or (a sample larger
    than a chunk) the bias added afterwards -- the same result each way."""
    x, w, b = rand(3, 3, 4, 4), rand(9, 3, 1, 1, seed=1), rand(9, seed=2)
    args = (w, b, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    monkeypatch.setattr(conv, "SMALL_POINTWISE", 0)  # (else these small outputs take a plain matmul)
    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk)
    assert_close(conv.conv(x, *args), naive_conv(x, *args))


def test_conv_accepts_non_contiguous_input(conv_path):
    x = np.ascontiguousarray(rand(7, 6, 4, 2).transpose(3, 2, 1, 0))  # (2, 4, 6, 7) ...
    x = x.transpose(0, 1, 3, 2)[:, :, ::-1]  # ... then a strided, reversed view (2, 4, 7, 6)
    w = rand(6, 2, 3, 2, seed=1)
    args = (w, None, (1, 2), ((1, 0), (1, 1)), (1, 1), 2)
    assert_close(conv.conv(x, *args), naive_conv(np.ascontiguousarray(x), *args))
    w1 = rand(3, 4, 1, 1, seed=2)
    assert_close(conv.conv(x, w1, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
                 naive_conv(np.ascontiguousarray(x), w1, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1))


def test_plain_page_allocations_are_ordinary_arrays(monkeypatch):
    """With every output on anonymous-mmap pages the results are the same, writable arrays."""
    x, w, v = rand(2, 4, 9, 9), rand(6, 4, 3, 3, seed=1), np.abs(rand(4, seed=2)) + 0.5
    calls = [lambda: conv.conv(x, w, v[:1].repeat(6), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
             lambda: pool.max_pool(x, (3, 3), (2, 2), (1, 1), (1, 1), (5, 5)),
             lambda: activation.relu(x), lambda: norm.batch_norm(x, v, v, v, v, 1e-5),
             lambda: linear.linear(x, rand(3, 9, seed=3), None)]
    usual = [f() for f in calls]
    monkeypatch.setattr(memory, "PLAIN_PAGES_BYTES", 0)
    for f, want in zip(calls, usual):
        got = f()
        assert got.flags.writeable and got.flags.c_contiguous
        got += 0  # really writable
        np.testing.assert_array_equal(got, want)


def test_block_pool_reuses_only_unreferenced_blocks(monkeypatch):
    """Big outputs come from a pool of blocks: never one some array (or view) still uses."""
    monkeypatch.setattr(memory, "PLAIN_PAGES_BYTES", 4096)
    monkeypatch.setattr(memory, "_pool", [])
    x = rand(64, 64)  # 16 KiB outputs
    a = activation.relu(x)
    view = a[3:, ::2]
    del a
    b = activation.relu(x)
    assert not np.shares_memory(b, view)  # the view keeps a's block in use
    view[:] = -1
    np.testing.assert_array_equal(b, np.maximum(x, 0))
    del view, b
    blocks = len(memory._pool)
    for _ in range(5):  # freed blocks are recycled, not re-mapped
        c = activation.relu(x)
        del c
    assert len(memory._pool) == blocks
    monkeypatch.setattr(memory, "POOL_IDLE_BYTES", 0)  # idle blocks beyond the limit are unmapped
    bigger = activation.relu(rand(128, 128))  # fits no idle block: a new one, the idle ones unmapped
    assert [len(block) for block in memory._pool] == [bigger.nbytes]
    np.testing.assert_array_equal(bigger, np.maximum(rand(128, 128), 0))


def test_conv_dtypes():
    x, w = rand(1, 2, 5, 5), rand(3, 2, 3, 3, seed=1)
    pads = ((1, 1), (1, 1))
    assert conv.conv(x, w, None, (1, 1), pads, (1, 1), 1).dtype == np.float32
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    got = conv.conv(x64, w64, None, (1, 1), pads, (1, 1), 1)
    assert_close(got, naive_conv(x64, w64, None, (1, 1), pads, (1, 1), 1), rtol=1e-12,
                 dtype=np.float64)


def test_conv_rejects_channel_mismatch():
    with pytest.raises(ValueError):
        conv.conv(rand(1, 3, 4, 4), rand(2, 2, 3, 3), None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)


def test_axis_phases_group_taps_by_the_stride_phase_they_read():
    """Tap t reads padded position s * (o + t*d // s) + t*d % s for output o."""
    P = conv._Phase
    assert conv._axis_phases(7, 2, 1) == [P(0, slice(0, 7, 2), 4, 0, 1), P(1, slice(1, 6, 2), 3, 0, 1)]
    assert conv._axis_phases(3, 2, 2) == [P(0, slice(0, 3, 1), 3, 0, 1)]  # all taps in phase 0
    assert conv._axis_phases(4, 3, 2) == [P(0, slice(0, 4, 3), 2, 0, 2), P(1, slice(2, 3, 1), 1, 1, 0),
                                       P(2, slice(1, 2, 1), 1, 0, 0)]
    assert conv._axis_phases(2, 3, 1) == [P(0, slice(0, 1, 1), 1, 0, 0), P(1, slice(1, 2, 1), 1, 0, 0)]


def test_shallow_strided_conv_reads_stride_phases(monkeypatch):
    """By default a resnet-like stem (columns 8.7x its input) copies its columns from stride
    phases, with the bias in the GEMM, exact in float64; a stride-1 layer does not split."""
    calls = []
    split = conv._split_padded
    monkeypatch.setattr(conv, "_split_padded", lambda *a: calls.append(a[0].shape) or split(*a))
    x, w, b = (rand(*shape, seed=i, dtype=np.float64) for i, shape in
               enumerate([(2, 3, 32, 32), (8, 3, 7, 7), (8,)]))
    args = (w, b, (2, 2), ((3, 3), (3, 3)), (1, 1), 1)
    assert_close(conv.conv(x, *args), naive_conv(x, *args), rtol=1e-12, dtype=np.float64)
    assert calls
    calls.clear()
    args = (w, b, (1, 1), ((3, 3), (3, 3)), (1, 1), 1)
    assert_close(conv.conv(x, *args), naive_conv(x, *args), rtol=1e-12, dtype=np.float64)
    assert not calls


TRANSPOSE_CASES = [  # x shape, weight shape, stride, padding, output_padding, dilation, groups
    ((2, 3, 5), (3, 2, 3), (2,), (1,), (1,), (1,), 1),
    ((1, 4, 4, 5), (4, 3, 3, 2), (2, 3), (1, 0), (1, 2), (1, 2), 2),
    ((1, 2, 3, 3), (2, 2, 2, 2), (4, 3), (0, 1), (3, 0), (1, 1), 1),  # stride > kernel
    ((2, 2, 3, 4), (2, 3, 1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 1),
    ((1, 2, 3, 2, 3), (2, 1, 2, 2, 3), (1, 2, 2), (0, 1, 1), (0, 1, 0), (2, 1, 1), 2),
]


@pytest.mark.parametrize("xs, ws, stride, padding, op, dil, groups", TRANSPOSE_CASES)
def test_conv_transpose_vs_naive(xs, ws, stride, padding, op, dil, groups):
    x, w, b = rand(*xs), rand(*ws, seed=1), rand(ws[1] * groups, seed=2)
    assert_close(conv.conv_transpose(x, w, b, stride, padding, op, dil, groups),
                 naive_conv_transpose(x, w, b, stride, padding, op, dil, groups))


def test_conv_transpose_is_adjoint_of_conv():
    """<conv(x), y> == <x, conv_transpose(y)> for the same weight (no bias)."""
    x, w = rand(2, 4, 9, 8).astype(np.float64), rand(6, 2, 3, 2, seed=1).astype(np.float64)
    y = conv.conv(x, w, None, (2, 2), ((1, 1), (1, 1)), (1, 2), 2)
    r = rand(*y.shape, seed=3).astype(np.float64)
    xt = conv.conv_transpose(r, w, None, (2, 2), (1, 1), (0, 1), (1, 2), 2)
    assert xt.shape == x.shape
    assert np.isclose((y * r).sum(), (x * xt).sum(), rtol=1e-10)


def test_conv_transpose_chunked(monkeypatch):
    x, w = rand(3, 2, 4, 4), rand(2, 3, 3, 3, seed=1)
    args = (w, None, (2, 2), (1, 1), (1, 1), (1, 1), 1)
    whole = conv.conv_transpose(x, *args)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)
    assert_close(conv.conv_transpose(x, *args), whole, rtol=1e-6)


# =========================================================================== pooling

POOL_CASES = [  # x shape, kernel, stride, padding, dilation, ceil_mode
    ((2, 3, 9), (3,), (2,), (1,), (1,), True),
    ((1, 2, 7, 8), (3, 2), (2, 2), (1, 1), (1, 2), True),
    ((1, 2, 7, 7), (2, 2), (2, 2), (0, 0), (1, 1), False),
    ((1, 2, 6, 7), (3, 3), (3, 2), (1, 0), (1, 1), True),
    ((1, 1, 5, 6, 7), (2, 3, 2), (2, 1, 3), (1, 1, 0), (2, 1, 1), True),
]


def _outs(xs, kernel, stride, padding, dilation, ceil_mode):
    """Pooling output sizes of input shape ``xs``, as the caller computes them."""
    return tuple(pool_out(n, k, s, p, d, ceil_mode)
                 for n, k, s, p, d in zip(xs[2:], kernel, stride, padding, dilation))


@pytest.mark.parametrize("xs, kernel, stride, padding, dilation, ceil_mode", POOL_CASES)
def test_max_pool_vs_naive(xs, kernel, stride, padding, dilation, ceil_mode):
    x = rand(*xs)
    out = _outs(xs, kernel, stride, padding, dilation, ceil_mode)
    assert_close(pool.max_pool(x, kernel, stride, padding, dilation, out),
                 naive_max_pool(x, kernel, stride, padding, dilation, out))


@pytest.mark.parametrize("xs, kernel, stride, padding, dilation, ceil_mode", POOL_CASES)
@pytest.mark.parametrize("count_include_pad, divisor_override",
                         [(True, None), (False, None), (True, 5)])
def test_avg_pool_vs_naive(xs, kernel, stride, padding, dilation, ceil_mode,
                           count_include_pad, divisor_override):
    x = rand(*xs)
    out = _outs(xs, kernel, stride, padding, (1,) * len(kernel), ceil_mode)
    assert_close(pool.avg_pool(x, kernel, stride, padding, out, count_include_pad, divisor_override),
                 naive_avg_pool(x, kernel, stride, padding, out, count_include_pad,
                                divisor_override))


@pytest.mark.parametrize("xs, out", [((2, 3, 7, 10), (3, 4)), ((1, 2, 7, 7), (7, 1)),
                                     ((1, 2, 5, 9), (8, 4)), ((1, 2, 10), (4,)),
                                     ((1, 1, 4, 6, 5), (3, 4, 2)), ((1, 2, 3, 2), (5, 5))])
def test_adaptive_pools_vs_naive(xs, out):
    x = rand(*xs)
    assert_close(pool.adaptive_avg_pool(x, out), naive_adaptive(x, out, np.mean))
    assert_close(pool.adaptive_max_pool(x, out), naive_adaptive(x, out, np.max))


def test_adaptive_average_of_infinities_is_pytorchs():
    """A -inf (a max-pool window of padding only) makes its own windows -inf and no others NaN;
    +inf and -inf in one window give NaN, as in PyTorch."""
    x = np.array([[[1.0, -np.inf, 2.0, 3.0, 4.0, np.inf, -np.inf]]], np.float32)  # 7 -> 3 windows
    got = pool.adaptive_avg_pool(x, (3,))  # windows [0, 3), [2, 5), [4, 7)
    np.testing.assert_array_equal(got, np.array([[[-np.inf, 3.0, np.nan]]], np.float32))


# =========================================================================== dense and norms

def test_linear_vs_naive():
    x, w, b = rand(2, 3, 5), rand(4, 5, seed=1), rand(4, seed=2)
    want = np.einsum("abi,oi->abo", x.astype(np.float64), w) + b
    assert_close(linear.linear(x, w, b), want)
    assert_close(linear.linear(x[0, 0], w, None), w.astype(np.float64) @ x[0, 0])


@pytest.mark.parametrize("rows", [1, 2, 7, linear.SKINNY_ROWS, linear.SKINNY_ROWS + 1])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_either_gemm_orientation_vs_naive(rows, bias):
    """From 2 to SKINNY_ROWS rows the GEMM runs as weight @ x.T, transposed back; outside, as x @ weight.T."""
    x, w = rand(rows, 33, seed=rows), rand(20, 33, seed=1)
    b = rand(20, seed=2) if bias else None
    want = x.astype(np.float64) @ w.T.astype(np.float64) + (b if bias else 0)
    got = linear.linear(x, w, b)
    assert got.shape == (rows, 20) and got.flags.c_contiguous
    assert_close(got, want)
    assert_close(linear.linear(x.reshape(1, rows, 33), w, b), want[None])  # leading axes as rows


def test_batch_norm_vs_naive():
    x = rand(2, 3, 4, 5)
    mean, var = rand(3, seed=1), np.abs(rand(3, seed=2)) + 0.1
    w, b = rand(3, seed=3), rand(3, seed=4)
    c = (slice(None), None, None)
    want = (x - mean[c]) / np.sqrt(var[c].astype(np.float64) + 1e-3) * w[c] + b[c]
    assert_close(norm.batch_norm(x, mean, var, w, b, 1e-3), want)
    want = (x - mean[c]) / np.sqrt(var[c].astype(np.float64) + 1e-5)
    assert_close(norm.batch_norm(x, mean, var, None, None, 1e-5), want)
    assert_close(norm.batch_norm(x[:, :, 0, 0], mean, var, w, b, 1e-3),  # BatchNorm1d on (N, C)
                 (x[:, :, 0, 0] - mean) / np.sqrt(var.astype(np.float64) + 1e-3) * w + b)


def test_group_norm_vs_naive():
    x, w, b = rand(2, 6, 3, 4), rand(6, seed=1), rand(6, seed=2)
    g = x.astype(np.float64).reshape(2, 3, -1)
    normed = (g - g.mean(axis=2, keepdims=True)) / np.sqrt(g.var(axis=2, keepdims=True) + 1e-5)
    want = normed.reshape(x.shape) * w[:, None, None] + b[:, None, None]
    assert_close(norm.group_norm(x, 3, w, b, 1e-5), want)
    assert_close(norm.group_norm(x, 3, None, None, 1e-5), normed.reshape(x.shape))


def test_layer_norm_vs_naive():
    x, w, b = rand(2, 3, 4, 5), rand(4, 5, seed=1), rand(4, 5, seed=2)
    v = x.astype(np.float64)
    mean = v.mean(axis=(2, 3), keepdims=True)
    var = ((v - mean) ** 2).mean(axis=(2, 3), keepdims=True)  # biased
    assert_close(norm.layer_norm(x, 2, w, b, 1e-5), (v - mean) / np.sqrt(var + 1e-5) * w + b)
    last = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-6)
    assert_close(norm.layer_norm(x, 1, None, None, 1e-6), last)


# =========================================================================== upsample

@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("n, o", [(5, 8), (6, 4), (4, 4), (3, 10), (1, 3)])
def test_linear_upsample_vs_naive(n, o, align_corners):
    x = rand(2, 3, n)
    assert_close(reshape.upsample(x, (o,), "linear", align_corners),
                 naive_linear_1d(x.astype(np.float64), o, align_corners))


def test_bilinear_is_separable_linear():
    x = rand(1, 2, 4, 5)
    want = naive_linear_1d(naive_linear_1d(x.astype(np.float64), 9, False).swapaxes(2, 3), 7,
                           False).swapaxes(2, 3)
    assert_close(reshape.upsample(x, (7, 9), "bilinear", False), want)


def test_upsample_scale_factor_sets_coordinate_scale():
    """With scale_factor, the step is 1 / scale_factor, not in / out (here 5/12 != 1/2.5)."""
    x = rand(1, 1, 5)
    got = reshape.upsample(x, (12,), "linear", False, scale_factor=2.5)
    assert_close(got, naive_linear_1d(x.astype(np.float64), 12, False, scale_factor=2.5))
    idx = [min(int(math.floor(i / 2.5)), 4) for i in range(12)]
    assert_close(reshape.upsample(x, (12,), "nearest", scale_factor=2.5), x[..., idx])


def test_nearest_upsample_vs_naive():
    x = rand(1, 2, 3, 4)
    rows = [min(int(i * 3 / 7), 2) for i in range(7)]
    cols = [min(int(j * 4 / 10), 3) for j in range(10)]
    assert_close(reshape.upsample(x, (7, 10), "nearest"), x[:, :, rows][:, :, :, cols])


# =========================================================================== activations

def _erf(v):
    """Elementwise math.erf (the float64 reference for exact GELU)."""
    return np.vectorize(math.erf)(v)


ACTIVATIONS = {  # name -> (kernel call, float64 definition, torch call)
    "relu": (activation.relu, lambda v: np.maximum(v, 0), lambda F, t: F.relu(t)),
    "relu6": (activation.relu6, lambda v: np.minimum(np.maximum(v, 0), 6), lambda F, t: F.relu6(t)),
    "leaky_relu": (lambda v: activation.leaky_relu(v, 0.1), lambda v: np.where(v > 0, v, 0.1 * v),
                   lambda F, t: F.leaky_relu(t, 0.1)),
    "elu": (lambda v: activation.elu(v, 1.5), lambda v: np.where(v > 0, v, 1.5 * (np.exp(v) - 1)),
            lambda F, t: F.elu(t, 1.5)),
    "gelu": (activation.gelu, lambda v: 0.5 * v * (1 + _erf(v / math.sqrt(2))), lambda F, t: F.gelu(t)),
    "gelu_tanh": (lambda v: activation.gelu(v, "tanh"),
                  lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))),
                  lambda F, t: F.gelu(t, approximate="tanh")),
    "silu": (activation.silu, lambda v: v / (1 + np.exp(-v)), lambda F, t: F.silu(t)),
    "sigmoid": (activation.sigmoid, lambda v: 1 / (1 + np.exp(-v)), lambda F, t: F.sigmoid(t)),
    "tanh": (activation.tanh, np.tanh, lambda F, t: F.tanh(t)),
    "hardswish": (activation.hardswish, lambda v: v * np.clip(v + 3, 0, 6) / 6,
                  lambda F, t: F.hardswish(t)),
    "hardsigmoid": (activation.hardsigmoid, lambda v: np.clip(v + 3, 0, 6) / 6,
                    lambda F, t: F.hardsigmoid(t)),
}


def _activation_input():
    """Normal values, a wide range, tiny magnitudes and exact kinks."""
    x = np.concatenate([rand(200) * 3, np.linspace(-30, 30, 121), np.geomspace(1e-8, 1e-2, 20),
                        -np.geomspace(1e-8, 1e-2, 20), [0.0, -3.0, 3.0, 6.0]])
    return x.astype(np.float32)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_vs_definition(name):
    fn, ref, _ = ACTIVATIONS[name]
    x = _activation_input()
    got, want = fn(x), ref(x.astype(np.float64))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_vs_torch(torch, name):
    fn, _, ref = ACTIVATIONS[name]
    x = _activation_input()
    np.testing.assert_allclose(fn(x), ref(torch.nn.functional, torch.from_numpy(x)).numpy(),
                               rtol=RTOL, atol=1e-6)


def test_erf_accuracy_near_zero():
    """GELU's erf must hold 1e-4 relative accuracy even for tiny arguments."""
    x = np.geomspace(1e-30, 10, 400)
    got = activation.gelu(x)
    want = 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dtype == np.float64


TINY = np.finfo(np.float64).tiny  # smallest normal float64; erfc(z) drops below it at z ≈ 26.55
SUBNORMAL = np.nextafter(0.0, 1.0)  # 5e-324, one step of the subnormal grid


def _erfc_arguments():
    """About 10k arguments spanning [-30, 30], denser where Cody's fits meet (|z| = 0.46875, 4)."""
    edges = np.array([0.46875, 4.0])
    near_edges = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 5), edges + 1e-9])
    return np.concatenate([np.linspace(-30, 30, 6001), np.random.default_rng(0).uniform(-8, 8, 4000),
                           np.geomspace(1e-300, 1, 40), -np.geomspace(1e-300, 1, 40), near_edges, -near_edges,
                           [0.0, -0.0, 26.5, 26.6, 27.0, 27.2, 27.3, 1e10, 1e300]])


def _relative_to_math_erfc(got, want):
    """Largest relative error where ``want`` is a normal float64, largest absolute one elsewhere."""
    normal = np.abs(want) >= TINY
    difference = np.abs(got - want)
    return float((difference[normal] / np.abs(want[normal])).max()), float(difference[~normal].max(initial=0))


def test_erfc_is_float64_accurate():
    """activation._erfc against math.erfc (libm, ~1 ulp): measured 9.2e-16 = 4.1 eps relative at worst
    (the old Numerical Recipes fit: 1.2e-7), and at most 2 subnormal steps where erfc underflows."""
    z = _erfc_arguments()
    relative, absolute = _relative_to_math_erfc(activation._erfc(z), np.array([math.erfc(v) for v in z]))
    assert relative <= 1e-14
    assert absolute <= 4 * SUBNORMAL


def test_erfc_special_values_and_shape():
    got = activation._erfc(np.array([[np.inf, -np.inf, np.nan], [0.0, -0.0, 40.0]]))
    assert got.shape == (2, 3) and got.dtype == np.float64
    assert got[0, :2].tolist() == [0.0, 2.0] and np.isnan(got[0, 2])
    assert got[1].tolist() == [1.0, 1.0, 0.0]


def test_float64_gelu_is_accurate_elementwise():
    """Every element of float64 GELU, even the tiny negative tail, to a few ulp relative."""
    x = np.concatenate([np.linspace(-38, 10, 4801), rand(3000, dtype=np.float64) * 3])
    want = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x])
    relative, absolute = _relative_to_math_erfc(activation.gelu(x), want)
    assert relative <= 1e-14
    assert absolute <= 16 * SUBNORMAL


def test_float32_gelu_works_in_blocks():
    """A float32 input bigger than one block, non-contiguous: float32 out, the same values as the
    same input whole and contiguous (blocks change nothing), and close to float64's GELU."""
    x = rand(3, activation.ELEMENTWISE_BYTES // 8 + 7, seed=4)[:, ::2] * 4
    got = activation.gelu(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    for i in range(3):
        np.testing.assert_array_equal(got[i], activation.gelu(np.ascontiguousarray(x[i])))
    np.testing.assert_allclose(got, activation.gelu(x.astype(np.float64)), rtol=2.5e-5, atol=1e-30)


def test_float32_gelu_against_math_erfc():
    """float32 GELU (Numerical Recipes' erfcc) on a dense grid against math.erfc: measured 2.5e-6
    relative at worst above x = -5.5 and 1.8e-5 down to where the result leaves float32's normal
    range; past it, within a few subnormal steps.  inf and NaN as float64's GELU gives them."""
    x = np.concatenate([np.linspace(-25, 10, 350001), -np.geomspace(1e-30, 1, 200),
                        np.geomspace(1e-30, 1, 200)]).astype(np.float32)
    got = activation.gelu(x)
    want = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.astype(np.float64)])
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    relative = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
    assert relative.max() <= 2.5e-5
    assert relative[x[normal] > -5.5].max() <= 4e-6
    assert np.abs(got[~normal] - want[~normal]).max() <= 1e-42
    special = activation.gelu(np.array([np.inf, np.nan, 0.0], np.float32))
    assert special[0] == np.inf and np.isnan(special[1]) and special[2] == 0


@pytest.mark.parametrize("name", ["gelu", "silu", "sigmoid", "hardswish", "hardsigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_in_place_equals_a_new_array(name, dtype):
    """With out=x (the pass's owned input) the result is written over x, block by block, and equals
    the result into a new array exactly; an out that does not suit (another dtype, not contiguous)
    is not used."""
    fn = getattr(activation, name)
    x = (rand(3, activation.ELEMENTWISE_BYTES // 8 + 7, seed=5) * 5).astype(dtype)
    want = fn(x)
    given = x.copy()
    got = fn(given, out=given)
    assert got is given
    np.testing.assert_array_equal(got, want)
    strided = x.copy()[:, ::2]
    assert fn(strided, out=strided) is not strided
    np.testing.assert_array_equal(fn(x.copy(), out=np.empty(x.shape, np.float16)), want)
    if dtype == np.float64:  # scratch blocks as wide as the data
        np.testing.assert_allclose(want, ACTIVATIONS[name][1](x), rtol=1e-12, atol=1e-12)


def test_sigmoid_and_silu_saturate_without_nan():
    x = np.array([-1e4, -100.0, -88.8, 88.8, 100.0, 1e4], np.float32)
    assert activation.sigmoid(x).tolist() == [0.0, 0.0, pytest.approx(3.4e-39, rel=0.1), 1.0, 1.0, 1.0]
    assert activation.silu(x)[3:].tolist() == [pytest.approx(88.8), 100.0, 1e4]
    assert not np.isnan(activation.silu(x)).any()


def test_softmax_stable_and_normalised():
    x = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]], np.float32)
    v = x.astype(np.float64)
    e = np.exp(v - v.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    assert_close(activation.softmax(x, 1), want)
    assert_close(activation.log_softmax(x, 1), np.log(want))
    assert_close(activation.softmax(x, 0), np.exp(v - v.max(0)) / np.exp(v - v.max(0)).sum(0))


def test_softmax_vs_torch(torch):
    x = rand(2, 5, 3, 4) * 20
    for axis in range(4):
        t = torch.from_numpy(x)
        assert_close(activation.softmax(x, axis), torch.softmax(t, axis))
        assert_close(activation.log_softmax(x, axis), torch.log_softmax(t, axis))


# =========================================================================== torch: fixed cases

def _torch_conv(torch, x, w, b, stride, pads, dil, groups, mode="zeros"):
    """F.conv{1,2,3}d with explicit (possibly asymmetric or non-zero) padding by F.pad first."""
    F = torch.nn.functional
    t = torch.from_numpy(x)
    if any(lo or hi for lo, hi in pads):
        t = F.pad(t, flat_pads(pads), mode="constant" if mode == "zeros" else mode)
    torch_conv = (F.conv1d, F.conv2d, F.conv3d)[x.ndim - 3]
    return torch_conv(t, torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                      stride, 0, dil, groups)


@pytest.mark.parametrize("xs, ws, stride, pads, dil, groups", CONV_CASES)
def test_conv_vs_torch(torch, xs, ws, stride, pads, dil, groups):
    x, w, b = rand(*xs), rand(*ws, seed=1), rand(ws[0], seed=2)
    assert_close(conv.conv(x, w, b, stride, pads, dil, groups),
                 _torch_conv(torch, x, w, b, stride, pads, dil, groups))


def test_conv_padding_modes_vs_torch_module(torch):
    x = rand(2, 4, 7, 6)
    for mode in ["zeros", "reflect", "replicate", "circular"]:
        m = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(1, 2),
                            groups=2, padding_mode=mode)
        got = conv.conv(x, m.weight.numpy(), m.bias.numpy(), (2, 1), ((2, 2), (1, 1)), (1, 2), 2,
                     padding_mode=mode)
        assert_close(got, m(torch.from_numpy(x)))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_conv_same_padding_even_kernel_vs_torch(torch):
    x, w = rand(1, 3, 8, 9), rand(4, 3, 4, 2, seed=1)
    dil = (2, 1)
    pads = tuple(((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2) for d, k in zip(dil, (4, 2)))
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, 1,
                                      "same", dil)
    assert_close(conv.conv(x, w, None, (1, 1), pads, dil, 1), want)


def test_real_layer_shapes_vs_torch(torch):
    """A resnet stem, a resnet 3x3 and 1x1, a strided 1x1 and a mobilenet depthwise layer."""
    F = torch.nn.functional
    for xs, ws, s, p, g in [((2, 3, 64, 64), (16, 3, 7, 7), 2, 3, 1),
                            ((2, 16, 20, 20), (16, 16, 3, 3), 1, 1, 1),
                            ((2, 32, 14, 14), (64, 32, 1, 1), 1, 0, 1),
                            ((2, 32, 14, 14), (64, 32, 1, 1), 2, 0, 1),
                            ((2, 32, 15, 15), (32, 1, 3, 3), 2, 1, 32)]:
        x, w, b = rand(*xs), rand(*ws, seed=1) * 0.1, rand(ws[0], seed=2)
        want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), s, p, 1, g)
        assert_close(conv.conv(x, w, b, (s, s), ((p, p), (p, p)), (1, 1), g), want)


# =========================================================================== torch: properties

@st.composite
def conv_problems(draw):
    """Random conv: 1-3 spatial axes, groups, strides, dilations, asymmetric pads, bias or not."""
    nd = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cg, cog = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if draw(st.booleans()):  # depthwise, possibly with a channel multiplier
        cg = 1
    kernel = draw(st.tuples(*[st.integers(1, 4 if nd < 3 else 3)] * nd))
    stride = draw(st.tuples(*[st.integers(1, 3)] * nd))
    dil = draw(st.tuples(*[st.integers(1, 3)] * nd))
    pads = draw(st.tuples(*[st.tuples(st.integers(0, 3), st.integers(0, 3))] * nd))
    mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    size = []
    for k, d, (lo, hi) in zip(kernel, dil, pads):
        low = max(1, d * (k - 1) + 1 - lo - hi, lo + 1, hi + 1) if mode != "zeros" else \
            max(1, d * (k - 1) + 1 - lo - hi)
        size.append(draw(st.integers(low, low + (8 if nd < 3 else 3))))
    n = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    return (n, groups * cg, *size), (groups * cog, cg, *kernel), stride, pads, dil, groups, mode, bias


@PROPERTY
@given(conv_problems(), st.sampled_from(sorted(CONV_PATHS)), st.sampled_from([None, 1, 200]),
       st.integers(0, 2 ** 16))
def test_conv_property_vs_torch(torch, problem, path, chunk, seed):
    """Any GEMM layout, with default chunks or tiny ones (a few output rows at a time)."""
    xs, ws, stride, pads, dil, groups, mode, bias = problem
    x, w = rand(*xs, seed=seed), rand(*ws, seed=seed + 1)
    b = rand(ws[0], seed=seed + 2) if bias else None
    saved = conv.CHUNK_BYTES, conv.BANDED_CHUNK_BYTES
    try:
        conv.CHUNK_BYTES, conv.BANDED_CHUNK_BYTES = (chunk, chunk) if chunk else saved
        with conv_path_forced(path):
            got = conv.conv(x, w, b, stride, pads, dil, groups, padding_mode=mode)
    finally:
        conv.CHUNK_BYTES, conv.BANDED_CHUNK_BYTES = saved
    assert_close(got, _torch_conv(torch, x, w, b, stride, pads, dil, groups, mode))


@st.composite
def transpose_problems(draw):
    """Random conv_transpose: output_padding < max(stride, dilation), as torch requires."""
    nd = draw(st.integers(1, 3))
    groups, cig, cog = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = draw(st.tuples(*[st.integers(1, 4 if nd < 3 else 3)] * nd))
    stride = draw(st.tuples(*[st.integers(1, 4)] * nd))
    dil = draw(st.tuples(*[st.integers(1, 3)] * nd))
    size = draw(st.tuples(*[st.integers(1, 6 if nd < 3 else 3)] * nd))
    padding, out_pad = [], []
    for k, s, d, n in zip(kernel, stride, dil, size):
        op = draw(st.integers(0, max(s, d) - 1))
        full = (n - 1) * s + d * (k - 1) + 1 + op
        padding.append(draw(st.integers(0, (full - 1) // 2)))
        out_pad.append(op)
    return ((draw(st.integers(1, 2)), groups * cig, *size), (groups * cig, cog, *kernel),
            stride, tuple(padding), tuple(out_pad), dil, groups, draw(st.booleans()))


@PROPERTY
@given(transpose_problems(), st.integers(0, 2 ** 16))
def test_conv_transpose_property_vs_torch(torch, problem, seed):
    xs, ws, stride, padding, op, dil, groups, bias = problem
    x, w = rand(*xs, seed=seed), rand(*ws, seed=seed + 1)
    b = rand(ws[1] * groups, seed=seed + 2) if bias else None
    F = torch.nn.functional
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[len(xs) - 3]
    want = fn(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b),
              stride, padding, op, groups, dil)
    assert_close(conv.conv_transpose(x, w, b, stride, padding, op, dil, groups), want)


@st.composite
def pool_problems(draw, dilated=True):
    """Random pooling: padding <= kernel // 2 (torch's rule), ceil_mode on or off."""
    nd = draw(st.integers(1, 3))
    kernel = draw(st.tuples(*[st.integers(1, 4)] * nd))
    stride = draw(st.tuples(*[st.integers(1, 3)] * nd))
    dil = draw(st.tuples(*[st.integers(1, 3)] * nd)) if dilated else (1,) * nd
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    low = [max(1, d * (k - 1) + 1 - 2 * p) if dilated else k  # avg_pool3d wants n >= k
           for k, d, p in zip(kernel, dil, padding)]
    size = tuple(draw(st.integers(lo, lo + (7 if nd < 3 else 3))) for lo in low)
    return ((draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size), kernel, stride, padding,
            dil, draw(st.booleans()))


@PROPERTY
@given(pool_problems(), st.integers(0, 2 ** 16))
def test_max_pool_property_vs_torch(torch, problem, seed):
    xs, kernel, stride, padding, dil, ceil_mode = problem
    x = rand(*xs, seed=seed)
    out = _outs(xs, kernel, stride, padding, dil, ceil_mode)
    F = torch.nn.functional
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(xs) - 3]
    want = fn(torch.from_numpy(x), kernel, stride, padding, dil, ceil_mode=ceil_mode)
    assert_close(pool.max_pool(x, kernel, stride, padding, dil, out), want)


@PROPERTY
@given(pool_problems(), st.integers(0, 2 ** 16))
def test_max_pool_relu_input_property_vs_torch(torch, problem, seed):
    """relu_input=True is max_pool(relu(x)): the ReLU on the output, or first where a window holds only
    padding."""
    xs, kernel, stride, padding, dil, ceil_mode = problem
    x = rand(*xs, seed=seed)
    out = _outs(xs, kernel, stride, padding, dil, ceil_mode)
    F = torch.nn.functional
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(xs) - 3]
    want = fn(F.relu(torch.from_numpy(x)), kernel, stride, padding, dil, ceil_mode=ceil_mode)
    assert_close(pool.max_pool(x, kernel, stride, padding, dil, out, relu_input=True), want)


def test_max_pool_relu_input_keeps_a_padding_only_window():
    """Kernel 2 dilated by 3 over 2 values padded by 1 reads positions -1 and 2: padding only, so
    PyTorch's max_pool(relu(x)) is -inf there, not the 0 a ReLU on the output would give."""
    x = np.array([[[-1.0, -2.0]]], np.float32)
    assert not pool._covers(2, 2, 1, 3, 1, 1)
    np.testing.assert_array_equal(pool.max_pool(x, (2,), (1,), (1,), (3,), (1,), relu_input=True), [[[-np.inf]]])
    np.testing.assert_array_equal(pool.max_pool(x, (3,), (1,), (1,), (1,), (2,), relu_input=True), [[[0, 0]]])


@pytest.mark.parametrize("n, k, s, d, p, o, outputs", [
    (5, 3, 2, 1, 1, 3, [(0, 1, 3), (1, 0, 3), (2, 0, 2)]),  # resnet's 3x3/2 max pool: edge windows lose a tap
    (4, 2, 1, 1, 0, 3, [(0, 0, 3), (1, 0, 3)]),  # no padding: every tap everywhere
    (2, 2, 1, 3, 1, 1, []),  # dilated past both ends: no tap reads the input
])
def test_tap_outputs(n, k, s, d, p, o, outputs):
    """Which outputs each window tap reads a real position for: output t's tap j reads t*s - p + j*d."""
    assert pool._tap_outputs(n, k, s, d, p, o) == outputs
    assert pool._covers(n, k, s, d, p, o) == bool(outputs)


@PROPERTY
@given(pool_problems(dilated=False), st.booleans(), st.sampled_from([None, 1, 3, 7]),
       st.integers(0, 2 ** 16))
def test_avg_pool_property_vs_torch(torch, problem, count_include_pad, divisor, seed):
    xs, kernel, stride, padding, dil, ceil_mode = problem
    x = rand(*xs, seed=seed)
    out = _outs(xs, kernel, stride, padding, dil, ceil_mode)
    F = torch.nn.functional
    t = torch.from_numpy(x)
    if len(xs) == 3:  # avg_pool1d has no divisor_override: pool 2-d over a unit axis
        want = F.avg_pool2d(t[:, :, None], (1, *kernel), (1, *stride), (0, *padding), ceil_mode,
                            count_include_pad, divisor)[:, :, 0]
    else:
        fn = (F.avg_pool2d, F.avg_pool3d)[len(xs) - 4]
        want = fn(t, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
    assert_close(pool.avg_pool(x, kernel, stride, padding, out, count_include_pad, divisor), want)


@PROPERTY
@given(st.lists(st.tuples(st.integers(1, 12), st.integers(1, 9)), min_size=1, max_size=3),
       st.integers(0, 2 ** 16))
def test_adaptive_pools_property_vs_torch(torch, axes, seed):
    x = rand(2, 3, *[n for n, _ in axes], seed=seed)
    out = tuple(o for _, o in axes)
    F = torch.nn.functional
    avg = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[len(out) - 1]
    mx = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)[len(out) - 1]
    assert_close(pool.adaptive_avg_pool(x, out), avg(torch.from_numpy(x), out))
    assert_close(pool.adaptive_max_pool(x, out), mx(torch.from_numpy(x), out))


# =========================================================================== torch: norms, resampling

def test_norms_vs_torch(torch):
    F = torch.nn.functional
    x = rand(3, 6, 5, 4) * 3 + 1
    mean, var = rand(6, seed=1), np.abs(rand(6, seed=2)) + 0.5
    w, b = rand(6, seed=3), rand(6, seed=4)
    t = torch.from_numpy
    assert_close(norm.batch_norm(x, mean, var, w, b, 1e-5),
                 F.batch_norm(t(x), t(mean), t(var), t(w), t(b), False, 0.1, 1e-5))
    assert_close(norm.group_norm(x, 2, w, b, 1e-5), F.group_norm(t(x), 2, t(w), t(b), 1e-5))
    lw, lb = rand(5, 4, seed=5), rand(5, 4, seed=6)
    assert_close(norm.layer_norm(x, 2, lw, lb, 1e-5), F.layer_norm(t(x), (5, 4), t(lw), t(lb), 1e-5))
    assert_close(linear.linear(x, rand(7, 4, seed=7), rand(7, seed=8)),
                 F.linear(t(x), t(rand(7, 4, seed=7)), t(rand(7, seed=8))))


UPSAMPLE_CASES = [  # input spatial size, mode, align_corners, scale_factor or out size
    ((7,), "nearest", None, 2), ((5, 6), "nearest", None, (13, 7)), ((5, 6), "nearest", None, 1.7),
    ((3, 4, 5), "nearest", None, (2, 9, 5)), ((7,), "linear", False, 2.5),
    ((7,), "linear", True, (12,)), ((5, 6), "bilinear", False, (9, 4)),
    ((5, 6), "bilinear", False, 2.3), ((5, 6), "bilinear", True, 3),
    ((3, 4, 2), "trilinear", False, (5, 3, 6)), ((3, 4, 2), "trilinear", True, 1.5),
    ((5, 6), "bicubic", False, (11, 4)), ((5, 6), "bicubic", True, 2.5),
    ((5, 6), "bicubic", False, 1.6),
]


@pytest.mark.parametrize("size, mode, align_corners, scale", UPSAMPLE_CASES)
def test_upsample_vs_torch(torch, size, mode, align_corners, scale):
    x = rand(2, 3, *size)
    if isinstance(scale, tuple):
        out, sf = scale, None
        m = torch.nn.Upsample(size=out, mode=mode, align_corners=align_corners)
    else:
        sf = scale
        out = tuple(int(math.floor(n * float(scale))) for n in size)
        m = torch.nn.Upsample(scale_factor=scale, mode=mode, align_corners=align_corners)
    assert_close(reshape.upsample(x, out, mode, align_corners, sf), m(torch.from_numpy(x)))


# =========================================================================== dtype preservation

def test_every_kernel_keeps_float32():
    x = rand(2, 4, 6, 6)
    v = rand(4, seed=1)
    outs = [
        reshape.pad(x, ((1, 1), (1, 1)), "reflect"),
        conv.conv_transpose(x, rand(4, 2, 2, 2), None, (2, 2), (0, 0), (0, 0), (1, 1), 1),
        pool.max_pool(x, (2, 2), (2, 2), (0, 0), (1, 1), (3, 3)),
        pool.avg_pool(x, (3, 3), (2, 2), (1, 1), (3, 3)),
        pool.adaptive_avg_pool(x, (4, 5)), pool.adaptive_max_pool(x, (4, 5)),
        norm.batch_norm(x, v, np.abs(v), v, v, 1e-5), norm.group_norm(x, 2, v, v, 1e-5),
        norm.layer_norm(x, 2, None, None, 1e-5), reshape.upsample(x, (9, 9), "bilinear", False),
        reshape.upsample(x, (12, 12), "bicubic", True), linear.linear(x, rand(3, 6), v[:3]),
        activation.softmax(x, 1), activation.log_softmax(x, 1),
    ] + [fn(x) for fn, _, _ in ACTIVATIONS.values()]
    for out in outs:
        assert out.dtype == np.float32


@pytest.mark.parametrize("ws", [(3, 6, 1, 1), (8, 6, 1, 1), (5, 6, 3, 3)])
def test_gemm_sums_with_weights_blas_cannot_read(gemm_sums, ws):
    """Weights in a layout no BLAS call takes (every other element of a larger array): where a GEMM
    reads them as they are (a narrowing 1x1 conv, whose output starts as its bias) the sum falls
    back to matmul and add, per matrix; the other paths lay them out first.  Same results."""
    x, b = rand(1, 6, 5, 5), rand(ws[0], seed=2)
    w = rand(ws[0], ws[1], ws[2], 2 * ws[3], seed=1)[..., ::2]  # inner stride 2
    pads = ((ws[2] // 2,) * 2,) * 2
    total = rand(1, ws[0], 5, 5, seed=3)
    want = total + naive_conv(x, np.ascontiguousarray(w), b, (1, 1), pads, (1, 1), 1)
    assert_close(conv.conv(x, w, b, (1, 1), pads, (1, 1), 1, add_to=total), want)
    assert_close(conv.conv(x, w, b, (1, 1), pads, (1, 1), 1), want - rand(1, ws[0], 5, 5, seed=3))


# --------------------------------------------------------------------------- attention and learned tensors
# Naive definitions: one query, head, window and token at a time, straight from the formulas (float64).

from cnncalc.forward import attention, learned  # noqa: E402


def rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def _naive_softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def naive_self_attention(x, heads, w_in, b_in, w_out, b_out, extra_k=(), extra_v=()):
    """softmax(q_i·k_j/√d) over the keys j, per sample, head and query i; then out_proj."""
    n, length, e = x.shape
    d = e // heads
    y = np.zeros_like(x)
    for s in range(n):
        q, k, v = np.split(x[s] @ w_in.T + b_in, 3, axis=-1)
        k = np.concatenate([k, *extra_k]) if len(extra_k) else k
        v = np.concatenate([v, *extra_v]) if len(extra_v) else v
        out = np.zeros((length, e))
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for i in range(length):
                weights = _naive_softmax(np.array([q[i, cols] @ k[j, cols] for j in range(len(k))]) / math.sqrt(d))
                out[i, cols] = sum(weights[j] * v[j, cols] for j in range(len(k)))
        y[s] = out @ w_out.T + b_out
    return y


def _split_attention(monkeypatch, split: bool) -> None:
    """Split (or not) every attention's work over two threads, however small (see forward/parallel.py)."""
    from cnncalc.forward import parallel
    monkeypatch.setattr(attention, "PARALLEL_SCORES", 0 if split else 1 << 60)
    monkeypatch.setattr(parallel, "TWO_CORES", split)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("bias_kv, zero", [(False, False), (True, False), (True, True), (False, True)])
def test_multihead_attention_vs_naive(monkeypatch, bias_kv, zero, split):
    _split_attention(monkeypatch, split)
    rng = np.random.default_rng(0)
    n, length, e, heads = 2, 5, 12, 3
    x, w_in, b_in, w_out, b_out = (rng.standard_normal(s) for s in ((n, length, e), (3 * e, e), (3 * e,), (e, e), (e,)))
    bias_k, bias_v = (rng.standard_normal((1, 1, e)) for _ in range(2)) if bias_kv else (None, None)
    extra_k = ([bias_k[0]] if bias_kv else []) + [np.zeros((1, e))] * zero
    extra_v = ([bias_v[0]] if bias_kv else []) + [np.zeros((1, e))] * zero
    ours = attention.multihead_attention(x, heads, w_in, b_in, w_out, b_out, bias_k, bias_v, zero)
    assert rel_err(ours, naive_self_attention(x, heads, w_in, b_in, w_out, b_out, extra_k, extra_v)) < 1e-12


def naive_window_attention(x, window, shift, heads, table, w_qkv, b_qkv, w_proj, b_proj):
    """Per sample, window, head and token: the tokens of its window (after the roll) attend to each
    other, bias table[relative offset], -100 between tokens from different regions of the rolled map."""
    n, h, w, c = x.shape
    (wh, ww), d = window, c // heads
    ph, pw = -(-h // wh) * wh, -(-w // ww) * ww
    shift = [0 if win >= size else s for s, win, size in zip(shift, window, (ph, pw))]
    padded = np.zeros((n, ph, pw, c))
    padded[:, :h, :w] = x
    rolled = np.roll(padded, (-shift[0], -shift[1]), axis=(1, 2))

    def region(i, size, win, s):   # torchvision's three bands along an axis: [0, size-win), [size-win, size-s), rest
        return 0 if i < size - win else (1 if s == 0 or i < size - s else 2)

    out = np.zeros_like(rolled)
    for s in range(n):
        for r0 in range(0, ph, wh):
            for c0 in range(0, pw, ww):
                cells = [(r0 + a, c0 + b) for a in range(wh) for b in range(ww)]
                tokens = np.array([rolled[s, i, j] for i, j in cells])
                qkv = tokens @ w_qkv.T + b_qkv
                q, k, v = qkv[:, :c], qkv[:, c:2 * c], qkv[:, 2 * c:]
                mixed = np.zeros((len(cells), c))
                for head in range(heads):
                    cols = slice(head * d, (head + 1) * d)
                    for a, (i, j) in enumerate(cells):
                        scores = []
                        for b, (k_i, k_j) in enumerate(cells):
                            offset = (i - k_i + wh - 1) * (2 * ww - 1) + (j - k_j + ww - 1)
                            score = q[a, cols] @ k[b, cols] / math.sqrt(d) + table[offset, head]
                            if any(shift) and (region(i, ph, wh, shift[0]), region(j, pw, ww, shift[1])) != \
                                    (region(k_i, ph, wh, shift[0]), region(k_j, pw, ww, shift[1])):
                                score -= 100.0
                            scores.append(score)
                        weights = _naive_softmax(np.array(scores))
                        mixed[a, cols] = weights @ v[:, cols]
                projected = mixed @ w_proj.T + b_proj
                for a, (i, j) in enumerate(cells):
                    out[s, i, j] = projected[a]
    return np.roll(out, (shift[0], shift[1]), axis=(1, 2))[:, :h, :w]


@pytest.mark.parametrize("size, window, shift, heads", [((6, 6), (3, 3), (1, 1), 2), ((5, 7), (2, 3), (1, 2), 1),
                                                        ((4, 5), (2, 5), (1, 0), 2), ((3, 3), (4, 4), (2, 2), 1)])
@pytest.mark.parametrize("split, batch", [(False, 2), (True, 2), (True, 1)])
def test_shifted_window_attention_vs_naive(monkeypatch, size, window, shift, heads, split, batch):
    _split_attention(monkeypatch, split)
    rng = np.random.default_rng(1)
    c = 4
    (wh, ww) = window
    x = rng.standard_normal((batch, *size, c))
    table = rng.standard_normal(((2 * wh - 1) * (2 * ww - 1), heads))
    w_qkv, b_qkv, w_proj, b_proj = (rng.standard_normal(s) for s in ((3 * c, c), (3 * c,), (c, c), (c,)))
    index = attention.relative_position_index(window)
    ours = attention.shifted_window_attention(x, window, shift, heads, table, index, w_qkv, b_qkv, w_proj, b_proj)
    assert rel_err(ours, naive_window_attention(x, window, shift, heads, table, w_qkv, b_qkv, w_proj, b_proj)) < 1e-12


class _PermuteLike:
    """A permute layer's one method the kernel calls."""
    def __init__(self, perm):
        self._perm = perm

    def perm(self, shape):
        return self._perm


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_permute_kernel_is_numpy_transpose(perm, dtype):
    x = np.arange(2 * 3 * 4 * 5).astype(dtype).reshape(2, 3, 4, 5)
    for source in (x, x[:, :, ::2], x[::-1]):  # contiguous or not
        expected = np.transpose(source, (0, *(a + 1 for a in perm)))
        ours = reshape._permute(_PermuteLike(perm), source, {}, False)
        assert ours.flags.c_contiguous and np.array_equal(ours, expected)


def test_permute_turns_are_matrix_transposes():
    assert [reshape._turn(p) for p in [(1, 2, 0), (2, 0, 1), (1, 0), (0, 1, 2), (2, 1, 0), (0, 2, 1)]] == [1, 2, 1, 0, 0, 0]


def test_masked_softmax_has_no_subnormal_weights():
    # Swin's -100 mask makes float32 weights of e-44, subnormal (10-100x slower to multiply on x86):
    # with the floor they are e-80 relative to their row's largest at least, and the rows still agree
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((4, 2, 9, 9)).astype(np.float32)
    scores[..., ::2, 1::2] -= 100.0
    expected = np.exp(scores.astype(np.float64) - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    ours = attention.softmax_last(scores.copy(), attention.MASKED_FLOOR)
    assert np.abs(ours - expected).max() < 1e-7
    assert (np.abs(ours) >= np.finfo(np.float32).tiny).all()
    plain = attention.softmax_last(scores.copy())
    assert ((np.abs(plain) < np.finfo(np.float32).tiny) & (plain != 0)).any()  # what the floor avoids


@pytest.mark.parametrize("shift", [(0, 0), (3, 0), (0, 4), (3, 4), (-3, -4), (7, 9), (-1, 2), (8, -10)])
def test_rolled_is_numpy_roll(shift):
    x = np.arange(2 * 7 * 9 * 3, dtype=np.float32).reshape(2, 7, 9, 3)
    assert np.array_equal(attention._rolled(x, shift), np.roll(x, shift, axis=(1, 2)))


def test_shift_mask_is_made_once_and_read_only():
    mask = attention.shift_mask((14, 14), (7, 7), (3, 3), np.dtype(np.float32))
    assert mask is attention.shift_mask((14, 14), (7, 7), (3, 3), np.dtype(np.float32))
    assert not mask.flags.writeable and mask.shape == (4, 49, 49)


def test_relative_position_index_vs_naive():
    wh, ww = 3, 4
    cells = [(a, b) for a in range(wh) for b in range(ww)]
    naive = [(i - k + wh - 1) * (2 * ww - 1) + (j - m + ww - 1) for i, j in cells for k, m in cells]
    assert attention.relative_position_index((wh, ww)).tolist() == naive


def test_patch_merging_vs_naive():
    rng = np.random.default_rng(2)
    x, w, g, b = rng.standard_normal((2, 5, 4, 3)), rng.standard_normal((6, 12)), rng.standard_normal(12), \
        rng.standard_normal(12)
    expected = np.zeros((2, 3, 2, 6))
    for s, i, j in itertools.product(range(2), range(3), range(2)):
        patch = [x[s, 2 * i + di, 2 * j + dj] if 2 * i + di < 5 and 2 * j + dj < 4 else np.zeros(3)
                 for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1))]     # torchvision's order: x0, x1, x2, x3
        v = np.concatenate(patch)
        v = (v - v.mean()) / math.sqrt(v.var() + 1e-5) * g + b
        expected[s, i, j] = w @ v
    assert rel_err(attention.patch_merging(x, w, g, b, 1e-5), expected) < 1e-12


def test_layer_norm_2d_and_class_token_vs_naive():
    rng = np.random.default_rng(3)
    x, g, b = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal(5), rng.standard_normal(5)
    expected = np.zeros_like(x)
    for s, i, j in itertools.product(range(2), range(3), range(4)):
        v = x[s, :, i, j]
        expected[s, :, i, j] = (v - v.mean()) / math.sqrt(v.var() + 1e-6) * g + b
    assert rel_err(norm.layer_norm_2d(x, g, b, 1e-6), expected) < 1e-12
    tokens, token = rng.standard_normal((2, 4, 5)), rng.standard_normal((1, 1, 5))
    y = learned.class_token(tokens, token)
    assert y.shape == (2, 5, 5) and (y[:, 0] == token[0, 0]).all() and (y[:, 1:] == tokens).all()
