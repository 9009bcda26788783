"""Activation kernels (``cnncalc/layers/activation.py``): ReLU, GELU, sigmoid, softmax, ...

Elementwise on any shape; the dtype of the input is kept.
"""
from __future__ import annotations

import math

import numpy as np

from ..layers.base import lookup
from .base import _float_dtype, _view, kernel
from .memory import _empty
from .parallel import in_half


def _like(x) -> np.ndarray:
    """A new uninitialised array shaped like ``x`` (see ``_empty``)."""
    x = np.asarray(x)
    return _empty(x.shape, x.dtype)


def relu(x):
    """``max(x, 0)`` elementwise (NaN propagates)."""
    return np.maximum(x, 0, out=_like(x))


def relu6(x):
    """``min(max(x, 0), 6)`` elementwise."""
    return np.clip(x, 0, 6, out=_like(x))


def leaky_relu(x, negative_slope=0.01):
    """``x if x > 0 else negative_slope * x``."""
    def compute(v, out):
        np.multiply(v, negative_slope, out=out)
        np.copyto(out, v, where=v > 0)
    return _blockwise(x, compute)


def elu(x, alpha=1.0):
    """``x if x > 0 else alpha * (exp(x) - 1)``."""
    def compute(v, out):
        np.minimum(v, 0, out=out)
        np.expm1(out, out=out)
        out *= alpha
        np.copyto(out, v, where=v > 0)
    return _blockwise(x, compute)


# erf/erfc: W. J. Cody's rational Chebyshev approximations (Math. Comp. 23 (1969) 631-637; the
# coefficients of his SPECFUN routine CALERF), each a (numerator, denominator) pair of polynomial
# coefficients, highest power first.  The fits are finer than float64; rounding makes the error:
# at most 4.1 eps relative to math.erfc (tests/test_kernels.py).
#: erf(y) = y * P(y²) / Q(y²) for 0 <= y <= _ERF_SMALL_MAX
_ERF_SMALL = ((1.85777706184603153e-1, 3.16112374387056560e0, 1.13864154151050156e2,
               3.77485237685302021e2, 3.20937758913846947e3),
              (1.0, 2.36012909523441209e1, 2.44024637934444173e2, 1.28261652607737228e3,
               2.84423683343917062e3))
#: erfc(y) = exp(-y²) * P(y) / Q(y) for _ERF_SMALL_MAX < y <= _ERFC_MIDDLE_MAX
_ERFC_MIDDLE = ((2.15311535474403846e-8, 5.64188496988670089e-1, 8.88314979438837594e0,
                 6.61191906371416295e1, 2.98635138197400131e2, 8.81952221241769090e2,
                 1.71204761263407058e3, 2.05107837782607147e3, 1.23033935479799725e3),
                (1.0, 1.57449261107098347e1, 1.17693950891312499e2, 5.37181101862009858e2,
                 1.62138957456669019e3, 3.29079923573345963e3, 4.36261909014324716e3,
                 3.43936767414372164e3, 1.23033935480374942e3))
#: erfc(y) = exp(-y²) / y * (1/sqrt(pi) - w * P(w) / Q(w)), w = 1/y², for y > _ERFC_MIDDLE_MAX
_ERFC_TAIL = ((1.63153871373020978e-2, 3.05326634961232344e-1, 3.60344899949804439e-1,
               1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4),
              (1.0, 2.56852019228982242e0, 1.87295284992346047e0, 5.27905102951428412e-1,
               6.05183413124413191e-2, 2.33520497626869185e-3))
