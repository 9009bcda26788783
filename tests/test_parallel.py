"""cnncalc.forward.parallel: a kernel's two halves at once, each part of the range exactly once."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from cnncalc.forward import attention, parallel


@pytest.mark.parametrize("two", [True, False])
@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_halves_cover_the_range_once(monkeypatch, two, n):
    monkeypatch.setattr(parallel, "TWO_CORES", two)
    seen, threads = [], set()

    def run(part):
        seen.extend(range(n)[part])
        threads.add(threading.get_ident())
    parallel.halves(run, n)
    assert sorted(seen) == list(range(n))
    assert len(threads) == (2 if two and n >= 2 else 1)


def test_halves_inside_halves_run_in_their_thread(monkeypatch):
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    inner = []
    parallel.halves(lambda part: parallel.halves(lambda p: inner.append((part, p)), 4), 2)
    assert sorted((a.start, b.start, b.stop) for a, b in inner) == [(0, 0, 4), (1, 0, 4)]


def test_an_exception_in_either_half_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(parallel, "TWO_CORES", True)

    def run(part):
        if part.start:
            raise ValueError("second half")
    with pytest.raises(ValueError, match="second half"):
        parallel.halves(run, 4)


@pytest.mark.parametrize("shape, biases", [
    ((2, 3, 5, 4), 0),            # samples first: split by sample
    ((1, 4, 5, 4), 1),            # one sample: split by head, a per-head bias cut with it
    ((2, 6, 3, 5, 4), 2),         # Swin's shifted windows: (sample, window, head), a per-window mask
    ((1, 6, 3, 5, 4), 2)])        # one sample: split by window, the mask cut, the per-head bias whole
def test_attention_split_over_two_threads_is_the_same(monkeypatch, shape, biases):
    rng = np.random.default_rng(0)
    *lead, heads, length, d = shape
    q, v = rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32)
    kt = rng.standard_normal((*lead, heads, d, length), dtype=np.float32)
    extra = [rng.standard_normal((heads, length, length), dtype=np.float32),
             rng.standard_normal((lead[-1], 1, length, length), dtype=np.float32)][:biases]
    monkeypatch.setattr(attention, "PARALLEL_SCORES", 1 << 60)
    whole = attention.attend(q, kt, v, extra).copy()
    monkeypatch.setattr(attention, "PARALLEL_SCORES", 0)
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    split = attention.attend(q, kt, v, extra)
    np.testing.assert_allclose(split, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bias_kv, zero", [(False, False), (True, True)])
def test_multihead_attention_split_matches_the_naive_definition(monkeypatch, bias_kv, zero):
    from test_kernels import naive_self_attention, rel_err
    monkeypatch.setattr(attention, "PARALLEL_SCORES", 0)
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    rng = np.random.default_rng(4)
    n, length, e, heads = 3, 5, 12, 3
    x, w_in, b_in, w_out, b_out = (rng.standard_normal(s) for s in ((n, length, e), (3 * e, e), (3 * e,), (e, e), (e,)))
    bias_k, bias_v = (rng.standard_normal((1, 1, e)) for _ in range(2)) if bias_kv else (None, None)
    extra_k = ([bias_k[0]] if bias_kv else []) + [np.zeros((1, e))] * zero
    extra_v = ([bias_v[0]] if bias_kv else []) + [np.zeros((1, e))] * zero
    ours = attention.multihead_attention(x, heads, w_in, b_in, w_out, b_out, bias_k, bias_v, zero)
    assert rel_err(ours, naive_self_attention(x, heads, w_in, b_in, w_out, b_out, extra_k, extra_v)) < 1e-12


@pytest.mark.parametrize("batch, size, window, shift, heads", [(2, (6, 6), (3, 3), (1, 1), 2), (1, (5, 7), (2, 3), (1, 2), 1),
                                                               (1, (4, 4), (2, 2), (0, 0), 2)])
def test_window_attention_split_matches_the_naive_definition(monkeypatch, batch, size, window, shift, heads):
    from test_kernels import naive_window_attention, rel_err
    monkeypatch.setattr(attention, "PARALLEL_SCORES", 0)
    monkeypatch.setattr(parallel, "TWO_CORES", True)
    rng = np.random.default_rng(5)
    c, (wh, ww) = 4, window
    x = rng.standard_normal((batch, *size, c))
    table = rng.standard_normal(((2 * wh - 1) * (2 * ww - 1), heads))
    w_qkv, b_qkv, w_proj, b_proj = (rng.standard_normal(s) for s in ((3 * c, c), (3 * c,), (c, c), (c,)))
    index = attention.relative_position_index(window)
    ours = attention.shifted_window_attention(x, window, shift, heads, table, index, w_qkv, b_qkv, w_proj, b_proj)
    assert rel_err(ours, naive_window_attention(x, window, shift, heads, table, w_qkv, b_qkv, w_proj, b_proj)) < 1e-12
