"""The kernel of ``cnncalc/layers/linear.py``: a fully connected layer as one GEMM."""
from __future__ import annotations

import numpy as np

from ..layers.linear import Linear
from . import blas, parallel
from .base import _float_dtype, kernel
from .memory import _empty, _scratch

#: From 2 to SKINNY_ROWS rows the GEMM runs as ``weight @ x.T`` and its (out, rows) result is
#: transposed back: OpenBLAS streams a large weight faster as the GEMM's left operand.  Two
#: threads, best of 9, ``x @ W.T`` against this: alexnet's fc6 (9216 -> 4096) at 8, 32, 128 rows
#: 13.7 / 12.1, 19.8 / 16.2, 41.6 / 39.4 ms; its fc7 at 32 rows 8.5 / 6.4; 2048 -> 1000 at 16 rows
#: 0.68 / 0.45; one thread (a lane of samples) 9216 -> 4096 at 16 rows 31.1 / 23.4.  At 256 rows
#: the two are level or this is slower; at one row NumPy calls a matrix-vector product anyway.
SKINNY_ROWS = 128
#: A weight of at least this many bytes, multiplied while OpenBLAS is held to one thread outside any
#: half (a pass's weight-bound tail after its lanes of samples, ``session._in_lanes``), is split by
#: output features over two threads (``parallel.halves``): the layer gets both cores without OpenBLAS's
#: own workers, which spin on a core for about 0.1 s after each threaded GEMM -- into the next
#: pass's lanes.  alexnet at batch 32, best of 3, four rounds: 0.202-0.253 s with the tail on OpenBLAS's
#: threads (its stem 29-57 ms in a lane), 0.217-0.222 on one thread; split, 20 passes in a row
#: 0.180-0.201 s (the stem 28-29 ms).
SPLIT_WEIGHT_BYTES = 1 << 20


def linear(x, weight, bias):
    """``x (..., in) @ weight (out, in).T + bias (out,)`` -> ``(..., out)`` as one GEMM."""
    *lead, n_in = x.shape
    dtype = _float_dtype(x, weight)
    x2 = np.asarray(x, dtype).reshape(-1, n_in)  # (batch, in): all leading axes in one GEMM
    weight = np.asarray(weight, dtype)
    rows, n_out = x2.shape[0], weight.shape[0]
    y = _empty((rows, n_out), dtype)
    skinny = 2 <= rows <= SKINNY_ROWS and blas.available()
    y_t = _scratch("linear", (n_out, rows), dtype) if skinny else None

    def features(part: slice) -> None:
        if skinny:
            np.matmul(weight[part], x2.T, out=y_t[part])
        else:
            np.matmul(x2, weight[part].T, out=y[:, part])
    if weight.nbytes >= SPLIT_WEIGHT_BYTES and blas.limited() and parallel.TWO_CORES and not parallel.in_half():
        parallel.halves(features, n_out)
    else:
        features(slice(None))
    if skinny and not blas.transpose(y_t, y):
        np.copyto(y, y_t.T)
    if bias is not None:
        y += np.asarray(bias, dtype)
    return y.reshape(*lead, n_out)  # back to (..., out)


@kernel(Linear)
def _linear(layer, x, p, owned):
    return linear(x, p["weight"], p.get("bias"))