_ERF_SMALL_MAX, _ERFC_MIDDLE_MAX = 0.46875, 4.0
#: erfc(y) is below the smallest subnormal float64 from y ≈ 27.3: larger y (and inf) use this.
_ERFC_ZERO_FROM = 28.0
#: Bytes per block of an elementwise kernel's work values (``_blockwise``), so that its temporaries
#: stay in the L2 cache: GELU's float64 work on 4M float32 elements took 0.16 s in blocks of 32K
#: values, 0.26 s as whole arrays.  Not smaller: each block costs every pass a ufunc call, and the
#: float32 GELU's 30 passes took 4.2 ns a value in 256 KiB blocks, 3.9 in 512 KiB (ViT-B/16's GELUs
#: 34 -> 31 ms in the pass).
ELEMENTWISE_BYTES = 512 << 10
#: The same in a lane of samples (``parallel.in_half``), where the other lane's calls share the GIL
#: and a thread that waits for it is woken tens of microseconds later: fewer, longer calls.
#: convnext_tiny at batch 32, alternating, best of 2: 2.35, 2.37, 2.38 s against 2.80, 2.65, 2.32 in
#: 512 KiB blocks (its GELUs, one lane: 0.68-0.74 s against 0.84-0.94); vit_b_16 level (4.83-4.90
#: against 4.76-4.94), efficientnet_b0 and mobilenet_v3_large level; 4 MiB lost (2.64-2.71).
LANE_ELEMENTWISE_BYTES = 2 << 20


def _polyval(coeffs, t):
    """Horner's rule on array ``t``, ``coeffs`` from the highest power down (one new array)."""
    p = np.full_like(t, coeffs[0])
    for c in coeffs[1:]:
        p *= t
        p += c
    return p


def _rational(fit, t):
    """``P(t) / Q(t)`` for ``fit = (P's coefficients, Q's coefficients)``."""
    numerator, denominator = fit
    p = _polyval(numerator, t)
    p /= _polyval(denominator, t)
    return p


def _exp_minus_square(y):
    """``exp(-y²)`` for ``y >= 0`` to a few ulp.

    The rounding error of ``y * y`` (up to 8e-14 absolute at y = 27) would become the relative
    error of the exponential, so ``y = s + (y - s)`` with ``s`` = y truncated to 1/16ths: ``s²``
    is exact and ``exp(-y²) = exp(-s²) · exp(-(y - s)(y + s))``, whose second exponent is small.
    """
    s = np.trunc(y * 16.0) / 16.0
    e = np.exp(-s * s)
    e *= np.exp(-(y - s) * (y + s))
    return e


def _erfc_nonnegative(y):
    """erfc of float64 ``y >= 0`` (1-D; NaN stays NaN), to a few ulp relative."""
    out = np.empty_like(y)
    small = y <= _ERF_SMALL_MAX
    middle = (y > _ERF_SMALL_MAX) & (y <= _ERFC_MIDDLE_MAX)
    tail = ~(small | middle)  # y > 4, and NaN
    v = y[small]
    out[small] = 1.0 - v * _rational(_ERF_SMALL, v * v)  # erfc >= 0.5 here: no cancellation
    v = y[middle]
    out[middle] = _rational(_ERFC_MIDDLE, v) * _exp_minus_square(v)
    v = np.minimum(y[tail], _ERFC_ZERO_FROM)  # inf would give inf - inf in _exp_minus_square
    w = 1.0 / (v * v)
    out[tail] = (1.0 / math.sqrt(math.pi) - w * _rational(_ERFC_TAIL, w)) / v * _exp_minus_square(v)
    return out


def _erfc(z):
    """Complementary error function of float64 ``z`` (any shape), to a few ulp relative.

    Every finite argument, ±inf (0 and 2), NaN (NaN); underflows to 0 from z ≈ 27.3 as math.erfc.
    """
    z = np.asarray(z, np.float64)
    out = _erfc_nonnegative(np.abs(z).reshape(-1)).reshape(z.shape)
    np.subtract(2.0, out, out=out, where=z < 0)  # erfc(-y) = 2 - erfc(y), in [1, 2]: exact enough
    return out


#: GELU in float32: erfc(z) = t·exp(-z² + P(t)), t = 1/(1 + z/2), z >= 0, Numerical Recipes' erfcc
#: (Press et al., Numerical Recipes in C, 2nd ed., §6.2: fractional error below 1.2e-7 for every z >= 0,
#: so the negative tail x·Phi(x) stays relative too).  Coefficients from t⁰ up; with float32 rounding
#: of -z² the error is at most 3e-6 relative for x > -5.5, 2e-5 down to the float32 underflow
#: (tests/test_kernels.py).  About 25 float32 passes over a cached block: 4-7 ns per value here,
#: against 78 for the float64 path.
_ERFCC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398,
          1.48851587, -0.82215223, 0.17087277)
