"""The PyTorch model equivalent to a parsed cnncalc network — the independent oracle for the tests.

`build(network)` turns the Node tree into torch.nn modules whose `state_dict()` keys are exactly
`<our path>.weight` etc.: lists, blocks and repeats become nn.Sequential, a residual has attributes
`body` and `shortcut`, a concat one attribute per branch name. Each leaf gets PyTorch's own class
with the arguments the layer validated; input sizes (in_channels, in_features, num_features) come
from the shapes our analysis computed, so a wrong inference shows up as a torch error or mismatch.

`run(model, network)` pushes a batch through the model with forward hooks and returns, for every
entry of the network, the per-sample input and output shapes torch saw.

Not a test file: imported by the oracle, property, receptive-field and forward-equivalence tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

import cnncalc
from cnncalc.layers import activation, conv, linear, norm, pool, reshape
from cnncalc.layers.composite import Concat, Residual, Sequential


class ResidualModule(nn.Module):
    """body(x) + shortcut(x); an empty shortcut is the identity."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class ConcatModule(nn.Module):
    """Named branches joined along the channels (dim 1, after the batch)."""

    def __init__(self, branches: dict[str, nn.Sequential]):
        super().__init__()
        self.names = list(branches)
        for name, module in branches.items():
            self.add_module(name, module)

    def forward(self, x):
        return torch.cat([getattr(self, name)(x) for name in self.names], dim=1)


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
    if isinstance(layer, Concat):
        return ConcatModule({name: _sequence(nodes, inputs) for name, nodes in node.branches.items()})
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
                           align_corners=layer.align_corners)
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
    return 0
