"""cnncalc.forward.derived: values computed from weight arrays, cached while those arrays live and unchanged."""
from __future__ import annotations

import gc

import numpy as np

from cnncalc.forward import derived as D


def test_same_arrays_reuse_the_value_and_none_is_a_source_position():
    a, b = np.arange(6.0), np.ones(4)
    calls = []

    def compute():
        calls.append(1)
        return a.sum() + b.sum()
    assert D.derived("sum", (a, None, b), compute) == 19.0
    assert D.derived("sum", (a, None, b), compute) == 19.0
    assert len(calls) == 1
    assert D.derived("sum", (a, b, None), compute) == 19.0  # another arrangement is another value
    assert D.derived("other kind", (a, None, b), compute) == 19.0
    assert len(calls) == 3


def test_a_changed_or_replaced_array_is_prepared_again():
    a = np.arange(10_000, dtype=np.float32)
    assert D.derived("max", (a,), a.max) == 9999
    a[:] = 5  # every sampled value changes
    assert D.derived("max", (a,), a.max) == 5
    b = a.copy()  # equal contents, another array
    assert D.derived("max", (b,), lambda: -1) == -1


def test_the_value_is_dropped_with_its_source_array():
    a = np.zeros(3)
    D.derived("kept", (a,), lambda: "value")
    key = ("kept", id(a))
    assert key in D._cache
    del a
    gc.collect()
    assert key not in D._cache


def test_values_made_here_are_read_only_and_need_no_fingerprint():
    """A computed array is sealed: read-only, and as the source of a further value it is known by
    identity alone (no sampling); a value that is a view of a source array stays sampled."""
    a = np.arange(100.0)
    doubled = D.derived("double", (a,), lambda: a * 2)
    assert not doubled.flags.writeable and D.fingerprint(doubled) == ("made here",)
    calls = []
    for _ in range(2):
        assert D.derived("and again", (doubled,), lambda: calls.append(1) or doubled * 2)[99] == 396
    assert calls == [1]
    square = D.derived("square", (a,), lambda: a.reshape(10, 10))  # a view of the caller's array
    assert square.flags.writeable and D.fingerprint(square) != ("made here",)
    pair = D.derived("pair", (a,), lambda: {"low": a[:50] * 1, "high": a[50:] * 1})
    assert not any(v.flags.writeable for v in pair.values())
