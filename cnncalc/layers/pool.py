"""Pooling (torch.nn.MaxPool, AvgPool, AdaptiveAvgPool, AdaptiveMaxPool in 1, 2 and 3 dimensions)."""
from __future__ import annotations

from fractions import Fraction

from .. import arith
from ..errors import SpecError
from .base import KEEPS_INPUT, REQUIRED, ArgReader, Layer, Saved, Shape, fmt_shape, register
from .conv import _axes, window_text
from .window import check_fits, field_per_axis, uneven_notes


class _Pool(Layer):
    """A window that slides with a stride; no parameters."""

    def autocast_float32(self, device):
        return device == "cpu" and self.rank == 3      # the CPU's autocast list

    def setup(self, a: ArgReader) -> None:
        n = self.rank
        self.kernel_size = a.ints("kernel_size", n)
        self.stride = self.kernel_size if a.raw("stride") is None else a.ints("stride", n)
        self.padding = a.ints("padding", n, minimum=0)
        self.ceil_mode = a.bool("ceil_mode")
        for p, k in zip(self.padding, self.kernel_size):
            if p > k // 2:
                a.fail("padding", f"({p}) must be at most half the kernel size ({k})",
                       fix=f"PyTorch requires padding ≤ kernel_size // 2; use padding {k // 2} or less")

    def out_shape(self, shape: Shape) -> Shape:
        sizes = tuple(arith.pool_out(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d
                      in zip(shape[1:], self.kernel_size, self.stride, self.padding, self.dilation))
        check_fits(self, shape, sizes, "the pooling window is larger than the padded input")
        return (shape[0], *sizes)

    def field(self, shape, fields):
        return field_per_axis(fields, self.kernel_size, self.stride, self.padding, self.dilation)

    def notes(self, shape: Shape) -> list[str]:
        return uneven_notes(shape, self.kernel_size, self.stride, [(p, p) for p in self.padding],
                            self.dilation, self.ceil_mode)

    def caption(self, shape: Shape) -> str:
        """`2×2 max pool`, `3×3 max pool /2`, `3×3 max pool, stride 1` (the stride when not the window)."""
        text = f"{window_text(self.kernel_size)} {self.caption_name}"
        if self.stride == self.kernel_size:
            return text
        return text + (f" /{_axes(self.stride)}" if any(s > 1 for s in self.stride) else f", stride {_axes(self.stride)}")

    def _label(self, name: str) -> str:
        text = f"{name}(K={_axes(self.kernel_size)}, S={_axes(self.stride)}"
        if any(self.padding):
            text += f", P={_axes(self.padding)}"
        return text + (", ceil" if self.ceil_mode else "") + ")"


@register("maxpool", ranks=(1, 2, 3))
class MaxPool(_Pool):
    """Max pooling: the largest value in each window (padding counts as -∞)."""

    signature = dict(kernel_size=REQUIRED, stride=None, padding=0, dilation=1, return_indices=False,
                     ceil_mode=False)

    def setup(self, a: ArgReader) -> None:
        super().setup(a)
        self.dilation = a.ints("dilation", self.rank)
        if a.bool("return_indices"):
            a.fail("return_indices", "is not supported: the layer would return a pair, not a tensor")

    caption_name = "max pool"

    def saved(self, shape, out, ctx):
        return _input_and_indices(out)

    def label(self, shape: Shape) -> str:
        return self._label("MaxPool")


def _input_and_indices(out: Shape) -> tuple[Saved, ...]:
    """What a max pool keeps: its input and, per output value, the int64 position of the maximum."""
    return (Saved("input", "its input"), Saved("new", "the int64 index of each maximum", out, "int64"))


@register("avgpool", ranks=(1, 2, 3))
class AvgPool(_Pool):
    """Average pooling: the mean of each window (count_include_pad decides the divisor at edges)."""

    signature = dict(kernel_size=REQUIRED, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                     divisor_override=None)

    def setup(self, a: ArgReader) -> None:
        super().setup(a)
        self.dilation = (1,) * self.rank
        self.count_include_pad = a.bool("count_include_pad")
        self.divisor_override = a.int("divisor_override", allow_none=True)
        if self.rank == 1 and self.divisor_override is not None:
            a.fail("divisor_override", "does not exist for avgpool1d (torch.nn.AvgPool1d has no such argument)",
                   fix="remove it, or use avgpool2d/avgpool3d")

    def check_input(self, shape: Shape) -> None:
        super().check_input(shape)
        # PyTorch's avg_pool3d, unlike every other pool, wants the *unpadded* input to hold the kernel.
        if self.rank == 3 and any(n < k for n, k in zip(shape[1:], self.kernel_size)):
            raise SpecError(f"avgpool3d's kernel {fmt_shape(self.kernel_size)} is larger than its input "
                            f"{fmt_shape(shape)}; PyTorch's avg_pool3d checks this before padding",
                            fix="use a smaller kernel_size, or a larger input")

    caption_name = "avg pool"

    def saved(self, shape, out, ctx):
        return (Saved("input", "its input (PyTorch's avg_pool backward takes it)"),)

    def label(self, shape: Shape) -> str:
        return self._label("AvgPool")


class _AdaptivePool(Layer):
    """Pooling to a fixed output size; PyTorch's window i spans [⌊i·n/out⌋, ⌈(i+1)·n/out⌉).

    Receptive field rule: when out divides n this is an ordinary pool (kernel = stride = n/out).
    Otherwise windows vary by one: we report the largest window's size, the exact mean spacing
    n/out as the jump, and as the start the centre (n/out - 1)/2 of the ideal window [0, n/out),
    so every unit's true centre is less than half an input pixel away; output size 1 is global.
    """

    signature = dict(output_size=REQUIRED)

    def autocast_float32(self, device):
        return device == "cpu" and self.rank == 3      # the CPU's autocast list

    def setup(self, a: ArgReader) -> None:
        # PyTorch keeps an axis for a None inside a 2-D/3-D list; a bare null, or None in 1-D, fails there.
        if a.raw("output_size") is None:
            a.fail("output_size", "must be a number or a list; null keeps an axis only as a list entry",
                   fix="e.g. output_size: [null, 7]" if self.rank > 1 else "give the output length")
        self.output_size = a.ints("output_size", self.rank, allow_none=self.rank > 1)

    def out_shape(self, shape: Shape) -> Shape:
        return (shape[0], *(n if o is None else o for n, o in zip(shape[1:], self.output_size)))

    def field(self, shape, fields):
        out = self.out_shape(shape)[1:]
        if all(o == 1 for o in out) and any(n > 1 for n in shape[1:]):
            return None
        return tuple(_adaptive_field(f, n, o) for f, n, o in zip(fields, shape[1:], out))

    def label(self, shape: Shape) -> str:
        sizes = "×".join("·" if o is None else str(o) for o in self.output_size)
        return f"{self.kind_label}({sizes})"

    def caption(self, shape: Shape) -> str:
        """`global avg pool` to 1×1…, else `adaptive avg pool`."""
        return ("global " if all(o == 1 for o in self.output_size) else "adaptive ") + self.caption_name


def _adaptive_field(f: arith.Field, n: int, out: int) -> arith.Field:
    if n % out == 0:
        return arith.field_through_window(f, n // out, n // out, 0)
    widest = arith.adaptive_widest(n, out)
    return arith.Field(f.size + (widest - 1) * f.jump, arith.exact(f.jump * Fraction(n, out)),
                       arith.exact(f.start + (Fraction(n, out) - 1) / 2 * f.jump))


@register("adaptiveavgpool", ranks=(1, 2, 3))
class AdaptiveAvgPool(_AdaptivePool):
    """Adaptive average pooling to `output_size` (None keeps that axis)."""

    kind_label = "AdaptiveAvgPool"
    caption_name = "avg pool"

    def saved(self, shape, out, ctx):
        # To 1×…×1 PyTorch takes the mean, whose backward needs only the input's size.
        return () if all(n == 1 for n in out[1:]) else KEEPS_INPUT


@register("adaptivemaxpool", ranks=(1, 2, 3))
class AdaptiveMaxPool(_AdaptivePool):
    """Adaptive max pooling to `output_size` (None keeps that axis)."""

    kind_label = "AdaptiveMaxPool"
    caption_name = "max pool"
    signature = dict(output_size=REQUIRED, return_indices=False)

    def saved(self, shape, out, ctx):
        return _input_and_indices(out)

    def setup(self, a: ArgReader) -> None:
        super().setup(a)
        if a.bool("return_indices"):
            a.fail("return_indices", "is not supported: the layer would return a pair, not a tensor")
