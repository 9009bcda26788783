"""The kernel of ``cnncalc/layers/linear.py``: a fully connected layer as one GEMM."""
from __future__ import annotations

import numpy as np

from ..layers.linear import Linear
from . import blas
from .base import _float_dtype, kernel
from .memory import _empty, _scratch

#: From 2 to SKINNY_ROWS rows the GEMM runs as ``weight @ x.T`` and its (out, rows) result is
#: transposed back: OpenBLAS streams a large weight faster as the GEMM's left operand.  Two
#: threads, best of 9, ``x @ W.T`` against this: alexnet's fc6 (9216 -> 4096) at 8, 32, 128 rows
#: 13.7 / 12.1, 19.8 / 16.2, 41.6 / 39.4 ms; its fc7 at 32 rows 8.5 / 6.4; 2048 -> 1000 at 16 rows
#: 0.68 / 0.45; one thread (a lane of samples) 9216 -> 4096 at 16 rows 31.1 / 23.4.  At 256 rows
#: the two are level or this is slower; at one row NumPy calls a matrix-vector product anyway.
SKINNY_ROWS = 128


def linear(x, weight, bias):
    """``x (..., in) @ weight (out, in).T + bias (out,)`` -> ``(..., out)`` as one GEMM."""
    *lead, n_in = x.shape
    dtype = _float_dtype(x, weight)
    x2 = np.asarray(x, dtype).reshape(-1, n_in)  # (batch, in): all leading axes in one GEMM
    weight = np.asarray(weight, dtype)
    rows, n_out = x2.shape[0], weight.shape[0]
    y = _empty((rows, n_out), dtype)
    if 2 <= rows <= SKINNY_ROWS and blas.available():
        y_t = _scratch("linear", (n_out, rows), dtype)
        np.matmul(weight, x2.T, out=y_t)
        if not blas.transpose(y_t, y):
            np.copyto(y, y_t.T)
    else:
        np.matmul(x2, weight.T, out=y)
    if bias is not None:
        y += np.asarray(bias, dtype)
    return y.reshape(*lead, n_out)  # back to (..., out)


@kernel(Linear)
def _linear(layer, x, p, owned):
    return linear(x, p["weight"], p.get("bias"))
