"""Winograd F(4x4, 3x3) convolution in cnncalc.forward.conv: same results as the direct definition.

The path is normally taken only by wide float32 layers (see conv.winograd_suits); the tests
lower its thresholds so that small shapes go through it, and check that it really ran.
Reference: a float64 sum over the nine taps of shifted slices of the zero-padded input (and
torch's conv2d where installed).  Tolerance: 1e-4 relative, as for every float32 kernel.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnncalc.forward import conv


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def taps_reference(x, w, b, pads):
    """Direct definition in float64: y[n, o] = b[o] + sum over taps (ky, kx) of w[o, :, ky, kx] . xp[n, :, ky:, kx:]."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), *pads))
    Ho, Wo = xp.shape[2] - 2, xp.shape[3] - 2
    y = np.zeros((x.shape[0], w.shape[0], Ho, Wo))
    for ky in range(3):
        for kx in range(3):
            y += np.einsum("oc,nchw->nohw", w[:, :, ky, kx].astype(np.float64), xp[:, :, ky:ky + Ho, kx:kx + Wo])
    return y + (0 if b is None else b.astype(np.float64)[:, None, None])


def relative_error(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Thresholds lowered so every float32 3x3 stride-1 conv takes the Winograd path; counts its calls."""
    monkeypatch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv, "WINOGRAD_ONE_THREAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(conv, "WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv, "WINOGRAD_MIN_SIDE", 1)
    calls = []
    real = conv._conv_winograd
    monkeypatch.setattr(conv, "_conv_winograd", lambda *args: (calls.append(args[0].shape), real(*args)))
    return calls


CASES = [  # (N, C_in, C_out, H, W), per-axis (lo, hi) padding
    ((1, 8, 16, 8, 8), ((1, 1), (1, 1))),       # output sides multiples of 4: written in place
    ((2, 5, 3, 7, 9), ((1, 1), (1, 1))),        # 7x9: partial tiles, cropped from a canvas
    ((1, 4, 6, 6, 5), ((0, 2), (2, 0))),        # asymmetric ('same'-like) padding
    ((3, 3, 2, 4, 4), ((0, 0), (0, 0))),        # no padding: a 2x2 output, one tile
    ((1, 2, 2, 1, 1), ((1, 1), (1, 1))),        # a single pixel
    ((2, 16, 4, 13, 6), ((2, 3), (1, 1))),      # more padding than the kernel needs
]


@pytest.mark.parametrize("shape, pads", CASES)
def test_winograd_equals_the_direct_definition(winograd_everywhere, shape, pads):
    N, C, Co, H, W = shape
    x, w, b = rand(N, C, H, W), rand(Co, C, 3, 3, seed=1), rand(Co, seed=2)
    got = conv.conv(x, w, b, (1, 1), pads, (1, 1), 1)
    assert winograd_everywhere == [x.shape]
    want = taps_reference(x, w, b, pads)
    assert got.shape == want.shape and got.dtype == np.float32
    assert relative_error(got, want) <= 1e-4


@pytest.mark.parametrize("shape, pads", CASES[:2])
def test_winograd_adds_into_add_to(winograd_everywhere, shape, pads):
    """With add_to (a residual's sum) the tiles are added into it, whole or cropped from the canvas."""
    N, C, Co, H, W = shape
    x, w, b = rand(N, C, H, W), rand(Co, C, 3, 3, seed=1), rand(Co, seed=2)
    want = taps_reference(x, w, b, pads)
    total = rand(*want.shape, seed=3)
    assert conv.conv(x, w, b, (1, 1), pads, (1, 1), 1, add_to=total) is total
    assert winograd_everywhere == [x.shape]
    assert relative_error(total, want + rand(*want.shape, seed=3)) <= 1e-4


def test_winograd_equals_torch_on_a_vgg_layer():
    """A real qualifying layer (no lowered thresholds): 256 channels at 28x28, against torch."""
    torch = pytest.importorskip("torch")
    x, w, b = rand(1, 256, 28, 28), rand(256, 256, 3, 3, seed=1) / 48, rand(256, seed=2)
    assert conv.winograd_suits(x.shape, w.shape, (1, 1), (1, 1), 1, (28, 28), np.float32)
    got = conv.conv(x, w, b, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    with torch.no_grad():
        want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1)
    assert relative_error(got, want.numpy()) <= 1e-4


@pytest.mark.parametrize("chunk_bytes", [1, 36 * 16 * 9 * 4 * 2])  # one sample per chunk; two
def test_winograd_goes_through_the_batch_in_chunks(winograd_everywhere, monkeypatch, chunk_bytes):
    """Samples go through in chunks of WINOGRAD_CHUNK_BYTES of transforms (5 samples of 9 tiles,
    16 channels: chunks of 1 or 2, the last one short), into a fresh output or added into add_to."""
    monkeypatch.setattr(conv, "WINOGRAD_CHUNK_BYTES", chunk_bytes)
    x, w, b = rand(5, 8, 11, 10), rand(16, 8, 3, 3, seed=1), rand(16, seed=2)
    pads = ((1, 1), (1, 1))
    assert conv.winograd_chunk(x.shape, w.shape, (11, 10)) == (1 if chunk_bytes == 1 else 2)
    want = taps_reference(x, w, b, pads)
    assert relative_error(conv.conv(x, w, b, (1, 1), pads, (1, 1), 1), want) <= 1e-4
    total = rand(*want.shape, seed=3)
    conv.conv(x, w, b, (1, 1), pads, (1, 1), 1, add_to=total)
    assert relative_error(total, want + rand(*want.shape, seed=3)) <= 1e-4
    assert winograd_everywhere == [x.shape, x.shape]


@pytest.mark.parametrize("change", [
    dict(dtype=np.float64), dict(stride=(2, 1)), dict(dilation=(1, 2)), dict(groups=2),
    dict(kernel=(3, 1)), dict(channels=64), dict(out_size=(14, 14)), dict(out_size=(28, 27)),
    dict(out_size=(128, 128))])
def test_winograd_is_chosen_only_where_it_pays(change):
    """256 channels at 28x28 qualify, and so do 128 channels and a batch of 64 (in chunks); float64,
    strides, dilation, groups, other kernels, fewer than 128 channels, outputs under 28 on a side
    (where two threads gain nothing from it) and transforms of one sample too large for the cache
    (128x128: 36 MiB) do not -- on two threads per GEMM."""
    base = dict(dtype=np.float32, stride=(1, 1), dilation=(1, 1), groups=1, kernel=(3, 3), channels=256,
                out_size=(28, 28), batch=1)

    def suits(a, one_thread=False):
        return conv.winograd_suits((a["batch"], a["channels"], 30, 30), (256, a["channels"] // a["groups"], *a["kernel"]),
                                   a["stride"], a["dilation"], a["groups"], a["out_size"], a["dtype"], one_thread)
    assert suits(base) and suits({**base, "channels": 128}) and suits({**base, "batch": 64})
    assert not suits({**base, **change})
    # each GEMM on one thread (a lane of samples, one core): from 64 channels on any side, 16 tiles still
    assert suits({**base, **change}, True) is (change in (dict(channels=64), dict(out_size=(14, 14)), dict(out_size=(28, 27))))


def test_winograd_takes_one_thread_limits_in_a_lane(monkeypatch):
    """In a lane or half (BLAS single-threaded) or on one core, alexnet's 192 channels at 13x13 qualify."""
    from cnncalc.forward import parallel
    shape, w_shape = (1, 192, 13, 13), (384, 192, 3, 3)
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    assert not conv.winograd_suits(shape, w_shape, (1, 1), (1, 1), 1, (13, 13), np.float32)
    seen = []
    parallel.halves(lambda part: seen.append(conv.winograd_suits(shape, w_shape, (1, 1), (1, 1), 1, (13, 13),
                                                                 np.float32)), 2)
    assert seen == [True, True]
    monkeypatch.setattr(parallel, "TWO_CORES", False)
    assert conv.winograd_suits(shape, w_shape, (1, 1), (1, 1), 1, (13, 13), np.float32)


def test_transformed_filters_are_prepared_once_per_weight_array(winograd_everywhere, monkeypatch):
    x, w = rand(1, 4, 8, 8), rand(5, 4, 3, 3, seed=1)
    pads = ((1, 1), (1, 1))
    transforms = []
    real = np.matmul

    def counting_matmul(a, b, *args, **kwargs):  # the filter transform is the matmul with _WINO_FILTER
        transforms.extend([1] if a is conv._WINO_FILTER else [])
        return real(a, b, *args, **kwargs)
    monkeypatch.setattr(np, "matmul", counting_matmul)
    first = conv.conv(x, w, None, (1, 1), pads, (1, 1), 1)
    np.testing.assert_array_equal(conv.conv(x, w, None, (1, 1), pads, (1, 1), 1), first)
    assert len(transforms) == 1  # reused, not recomputed
    w *= -2  # changed in place: the fingerprint no longer matches, so the filters are redone
    assert relative_error(conv.conv(x, w, None, (1, 1), pads, (1, 1), 1), -2 * first) <= 1e-6
    assert len(transforms) == 2


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 9), co=st.integers(1, 9), h=st.integers(1, 19), w=st.integers(1, 19),
       pads=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
       seed=st.integers(0, 2 ** 16), chunk=st.sampled_from([1, 4000, 4 << 20]))
def test_winograd_property(n, c, co, h, w, pads, seed, chunk):
    pads = ((pads[0], pads[1]), (pads[2], pads[3]))
    if h + sum(pads[0]) < 3 or w + sum(pads[1]) < 3:
        return  # no output: the kernel is larger than the padded input
    saved = (conv.WINOGRAD_MIN_CHANNELS, conv.WINOGRAD_MIN_SIDE, conv.WINOGRAD_MIN_TILES, conv.WINOGRAD_CHUNK_BYTES,
             conv.WINOGRAD_ONE_THREAD_MIN_CHANNELS)
    (conv.WINOGRAD_MIN_CHANNELS, conv.WINOGRAD_MIN_SIDE, conv.WINOGRAD_MIN_TILES, conv.WINOGRAD_CHUNK_BYTES,
     conv.WINOGRAD_ONE_THREAD_MIN_CHANNELS) = 1, 1, 1, chunk, 1
    try:
        x, weight, bias = rand(n, c, h, w, seed=seed), rand(co, c, 3, 3, seed=seed + 1), rand(co, seed=seed + 2)
        got = conv.conv(x, weight, bias, (1, 1), pads, (1, 1), 1)
    finally:
        (conv.WINOGRAD_MIN_CHANNELS, conv.WINOGRAD_MIN_SIDE, conv.WINOGRAD_MIN_TILES, conv.WINOGRAD_CHUNK_BYTES,
         conv.WINOGRAD_ONE_THREAD_MIN_CHANNELS) = saved
    assert relative_error(got, taps_reference(x, weight, bias, pads)) <= 1e-4