#: P(t)'s coefficients from the highest power down, as float32, the constant term taking log(1/√2)
#: (GELU = relu(x) - |x|/2 · erfc(|x|/√2) and |x|/2 = z/√2, so exp(P(t) + log(1/√2) - z²)·t·z).
#: Past z = 14 (x < -19.8), erfc(z)·z underflows float32: the kernel clips z there.
_GELU_Z_MAX = np.float32(14.0)
_GELU_POLY = tuple(np.float32(c) for c in _ERFCC[:0:-1]) + (np.float32(_ERFCC[0] - 0.5 * math.log(2.0)),)


def _gelu_float32(v, out, z, t, e, r) -> None:
    """``out = v·Phi(v)`` for a float32 block ``v`` (``out`` may be ``v`` itself), with four scratch
    blocks of its size: ``relu(v) - z/√2 · erfc(z)``, ``z = |v|/√2``, no branch per element."""
    np.abs(v, out=z)
    z *= np.float32(math.sqrt(0.5))
    np.minimum(z, _GELU_Z_MAX, out=z)            # (so that x = inf gives inf - 0, not inf - 0·inf)
    np.multiply(z, np.float32(0.5), out=t)
    t += np.float32(1.0)
    np.reciprocal(t, out=t)                      # t = 1 / (1 + z/2)
    np.maximum(v, 0, out=r)                      # (v is not read after this)
    np.multiply(t, _GELU_POLY[0], out=out)       # P(t) by Horner's rule
    for c in _GELU_POLY[1:-1]:
        out += c
        out *= t
    out += _GELU_POLY[-1]
    np.multiply(z, z, out=e)
    out -= e
    np.exp(out, out=out)
    out *= t
    out *= z                                     # z/√2 · erfc(z): 1/√2 is in P's constant term
    np.subtract(r, out, out=out)


def gelu(x, approximate="none", out=None):
    """GELU: exact ``x * Phi(x) = x/2 * erfc(-x/sqrt 2)``, or the ``tanh`` approximation.

    The exact form in float32 uses Numerical Recipes' erfcc (``_gelu_float32``: a few 1e-6 relative,
    as PyTorch's float32 GELU); in float64 Cody's fits, to a few ulp.  Both block by block, into
    ``out`` when given (see ``_blockwise``).
    """
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)

        def compute(v, out):
            out[...] = 0.5 * v * (1.0 + np.tanh(c * (v + 0.044715 * v * v * v)))
    elif approximate != "none":
        raise ValueError(f"gelu: unknown approximation {approximate!r}")
    elif _float_dtype(x) == np.float32:
        return _blockwise(x, _gelu_float32, scratch=4, out=out)
    else:
        def compute(v, out):
            v = v.astype(np.float64)
            out[...] = 0.5 * v * _erfc(-v / math.sqrt(2.0))
    return _blockwise(x, compute, np.float64, out=out)


def _sigmoid_into(v, out) -> None:
    """``out = 1 / (1 + exp(-v))``: exp(-v) overflows to inf below about -88 (float32), giving 0."""
    np.negative(v, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)


def sigmoid(x, out=None):
    """``1 / (1 + exp(-x))``, without NaN for large ``|x|``."""
    return _blockwise(x, _sigmoid_into, out=out)


def _silu_into(v, out, e) -> None:
    """``out = v / (1 + exp(-v))`` (``out`` may be ``v``), with a scratch block ``e``."""
    np.negative(v, out=e)
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    e += 1
    np.divide(v, e, out=out)


def silu(x, out=None):
    """``x * sigmoid(x)``, as ``x / (1 + exp(-x))``."""
    return _blockwise(x, _silu_into, scratch=1, out=out)


def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(x, out=_like(x)) if np.asarray(x).dtype.kind == "f" else np.tanh(x)


