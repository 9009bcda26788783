"""Layers that select or rearrange values without weights: part of an axis (torch.chunk, torch.narrow),
channel shuffle and pixel (un)shuffle (torch.nn.ChannelShuffle, PixelShuffle, PixelUnshuffle), and
torchvision's centre crop (torchvision.transforms.CenterCrop).

Dimensions count the batch as dim 0, as in PyTorch, so channels are dim 1.
"""
from __future__ import annotations

import copy
from fractions import Fraction

from .. import arith
from ..errors import SpecError, brief
from .base import REQUIRED, ArgReader, Layer, Shape, fmt_shape, register


def _axis(kind: str, dim: int, shape: Shape) -> int:
    """The per-sample axis of a PyTorch `dim` (batch = dim 0; negative dims count from the end)."""
    batched = len(shape) + 1
    if not -batched <= dim < batched:
        raise SpecError(f"{kind} dim {dim} is out of range for a batched {batched}-D input",
                        fix=f"use a dim from 1 to {batched - 1} (0 is the batch; 1 is the channels)")
    if dim % batched == 0:
        raise SpecError(f"{kind} along dim 0 would take part of the batch, not of each sample",
                        fix="use dim: 1 for the channels, or a later dimension")
    return dim % batched - 1


def _shifted(fields, axis: int, offset: int):
    """The field after dropping `offset` positions at the start of per-sample `axis` (0 = channels:
    nothing moves)."""
    if not axis:
        return fields
    return tuple(arith.field_through_window(f, 1, 1, -offset) if i == axis - 1 else f for i, f in enumerate(fields))


class _Slice(Layer):
    """A contiguous part of one dimension; the subclasses say which part."""

    def span(self, shape: Shape) -> tuple[int, int, int]:
        """(per-sample axis, first index, length)."""
        raise NotImplementedError

    def check_input(self, shape: Shape) -> None:
        self.span(shape)

    def out_shape(self, shape: Shape) -> Shape:
        axis, _, length = self.span(shape)
        return (*shape[:axis], length, *shape[axis + 1:])

    def field(self, shape, fields):
        axis, start, _ = self.span(shape)
        return _shifted(fields, axis, start)

    storage = "view"          # PyTorch's chunk and narrow return views; backward needs sizes only

    def saved(self, shape, out, ctx):
        return ()


@register("chunk")
class Chunk(_Slice):
    """Piece `index` of torch.chunk(x, chunks, dim): equal parts only (ShuffleNet's `x.chunk(2, dim=1)`)."""

    signature = dict(chunks=REQUIRED, index=REQUIRED, dim=1)

    def setup(self, a: ArgReader) -> None:
        self.chunks = a.int("chunks")
        self.index = a.int("index", minimum=None)
        self.dim = a.int("dim", minimum=None)
        if not -self.chunks <= self.index < self.chunks:
            a.fail("index", f"({self.index}) is not one of the {self.chunks} chunks",
                   fix=f"use 0 to {self.chunks - 1} (or -{self.chunks} to -1 from the end)")

    def span(self, shape):
        axis = _axis(self.kind, self.dim, shape)
        n = shape[axis]
        if n % self.chunks:
            raise SpecError(f"chunk: {n} {'channels' if axis == 0 else 'positions'} on dim {self.dim} do not split "
                            f"into {self.chunks} equal chunks ({n}/{self.chunks} is not whole)",
                            fix="use a number of chunks that divides it; for unequal parts use "
                                "narrow: {dim: ..., start: ..., length: ...}")
        length = n // self.chunks
        return axis, (self.index % self.chunks) * length, length

    def label(self, shape: Shape) -> str:
        return f"Chunk({self.index} of {self.chunks}, dim={self.dim})"


