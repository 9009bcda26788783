"""Normalisation (torch.nn.BatchNorm1d/2d/3d, GroupNorm, LayerNorm; torchvision's LayerNorm2d)."""
from __future__ import annotations

import math

from ..arith import channel_axis
from ..errors import SpecError
from .base import REQUIRED, ArgReader, Layer, Saved, Shape, fmt_shape, register


@register("batchnorm", ranks=(1, 2, 3))
class BatchNorm(Layer):
    """Per-channel normalisation with running statistics: γ, β learnable (2·C), mean/var buffers."""

    signature = dict(num_features=None, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)
    layouts = True      # per channel of axis 0 with running statistics: elementwise in any layout

    def setup(self, a: ArgReader) -> None:
        self.num_features = a.int("num_features", allow_none=True)
        self.eps = a.number("eps", minimum=0)
        a.number("momentum", minimum=0, maximum=1, allow_none=True)
        self.affine = a.bool("affine")
        self.track_running_stats = a.bool("track_running_stats")

    def check_input(self, shape: Shape) -> None:
        spatial = len(shape) - 1
        allowed = (0, 1) if self.rank == 1 else (self.rank,)
        if spatial not in allowed:
            want = " or ".join({0: "C", 1: "C×L", 2: "C×H×W", 3: "C×D×H×W"}[r] for r in allowed)
            raise SpecError(f"{self.kind} needs a {want} input, but receives {fmt_shape(shape)}",
                            fix=f"use batchnorm{max(spatial, 1)}d" if 0 <= spatial <= 3 else None)
        if self.num_features is not None and self.num_features != shape[0]:
            raise SpecError(f"num_features is {self.num_features} but the input has {shape[0]} channels",
                            fix=f"set num_features: {shape[0]}, or leave it out to infer it")

    def tensors(self, shape: Shape) -> dict:
        return {"weight": (shape[0],), "bias": (shape[0],)} if self.affine else {}

    def buffers(self, shape: Shape) -> dict:
        return {"running_mean": (shape[0],), "running_var": (shape[0],)} if self.track_running_stats else {}

    def field(self, shape, fields):
        # Without running statistics PyTorch normalises with the batch's mean and variance even at
        # inference, so every output depends on every position: the field is global.
        return fields if self.track_running_stats else None

    def training_notes(self, shape, batch):
        values = batch * math.prod(shape[1:])
        if values > 1:
            return []
        return [f"in training PyTorch refuses a BatchNorm that sees one value per channel (batch {batch} × "
                f"{fmt_shape(shape[1:]) if len(shape) > 1 else '1'} positions): train with a batch of 2 or more"]

    def saved(self, shape, out, ctx):
        """In training: its input and the batch's mean and inverse std per channel (whatever the batch)."""
        stat = dict(shape=(shape[0],), dtype="stat", per_sample=False)
        return (Saved("input", "its input"), Saved("new", "the batch mean per channel", **stat),
                Saved("new", "the inverse standard deviation per channel", **stat))

    def label(self, shape: Shape) -> str:
        return "BatchNorm"


@register("groupnorm")
class GroupNorm(Layer):
    """Normalise each group of C/G channels over its channels and positions; γ, β per channel."""

    signature = dict(num_groups=REQUIRED, num_channels=None, eps=1e-5, affine=True)

    def autocast_float32(self, device):
        return device == "cuda"

    def setup(self, a: ArgReader) -> None:
        self.num_groups = a.int("num_groups")
        self.num_channels = a.int("num_channels", allow_none=True)
        self.eps = a.number("eps", minimum=0)
        self.affine = a.bool("affine")

    def check_input(self, shape: Shape) -> None:
        if len(shape) < 1:
            raise SpecError("groupnorm needs a channel dimension")
        if self.num_channels is not None and self.num_channels != shape[0]:
            raise SpecError(f"num_channels is {self.num_channels} but the input has {shape[0]} channels",
                            fix=f"set num_channels: {shape[0]}, or leave it out to infer it")
        if shape[0] % self.num_groups:
            raise SpecError(f"num_groups ({self.num_groups}) must divide the {shape[0]} channels",
                            fix="choose num_groups that divides the channel count")

    def tensors(self, shape: Shape) -> dict:
        return {"weight": (shape[0],), "bias": (shape[0],)} if self.affine else {}

    def field(self, shape, fields):
        # Each group's mean and variance run over all its positions: every output depends on the
        # whole input (global), as with LayerNorm.
        return None

    def saved(self, shape, out, ctx):
        return _statistics(f"group ({self.num_groups} per sample)", (self.num_groups,))

    def label(self, shape: Shape) -> str:
        return f"GroupNorm (G={self.num_groups})"


