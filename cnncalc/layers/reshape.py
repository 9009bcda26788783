"""Layers that move, copy or pass values without weights: flatten, identity, dropout, zero padding,
upsampling (torch.nn.Flatten, Identity, Dropout, ZeroPad2d, Upsample)."""
from __future__ import annotations

import math
from fractions import Fraction

from .. import arith
from ..errors import SpecError, brief
from ..source import LARGEST
from .base import REQUIRED, ArgReader, Layer, Saved, Shape, _rank_name, fmt_shape, register
from .window import check_fits


@register("flatten")
class Flatten(Layer):
    """Merge dimensions start_dim..end_dim (PyTorch counts the batch as dim 0, hence start_dim=1)."""

    signature = dict(start_dim=1, end_dim=-1)
    layouts = True

    def setup(self, a: ArgReader) -> None:
        self.start_dim = a.int("start_dim", minimum=None)
        self.end_dim = a.int("end_dim", minimum=None)

    def span(self, shape: Shape) -> tuple[int, int]:
        """The per-sample axes [first, last] that are merged."""
        batched = len(shape) + 1
        first, last = (d % batched if -batched <= d < batched else None for d in (self.start_dim, self.end_dim))
        if first is None or last is None:
            raise SpecError(f"start_dim/end_dim ({self.start_dim}, {self.end_dim}) out of range for a batched "
                            f"{batched}-D input", fix=f"use dims from 1 to {batched - 1} (0 is the batch)")
        if first == 0:
            raise SpecError("flatten with start_dim 0 would merge the batch into the features",
                            fix="use start_dim: 1 (the default)")
        if first > last:
            raise SpecError(f"start_dim ({self.start_dim}) comes after end_dim ({self.end_dim})")
        return first - 1, last - 1

    check_input = span

    def out_shape(self, shape: Shape) -> Shape:
        first, last = self.span(shape)
        return (*shape[:first], math.prod(shape[first:last + 1]), *shape[last + 1:])

    def field(self, shape, fields):
        return fields if self.out_shape(shape) == tuple(shape) else None

    storage = "view"

    def saved(self, shape, out, ctx):
        return ()

    def label(self, shape: Shape) -> str:
        return "Flatten"


@register("identity")
class Identity(Layer):
    """Passes its input through unchanged."""

    signature = {}

    def setup(self, a: ArgReader) -> None:
        pass

    storage = "view"

    def saved(self, shape, out, ctx):
        return ()

    def label(self, shape: Shape) -> str:
        return "Identity"


class _Dropout(Layer):
    """Dropout: zeroes values in training, the identity at inference (what we compute)."""

    signature = dict(p=0.5, inplace=False)

    def setup(self, a: ArgReader) -> None:
        self.p = a.number("p", minimum=0, maximum=1)
        self.inplace = a.bool("inplace")

    def output_storage(self, shape, training):
        if not training or self.p == 0:
            return "view"            # PyTorch returns the input itself
        return "inplace" if self.inplace else "new"

    def saved(self, shape, out, ctx):
        """The mask it multiplied by (scaled by 1/(1 - p)); CUDA's fused dropout keeps a bool mask."""
        if self.p == 0:
            return ()
        if self.p == 1:
            return (Saved("new", "the zero it multiplied by (p = 1)", (), per_sample=False),)
        if self.rank is None:
            fused = ctx.device == "cuda" and not self.inplace
            return (Saved("new", "its mask" + (" (bool, CUDA's fused dropout)" if fused else ", scaled by 1/(1 - p)"),
                          shape, "mask" if fused else "value"),)
        # Channel dropout draws one value per channel: noise N×C×1…; PyTorch treats an input without
        # the expected batch axis as one sample whose channels are the batch (one value per sample).
        batched = self.rank == 2 or len(shape) == self.rank + 1
        noise = (shape[0], *(1 for _ in shape[1:])) if batched else (1,)
        return (Saved("new", "its per-channel noise, scaled by 1/(1 - p)", noise),)

    def check_input(self, shape: Shape) -> None:
        # PyTorch's dropout1d refuses anything but 2-D/3-D batches; dropout2d/3d take any rank.
        if self.rank == 1 and len(shape) not in (1, 2):
            super().check_input(shape)

    def notes(self, shape: Shape) -> list[str]:
        if self.rank is None or len(shape) == self.rank + 1:
            return []
        return [f"{self.kind} is meant for {_rank_name(self.rank)} inputs, not {fmt_shape(shape)}: PyTorch runs it "
                "(it may warn) but reads the batched tensor differently; at inference it is the identity anyway"]

    def label(self, shape: Shape) -> str:
        return f"Dropout(p={self.p})"


register("dropout")(type("Dropout", (_Dropout,), {"__doc__": _Dropout.__doc__}))
register("dropout", ranks=(1, 2, 3))(_Dropout)


