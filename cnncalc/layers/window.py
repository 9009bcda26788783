"""Helpers shared by the sliding-window layers (convolutions and pooling)."""
from __future__ import annotations

from .. import arith
from ..errors import SpecError
from .base import fmt_shape


def check_fits(layer, shape, sizes, why: str) -> None:
    """Refuse an output axis that shrank to nothing, naming the axis and the arithmetic."""
    for axis, size in enumerate(sizes):
        if size < 1:
            raise SpecError(f"output size {size} on spatial axis {axis + 1} of input {fmt_shape(shape)}: {why}",
                            fix="use a smaller kernel, stride or dilation, more padding, or a larger input")


def field_per_axis(fields, kernel, stride, pad_lo, dilation):
    return tuple(arith.field_through_window(f, k, s, p, d)
                 for f, k, s, p, d in zip(fields, kernel, stride, pad_lo, dilation))


def working(n: int, k: int, s: int, lo: int, hi: int, d: int = 1) -> str:
    """`(28 - 5 + 2·0)/2 + 1`: the seed's output-size formula with the values in."""
    span = arith.effective_kernel(k, d)
    pad = f"2·{lo}" if lo == hi else f"{lo} + {hi}"
    return f"({n} - {span} + {pad})/{s} + 1"


def uneven_notes(shape, kernel, stride, pads, dilation, ceil_mode: bool = False) -> list[str]:
    """A warning where (W - K + 2P)/S + 1 is not whole, showing how it is rounded (axes that agree
    are said once)."""
    lines = {}
    for axis, (n, k, s, (lo, hi), d) in enumerate(zip(shape[1:], kernel, stride, pads, dilation)):
        exact = arith.conv_out_exact(n, k, s, lo, d, p_hi=hi)
        if exact.denominator != 1:
            got = arith.pool_out(n, k, s, lo, d, ceil_mode) if ceil_mode else arith.conv_out(n, k, s, lo, d, hi)
            if not ceil_mode:
                rule = _floored(arith.unused_input(n, k, s, lo, d, hi))
            elif got == exact.numerator // exact.denominator:   # ceil_mode, but PyTorch drops the last window
                rule = "floored even with ceil_mode: the last window would start in the padding, so PyTorch drops it"
            else:
                rule = "rounded up: ceil_mode"
            lines.setdefault(f"{working(n, k, s, lo, hi, d)} = {decimal_text(exact)} → {got} ({rule})", []).append(axis + 1)
    every = len(shape) - 1
    return [text if len(axes) == every else f"axis {', '.join(map(str, axes))}: {text}"
            for text, axes in lines.items()]


def _floored(unused: int) -> str:
    """What flooring drops: real input positions, or only padding (as in every ResNet downsampling)."""
    if not unused:
        return "floored; only padding is left over, every input row/column is used"
    return f"floored; the input's last {unused} {'row/column is' if unused == 1 else 'rows/columns are'} never used"


def decimal_text(x) -> str:
    """An exact fraction as a short decimal, with … where it is cut: 12.5, 0.3333…"""
    text = f"{float(x):.4f}".rstrip("0").rstrip(".")
    return text if float(text) == x else f"{text}…"
