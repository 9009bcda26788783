"""The PyTorch model equivalent to a parsed cnncalc network — the independent oracle for the tests.

`build(network)` turns the Node tree into torch.nn modules whose `state_dict()` keys are exactly
`<our path>.weight` etc.: lists, blocks and repeats become nn.Sequential, a residual has attributes
`body` and `shortcut`, a concat or multiply one attribute per branch name. Each leaf gets PyTorch's own class
with the arguments the layer validated; input sizes (in_channels, in_features, num_features) come
from the shapes our analysis computed, so a wrong inference shows up as a torch error or mismatch.

`read(text)` is a second, fully independent route: it reads the YAML itself and hands every
layer's arguments to the torch.nn class of that name as they are (PyTorch applies its own defaults),
inferring input sizes by running a sample through the layers built so far. It shares nothing with
cnncalc but the path convention, so it is the oracle the comparisons use.

`run(model, network)` pushes a batch through the model with forward hooks and returns, for every
entry of the network, the per-sample input and output shapes torch saw; `disagreements(text)`
compares every row of cnncalc's analysis with that.

Not a test file: imported by the oracle, property, receptive-field and forward-equivalence tests.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass

import yaml

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnncalc
from cnncalc.layers import activation, attention, conv, learned, linear, norm, pool, rearrange, reshape
from cnncalc.layers.composite import Concat, Multiply, Residual, Sequential


class ResidualModule(nn.Module):
    """body(x) + shortcut(x); an empty shortcut is the identity. Unequal shapes are refused rather
    than broadcast: no real residual relies on broadcasting, and cnncalc refuses them too."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential, order=("body", "shortcut")):
        super().__init__()
        self.body, self.shortcut, self.order = body, shortcut, order

    def forward(self, x):
        outputs = _branches(self, self.order, x)
        return self.add(outputs["body"], outputs["shortcut"])

    @staticmethod
    def add(body, shortcut):
        if body.shape != shortcut.shape:
            raise ValueError(f"residual shapes differ: body {tuple(body.shape)}, shortcut {tuple(shortcut.shape)}")
        return body + shortcut


class ConcatModule(nn.Module):
    """Named branches joined along the channels (dim 1, after the batch)."""

    def __init__(self, branches: dict[str, nn.Sequential], order=None):
        super().__init__()
        self.names = list(branches)
        self.order = order or self.names
        for name, module in branches.items():
            self.add_module(name, module)

    def forward(self, x):
        outputs = _branches(self, self.order, x)
        return torch.cat([outputs[name] for name in self.names], dim=1)


def _branches(module: nn.Module, order, x) -> dict:
    """Every branch of a composite module on x, in `order`; before a branch runs, each crop in it that
    is sized like a branch already run gets that branch's output as its target (U-Net's
    `crop(skip, up.shape)`; a composite nearer the crop, run later, sets its own)."""
    outputs = {}
    for name in order:
        branch = getattr(module, name)
        for crop in branch.modules():
            if isinstance(crop, CropLike) and crop.like in outputs:
                crop.target = outputs[crop.like]
        outputs[name] = branch(x)
    return outputs


# --- torchvision's building blocks and tensor operations, written here from their definitions --------
# (torchvision cannot be installed where the tests run; tests/test_attention.py records how these were
# compared with torchvision's own modules.) `build(x, **args)` makes one from the arguments a spec gives
# and the batched sample `x` arriving, inferring sizes as cnncalc does.

class Permute(nn.Module):
    """torchvision.ops.Permute: torch.permute with the batch as dim 0."""

    def __init__(self, dims):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x):
        return x.permute(*self.dims)