@register("zeropad", ranks=(1, 2, 3))
class ZeroPad(Layer):
    """Pad with zeros: one int for every side, or PyTorch's (left, right, top, bottom, front, back)."""

    signature = dict(padding=0)

    def setup(self, a: ArgReader) -> None:
        sides = 2 * self.rank
        pads = a.ints("padding", sides, minimum=None)
        # PyTorch lists the last axis first: (left, right) is W, then (top, bottom) is H, ...
        self.pads = tuple((pads[2 * i], pads[2 * i + 1]) for i in reversed(range(self.rank)))

    def out_shape(self, shape: Shape) -> Shape:
        sizes = tuple(n + lo + hi for n, (lo, hi) in zip(shape[1:], self.pads))
        check_fits(self, shape, sizes, "negative padding crops away the whole axis")
        return (shape[0], *sizes)

    def field(self, shape, fields):
        return tuple(arith.field_through_window(f, 1, 1, lo) for f, (lo, _) in zip(fields, self.pads))

    def saved(self, shape, out, ctx):
        return ()

    def label(self, shape: Shape) -> str:
        return f"ZeroPad({', '.join(f'{lo},{hi}' for lo, hi in self.pads)})"


@register("upsample")
class Upsample(Layer):
    """Resize to `size` or by `scale_factor` (output ⌊n·scale⌋), nearest or (bi/tri)linear.

    Receptive field rule: output o reads the input around o·r, r = (n-1)/(out-1) with align_corners,
    1/scale_factor when that is given (and not recomputed), else n/out — PyTorch's own step — so the
    jump is r times the input's. nearest copies pixel ⌊o·r⌋ (size kept, start kept); nearest-exact,
    linear and bicubic sample at (o + ½)·r - ½ (start moves by (r - 1)/2; align_corners: kept);
    linear blends two neighbours per axis (size + 1 jump), bicubic four (+ 3).
    """

    signature = dict(size=None, scale_factor=None, mode="nearest", align_corners=None,
                     recompute_scale_factor=None)
    MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "nearest-exact")

    def setup(self, a: ArgReader) -> None:
        self.mode = a.choice("mode", self.MODES)
        self.size, self.scale_factor = a.raw("size"), a.raw("scale_factor")
        if (self.size is None) == (self.scale_factor is None):
            a.fail("size", "and scale_factor: give exactly one of them")
        self.align_corners = a.raw("align_corners")
        if self.align_corners is not None:
            a.bool("align_corners")
            if self.mode in ("nearest", "nearest-exact"):
                a.fail("align_corners", "only applies to the linear and bicubic modes",
                       fix="remove align_corners, or choose mode: bilinear")
        self.recompute_scale_factor = a.raw("recompute_scale_factor")
        self.reader = a

    def _per_axis(self, shape: Shape, name: str):
        value = getattr(self, name)
        rank = len(shape) - 1
        if isinstance(value, (list, tuple)):
            if len(value) != rank:
                self.reader.fail(name, f"has {len(value)} values but the input {fmt_shape(shape)} has {rank} "
                                 "spatial axes")
            return tuple(value)
        return (value,) * rank

    def check_input(self, shape: Shape) -> None:
        needs = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}.get(self.mode)
        if len(shape) < 2 or (needs and len(shape) - 1 != needs):
            raise SpecError(f"upsample mode '{self.mode}' cannot take a {fmt_shape(shape)} input",
                            fix="upsample needs C×L, C×H×W or C×D×H×W; linear/bilinear/trilinear need 1/2/3 axes")
        if self.size is not None:
            for n in self._per_axis(shape, "size"):
                self.reader._int("size", n, 1)
        else:
            for n, s in zip(shape[1:], self._per_axis(shape, "scale_factor")):
                if isinstance(s, bool) or not isinstance(s, (int, float)) or not s > 0 or s == float("inf"):
                    self.reader.fail("scale_factor", f"must be a positive number, not {brief(s)}")
                if n * s > LARGEST:  # also keeps ⌊n·s⌋ from overflowing a float
                    self.reader.fail("scale_factor", f"{brief(s)} makes an axis of {n} larger than any tensor")

    def out_shape(self, shape: Shape) -> Shape:
        if self.size is not None:
            sizes = self._per_axis(shape, "size")
        else:
            sizes = tuple(arith.upsample_out(n, s) for n, s in zip(shape[1:], self._per_axis(shape, "scale_factor")))
        check_fits(self, shape, sizes, "the scale factor shrinks the axis to nothing")
        return (shape[0], *sizes)

    def field(self, shape, fields):
        taps = {"nearest": 1, "nearest-exact": 1, "bicubic": 4}.get(self.mode, 2)
        out = self.out_shape(shape)[1:]
        scales = self._per_axis(shape, "scale_factor") if self.size is None else (None,) * len(out)
        half_pixel = self.mode != "nearest" and not self.align_corners
        result = []
        for f, n, o, scale in zip(fields, shape[1:], out, scales):
            step = self._source_step(n, o, scale)
            start = f.start + (step - 1) / 2 * f.jump if half_pixel else f.start
            result.append(arith.Field(f.size + (taps - 1) * f.jump, arith.exact(f.jump * step), arith.exact(start)))
        return tuple(result)

    def _source_step(self, n: int, o: int, scale) -> Fraction:
        """How far apart in the input PyTorch samples neighbouring outputs."""
        if self.align_corners and o > 1:
            return Fraction(n - 1, o - 1)
        if scale is not None and not self.recompute_scale_factor:
            return 1 / Fraction(str(scale))      # str: 1.3 means 13/10, not the nearest double
        return Fraction(n, o)

    def saved(self, shape, out, ctx):
        return ()       # its backward needs only the sizes

    def label(self, shape: Shape) -> str:
        what = f"size={self.size}" if self.size is not None else f"×{self.scale_factor}"
        return f"Upsample({what}, {self.mode})"


