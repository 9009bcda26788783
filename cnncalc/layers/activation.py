"""Elementwise activations (torch.nn.ReLU, …) and softmax along one dimension."""
from __future__ import annotations

from ..arith import channel_axis
from ..errors import SpecError
from .base import REGISTRY, ArgReader, Layer, Saved, Shape, register


class Activation(Layer):
    """An elementwise function: same shape out, no parameters, no MACs, receptive field kept."""

    def setup(self, a: ArgReader) -> None:
        self.options = {}
        for name, default in self.signature.items():
            if isinstance(default, bool):
                self.options[name] = a.bool(name)
            elif isinstance(default, str):
                self.options[name] = a.choice(name, ("none", "tanh"))
            else:
                self.options[name] = a.number(name)

    def label(self, shape: Shape) -> str:
        return self.display

    # What autograd keeps: `keeps` is "input" or "output" (ReLU, sigmoid and tanh compute their
    # gradient from their output). In place, a type that keeps its output keeps the overwritten tensor;
    # one that needs its input keeps a copy made before overwriting it.
    keeps: str = "input"
    keeps_in_place: str = "copy"

    def output_storage(self, shape, training):
        return "inplace" if self.options.get("inplace") else "new"

    def saved(self, shape, out, ctx):
        inplace = self.options.get("inplace")
        if self.keeps == "output" or (inplace and self.keeps_in_place == "output"):
            return (Saved("output", "its output, from which its gradient is computed"),)
        if inplace:
            return (Saved("new", "a copy of its input made before it is overwritten in place", shape),)
        return (Saved("input", "its input, from which its gradient is computed"),)


# YAML name -> (PyTorch's display name, its keyword arguments with defaults, what its backward keeps)
_ACTIVATIONS = {
    "relu": ("ReLU", dict(inplace=False), "output"),
    "relu6": ("ReLU6", dict(inplace=False), "input"),
    "leakyrelu": ("LeakyReLU", dict(negative_slope=0.01, inplace=False), "input"),
    "elu": ("ELU", dict(alpha=1.0, inplace=False), "input"),
    "gelu": ("GELU", dict(approximate="none"), "input"),
    "silu": ("SiLU", dict(inplace=False), "input"),
    "sigmoid": ("Sigmoid", {}, "output"),
    "tanh": ("Tanh", {}, "output"),
    "hardswish": ("Hardswish", dict(inplace=False), "input"),
    "hardsigmoid": ("Hardsigmoid", dict(inplace=False), "input"),
}
for _name, (_display, _signature, _keeps) in _ACTIVATIONS.items():
    register(_name)(type(_display, (Activation,), {"signature": _signature, "display": _display, "keeps": _keeps,
                                                    "__doc__": f"torch.nn.{_display}, elementwise."}))
# In place, LeakyReLU and ELU compute their gradient from the overwritten output instead.
for _name in ("leakyrelu", "elu"):
    REGISTRY[_name].keeps_in_place = "output"


class _Softmax(Layer):
    """Softmax along `dim` (PyTorch counts the batch as dim 0, so channels are dim 1)."""

    signature = dict(dim=None)
    layouts = True

    def autocast_float32(self, device):
        return device == "cuda"

    def setup(self, a: ArgReader) -> None:
        self.dim = a.int("dim", minimum=None, allow_none=True)

    def axis(self, shape: Shape) -> int:
        """The per-sample axis the softmax runs along."""
        batched = len(shape) + 1
        dim = self.dim
        if dim is None:
            # PyTorch's legacy implicit choice: dim 0 for 1-D/3-D tensors, else 1.
            dim = 0 if batched in (0, 1, 3) else 1
            if dim == 0:
                raise SpecError(f"{self.kind} without `dim` would run along the batch for a {len(shape)}-D input",
                                fix="give dim explicitly, e.g. dim: 1 for channels")
        if not -batched <= dim < batched:
            raise SpecError(f"dim {dim} is out of range for a batched {batched}-D input",
                            fix=f"use a dim from 1 to {batched - 1} (0 is the batch)")
        dim %= batched
        if dim == 0:
            raise SpecError(f"{self.kind} along dim 0 would mix the samples of a batch",
                            fix="use dim: 1 (channels) or a later dimension")
        return dim - 1

    def check_input(self, shape: Shape) -> None:
        self.axis(shape)

    def field(self, shape, fields):
        return fields if self.axis(shape) == channel_axis(fields) else None

    def saved(self, shape, out, ctx):
        return (Saved("output", "its output, from which its gradient is computed"),)

    def label(self, shape: Shape) -> str:
        return f"{self.display}(dim={self.dim})"


register("softmax")(type("Softmax", (_Softmax,), {"display": "Softmax", "__doc__": "torch.nn.Softmax."}))
register("logsoftmax")(type("LogSoftmax", (_Softmax,), {"display": "LogSoftmax", "__doc__": "torch.nn.LogSoftmax."}))
