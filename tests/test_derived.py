"""cnncalc.derived: values computed from weight arrays, cached while those arrays live and unchanged."""
from __future__ import annotations

import gc

import numpy as np

from cnncalc import derived as D


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