def _batched_dim(dim: int, shape: Shape, what: str) -> int:
    """A PyTorch dim of the batched tensor (batch = 0, negative from the end) as a per-sample axis."""
    batched = len(shape) + 1
    if not -batched <= dim < batched:
        raise SpecError(f"{what} {dim} is out of range for a batched {batched}-D input (N×{fmt_shape(shape)})",
                        fix=f"use a dim from 1 to {batched - 1} (0 is the batch), or from -{batched - 1} to -1")
    if dim % batched == 0:
        raise SpecError(f"{what} {dim} is the batch dimension", fix="use dim 1 or later (0 is the batch)")
    return dim % batched - 1


@register("permute")
class Permute(Layer):
    """Reorder dimensions (torch.permute, torchvision.ops.Permute); `dims` counts the batch as dim 0,
    which stays first: [0, 2, 3, 1] turns C×H×W into H×W×C (channels last)."""

    signature = dict(dims=REQUIRED)
    layouts = True
    storage = "view"

    def setup(self, a: ArgReader) -> None:
        value = a.raw("dims")
        if not isinstance(value, (list, tuple)) or not value:
            a.fail("dims", f"must be a list of dimensions, not {brief(value)}",
                   fix="write e.g. `dims: [0, 2, 3, 1]` (the batch, dim 0, first)")
        self.dims = tuple(a._int("dims", d, None) for d in value)
        self.where = a.where_of("dims")

    def perm(self, shape: Shape) -> tuple[int, ...]:
        """Per-sample axes in output order: output axis j is input axis perm[j]."""
        batched = len(shape) + 1
        example = ", ".join(map(str, [0, *range(batched - 1, 0, -1)]))
        fix = f"list each of the {batched} dims of the batched input once, 0 (the batch) first, e.g. [{example}]"
        if len(self.dims) != batched:
            raise SpecError(f"permute dims {list(self.dims)} has {len(self.dims)} entries, but the batched input "
                            f"N×{fmt_shape(shape)} has {batched} dims", where=self.where, fix=fix)
        dims = [d % batched if -batched <= d < batched else d for d in self.dims]
        if sorted(dims) != list(range(batched)):
            wrong = [d for d in self.dims if not -batched <= d < batched] or \
                    [d for d in self.dims if dims.count(d % batched) > 1]
            raise SpecError(f"permute dims {list(self.dims)} is not a permutation of 0…{batched - 1}: "
                            f"{wrong[0]} is {'out of range' if not -batched <= wrong[0] < batched else 'repeated'}",
                            where=self.where, fix=fix)
        if dims[0] != 0:
            raise SpecError(f"permute dims {list(self.dims)} moves the batch (dim 0)", where=self.where, fix=fix)
        return tuple(d - 1 for d in dims[1:])

    check_input = perm

    def out_shape(self, shape: Shape) -> Shape:
        return tuple(shape[axis] for axis in self.perm(shape))

    def field(self, shape, fields):
        return arith.permute_fields(fields, self.perm(shape))

    def saved(self, shape, out, ctx):
        return ()

    def label(self, shape: Shape) -> str:
        return f"Permute({', '.join(map(str, self.dims))})"


