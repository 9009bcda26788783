"""Layers that move, copy or pass values without weights: flatten, identity, dropout, zero padding,
upsampling (torch.nn.Flatten, Identity, Dropout, ZeroPad2d, Upsample)."""
from __future__ import annotations

import math
from fractions import Fraction

from .. import arith
from ..errors import SpecError, brief
from ..source import LARGEST
from .base import ArgReader, Layer, Saved, Shape, _rank_name, fmt_shape, register
from .window import check_fits


@register("flatten")
class Flatten(Layer):
    """Merge dimensions start_dim..end_dim (PyTorch counts the batch as dim 0, hence start_dim=1)."""

    signature = dict(start_dim=1, end_dim=-1)

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
