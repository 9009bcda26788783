"""Shape arithmetic: pure per-axis integer formulas shared by every layer (and the kernels' callers).

Each function takes and returns ints for one spatial axis, exactly as PyTorch computes them.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple


def effective_kernel(k: int, d: int = 1) -> int:
    """Span of a dilated kernel: d·(k - 1) + 1.

    >>> effective_kernel(3, d=2)
    5
    """
    return d * (k - 1) + 1


def conv_out_exact(n: int, k: int, s: int = 1, p: int = 0, d: int = 1, p_hi: int | None = None) -> Fraction:
    """The unrounded output size (n + p_lo + p_hi - d·(k-1) - 1)/s + 1, for warnings and working.

    >>> conv_out_exact(28, 5, s=2)
    Fraction(25, 2)
    """
    p_hi = p if p_hi is None else p_hi
    return Fraction(n + p + p_hi - effective_kernel(k, d), s) + 1


def conv_out(n: int, k: int, s: int = 1, p: int = 0, d: int = 1, p_hi: int | None = None) -> int:
    """Output length of a convolution: ⌊(n + 2p - d·(k-1) - 1)/s⌋ + 1 (p_hi for asymmetric padding).

    >>> conv_out(32, k=5)
    28
    >>> conv_out(7, k=3, s=2)
    3
    """
    p_hi = p if p_hi is None else p_hi
    return (n + p + p_hi - effective_kernel(k, d)) // s + 1


def unused_input(n: int, k: int, s: int = 1, p: int = 0, d: int = 1, p_hi: int | None = None) -> int:
    """Input positions past the last window when the output size is floored: the leftover
    (n + p_lo + p_hi - span) mod s, less the right padding, which is dropped first.

    >>> unused_input(28, 5, s=2)        # windows start at 0, 2, …, 22 and end at 26: position 27 is unused
    1
    >>> unused_input(224, 7, s=2, p=3)  # ResNet's stem: the one leftover position is padding
    0
    """
    p_hi = p if p_hi is None else p_hi
    leftover = (n + p + p_hi - effective_kernel(k, d)) % s
    return max(0, leftover - p_hi)


def pool_out(n: int, k: int, s: int, p: int = 0, d: int = 1, ceil_mode: bool = False) -> int:
    """Output length of max/avg pooling, PyTorch's rule: with ceil_mode the last window must start
    inside the input or the left padding.

    >>> pool_out(5, k=2, s=2, ceil_mode=True)
    3
    >>> pool_out(5, k=2, s=2)
    2
    """
    span = n + 2 * p - effective_kernel(k, d)
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def conv_transpose_out(n: int, k: int, s: int = 1, p: int = 0, output_padding: int = 0, d: int = 1) -> int:
    """Output length of a transposed convolution: (n - 1)·s - 2p + d·(k - 1) + output_padding + 1.

    >>> conv_transpose_out(7, k=4, s=2, p=1)
    14
    """
    return (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


def same_padding(k: int, d: int = 1) -> tuple[int, int]:
    """PyTorch's padding='same' for stride 1: total d·(k-1), the odd one on the right.

    >>> same_padding(4)
    (1, 2)
    """
    total = d * (k - 1)
    return total // 2, total - total // 2


def adaptive_window(i: int, n: int, out: int) -> tuple[int, int]:
    """PyTorch's adaptive pooling window [start, end) for output index i of out, over n inputs.

    >>> [adaptive_window(i, 10, 4) for i in range(4)]
    [(0, 3), (2, 5), (5, 8), (7, 10)]
    """
    return (i * n) // out, -((-(i + 1) * n) // out)


def adaptive_widest(n: int, out: int) -> int:
    """The longest adaptive window: ⌈(n + out - gcd(n, out))/out⌉, since window i has length
    ⌈(r_i + n)/out⌉ with r_i = i·n mod out, whose largest value is out - gcd(n, out).

    >>> adaptive_widest(10, 4), adaptive_widest(7, 3), adaptive_widest(3, 5)
    (3, 3, 2)
    """
    return -(-(n + out - math.gcd(n, out)) // out)


def upsample_out(n: int, scale: float) -> int:
    """Upsample's output length: ⌊n·scale⌋ (PyTorch computes it in floating point).

    >>> upsample_out(7, 1.5)
    10
    """
    return math.floor(float(n) * float(scale))


class Field(NamedTuple):
    """Receptive field along one axis, in input pixels: size, jump (spacing of neighbouring units'
    fields) and start (centre of the first unit's field; may be negative or fractional)."""

    size: Fraction
    jump: Fraction
    start: Fraction


PIXEL = Field(1, 1, 0)


def exact(x):
    """Keep whole numbers as ints (fast, printable); only true fractions stay Fractions.

    >>> exact(Fraction(4, 2)), exact(Fraction(1, 2))
    (2, Fraction(1, 2))
    """
    return x.numerator if isinstance(x, Fraction) and x.denominator == 1 else x


def half(n: int):
    """n/2 exactly.

    >>> half(4), half(3)
    (2, Fraction(3, 2))
    """
    return n // 2 if n % 2 == 0 else Fraction(n, 2)


def field_through_window(f: Field, k: int, s: int, p: int, d: int = 1) -> Field:
    """A sliding window (conv, pool) of kernel k, stride s, left padding p, dilation d.

    >>> field_through_window(PIXEL, k=5, s=1, p=2)
    Field(size=5, jump=1, start=0)
    """
    span = effective_kernel(k, d)
    return Field(f.size + (span - 1) * f.jump, f.jump * s, exact(f.start + (half(span - 1) - p) * f.jump))


def field_through_transposed(f: Field, k: int, s: int, p: int, d: int = 1) -> Field:
    """Transposed conv, the inverse of a window: output o receives input i when o = i·s - p + j·d
    for a tap j < k. The taps that land on o are every s/g-th (g = gcd(d, s)), i.e. at most
    ⌈k·g/s⌉ of them, d/g inputs apart: the widest unit's field (others see fewer; exact for every
    unit when s divides k·g). Jump shrinks by s; the centre is where the forward window's centre maps.

    >>> field_through_transposed(PIXEL, k=4, s=2, p=1)
    Field(size=2, jump=Fraction(1, 2), start=Fraction(-1, 4))
    >>> field_through_transposed(PIXEL, k=4, s=2, p=0, d=3).size   # taps 0 and 2 (or 1 and 3): i, i - 3
    4
    """
    span = effective_kernel(k, d)
    g = math.gcd(d, s)
    reach = (-(-k * g // s) - 1) * (d // g)
    jump = exact(Fraction(f.jump) / s)
    return Field(f.size + reach * f.jump, jump, exact(f.start + (p - half(span - 1)) * jump))


def field_union(fields: list[Field]) -> Field:
    """The smallest field covering every branch's field (residual sums, concatenations).

    >>> field_union([Field(3, 1, 0), Field(1, 1, 0)]).size
    3
    """
    lo = min(f.start - Fraction(f.size - 1) / 2 for f in fields)
    hi = max(f.start + Fraction(f.size - 1) / 2 for f in fields)
    return Field(exact(hi - lo + 1), max(f.jump for f in fields), exact((lo + hi) / 2))


class Fields(tuple):
    """Per-axis fields of a layout whose channel axis is not the first (after a permute, e.g. the
    channels-last H×W×C of ConvNeXt's MLP and Swin): `channel` is the per-sample index of the channel
    axis, and the fields follow the other axes in their order. A plain tuple means channels first.

    >>> f = Fields((PIXEL, PIXEL), channel=2)
    >>> channel_axis(f), channel_axis((PIXEL, PIXEL)), f == (PIXEL, PIXEL)
    (2, 0, True)
    """

    channel: int

    def __new__(cls, fields, channel: int = 0):
        self = super().__new__(cls, fields)
        self.channel = channel
        return self


def channel_axis(fields) -> int:
    """The per-sample index of the channel axis of a field tuple (0 unless a permute moved it)."""
    return getattr(fields, "channel", 0)


def with_channel(fields, channel: int):
    """Fields laid out with the channel axis at `channel` (a plain tuple for channels first)."""
    return tuple(fields) if channel == 0 else Fields(fields, channel)


def permute_fields(fields, perm: tuple[int, ...]):
    """The fields after a permute of the per-sample axes (output axis j is input axis perm[j]).

    >>> permute_fields((Field(3, 1, 0), Field(5, 2, 1)), (1, 2, 0))       # C×H×W → H×W×C
    (Field(size=3, jump=1, start=0), Field(size=5, jump=2, start=1))
    >>> channel_axis(_), channel_axis(permute_fields(_, (2, 0, 1)))
    (2, 0)
    """
    channel = channel_axis(fields)
    spatial = lambda axis: axis - (axis > channel)     # noqa: E731  (index of an axis among the fields)
    moved = tuple(fields[spatial(axis)] for axis in perm if axis != channel)
    return with_channel(moved, perm.index(channel))


def window_attention_field(f: Field, window: int) -> Field:
    """Window attention (Swin): a unit sees every token of the window holding it, `window` tokens
    along the axis, so its field spans `window` neighbouring fields; which window depends on the
    unit's place in it (and the shift), so the centre is the unit's own, at most (window - 1)/2
    tokens from the true one — the same reporting rule as a transposed conv's widest unit.

    >>> window_attention_field(Field(4, 4, Fraction(3, 2)), 7)
    Field(size=28, jump=4, start=Fraction(3, 2))
    """
    return Field(f.size + (window - 1) * f.jump, f.jump, f.start)
