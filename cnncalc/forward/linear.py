"""The kernel of ``cnncalc/layers/linear.py``: a fully connected layer as one GEMM."""
from __future__ import annotations

import numpy as np

from ..layers.linear import Linear
from .base import _float_dtype, kernel
from .memory import _empty


def linear(x, weight, bias):
    """``x (..., in) @ weight (out, in).T + bias (out,)`` -> ``(..., out)`` as one GEMM."""
    *lead, n_in = x.shape
    dtype = _float_dtype(x, weight)
    x2 = np.asarray(x, dtype).reshape(-1, n_in)  # (batch, in): all leading axes in one GEMM
    y = _empty((x2.shape[0], weight.shape[0]), dtype)
    np.matmul(x2, np.asarray(weight, dtype).T, out=y)
    if bias is not None:
        y += np.asarray(bias, dtype)
    return y.reshape(*lead, weight.shape[0])  # back to (..., out)


@kernel(Linear)
def _linear(layer, x, p, owned):
    return linear(x, p["weight"], p.get("bias"))
