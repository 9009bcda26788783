"""cnncalc.forward.blas: ``c += a @ b`` in one BLAS call (beta = 1), and a blocked transpose, or False
when that cannot be done.

Worked example: a (2x3) of ones times b (3x4) of ones is 3 in every entry; added to c of ones,
c becomes 4 everywhere -- and a (2x3) block of a larger matrix, read through its leading
dimension, gives the same.
"""
from __future__ import annotations

import numpy as np
import pytest

from cnncalc.forward import blas

needs_blas = pytest.mark.skipif(not blas.available(), reason="NumPy's scipy-openblas not found")


def rand(*shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@needs_blas
def test_worked_example_ones():
    a, b, c = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
    assert blas.gemm_add(a, b, c)
    np.testing.assert_array_equal(c, np.full((2, 4), 4.0, np.float32))


@needs_blas
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("rows_a, cols_a, rows_b, cols_b, rows_c, cols_c", [
    ((2, 7), (5, 25), (3, 23), (10, 41), (1, 6), (7, 38)),  # (5x20) @ (20x31): row strides longer than rows
    ((4, 5), (0, 30), (0, 30), (0, 50), (0, 1), (10, 60)),  # a single row
    ((0, 9), (3, 4), (7, 8), (2, 3), (2, 11), (5, 6)),      # K = 1, a single column
])
def test_blocks_of_larger_arrays_through_their_leading_dimension(dtype, rtol, rows_a, cols_a, rows_b, cols_b,
                                                                 rows_c, cols_c):
    big_a, big_b, big_c = rand(9, 40, dtype=dtype), rand(30, 50, seed=1, dtype=dtype), rand(12, 60, seed=2, dtype=dtype)
    block_c = slice(*rows_c), slice(*cols_c)
    a, b, c = big_a[slice(*rows_a), slice(*cols_a)], big_b[slice(*rows_b), slice(*cols_b)], big_c[block_c]
    want = c + a.astype(np.float64) @ b.astype(np.float64)
    before = big_c.copy()
    assert blas.gemm_add(a, b, c)
    np.testing.assert_allclose(c, want, rtol=rtol, atol=rtol)
    before[block_c] = c
    np.testing.assert_array_equal(big_c, before)  # nothing outside the block was written


@needs_blas
def test_empty_products_add_nothing():
    c = rand(3, 4)
    before = c.copy()
    assert blas.gemm_add(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), c)
    np.testing.assert_array_equal(c, before)


@pytest.mark.parametrize("case", ["strided columns", "overlap", "read-only", "mixed dtypes", "no blas"])
def test_what_blas_cannot_take_returns_false_and_leaves_c_alone(monkeypatch, case):
    a, b, c = rand(4, 6), rand(6, 5, seed=1), rand(4, 5, seed=2)
    if case == "strided columns":
        b = rand(6, 10, seed=1)[:, ::2]
    elif case == "overlap":
        a, b = c[:, :4], rand(4, 5, seed=1)  # a is part of c
    elif case == "read-only":
        c.flags.writeable = False
    elif case == "mixed dtypes":
        a = a.astype(np.float64)
    else:
        monkeypatch.setattr(blas, "_GEMMS", {})
    before = c.copy()
    assert blas.gemm_add(a, b, c) is False
    np.testing.assert_array_equal(c, before)


def test_shapes_that_do_not_chain_are_an_error():
    if not blas.available():
        pytest.skip("NumPy's scipy-openblas not found")
    with pytest.raises(ValueError, match="gemm_add"):
        blas.gemm_add(rand(2, 3), rand(4, 5), rand(2, 5))


def test_cnncalc_blas_numpy_turns_it_off(monkeypatch):
    monkeypatch.setenv("CNNCALC_BLAS", "numpy")
    assert blas._load() == ({}, {}, ())


@needs_blas
def test_single_threaded_sets_openblas_to_one_thread_and_back():
    get, _ = blas._THREADS
    before = get()
    with blas.single_threaded():
        assert get() == 1
        c = rand(64, 64)
        assert blas.gemm_add(rand(64, 64), rand(64, 64), c)
    assert get() == before
    with pytest.raises(KeyError), blas.single_threaded():
        raise KeyError("restored even so")
    assert get() == before


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, cols", [(3, 4), (1, 5), (5, 1), (96, 3136), (0, 3)])
def test_transpose_is_numpy_transpose(rows, cols, dtype):
    a = rand(rows, cols, dtype=dtype)
    out = np.full((cols, rows), np.nan, dtype)
    assert blas.transpose(a, out)
    np.testing.assert_array_equal(out, a.T)


@needs_blas
def test_transpose_refuses_what_it_cannot_do():
    a = rand(3, 4)
    for out in (np.zeros((3, 4), np.float32), np.zeros((4, 3), np.float64), np.zeros((3, 4), np.float32).T):
        assert not blas.transpose(a, out)          # not a's transposed shape, dtype, or not contiguous
    assert not blas.transpose(a[:, ::2], np.zeros((2, 3), np.float32))
    assert not blas.transpose(rand(3, 4, dtype=np.int64), np.zeros((4, 3), np.int64))  # (not float)
    square = rand(3, 3)
    assert not blas.transpose(square, square)   # in place