@register("layernorm")
class LayerNorm(Layer):
    """Normalise over the trailing `normalized_shape` (default: the whole per-sample shape)."""

    signature = dict(normalized_shape=None, eps=1e-5, elementwise_affine=True, bias=True)
    layouts = True

    def autocast_float32(self, device):
        return device == "cuda"

    def setup(self, a: ArgReader) -> None:
        given = a.raw("normalized_shape")
        if given is None:
            self.normalized_shape = None
        elif isinstance(given, (list, tuple)):
            self.normalized_shape = a.ints("normalized_shape", len(given))
        else:
            self.normalized_shape = (a.int("normalized_shape"),)
        self.eps = a.number("eps", minimum=0)
        self.affine = a.bool("elementwise_affine")
        self.bias = a.bool("bias")

    def normalized(self, shape: Shape) -> Shape:
        return tuple(shape) if self.normalized_shape is None else self.normalized_shape

    def check_input(self, shape: Shape) -> None:
        want = self.normalized(shape)
        if tuple(shape[len(shape) - len(want):]) != want or len(want) > len(shape):
            raise SpecError(f"normalized_shape {fmt_shape(want)} is not the end of the input shape {fmt_shape(shape)}",
                            fix=f"use the input's trailing dimensions, e.g. normalized_shape: {shape[-1]}")

    def tensors(self, shape: Shape) -> dict:
        if not self.affine:
            return {}
        ns = self.normalized(shape)
        return {"weight": ns, **({"bias": ns} if self.bias else {})}

    def field(self, shape, fields):
        # The normalised axes always include the last. Over the channels alone (channels last, after a
        # permute) each position is normalised on its own; over a spatial axis every output depends on
        # its whole row, so the field is global.
        alone = len(self.normalized(shape)) == 1 and channel_axis(fields) == len(shape) - 1
        return fields if alone else None

    def saved(self, shape, out, ctx):
        rows = tuple(shape[:len(shape) - len(self.normalized(shape))])
        return _statistics("normalised row", rows or (1,))

    def label(self, shape: Shape) -> str:
        return "LayerNorm"


def _statistics(what: str, shape: tuple) -> tuple[Saved, ...]:
    """Group/layer norm: the input, and a mean and a reciprocal std per `what`."""
    return (Saved("input", "its input"), Saved("new", f"the mean of each {what}", shape, "stat"),
            Saved("new", f"the reciprocal std of each {what}", shape, "stat"))


@register("layernorm2d")
class LayerNorm2d(LayerNorm):
    """torchvision's LayerNorm2d (ConvNeXt): LayerNorm over the channels of C×H×W, each position alone."""

    layouts = False     # it normalises axis 0, whatever that holds

    def check_input(self, shape: Shape) -> None:
        if len(shape) != 3:
            raise SpecError(f"layernorm2d needs a C×H×W input, but receives {fmt_shape(shape)}",
                            fix="use layernorm on the last dimension for tokens or channels-last inputs")
        if self.normalized_shape not in (None, (shape[0],)):
            raise SpecError(f"normalized_shape {fmt_shape(self.normalized_shape)} must be the {shape[0]} channels",
                            fix=f"set normalized_shape: {shape[0]}, or leave it out to infer it")

    def normalized(self, shape: Shape) -> Shape:
        return (shape[0],)

    def field(self, shape, fields):
        return fields

    def saved(self, shape, out, ctx):
        return _statistics("position", tuple(shape[1:]))

    def label(self, shape: Shape) -> str:
        return "LayerNorm2d"


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@register("transforminput")
class TransformInput(Layer):
    """torchvision's `transform_input` of GoogLeNet and Inception v3 (on with their ImageNet weights): an
    input normalised with ImageNet's mean and std re-normalised to mean 0.5 and std 0.5, channel by
    channel: x_c·(std_c/0.5) + (mean_c - 0.5)/0.5. The constants are the model's, not parameters; an
    elementwise affine counts no MACs; the receptive field is kept.
    """

    signature = dict(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))

    def setup(self, a: ArgReader) -> None:
        self.mean, self.std = _numbers(a, "mean"), _numbers(a, "std", positive=True)
        if len(self.mean) != len(self.std):
            a.fail("std", f"has {len(self.std)} values but mean has {len(self.mean)}",
                   fix="give one mean and one std per input channel")

    def scale_shift(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per channel, torchvision's constants: (std/0.5, (mean - 0.5)/0.5)."""
        return tuple(s / 0.5 for s in self.std), tuple((m - 0.5) / 0.5 for m in self.mean)

    def check_input(self, shape: Shape) -> None:
        if shape[0] != len(self.mean):
            raise SpecError(f"transforminput has {len(self.mean)} means and stds but the input has {shape[0]} "
                            "channels", fix="give one mean and one std per channel (the defaults are ImageNet's "
                                            "three), or put it where the image comes in")

    def saved(self, shape, out, ctx):
        return ()      # products with constants and a concatenation: backward needs no tensor

    def label(self, shape: Shape) -> str:
        imagenet = self.mean == IMAGENET_MEAN and self.std == IMAGENET_STD
        return "TransformInput (ImageNet)" if imagenet else "TransformInput"


def _numbers(a: ArgReader, name: str, positive: bool = False) -> tuple[float, ...]:
    """A non-empty list of finite numbers (positive ones if asked)."""
    value = a.raw(name)
    if not isinstance(value, (list, tuple)) or not value or len(value) > 4096:
        a.fail(name, "must be a list with one number per channel", fix=f"write e.g. `{name}: [0.5, 0.5, 0.5]`")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
            a.fail(name, f"holds {v!r}, not a {'positive ' if positive else ''}finite number",
                   fix=f"write e.g. `{name}: [0.5, 0.5, 0.5]`")
    return tuple(float(v) for v in value)
