"""Composites: a list of layers in order, a residual sum, a channel concatenation, a gated product.

A composite has named branches of layers (held by the spec's Node); it only says how the
branches' outputs and receptive fields combine.
"""
from __future__ import annotations

from .. import arith
from ..errors import SpecError
from .base import Layer, Shape, fmt_shape


class Composite(Layer):
    """Base for layers made of other layers; the analysis walks each branch from the same input."""

    leaf = False
    mark: str | None = None     # how a diagram draws the merge of the branches: "add", "mul", "concat"

    def __init__(self, kind: str | None = None, display: str | None = None):
        if kind:
            self.kind = kind
        self.display = display or kind or self.kind.capitalize()

    def combine(self, shape: Shape, outputs: dict[str, Shape]) -> Shape:
        raise NotImplementedError

    def combine_fields(self, fields: dict[str, tuple | None]):
        """Union of the branches' fields; global if any branch is, or if their layouts differ."""
        channels = {arith.channel_axis(f) for f in fields.values()}
        if any(f is None for f in fields.values()) or len(channels) > 1:
            return None
        return arith.with_channel(tuple(arith.field_union(list(axis)) for axis in zip(*fields.values())),
                                  channels.pop())

    def label(self, shape: Shape) -> str:
        return self.display


class Sequential(Composite):
    """Layers applied one after another (also what a block or a repeat expands to)."""

    kind = "sequential"

    def combine(self, shape, outputs):
        return outputs[""]

    def combine_fields(self, fields):
        return fields[""]


class Residual(Composite):
    """body(x) + shortcut(x); an omitted shortcut is the identity."""

    kind = "residual"
    mark = "add"

    def combine(self, shape, outputs):
        shapes = set(outputs.values())
        if len(shapes) > 1:
            detail = ", ".join(f"{name} gives {fmt_shape(s)}" for name, s in outputs.items())
            raise SpecError(f"residual branches disagree: {detail}",
                            fix="make the shortcut match the body, e.g. a 1×1 conv with the same stride and "
                                "out_channels in `shortcut:`")
        return shapes.pop()


class Concat(Composite):
    """Branches joined along the channels; every other dimension must agree."""

    kind = "concat"
    mark = "concat"

    def combine(self, shape, outputs):
        shapes = list(outputs.values())
        first = shapes[0]
        if any(len(s) != len(first) or s[1:] != first[1:] for s in shapes):
            detail = ", ".join(f"{name or '[]'} gives {fmt_shape(s)}" for name, s in outputs.items())
            raise SpecError(f"concat branches differ in more than channels: {detail}",
                            fix="give every branch the same spatial size (same strides and padding)")
        return (sum(s[0] for s in shapes), *first[1:])


class Multiply(Composite):
    """The elementwise product of named branches, broadcast as PyTorch's `*` does (an SE gate:
    `x * sigmoid(fc(pool(x)))`, whose C×1×1 gate spreads over H×W)."""

    kind = "multiply"
    mark = "mul"

    def combine(self, shape, outputs):
        result = ()
        for name, s in outputs.items():
            result = broadcast(result, s) if result else s
            if result is None:
                detail = ", ".join(f"{b or '[]'} gives {fmt_shape(o)}" for b, o in outputs.items())
                raise SpecError(f"multiply branches cannot be broadcast together: {detail}",
                                fix="give the branches equal ranks whose sizes agree or are 1 on every axis, "
                                    "e.g. an SE gate C×1×1 (adaptiveavgpool2d output_size 1, then 1×1 convs)")
        return result


def broadcast(a: Shape, b: Shape) -> Shape | None:
    """PyTorch's broadcast of two per-sample shapes of the same rank, or None where it fails; a
    different rank is refused too, since PyTorch would align it against the batch dimension.

    >>> broadcast((32, 7, 7), (32, 1, 1)), broadcast((3, 4), (4, 4)), broadcast((8, 2, 2), (8,))
    ((32, 7, 7), None, None)
    """
    if len(a) != len(b) or any(m != n and 1 not in (m, n) for m, n in zip(a, b)):
        return None
    return tuple(max(m, n) for m, n in zip(a, b))
