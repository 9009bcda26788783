"""Fully-connected layer (torch.nn.Linear)."""
from __future__ import annotations

import math

from ..arith import channel_axis
from ..errors import SpecError
from .base import REQUIRED, ArgReader, Layer, Saved, Shape, fmt_shape, register


@register("linear")
class Linear(Layer):
    """y = x·Wᵀ + b on the last dimension; weight stored out × in as PyTorch does."""

    signature = dict(in_features=None, out_features=REQUIRED, bias=True)
    autocast = True
    layouts = True

    def setup(self, a: ArgReader) -> None:
        self.in_features = a.int("in_features", allow_none=True)
        self.out_features = a.int("out_features")
        self.bias = a.bool("bias")

    def check_input(self, shape: Shape) -> None:
        if not shape:
            raise SpecError("linear needs at least one dimension")
        if self.in_features is not None and self.in_features != shape[-1]:
            raise SpecError(f"in_features is {self.in_features} but the input's last dimension is {shape[-1]} "
                            f"({fmt_shape(shape)})", fix=f"set in_features: {shape[-1]}, or leave it out to infer it")

    def out_shape(self, shape: Shape) -> Shape:
        return (*shape[:-1], self.out_features)

    def tensors(self, shape: Shape) -> dict:
        return {"weight": (self.out_features, shape[-1]), **({"bias": (self.out_features,)} if self.bias else {})}

    def macs(self, shape: Shape, out: Shape) -> int:
        return math.prod(shape) * self.out_features

    def field(self, shape, fields):
        # On channels last (after a permute to H×W×C) it is a 1×1 convolution: positions stay apart.
        return fields if channel_axis(fields) == len(shape) - 1 else None

    def notes_with(self, shape: Shape, fields) -> list[str]:
        # Only a map straight from convolutions (channels first, positions still local) suggests a
        # forgotten flatten; tokens (after attention or a flatten) and channels-last maps are meant.
        if fields is not None and channel_axis(fields) == 0:
            return self.notes(shape)
        return []

    def saved(self, shape, out, ctx):
        keep = Saved("input", "its input, for the weight's gradient (a view of it when it has several dimensions)")
        # The weight only when the input needs a gradient (a first layer's matmul does not keep it).
        return (keep, Saved("weight", "its weight, for the input's gradient")) if ctx.input_grad else (keep,)

    def notes(self, shape: Shape) -> list[str]:
        if len(shape) > 1:
            return [f"linear on a {fmt_shape(shape)} input acts on the last dimension only ({shape[-1]} → "
                    f"{self.out_features}) at each of the {math.prod(shape[:-1]):,} other positions; "
                    "is a `flatten` missing before it?"]
        return []

    def label(self, shape: Shape) -> str:
        return f"Linear ({shape[-1]} → {self.out_features})"

    def caption(self, shape: Shape) -> str:
        return f"fc {shape[-1]}→{self.out_features}"