class Select(nn.Module):
    """torch.select: x[:, 0] is Select(1, 0)."""

    def __init__(self, dim, index):
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x):
        return x.select(self.dim, self.index)


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth: the identity at inference; in training x times a Bernoulli(1 - p)
    noise / (1 - p), one value per sample ("row") or one for the batch ("batch")."""

    def __init__(self, p, mode):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0] if self.mode == "row" else 1] + [1] * (x.dim() - 1)
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise


class LayerNorm2d(nn.LayerNorm):
    """torchvision's LayerNorm2d: LayerNorm over the channels of NCHW, at every position."""

    @classmethod
    def build(cls, x, normalized_shape=None, **args):
        return cls(normalized_shape or x.shape[1], **args)

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ClassToken(nn.Module):
    """ViT's class token: a learned 1×1×D token put before the N×L×D sequence."""

    def __init__(self, hidden_dim):
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))

    @classmethod
    def build(cls, x):
        return cls(x.shape[-1])

    def forward(self, x):
        return torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)


class PosEmbedding(nn.Module):
    """ViT's position embedding: a learned 1×L×D tensor added to the sequence."""

    def __init__(self, shape):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, *shape).normal_(std=0.02))

    @classmethod
    def build(cls, x):
        return cls(tuple(x.shape[1:]))

    def forward(self, x):
        return x + self.pos_embedding


class LayerScale(nn.Module):
    """ConvNeXt's layer scale: a learned C×1×1 tensor multiplying the N×C×H×W map."""

    def __init__(self, channels, rank, layer_scale=1e-6):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones(channels, *(1,) * rank) * layer_scale)

    @classmethod
    def build(cls, x, layer_scale=1e-6):
        return cls(x.shape[1], x.dim() - 2, layer_scale)

    def forward(self, x):
        return self.layer_scale * x


class SelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention (same parameters and keys) called as self-attention, attn(x, x, x). It asks
    for the weights, so PyTorch takes the path FlopCounterMode counts (same output)."""

    @classmethod
    def build(cls, x, embed_dim=None, **args):
        return cls(embed_dim or x.shape[-1], **{"batch_first": True, **args})

    def forward(self, x):
        return super().forward(x, x, x, need_weights=True)[0]


class ShiftedWindowAttention(nn.Module):
    """Swin's shifted-window self-attention on N×H×W×C, as torchvision defines it: pad H, W to whole
    windows; roll by -shift (no shift along an axis one window covers); attention inside each window
    with the bias table indexed by relative position, and -100 added between regions the roll joined;
    roll back, crop."""

    def __init__(self, dim, window_size, shift_size, num_heads, qkv_bias=True, proj_bias=True,
                 attention_dropout=0.0, dropout=0.0):
        super().__init__()
        self.window_size = _pair(window_size)
        self.shift_size = _pair(shift_size)
        self.num_heads = num_heads
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.empty((2 * wh - 1) * (2 * ww - 1), num_heads).normal_(std=0.02))
        rows, cols = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
        rows, cols = rows.flatten(), cols.flatten()
        index = (rows[:, None] - rows[None, :] + wh - 1) * (2 * ww - 1) + (cols[:, None] - cols[None, :] + ww - 1)
        self.register_buffer("relative_position_index", index.flatten())
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    @classmethod
    def build(cls, x, dim=None, **args):
        return cls(dim or x.shape[-1], **args)

    def forward(self, x):
        n, h, w, c = x.shape
        (wh, ww), heads = self.window_size, self.num_heads
        x = F.pad(x, (0, 0, 0, -w % ww, 0, -h % wh))
        ph, pw = x.shape[1:3]
        shift = [0 if win >= size else s for s, win, size in zip(self.shift_size, self.window_size, (ph, pw))]
        if any(shift):
            x = torch.roll(x, (-shift[0], -shift[1]), dims=(1, 2))
        windows = x.reshape(n, ph // wh, wh, pw // ww, ww, c).transpose(2, 3).reshape(-1, wh * ww, c)
        q, k, v = self.qkv(windows).reshape(windows.shape[0], wh * ww, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        scores = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index].reshape(wh * ww, wh * ww, heads)
        scores = scores + bias.permute(2, 0, 1)
        if any(shift):
            region = torch.zeros(ph, pw)
            for i, rows in enumerate(_shift_regions(wh, shift[0])):
                for j, cols in enumerate(_shift_regions(ww, shift[1])):
                    region[rows, cols] = 3 * i + j
            region = region.reshape(ph // wh, wh, pw // ww, ww).transpose(1, 2).reshape(-1, wh * ww)
            mask = (region[:, None, :] != region[:, :, None]).to(scores.dtype) * -100.0   # windows × N × N
            scores = (scores.reshape(n, -1, heads, wh * ww, wh * ww) + mask[None, :, None]).flatten(0, 1)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(-1, wh * ww, c)
        out = self.proj(out).reshape(n, ph // wh, pw // ww, wh, ww, c).transpose(2, 3).reshape(n, ph, pw, c)
        if any(shift):
            out = torch.roll(out, (shift[0], shift[1]), dims=(1, 2))
        return out[:, :h, :w].contiguous()


def _shift_regions(window, shift):
    """The three bands of torchvision's mask along one axis (slices with the same bounds it uses)."""
    return slice(0, -window), slice(-window, -shift), slice(-shift, None)


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


