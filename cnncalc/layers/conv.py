"""Convolutions (torch.nn.Conv1d/2d/3d, ConvTranspose1d/2d/3d)."""
from __future__ import annotations

import math

from .. import arith
from ..errors import SpecError
from .base import REQUIRED, ArgReader, Layer, Saved, Shape, fmt_shape, register
from .window import check_fits, field_per_axis, uneven_notes


class _Convolution(Layer):
    """What both convolutions share: channels, kernel, stride, dilation, groups, bias."""

    transposed = False
    autocast = True

    def setup(self, a: ArgReader) -> None:
        n = self.rank
        self.in_channels = a.int("in_channels", allow_none=True)
        self.out_channels = a.int("out_channels")
        self.kernel_size = a.ints("kernel_size", n)
        self.stride = a.ints("stride", n)
        self.dilation = a.ints("dilation", n)
        self.groups = a.int("groups")
        self.bias = a.bool("bias")
        if self.out_channels % self.groups:
            a.fail("groups", f"({self.groups}) must divide out_channels ({self.out_channels})")

    def check_input(self, shape: Shape) -> None:
        super().check_input(shape)
        channels = shape[0]
        if self.in_channels is not None and self.in_channels != channels:
            raise SpecError(f"in_channels is {self.in_channels} but the input has {channels} channels "
                            f"({fmt_shape(shape)})", fix=f"set in_channels: {channels}, or leave it out to infer it")
        if channels % self.groups:
            raise SpecError(f"groups ({self.groups}) must divide the {channels} input channels",
                            fix="choose groups that divides both in_channels and out_channels")

    def bias_tensor(self) -> dict:
        return {"bias": (self.out_channels,)} if self.bias else {}

    def caption(self, shape: Shape) -> str:
        """`5×5 conv`, `3×3 conv /2`, `3×3 depthwise conv`, `2×2 up-conv ×2` (transposed): what a lecture
        figure writes on the arrow."""
        kind = "up-conv" if self.transposed else "conv"
        if self.groups > 1:
            kind = ("depthwise " if self.groups == shape[0] else f"group({self.groups}) ") + kind
        text = f"{window_text(self.kernel_size)} {kind}"
        if any(s != 1 for s in self.stride):
            text += f" {'×' if self.transposed else '/'}{_axes(self.stride)}"
        return text

    def _args_label(self, padding) -> str:
        k = _axes(self.kernel_size)
        parts = [f"C_out={self.out_channels}", f"K={k}", f"P={padding}", f"S={_axes(self.stride)}"]
        if any(d != 1 for d in self.dilation):
            parts.append(f"D={_axes(self.dilation)}")
        if self.groups != 1:
            parts.append(f"G={self.groups}")
        return ", ".join(parts)


