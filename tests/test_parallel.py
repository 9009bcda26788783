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