class PatchMerging(nn.Module):
    """Swin's patch merging on N×H×W×C: pad to even H, W; concatenate each 2×2 patch's vectors in the
    order (0,0), (1,0), (0,1), (1,1); LayerNorm(4C) `norm`; Linear(4C, 2C, bias=False) `reduction`."""

    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    @classmethod
    def build(cls, x, dim=None, **args):
        return cls(dim or x.shape[-1], **args)

    def forward(self, x):
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


# YAML type -> the torch module for it, for the types torch.nn has no class of its own for
EXTRA_CLASSES = {"permute": Permute, "select": Select, "stochasticdepth": StochasticDepth,
                 "layernorm2d": LayerNorm2d, "classtoken": ClassToken, "posembedding": PosEmbedding,
                 "layerscale": LayerScale, "multiheadattention": SelfAttention,
                 "shiftedwindowattention": ShiftedWindowAttention, "patchmerging": PatchMerging}


class MultiplyModule(ConcatModule):
    """Named branches multiplied elementwise with torch's broadcasting. Branches of different ranks
    are refused rather than broadcast against the batch dimension (cnncalc refuses them too)."""

    def forward(self, x):
        outputs = _branches(self, self.order, x)
        return self.multiply([outputs[name] for name in self.names])

    @staticmethod
    def multiply(outputs):
        if len({y.dim() for y in outputs}) > 1:
            raise ValueError(f"multiply ranks differ: {[tuple(y.shape) for y in outputs]}")
        result = outputs[0]
        for y in outputs[1:]:
            result = result * y
        return result


class Chunk(nn.Module):
    """`x.chunk(chunks, dim)[index]`; unequal chunks are refused, as cnncalc refuses them (torch would
    make the last one smaller, or return fewer chunks)."""

    def __init__(self, chunks, index, dim=1):
        super().__init__()
        self.chunks, self.index, self.dim = chunks, index, dim

    def forward(self, x):
        if x.shape[self.dim] % self.chunks:
            raise ValueError(f"{x.shape[self.dim]} does not split into {self.chunks} equal chunks")
        return x.chunk(self.chunks, self.dim)[self.index]


class Narrow(nn.Module):
    """torch.narrow(x, dim, start, length); dim 0 (the batch) refused as cnncalc refuses it."""

    def __init__(self, dim, start, length):
        super().__init__()
        self.dim, self.start, self.length = dim, start, length

    def forward(self, x):
        if self.dim % x.dim() == 0 or self.length < 1:
            raise ValueError("narrow over the batch, or to nothing")
        return x.narrow(self.dim, self.start, self.length)


class CenterCrop(nn.Module):
    """torchvision.transforms.functional.center_crop on a 4-D batch, as torchvision writes it: pad with
    zeros where the crop is larger ((crop - size)//2 before, the rest after), then crop at
    int(round((size - crop)/2)) (Python's round: halves to even)."""

    def __init__(self, size):
        super().__init__()
        size = size[0] if isinstance(size, (list, tuple)) and len(size) == 1 else size
        self.size = tuple(size) if isinstance(size, (list, tuple)) else (int(size), int(size))

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError("centre crop of C×H×W images only")
        (crop_h, crop_w), (h, w) = self.size, x.shape[-2:]
        if crop_w > w or crop_h > h:
            left, top = max(crop_w - w, 0) // 2, max(crop_h - h, 0) // 2
            right, bottom = max(crop_w - w + 1, 0) // 2, max(crop_h - h + 1, 0) // 2
            x = torch.nn.functional.pad(x, [left, right, top, bottom])
            h, w = x.shape[-2:]
        top, left = int(round((h - crop_h) / 2.0)), int(round((w - crop_w) / 2.0))
        return x[..., top:top + crop_h, left:left + crop_w]