def hardswish(x, out=None):
    """``x * min(max(x + 3, 0), 6) / 6``."""
    def compute(v, out, e):
        np.add(v, 3, out=e)
        np.clip(e, 0, 6, out=e)
        np.multiply(e, v, out=out)
        out /= 6
    return _blockwise(x, compute, scratch=1, out=out)


def hardsigmoid(x, out=None):
    """``min(max(x + 3, 0), 6) / 6``."""
    def compute(v, out):
        np.add(v, 3, out=out)
        np.clip(out, 0, 6, out=out)
        out /= 6
    return _blockwise(x, compute, out=out)


def _blockwise(x, compute, work=np.float32, scratch=0, out=None):
    """An array ``compute(block, out_block, *scratch blocks)`` filled block by block over the
    flattened ``x``: its temporaries stay ELEMENTWISE_BYTES of ``work`` values (in cache, and
    nothing the memory estimate has to count beyond the output); ``scratch`` blocks of ``work``
    values are made once and handed to every call.  The array is ``out`` when given and it suits
    (``x``'s shape, the result dtype, C-contiguous, writeable) -- ``x`` itself, for a kernel whose
    input the pass owns, as ``compute`` reads each block before it writes it: in place, SiLU over
    96x112x112 took 1.1 ms against 1.5 into a new array -- else a new one."""
    x = np.asarray(x)
    dtype = _float_dtype(x)
    if (out is None or out.shape != x.shape or out.dtype != dtype or not out.flags.c_contiguous
            or not out.flags.writeable):
        out = _empty(x.shape, dtype)
    flat, out_flat = x.reshape(-1), _view(out, -1)  # (a copy only if x is not contiguous)
    block = LANE_ELEMENTWISE_BYTES if in_half() else ELEMENTWISE_BYTES
    step = block // max(np.dtype(work).itemsize, out.dtype.itemsize) // (1 + scratch // 2)
    blocks = [np.empty(min(step, flat.size), np.result_type(work, dtype)) for _ in range(scratch)]
    for start in range(0, flat.size, step):
        n = min(step, flat.size - start)
        compute(flat[start:start + n], out_flat[start:start + n], *(b[:n] for b in blocks))
    return out


def softmax(x, axis):
    """``exp(x) / sum(exp(x))`` along ``axis``, stabilised by subtracting the maximum."""
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def log_softmax(x, axis):
    """``x - logsumexp(x)`` along ``axis``, stabilised by subtracting the maximum."""
    z = x - np.max(x, axis=axis, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z


# --------------------------------------------------------------------------- kernels by layer type

@kernel(lookup("relu"), copies=True)
def _relu(layer, x, p, owned):
    return np.maximum(x, 0, out=x) if owned else relu(x)


@kernel(lookup("relu6"), copies=True)
def _relu6(layer, x, p, owned):
    return np.clip(x, 0, 6, out=x) if owned else relu6(x)


_ELEMENTWISE = {  # YAML name -> the kernel, called with the layer's PyTorch options and an output
    # array (the input itself when the pass owns it, else None: see _blockwise)
    "leakyrelu": lambda x, o, out: leaky_relu(x, o["negative_slope"]),
    "elu": lambda x, o, out: elu(x, o["alpha"]),
    "gelu": lambda x, o, out: gelu(x, o["approximate"], out=out),
    "silu": lambda x, o, out: silu(x, out=out),
    "sigmoid": lambda x, o, out: sigmoid(x, out=out),
    "tanh": lambda x, o, out: np.tanh(x, out=out) if out is not None and out.dtype == x.dtype else tanh(x),
    "hardswish": lambda x, o, out: hardswish(x, out=out),
    "hardsigmoid": lambda x, o, out: hardsigmoid(x, out=out),
}

for _name, _fn in _ELEMENTWISE.items():
    kernel(lookup(_name), copies=True)(lambda layer, x, p, owned, fn=_fn: fn(x, layer.options, x if owned else None))


@kernel(lookup("softmax"))
def _softmax(layer, x, p, owned):
    return softmax(x, layer.axis(x.shape[1:]) + 1)


@kernel(lookup("logsoftmax"))
def _log_softmax(layer, x, p, owned):
    return log_softmax(x, layer.axis(x.shape[1:]) + 1)