@register("narrow")
class Narrow(_Slice):
    """torch.narrow(x, dim, start, length): positions start … start+length-1 of one dimension
    (a negative start counts from the end)."""

    signature = dict(dim=REQUIRED, start=REQUIRED, length=REQUIRED)

    def setup(self, a: ArgReader) -> None:
        self.dim = a.int("dim", minimum=None)
        self.start = a.int("start", minimum=None)
        self.length = a.int("length")

    def span(self, shape):
        axis = _axis(self.kind, self.dim, shape)
        n = shape[axis]
        start = self.start + n if self.start < 0 else self.start
        if not 0 <= start <= n or start + self.length > n:
            raise SpecError(f"narrow: start {self.start} and length {self.length} do not fit the {n} positions of "
                            f"dim {self.dim} (input {fmt_shape(shape)})",
                            fix=f"need -{n} ≤ start ≤ {n} and start + length ≤ {n}")
        return axis, start, self.length

    def label(self, shape: Shape) -> str:
        return f"Narrow(dim={self.dim}, {self.start}:+{self.length})"


@register("channelshuffle")
class ChannelShuffle(Layer):
    """torch.nn.ChannelShuffle: C channels seen as groups × C/groups, transposed (ShuffleNet)."""

    signature = dict(groups=REQUIRED)

    def setup(self, a: ArgReader) -> None:
        self.groups = a.int("groups")

    def check_input(self, shape: Shape) -> None:
        if len(shape) < 2:
            raise SpecError(f"channelshuffle needs channels and at least one spatial axis, not {fmt_shape(shape)}",
                            fix="use it on a C×L, C×H×W or C×D×H×W input (PyTorch refuses a vector)")
        if shape[0] % self.groups:
            raise SpecError(f"channelshuffle: {shape[0]} channels do not split into {self.groups} groups",
                            fix="use a groups value that divides the channels")

    def saved(self, shape, out, ctx):
        return ()             # a permutation: its backward permutes back

    def label(self, shape: Shape) -> str:
        return f"ChannelShuffle(groups={self.groups})"


class _Pixel(Layer):
    """Moves r×r spatial blocks to and from channels; C×H×W only, like PyTorch's 4-D batches."""

    factor_name: str = ""

    def setup(self, a: ArgReader) -> None:
        self.r = a.int(self.factor_name)

    def check_input(self, shape: Shape) -> None:
        if len(shape) != 3:
            raise SpecError(f"{self.kind} needs a C×H×W input, but receives {fmt_shape(shape)}",
                            fix="PyTorch reads the last three dims as C, H, W; use it on images only")

    def saved(self, shape, out, ctx):
        return ()             # a permutation: its backward is the other shuffle

    def label(self, shape: Shape) -> str:
        return f"{self.display}({self.r})"


@register("pixelshuffle")
class PixelShuffle(_Pixel):
    """torch.nn.PixelShuffle: C·r²×H×W → C×H·r×W·r.

    Receptive field: output (h, w) copies input (h // r, w // r), like nearest upsampling by r: size and
    start kept, jump divided by r (the spacing on average: r neighbours share one input position).
    """

    signature = dict(upscale_factor=REQUIRED)
    factor_name, display = "upscale_factor", "PixelShuffle"

    def check_input(self, shape):
        super().check_input(shape)
        if shape[0] % (self.r * self.r):
            raise SpecError(f"pixelshuffle: {shape[0]} channels are not a multiple of upscale_factor² = "
                            f"{self.r * self.r}", fix="give the layer before it r² times the channels you want out")

    def out_shape(self, shape):
        c, h, w = shape
        return c // (self.r * self.r), h * self.r, w * self.r

    def field(self, shape, fields):
        return tuple(arith.Field(f.size, arith.exact(Fraction(f.jump) / self.r), f.start) for f in fields)


@register("pixelunshuffle")
class PixelUnshuffle(_Pixel):
    """torch.nn.PixelUnshuffle: C×H·r×W·r → C·r²×H×W.

    Receptive field: a position's r² channels hold an r×r block, so the field grows as through an r×r
    window with stride r.
    """

    signature = dict(downscale_factor=REQUIRED)
    factor_name, display = "downscale_factor", "PixelUnshuffle"

    def check_input(self, shape):
        super().check_input(shape)
        for axis, n in zip("HW", shape[1:]):
            if n % self.r:
                raise SpecError(f"pixelunshuffle: {axis} = {n} is not a multiple of downscale_factor {self.r}",
                                fix="crop or pad the input to a multiple of the factor")

    def out_shape(self, shape):
        c, h, w = shape
        return c * self.r * self.r, h // self.r, w // self.r

    def field(self, shape, fields):
        return tuple(arith.field_through_window(f, self.r, self.r, 0) for f in fields)