class TransformInput(nn.Module):
    """torchvision's GoogLeNet/Inception3 `_transform_input` with transform_input=True, as torchvision writes
    it for three channels (x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5, ...),
    for any channels and means/stds."""

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)

    def forward(self, x):
        if x.shape[1] != len(self.mean):
            raise ValueError(f"{x.shape[1]} channels for {len(self.mean)} means")
        return torch.cat([torch.unsqueeze(x[:, c], 1) * (s / 0.5) + (m - 0.5) / 0.5
                          for c, (m, s) in enumerate(zip(self.mean, self.std))], 1)


EXTRA_CLASSES["transforminput"] = TransformInput


class CropLike(CenterCrop):
    """A centre crop to the spatial size of a sibling branch's output (`target`, set by the composite
    around it before this branch runs)."""

    def __init__(self, like):
        nn.Module.__init__(self)
        self.like, self.target = like, None

    def forward(self, x):
        self.size = tuple(self.target.shape[-2:])
        return super().forward(x)


def build(network: cnncalc.Network, report: cnncalc.Report | None = None) -> nn.Module:
    """The torch model of `network` in eval mode (dropout off, BatchNorm on running statistics).

    `report` (from cnncalc.analyse) supplies each leaf's input shape; computed when omitted.
    """
    report = report or cnncalc.analyse(network)
    inputs = {row.path: row.input for row in report.rows}
    model = _sequence(network.root.branches[""], inputs)
    return model.eval()


def _sequence(nodes, inputs) -> nn.Sequential:
    return nn.Sequential(*(_module(node, inputs) for node in nodes))


def _module(node, inputs) -> nn.Module:
    layer = node.layer
    if isinstance(layer, Residual):
        return ResidualModule(_sequence(node.branches["body"], inputs),
                              _sequence(node.branches.get("shortcut", []), inputs))
    if isinstance(layer, (Concat, Multiply)):
        cls = MultiplyModule if isinstance(layer, Multiply) else ConcatModule
        return cls({name: _sequence(nodes, inputs) for name, nodes in node.branches.items()})
    if isinstance(layer, Sequential):
        return _sequence(node.branches[""], inputs)
    return leaf(layer, inputs[node.path])