@register("conv", ranks=(1, 2, 3))
class Conv(_Convolution):
    """Convolution: C_out filters of C_in/groups × K… slide over the (padded) input."""

    signature = dict(in_channels=None, out_channels=REQUIRED, kernel_size=REQUIRED, stride=1, padding=0,
                     dilation=1, groups=1, bias=True, padding_mode="zeros")

    def setup(self, a: ArgReader) -> None:
        super().setup(a)
        self.padding_mode = a.choice("padding_mode", ("zeros", "reflect", "replicate", "circular"))
        padding = a.raw("padding")
        if padding == "valid":
            self.pads = ((0, 0),) * self.rank
        elif padding == "same":
            if any(s != 1 for s in self.stride):
                a.fail("padding", "'same' needs stride 1 (PyTorch refuses it for strided convolutions)",
                       fix="give the padding as a number, e.g. (kernel_size - 1) // 2")
            self.pads = tuple(arith.same_padding(k, d) for k, d in zip(self.kernel_size, self.dilation))
        elif isinstance(padding, str):
            a.fail("padding", f"must be a number, a list, 'same' or 'valid', not '{padding}'")
        else:
            self.pads = tuple((p, p) for p in a.ints("padding", self.rank, minimum=0))
        self.padding = padding

    def check_input(self, shape: Shape) -> None:
        super().check_input(shape)
        # PyTorch pads reflect/circular by mirroring or wrapping the input once: reflect needs each
        # side's padding below the axis length, circular at most the axis length.
        limit = {"reflect": 1, "circular": 0}.get(self.padding_mode)
        for n, (lo, hi) in zip(shape[1:], self.pads if limit is not None else ()):
            if max(lo, hi) > n - limit:
                rule = "smaller than" if limit else "at most"
                raise SpecError(f"padding_mode '{self.padding_mode}' needs padding {rule} the input size, but pads "
                                f"{max(lo, hi)} on an axis of {n} ({fmt_shape(shape)})",
                                fix="use less padding, padding_mode: zeros or replicate, or a larger input")

    def out_shape(self, shape: Shape) -> Shape:
        sizes = tuple(arith.conv_out(n, k, s, lo, d, p_hi=hi) for n, k, s, d, (lo, hi)
                      in zip(shape[1:], self.kernel_size, self.stride, self.dilation, self.pads))
        check_fits(self, shape, sizes, "the (dilated) kernel is larger than the padded input")
        return (self.out_channels, *sizes)

    def tensors(self, shape: Shape) -> dict:
        return {"weight": (self.out_channels, shape[0] // self.groups, *self.kernel_size), **self.bias_tensor()}

    def macs(self, shape: Shape, out: Shape) -> int:
        return self.out_channels * math.prod(out[1:]) * (shape[0] // self.groups) * math.prod(self.kernel_size)

    def field(self, shape, fields):
        return field_per_axis(fields, self.kernel_size, self.stride, [lo for lo, _ in self.pads], self.dilation)

    def notes(self, shape: Shape) -> list[str]:
        return uneven_notes(shape, self.kernel_size, self.stride, self.pads, self.dilation)

    def saved(self, shape, out, ctx):
        """Its input (for the weight's gradient); with reflect, replicate or circular padding the
        padded copy it really convolves, and reflect/replicate padding also keeps the unpadded input
        (when that needs a gradient)."""
        if self.padding_mode == "zeros":
            if all(lo == hi for lo, hi in self.pads):
                return (Saved("input", "its input, for the weight's gradient"), WEIGHT)
            # padding='same' with an odd total: PyTorch pads a copy by the odd one on the right first
            extra = (shape[0], *(n + hi - lo for n, (lo, hi) in zip(shape[1:], self.pads)))
            return (Saved("new", "its input padded by the odd one on the right ('same'), which it convolves",
                          extra), WEIGHT)
        padded = (shape[0], *(n + lo + hi for n, (lo, hi) in zip(shape[1:], self.pads)))
        copy = Saved("new", f"the {self.padding_mode}-padded copy of its input, which it convolves", padded)
        if self.padding_mode == "circular" or not ctx.input_grad:   # no gradient through the padding
            return (copy, WEIGHT)
        # The CPU's autocast pads in float32 (reflect in 1-D and 2-D, replicate in any).
        float32 = ctx.amp and ctx.device == "cpu" and (self.padding_mode == "replicate" or self.rank < 3)
        return (Saved("input", f"its input, for the gradient of the {self.padding_mode} padding",
                      cast="float32" if float32 else "none"),
                copy, WEIGHT)

    def label(self, shape: Shape) -> str:
        pad = self.padding if isinstance(self.padding, str) else _axes(lo for lo, _ in self.pads)
        return f"Conv ({self._args_label(pad)})"


@register("convtranspose", ranks=(1, 2, 3))
class ConvTranspose(_Convolution):
    """Transposed convolution: each input unit scatters a C_out/groups × K… filter into the output."""

    transposed = True

    signature = dict(in_channels=None, out_channels=REQUIRED, kernel_size=REQUIRED, stride=1, padding=0,
                     output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros")

    def setup(self, a: ArgReader) -> None:
        super().setup(a)
        a.choice("padding_mode", ("zeros",))
        self.padding = a.ints("padding", self.rank, minimum=0)
        self.output_padding = a.ints("output_padding", self.rank, minimum=0)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= max(s, d):
                a.fail("output_padding", f"({op}) must be smaller than the stride or the dilation",
                       fix="PyTorch requires output_padding < max(stride, dilation)")

    def out_shape(self, shape: Shape) -> Shape:
        sizes = tuple(arith.conv_transpose_out(n, k, s, p, op, d) for n, k, s, p, op, d in zip(
            shape[1:], self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation))
        check_fits(self, shape, sizes, "the padding removes more than the transposed convolution produces")
        return (self.out_channels, *sizes)

    def tensors(self, shape: Shape) -> dict:
        return {"weight": (shape[0], self.out_channels // self.groups, *self.kernel_size), **self.bias_tensor()}

    def macs(self, shape: Shape, out: Shape) -> int:
        return shape[0] * math.prod(shape[1:]) * (self.out_channels // self.groups) * math.prod(self.kernel_size)

    def field(self, shape, fields):
        return tuple(arith.field_through_transposed(f, k, s, p, d) for f, k, s, p, d
                     in zip(fields, self.kernel_size, self.stride, self.padding, self.dilation))

    def saved(self, shape, out, ctx):
        return (Saved("input", "its input, for the weight's gradient"), WEIGHT)

    def label(self, shape: Shape) -> str:
        return f"ConvTranspose ({self._args_label(_axes(self.padding))})"


WEIGHT = Saved("weight", "its weight, for the input's gradient")


def window_text(sizes) -> str:
    """How a diagram names a window: `5×5`, `3×3×3`, or `5-tap` in one dimension."""
    return f"{sizes[0]}-tap" if len(sizes) == 1 else "×".join(map(str, sizes))


def _axes(values) -> str:
    """`5` when every axis agrees, else `3×5`."""
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))