@register("unflatten")
class Unflatten(Layer):
    """Split dimension `dim` into `unflattened_size` (torch.nn.Unflatten; batch = dim 0; one -1 is
    inferred): unflatten {dim: 2, unflattened_size: [14, 14]} turns 768×196 into 768×14×14."""

    signature = dict(dim=REQUIRED, unflattened_size=REQUIRED)
    storage = "view"

    def setup(self, a: ArgReader) -> None:
        self.dim = a.int("dim", minimum=None)
        sizes = a.raw("unflattened_size")
        if not isinstance(sizes, (list, tuple)) or not sizes:
            a.fail("unflattened_size", f"must be a list of sizes, not {brief(sizes)}",
                   fix="write e.g. `unflattened_size: [14, 14]`")
        self.sizes = tuple(a._int("unflattened_size", n, -1) for n in sizes)
        if 0 in self.sizes or self.sizes.count(-1) > 1:
            a.fail("unflattened_size", f"{list(self.sizes)} must hold positive sizes and at most one -1")
        self.where = a.where_of("unflattened_size")

    def split(self, shape: Shape) -> tuple[int, tuple[int, ...]]:
        """(the per-sample axis split, its sizes with any -1 filled in)."""
        axis = _batched_dim(self.dim, shape, "unflatten dim")
        n, known = shape[axis], math.prod(s for s in self.sizes if s != -1)
        sizes = tuple(n // known if s == -1 else s for s in self.sizes)
        if math.prod(sizes) != n:
            raise SpecError(f"unflattened_size {list(self.sizes)} does not multiply to the {n} of dim {self.dim} "
                            f"(input {fmt_shape(shape)})", where=self.where,
                            fix=f"give sizes whose product is {n}, or -1 for one of them")
        return axis, sizes

    check_input = split

    def out_shape(self, shape: Shape) -> Shape:
        axis, sizes = self.split(shape)
        return (*shape[:axis], *sizes, *shape[axis + 1:])

    def field(self, shape, fields):
        # Splitting an axis changes what a position means (a flattened one becomes a grid again).
        return fields if self.out_shape(shape) == tuple(shape) else None

    def saved(self, shape, out, ctx):
        return ()

    def label(self, shape: Shape) -> str:
        return f"Unflatten(dim={self.dim}, {'×'.join(map(str, self.sizes))})"


@register("select")
class Select(Layer):
    """One index along a dimension, which disappears (torch.select; batch = dim 0): ViT's `x[:, 0]`,
    the class token, is `select: {dim: 1, index: 0}`."""

    signature = dict(dim=REQUIRED, index=REQUIRED)
    layouts = True
    storage = "view"

    def setup(self, a: ArgReader) -> None:
        self.dim = a.int("dim", minimum=None)
        self.index = a.int("index", minimum=None)
        self.where = a.where_of("index")

    def position(self, shape: Shape) -> tuple[int, int]:
        """(per-sample axis, index from 0)."""
        if len(shape) < 2:
            raise SpecError(f"select would leave no dimension of a {fmt_shape(shape)} input",
                            fix="select from an input with at least two dimensions per sample")
        axis = _batched_dim(self.dim, shape, "select dim")
        n = shape[axis]
        if not -n <= self.index < n:
            raise SpecError(f"index {self.index} is out of range for dim {self.dim} of size {n}", where=self.where,
                            fix=f"use an index from 0 to {n - 1} (or -{n} to -1 from the end)")
        return axis, self.index % n

    check_input = position

    def out_shape(self, shape: Shape) -> Shape:
        axis, _ = self.position(shape)
        return (*shape[:axis], *shape[axis + 1:])

    def field(self, shape, fields):
        # Along a spatial axis the chosen position's field stays, that axis goes; picking a channel
        # leaves no channel axis to lay the fields out by, so it says global.
        axis, _ = self.position(shape)
        channel = arith.channel_axis(fields)
        if axis == channel:
            return None
        dropped = axis - (axis > channel)
        return arith.with_channel(fields[:dropped] + fields[dropped + 1:], channel - (axis < channel))

    def saved(self, shape, out, ctx):
        return ()

    def label(self, shape: Shape) -> str:
        return f"Select(dim={self.dim}, index={self.index})"


@register("stochasticdepth")
class StochasticDepth(Layer):
    """torchvision.ops.StochasticDepth: drops whole residual branches in training ("row": per sample,
    "batch": all at once), the identity at inference (what we compute)."""

    signature = dict(p=REQUIRED, mode=REQUIRED)

    def setup(self, a: ArgReader) -> None:
        self.p = a.number("p", minimum=0, maximum=1)
        self.mode = a.choice("mode", ("row", "batch"))

    def output_storage(self, shape, training):
        return "new" if training and self.p else "view"

    def saved(self, shape, out, ctx):
        """The noise it multiplied by: one value per sample ("row") or for the batch."""
        if not self.p:
            return ()
        ones = (1,) * len(shape)
        return (Saved("new", "the noise it multiplied by", ones, per_sample=self.mode == "row"),)

    def label(self, shape: Shape) -> str:
        return f"StochasticDepth(p={self.p:g}, {self.mode})"