def leaf(layer, shape: tuple) -> nn.Module:
    """The torch.nn module for one leaf layer receiving the per-sample `shape`."""
    rank = layer.rank
    if isinstance(layer, conv.Conv):
        cls = getattr(nn, f"Conv{rank}d")
        return cls(shape[0], layer.out_channels, _arg(layer.kernel_size), _arg(layer.stride),
                   padding=_arg(layer.padding), dilation=_arg(layer.dilation), groups=layer.groups,
                   bias=layer.bias, padding_mode=layer.padding_mode)
    if isinstance(layer, conv.ConvTranspose):
        cls = getattr(nn, f"ConvTranspose{rank}d")
        return cls(shape[0], layer.out_channels, _arg(layer.kernel_size), _arg(layer.stride),
                   padding=_arg(layer.padding), output_padding=_arg(layer.output_padding),
                   groups=layer.groups, bias=layer.bias, dilation=_arg(layer.dilation))
    if isinstance(layer, pool.MaxPool):
        return getattr(nn, f"MaxPool{rank}d")(_arg(layer.kernel_size), _arg(layer.stride), _arg(layer.padding),
                                              _arg(layer.dilation), ceil_mode=layer.ceil_mode)
    if isinstance(layer, pool.AvgPool):
        return getattr(nn, f"AvgPool{rank}d")(_arg(layer.kernel_size), _arg(layer.stride), _arg(layer.padding),
                                              ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad,
                                              **_given(divisor_override=layer.divisor_override))
    if isinstance(layer, pool.AdaptiveAvgPool):
        return getattr(nn, f"AdaptiveAvgPool{rank}d")(_arg(layer.output_size))
    if isinstance(layer, pool.AdaptiveMaxPool):
        return getattr(nn, f"AdaptiveMaxPool{rank}d")(_arg(layer.output_size))
    if isinstance(layer, linear.Linear):
        return nn.Linear(shape[-1], layer.out_features, bias=layer.bias)
    if isinstance(layer, norm.BatchNorm):
        return getattr(nn, f"BatchNorm{rank}d")(shape[0], eps=layer.eps, affine=layer.affine,
                                                track_running_stats=layer.track_running_stats)
    if isinstance(layer, norm.GroupNorm):
        return nn.GroupNorm(layer.num_groups, shape[0], eps=layer.eps, affine=layer.affine)
    if isinstance(layer, norm.LayerNorm2d):
        return LayerNorm2d(shape[0], eps=layer.eps, elementwise_affine=layer.affine, bias=layer.bias)
    if isinstance(layer, norm.LayerNorm):
        return nn.LayerNorm(_arg(layer.normalized(shape)), eps=layer.eps, elementwise_affine=layer.affine,
                            bias=layer.bias)
    if isinstance(layer, activation.Activation):
        return getattr(nn, layer.display)(**layer.options)
    if isinstance(layer, activation._Softmax):
        return getattr(nn, layer.display)(dim=layer.dim)
    if isinstance(layer, reshape.Flatten):
        return nn.Flatten(layer.start_dim, layer.end_dim)
    if isinstance(layer, reshape.Identity):
        return nn.Identity()
    if isinstance(layer, reshape._Dropout):
        return getattr(nn, f"Dropout{rank}d" if rank else "Dropout")(layer.p)
    if isinstance(layer, reshape.ZeroPad):
        # Our per-axis (lo, hi), first spatial axis first; PyTorch lists the last axis first.
        sides = tuple(side for lo_hi in reversed(layer.pads) for side in lo_hi)
        return getattr(nn, f"ZeroPad{rank}d")(sides)
    if isinstance(layer, reshape.Upsample):
        return nn.Upsample(size=_arg(layer.size), scale_factor=_arg(layer.scale_factor), mode=layer.mode,
                           align_corners=layer.align_corners, recompute_scale_factor=layer.recompute_scale_factor)
    if isinstance(layer, reshape.Permute):
        return Permute(layer.dims)
    if isinstance(layer, reshape.Unflatten):
        return nn.Unflatten(layer.dim, layer.sizes)
    if isinstance(layer, reshape.Select):
        return Select(layer.dim, layer.index)
    if isinstance(layer, reshape.StochasticDepth):
        return StochasticDepth(layer.p, layer.mode)
    if isinstance(layer, learned.ClassToken):
        return ClassToken(shape[-1])
    if isinstance(layer, learned.PosEmbedding):
        return PosEmbedding(shape)
    if isinstance(layer, learned.LayerScale):
        return LayerScale(shape[0], len(shape) - 1, layer.init)
    if isinstance(layer, attention.MultiheadAttention):
        return SelfAttention(shape[-1], layer.num_heads, dropout=layer.dropout, bias=layer.bias,
                             add_bias_kv=layer.add_bias_kv, add_zero_attn=layer.add_zero_attn, batch_first=True)
    if isinstance(layer, attention.ShiftedWindowAttention):
        return ShiftedWindowAttention(shape[-1], layer.window_size, layer.shift_size, layer.num_heads,
                                      layer.qkv_bias, layer.proj_bias)
    if isinstance(layer, attention.PatchMerging):
        return PatchMerging(shape[-1], layer.eps)
    if isinstance(layer, rearrange.Chunk):
        return Chunk(layer.chunks, layer.index, layer.dim)
    if isinstance(layer, rearrange.Narrow):
        return Narrow(layer.dim, layer.start, layer.length)
    if isinstance(layer, rearrange.ChannelShuffle):
        return nn.ChannelShuffle(layer.groups)
    if isinstance(layer, rearrange.PixelShuffle):
        return nn.PixelShuffle(layer.r)
    if isinstance(layer, rearrange.PixelUnshuffle):
        return nn.PixelUnshuffle(layer.r)
    if isinstance(layer, rearrange.CenterCrop):
        return CenterCrop(layer.size)
    if isinstance(layer, norm.TransformInput):
        return TransformInput(layer.mean, layer.std)
    raise NotImplementedError(f"no torch module for {type(layer).__name__} ({layer.kind})")