@register("centercrop")
class CenterCrop(Layer):
    """torchvision.transforms.CenterCrop(size): the centre H'×W' of a C×H×W input (U-Net's cropped skip
    connections). The offset is round((H - H')/2) with Python's round, halves to even (5 - 2 → 2,
    7 - 2 → 2); a crop larger than the input pads it with zeros, (H' - H)//2 before and the rest after,
    as torchvision does. Receptive field: the start moves by the offset, size and jump are kept.

    `like: BRANCH` instead of `size` takes H'×W' from the output of BRANCH, a sibling branch of the
    nearest enclosing residual, concat or multiply (U-Net's "crop the encoder's map to the decoder's
    size", torchvision's `CenterCrop(up.shape[-2:])`). The walk binds it to that size (`bound`), so
    everything after the walk sees a fixed-size crop; a sibling larger than the input pads, as above.
    """

    signature = dict(size=None, like=None)

    def setup(self, a: ArgReader) -> None:
        self.size: tuple[int, ...] | None = None
        if a.given("like") == a.given("size"):
            a.fail("size", "and 'like' cannot both be given" if a.given("like") else "(or 'like') is needed",
                   fix="give `size: [H, W]` (or one number), or `like: BRANCH` to crop to the spatial size of a "
                       "sibling branch of the residual, concat or multiply around it")
        if a.given("like"):
            self.like = a.raw("like")
            if not isinstance(self.like, str) or not self.like.isidentifier():
                a.fail("like", f"must name a branch, not {brief(self.like)}",
                       fix="write e.g. `like: up`, the name of a sibling branch of the concat around it")
            return
        value = a.raw("size")
        if isinstance(value, (list, tuple)) and len(value) == 1:   # torchvision: [n] means n×n
            value = value[0]
        self.size = a.ints("size", 2) if not isinstance(value, int) or isinstance(value, bool) else \
            (a._int("size", value, 1),) * 2

    def bound(self, sibling: Shape) -> "CenterCrop":
        """This crop with the spatial size of `sibling`, the output of the branch named by `like`."""
        if len(sibling) != 3:
            raise SpecError(f"centercrop like '{self.like}': that branch gives {fmt_shape(sibling)}, not a "
                            "C×H×W map to take a size from", fix="name a branch whose output is an image")
        crop = copy.copy(self)
        crop.size = tuple(sibling[1:])
        return crop

    def check_input(self, shape: Shape) -> None:
        if len(shape) != 3:
            raise SpecError(f"centercrop needs a C×H×W input, but receives {fmt_shape(shape)}",
                            fix="torchvision crops the last two dims; use it on images only")

    def offsets(self, shape: Shape) -> tuple[int, ...]:
        """Per spatial axis, the first input row/column kept (negative: that much zero padding before)."""
        return tuple(crop_offset(n, c) for n, c in zip(shape[1:], self.size))

    def out_shape(self, shape):
        return (shape[0], *self.size)

    def field(self, shape, fields):
        return tuple(arith.field_through_window(f, 1, 1, -o) for f, o in zip(fields, self.offsets(shape)))

    def output_storage(self, shape, training):
        """A crop is a view of its input; padding makes a new tensor."""
        return "new" if min(self.offsets(shape)) < 0 else "view"

    def saved(self, shape, out, ctx):
        return ()

    def caption(self, shape: Shape) -> str:
        return f"CenterCrop({'×'.join(map(str, self.size)) if self.size else '?'})"

    def label(self, shape: Shape) -> str:
        return f"{self.caption(shape)[:-1]}, like {self.like})" if self.like else self.caption(shape)


def crop_offset(n: int, c: int) -> int:
    """torchvision's centre crop of c out of n: round((n - c)/2), halves to even; when c > n it pads
    (c - n)//2 in front, so the first kept position is -(c - n)//2.

    >>> crop_offset(568, 392), crop_offset(5, 2), crop_offset(7, 2), crop_offset(4, 7)
    (88, 2, 2, -1)
    """
    if c > n:
        return -((c - n) // 2)
    q, r = divmod(n - c, 2)
    return q + (r and q % 2)