def _given(**kwargs) -> dict:
    """Only the keyword arguments that are set (AvgPool1d has no divisor_override, so a set one fails)."""
    return {key: value for key, value in kwargs.items() if value is not None}


def _arg(value):
    """Lists (YAML sequences) become tuples, the way torch.nn takes per-axis arguments."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


@dataclass
class Seen:
    """What torch saw at one entry, per sample (batch removed)."""

    input: tuple
    output: tuple
    params: int
    module: nn.Module


def run(model: nn.Module, network: cnncalc.Network, batch: int = 2, x: torch.Tensor | None = None,
        dtype=torch.float32) -> tuple[torch.Tensor, dict[str, Seen]]:
    """Forward a random batch (or `x`) with hooks: (output, {path: Seen}) for every entry of `network`."""
    paths = {node.path for node in network.nodes()}
    seen: dict[str, Seen] = {}

    def record(path):
        def hook(module, args, out):
            seen[path] = Seen(tuple(args[0].shape[1:]), tuple(out.shape[1:]),
                              sum(p.numel() for p in module.parameters()), module)
        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules()
               if name in paths]
    if x is None:
        x = torch.randn(batch, *network.input, dtype=dtype)
    try:
        with torch.no_grad():
            out = model.to(dtype)(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, seen


def torch_macs(module: nn.Module, seen: Seen) -> int:
    """Multiply-adds from the torch module's own attributes and the shapes it saw (bias excluded)."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return (module.in_channels * math.prod(seen.input[1:]) * (module.out_channels // module.groups)
                * math.prod(module.kernel_size))
    if isinstance(module, nn.modules.conv._ConvNd):
        return (module.out_channels * math.prod(seen.output[1:]) * (module.in_channels // module.groups)
                * math.prod(module.kernel_size))
    if isinstance(module, nn.Linear):
        return math.prod(seen.input[:-1]) * module.in_features * module.out_features
    if isinstance(module, (SelfAttention, ShiftedWindowAttention, PatchMerging)):
        return counted_macs(module, seen.input)
    return 0


def counted_macs(module: nn.Module, shape: tuple) -> int:
    """Multiply-adds of one sample through `module` as torch.utils.flop_counter counts them (FLOPs / 2:
    matmuls, linears and convolutions, bias adds excluded), with the fused attention path off."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        param = next(module.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(torch.zeros(1, *shape, dtype=param.dtype))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() // 2


# --- the independent reader: YAML text → torch.nn, with PyTorch's own argument handling ------------

TORCH_CLASSES = {name.lower(): cls for name, cls in vars(nn).items()
                 if isinstance(cls, type) and issubclass(cls, nn.Module)}
TORCH_CLASSES.update(chunk=Chunk, narrow=Narrow, centercrop=CenterCrop)   # torch functions, torchvision's crop
ENTRY_KEYS = ("name", "repeat", "expect")
# cnncalc infers these from the incoming shape; PyTorch needs them given.
INFERRED = {"in_channels": lambda x: x.shape[1], "num_features": lambda x: x.shape[1],
            "num_channels": lambda x: x.shape[1], "in_features": lambda x: x.shape[-1]}
SHAPE_SEP = re.compile(r"\s*[x×X*,]\s*")


def read(text: str, input_shape: tuple | None = None) -> tuple[nn.Module, tuple]:
    """(model, per-sample input shape) for a spec, built without cnncalc. Raises whatever torch raises
    for arguments or shapes it refuses (construction or the sample forward)."""
    data = yaml.safe_load(text)
    shape = input_shape or _shape(data["input"])
    reader = _Reader(data.get("blocks") or {})
    with torch.no_grad():
        model, _ = reader.sequence(data["layers"], torch.zeros(2, *shape), {})
    return model.eval(), shape


def _shape(value) -> tuple:
    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        return tuple(int(p) for p in SHAPE_SEP.split(value.strip()) if p)
    return tuple(value)


class _NotYet(Exception):
    """A crop sized like a sibling branch that has not run yet: its branch is read after the others."""


class _Reader:
    def __init__(self, blocks: dict):
        self.blocks = blocks
        self.siblings: list[tuple[tuple, dict]] = []   # (branch names, outputs so far) of composites being read

    def branches(self, args: dict, names, x, env) -> tuple[dict, list]:
        """({name: (module, output)}, the order they ran in): a branch whose crop is sized like a
        sibling that has not run yet is read again after the others."""
        built, order, pending = {}, [], list(names)
        self.siblings.append((tuple(names), {}))
        try:
            while pending:
                for name in pending:
                    try:
                        built[name] = self.sequence(args.get(name), x, env)
                    except _NotYet:
                        continue
                    self.siblings[-1][1][name] = built[name][1]
                    order.append(name)
                    pending.remove(name)
                    break
                else:
                    raise ValueError(f"branches {pending} are sized like each other in a circle")
        finally:
            self.siblings.pop()
        return built, order

    def crop_like(self, like: str, x):
        for names, outputs in reversed(self.siblings):
            if like in names:
                if like not in outputs:
                    raise _NotYet(like)
                module = CropLike(like)
                module.target = outputs[like]
                return module, module(x)
        raise ValueError(f"no branch {like} around the crop")

    def sequence(self, items, x, env) -> tuple[nn.Sequential, torch.Tensor]:
        if isinstance(items, (dict, str)):   # a branch written as one entry: paths still .0
            items = [items]
        modules = []
        for item in items or []:
            module, x = self.entry(item, x, env)
            modules.append(module)
        return nn.Sequential(*modules), x

    def entry(self, item, x, env):
        if isinstance(item, str):
            kind, args, repeat = item, None, 1
        else:
            (kind,) = [k for k in item if k not in ENTRY_KEYS]
            args, repeat = item[kind], _substitute(item.get("repeat", 1), env)
        if repeat == 1:
            return self.build(kind, args, x, env)
        copies = []
        for _ in range(repeat):
            module, x = self.build(kind, args, x, env)
            copies.append(module)
        return nn.Sequential(*copies), x

    def build(self, kind, args, x, env):
        kind = _substitute(kind, env)
        lowered = kind.lower()
        if lowered == "sequential":
            return self.sequence(args, x, env)
        if lowered == "residual":
            built, order = self.branches(args, ("body", "shortcut"), x, env)
            (body, y), (shortcut, z) = built["body"], built["shortcut"]
            return ResidualModule(body, shortcut, order), ResidualModule.add(y, z)
        if lowered in ("concat", "multiply"):
            built, order = self.branches(args, list(args), x, env)
            outputs = [built[name][1] for name in args]
            modules = {name: built[name][0] for name in args}
            if lowered == "multiply":
                return MultiplyModule(modules, order), MultiplyModule.multiply(outputs)
            return ConcatModule(modules, order), torch.cat(outputs, dim=1)
        if lowered == "centercrop" and "like" in (args or {}):
            return self.crop_like(args["like"], x)
        if kind in self.blocks:
            block = self.blocks[kind]
            block = block if isinstance(block, dict) else {"layers": block}
            given = {key: _substitute(value, env) for key, value in (args or {}).items()}
            defaults = block.get("args") or {}
            inner = {**(defaults if isinstance(defaults, dict) else {}), **given}   # a list: all required
            return self.sequence(block["layers"], x, inner)
        kwargs = {key: _tuples(_substitute(value, env)) for key, value in (args or {}).items()}
        if lowered in EXTRA_CLASSES:
            cls = EXTRA_CLASSES[lowered]
            module = (cls.build(x, **kwargs) if hasattr(cls, "build") else cls(**kwargs)).eval()
            return module, module(x)
        cls = TORCH_CLASSES[lowered]
        for name, infer in INFERRED.items():
            if name not in kwargs and name in _parameters(cls):
                kwargs[name] = infer(x)
        if cls is nn.LayerNorm and "normalized_shape" not in kwargs:
            kwargs["normalized_shape"] = tuple(x.shape[1:])
        module = cls(**kwargs).eval()
        y = module(x)
        if y.numel() == 0:
            # torch returns an empty tensor where an axis shrinks to 0; cnncalc refuses that by design
            raise ValueError(f"{kind} leaves an empty output {tuple(y.shape)}")
        return module, y


def _parameters(cls) -> tuple:
    return cls.__init__.__code__.co_varnames[:cls.__init__.__code__.co_argcount]


def _tuples(value):
    return tuple(value) if isinstance(value, list) else value


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
        ast.Mod: operator.mod}


def _substitute(value, env: dict):
    """`$name` and integer arithmetic over $names, evaluated on the syntax tree (no eval)."""
    if isinstance(value, list):
        return [_substitute(v, env) for v in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    tree = ast.parse(re.sub(r"\$(\w+)", r"\1", value.strip()), mode="eval").body

    def evaluate(node):
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](evaluate(node.left), evaluate(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -evaluate(node.operand)
        raise ValueError(f"unsupported expression {value!r}")

    return evaluate(tree)


# --- the comparison --------------------------------------------------------------------------------

def disagreements(text: str, batch: int = 2, input_shape=None) -> list[str]:
    """Every way cnncalc's analysis of `text` differs from PyTorch, one line each ([] = agreement):
    per entry the input/output shape, params, weight/bias shapes and MACs; then the totals."""
    network = cnncalc.parse(text, input_shape=input_shape)
    report = cnncalc.analyse(network)
    model, _ = read(text, network.input)
    out, seen = run(model, network, batch)
    nodes = {node.path: node for node in network.nodes()}
    problems = []

    def differ(path, what, ours, theirs):
        if ours != theirs:
            problems.append(f"{path or 'total'} {what}: cnncalc {ours}, torch {theirs}")

    for row in report.rows:
        if row.path not in seen:
            problems.append(f"{row.path}: torch has no module at this path")
            continue
        s = seen[row.path]
        differ(row.path, "input", row.input, s.input)
        differ(row.path, "output", row.output, s.output)
        differ(row.path, "params", row.params, s.params)
        leaves = [seen[n.path] for n in nodes[row.path].walk() if n.leaf]
        differ(row.path, "macs", row.macs, sum(torch_macs(t.module, t) for t in leaves))
        if row.leaf:
            differ(row.path, "weight", row.weight, _tensor_shape(s.module, "weight"))
            differ(row.path, "bias", row.bias, _tensor_shape(s.module, "bias"))
            differ(row.path, "buffers", row.buffers, sum(b.numel() for name, b in s.module.named_buffers()
                                                         if name != "num_batches_tracked"))
    leaves = [seen[n.path] for n in network.nodes() if n.leaf and n.path in seen]
    differ("", "params", report.totals.params, sum(p.numel() for p in model.parameters()))
    differ("", "macs", report.totals.macs, sum(torch_macs(t.module, t) for t in leaves))
    differ("", "output", report.output, tuple(out.shape[1:]))
    differ("", "activation_bytes", report.totals.activation_bytes, sum(4 * math.prod(t.output) for t in leaves))
    return problems


def assert_same_function(text: str) -> None:
    """The Node-based model (`build`, which the forward-equivalence tests use) computes what the
    independent reader's model does, given the reader's weights (float64, a random batch of 2). A
    pooling window of padding only gives -inf, which later layers turn into NaN in both models alike:
    the same NaN in the same place is the same function."""
    network = cnncalc.parse(text)
    ours, theirs = build(network).double(), read(text)[0].double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, *network.input, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), equal_nan=True)


def _tensor_shape(module: nn.Module, name: str):
    tensor = getattr(module, name, None)
    return tuple(tensor.shape) if isinstance(tensor, nn.Parameter) else None
