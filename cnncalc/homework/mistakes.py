"""Classic mistakes, each re-run from the arithmetic: padding forgotten, stride not applied, the + 1
left out, bias left out, kernel area or input channels missing from MACs, channels swapped in a conv
weight, pooling given parameters, the receptive field summed without the jump, BatchNorm statistics
counted as parameters, FLOPs for MACs, an error carried over from an earlier answer, …

A mistake is named only when its value reproduces the student's answer exactly; the layer-specific
ones are found through a registry keyed by layer class, like the working in `working.py`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations
from typing import Callable

from .. import arith
from ..analysis import Row, allocates
from ..layers.activation import Activation
from ..errors import SpecError
from ..layers.base import Layer
from ..layers.conv import Conv, ConvTranspose
from ..layers.linear import Linear
from ..layers.norm import BatchNorm
from ..layers.pool import _Pool
from ..render.text import count, shape as fmt_shape
from . import working

_UNFOLLOWABLE = (SpecError, ArithmeticError, ValueError, IndexError, TypeError, KeyError)  # see check.py
FIELDS = ("output", "weight", "bias", "params", "macs", "flops", "rf", "memory", "param_bytes")


@dataclass
class Mistake:
    """A classic mistake re-run on this layer: the value it produces and the arithmetic that shows it.
    `value` None with `anything` True matches every wrong answer (e.g. parameters given to pooling)."""

    text: str
    value: object = None
    anything: bool = False


def for_row(step: working.Step, naive, tally: Tally) -> dict[str, list[Mistake]]:
    """Every classic mistake that applies to this row, in the order they are tried (the ones carried
    over from a student's earlier answers, which differ per sheet, are `carried`'s).

    `naive` is the field summed without the jump (a Sum per axis); `tally` the sums of the layers under
    a composite."""
    row = step.row
    found: dict[str, list[Mistake]] = {name: [] for name in FIELDS}
    found["output"] += channels_last(row.output)
    for cls in type(step.layer).__mro__:
        if cls in _MISTAKES:
            for name, items in _MISTAKES[cls](step.layer, step).items():
                found[name] += items
            break
    if row.leaf:
        found["params"] += _nothing("params", row.params == 0, step)
        found["macs"] += _nothing("macs", row.macs == 0, step)
        found["weight"] += _nothing("weight", row.weight is None, step)
        found["bias"] += _nothing("bias", row.bias is None, step)
        found["flops"] += _nothing("macs", row.macs == 0, step)
        if row.macs:
            found["flops"].append(_macs_for_flops(row.macs))
    else:
        for name, items in sums(tally).items():
            found[name] += items
    found["memory"] += memory(math.prod(row.output), step.dtype_bytes)
    found["param_bytes"] += memory(row.params, step.dtype_bytes)
    found["rf"] += field(row.rf, naive, step)
    return found


# --- the registry and the mistakes of every layer ---------------------------------------------------------

_MISTAKES: dict[type, Callable[[Layer, working.Step], dict[str, list[Mistake]]]] = {}


def diagnoses(*classes: type):
    """Register the classic mistakes of these layer classes (and their subclasses)."""

    def add(fn):
        for cls in classes:
            _MISTAKES[cls] = fn
        return fn

    return add


def channels_last(shape: tuple) -> list[Mistake]:
    """The shape written H×W×C (CS231n's and TensorFlow's order) where PyTorch's is C×H×W."""
    if len(shape) < 3 or shape[1:] + shape[:1] == shape:
        return []
    last = shape[1:] + shape[:1]
    return [Mistake(f"channels last ({fmt_shape(last)}, H×W×C as CS231n or TensorFlow write it): PyTorch and "
                    f"cnncalc put the channels first, C×H×W = {fmt_shape(shape)}", last)]


def _macs_for_flops(macs: int) -> Mistake:
    return Mistake(f"MACs, not FLOPs: FLOPs count the multiply and the add of each multiply-add, 2·{count(macs)} "
                   f"= {count(2 * macs)}", macs)


def carried(step: working.Step, shape, source) -> dict[str, list[Mistake]]:
    """The student's earlier answers fed this layer another input: their answer may be this layer's
    arithmetic done right on that input, the mistake lying further up."""
    row, layer = step.row, step.layer
    if shape is None or shape == row.input or not row.leaf or max(shape).bit_length() > 64:
        return {}
    try:
        layer.check_input(shape)
        out = layer.out_shape(shape)
        tensors = layer.tensors(shape)
        values = {"output": out, "weight": tensors.get("weight"), "bias": tensors.get("bias"),
                  "params": sum(math.prod(t) for t in tensors.values()), "macs": layer.macs(shape, out),
                  "memory": math.prod(out) * step.dtype_bytes}
    except _UNFOLLOWABLE:
        return {}
    whose = f"your answer for layer {source}" if source else "your earlier answers"
    found = {}
    for name, value in values.items():
        text = (fmt_shape(value) if value is not None else "none") if name in ("output", "weight", "bias") else count(value)
        found[name] = [Mistake(f"carried over from {whose}: on the input {fmt_shape(shape)} (not "
                               f"{fmt_shape(row.input)}) this layer's {name} is {text}, so this step is right and "
                               "the mistake is earlier", value)]
    return found


def _nothing(name: str, applies: bool, step: working.Step) -> list[Mistake]:
    """Any answer but zero/none for what a layer does not have (pooling given parameters, …)."""
    if not applies:
        return []
    kind = step.row.node.kind
    what = {"params": f"{kind} has no learnable parameters",
            "macs": f"{kind} does no multiply-adds (only conv, transposed conv and linear layers count)",
            "weight": f"{kind} has no weight", "bias": f"{kind} has no bias"}[name]
    if isinstance(step.layer, _Pool) and name in ("params", "weight"):
        what = "pooling given parameters: it only takes the maximum or average of each window, nothing is learned"
    return [Mistake(what, anything=True)]


def memory(values: int, size: int) -> list[Mistake]:
    return [Mistake(f"counted values, not bytes: {count(values)} values · {size} B = {count(values * size)} B",
                    values),
            Mistake(f"bits, not bytes: {count(values)} · {size} B · 8 = {count(values * size * 8)} bits", values * size * 8)]


def conventions(report, counted: str) -> list[Mistake]:
    """A total memory answer that follows another convention than the one asked (`counted` is
    "activation_bytes", every layer's output, or "allocated_bytes", what PyTorch allocates): the other
    one, either with the input counted too (CS231n's VGG table lists it), or with every activation
    taken as in place (CS231n counts conv, pool and fully-connected outputs only)."""
    t, b = report.totals, report.dtype.bytes
    given = math.prod(report.network.input) * b
    activations = sum(math.prod(r.output) for r in report.rows if r.leaf and isinstance(r.node.layer, Activation)
                      and allocates(r)) * b
    every = ("every layer's output counted (the LeNet-5 table's convention)", t.activation_bytes)
    allocated = ("only what PyTorch allocates counted (views and in-place layers share their input's storage)",
                 t.allocated_bytes)
    in_place = ("only what PyTorch would allocate with every activation in place (conv, pool and linear outputs, "
                "CS231n's convention)", t.allocated_bytes - activations)
    options = [every, allocated, in_place]
    found, asked = [], t.activation_bytes if counted == "activation_bytes" else t.allocated_bytes
    for text, value in options:
        for with_input, total in ((False, value), (True, value + given)):
            if total == asked or any(m.value == total for m in found):
                continue
            note = f" plus the input ({count(given)} B)" if with_input else ""
            found.append(Mistake(f"another convention: {text}{note} = {count(total)} B; this question counts "
                                 + ("every layer's output" if counted == "activation_bytes" else
                                    "what PyTorch allocates"), total))
    return found


@dataclass(frozen=True)
class Tally:
    """What the mistakes in a sum of layers need, added up once per composite (so grading stays linear
    in the number of layers however deep the nesting): params, MACs, the biases of layers with MACs and
    their bias adds, BatchNorm buffers."""

    params: int = 0
    macs: int = 0
    biases: int = 0
    bias_adds: int = 0
    buffers: int = 0

    @classmethod
    def of(cls, row: Row) -> "Tally":
        """One leaf's figures."""
        weighted = bool(row.bias and row.macs)       # conv, transposed conv, linear with a bias
        return cls(row.params, row.macs, math.prod(row.bias) if weighted else 0,
                   math.prod(row.output) if weighted else 0, row.buffers)

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.params + other.params, self.macs + other.macs, self.biases + other.biases,
                     self.bias_adds + other.bias_adds, self.buffers + other.buffers)


def sums(tally: Tally) -> dict[str, list[Mistake]]:
    """Mistakes in a sum of layers (a composite, or the totals)."""
    params, macs, biases, bias_adds, buffers = (tally.params, tally.macs, tally.biases, tally.bias_adds,
                                                tally.buffers)
    found = {"params": [], "macs": [], "flops": []}
    if biases:
        found["params"].append(Mistake(f"biases left out: {count(params)} - {count(biases)} biases = "
                                       f"{count(params - biases)}", params - biases))
        found["macs"].append(Mistake(f"bias adds counted: {count(macs)} + {count(bias_adds)} = "
                                     f"{count(macs + bias_adds)} (the contract counts multiply-adds only)",
                                     macs + bias_adds))
    if buffers:
        found["params"].append(Mistake(f"BatchNorm running statistics counted as parameters: {count(params)} + "
                                       f"{count(buffers)} = {count(params + buffers)}", params + buffers))
    found["macs"].append(Mistake(f"FLOPs, not MACs: 2·{count(macs)} = {count(2 * macs)}", 2 * macs))
    found["flops"] = [_macs_for_flops(macs)] if macs else []
    return found


@dataclass(frozen=True)
class Sum:
    """A running sum as a student writes it out (`1 + 4 + 4 + 8`): its total, its first MAX_TERMS terms
    and how many there are, so carrying it through a network of any length costs the same per layer."""

    total: int | Fraction
    terms: tuple = ("1",)
    n: int = 1

    def plus(self, value: Fraction, text: str) -> "Sum":
        terms = self.terms + (text,) if self.n < working.MAX_TERMS else self.terms
        return Sum(self.total + value, terms, self.n + 1)

    def text(self) -> str:
        more = f" + … ({self.n - len(self.terms)} more terms)" if self.n > len(self.terms) else ""
        return " + ".join(self.terms) + more


def field(actual, naive, step: working.Step | None = None) -> list[Mistake]:
    if actual is None:
        return [Mistake("the field is global here: after flatten, linear or global pooling every output depends "
                        "on the whole input", anything=True)]
    found = [Mistake("not global yet: only flatten, linear or global pooling make every output see the whole "
                     "input", None)]
    if naive is not None:
        sizes = [s.total for s in naive]
        terms = {s.text() for s in naive}
        shown = terms.pop() + " = " if len(terms) == 1 else ""
        found.append(Mistake(f"receptive field added without the jump: {shown}{working.axis_values(sizes)}; each layer adds "
                             "(K - 1)·jump, where jump is the product of the strides before it",
                             tuple(f._replace(size=s) for f, s in zip(actual, sizes))))
    if step is not None and step.field_in is not None and step.row.leaf:
        spans = [arith.exact(Fraction(b.size - a.size) / a.jump + 1) for a, b in zip(step.field_in, actual)]
        if any(b.size != a.size for a, b in zip(step.field_in, actual)):
            found.append(Mistake(f"that is the field in the previous layer's output ({working.axis_values(spans)}), not in "
                                 "input pixels: in the input each layer adds (K - 1)·jump to the field before it",
                                 tuple(f._replace(size=s) for f, s in zip(actual, spans))))
        if any(b.jump != a.jump for a, b in zip(step.field_in, actual)):
            found.append(Mistake("jump not multiplied by this layer's stride: the jump is the product of every "
                                 "stride so far", tuple(f._replace(jump=a.jump) for f, a in zip(actual, step.field_in))))
    found.append(Mistake(f"the 1 left out of 1 + L·(K - 1): it is {working.axis_values(f.size for f in actual)}",
                         tuple(f._replace(size=f.size - 1) for f in actual)))
    return found


def _size_variant(n: int, k: int, s: int, lo: int, hi: int, d: int, pad: str = "both", stride: bool = True,
                  plus_one: bool = True, ceil: bool = False):
    """One axis of the size formula with a mistake in it: (value, `(28 - 5 + 2·0)/1 + 1 = 24`)."""
    span = arith.effective_kernel(k, d)
    total, pad_text = {"both": (lo + hi, f"2·{lo}" if lo == hi else f"{lo} + {hi}"), "one": (lo, str(lo)),
                       "none": (0, "2·0")}[pad]
    s = s if stride else 1
    quotient = Fraction(n - span + total, s)
    value = (math.ceil(quotient) if ceil else math.floor(quotient)) + (1 if plus_one else 0)
    exact = quotient + (1 if plus_one else 0)
    return value, f"({n} - {span} + {pad_text})/{s}{' + 1' if plus_one else ''} = {working.rounded(exact, value)}"


def _window_output_mistakes(step: working.Step, kernel, stride, pads, dilation, ceil: bool) -> list[Mistake]:
    """The size formula re-run with one or two of the classic slips."""
    row = step.row
    axes = list(zip(row.input[1:], kernel, stride, pads, dilation))
    slips = []
    if any(lo or hi for _, _, _, (lo, hi), _ in axes):
        slips += [("padding forgotten", "pad", "none"), ("padding added on one side only", "pad", "one")]
    if any(s != 1 for s in stride):
        slips.append(("stride not applied", "stride", False))
    if any(arith.conv_out_exact(n, k, s, lo, d, p_hi=hi).denominator != 1 for n, k, s, (lo, hi), d in axes):
        slips.append(("rounded down, but ceil_mode rounds up" if ceil else "rounded up instead of down", "ceil",
                      not ceil))
    slips.append(("off by one: the + 1 left out", "plus_one", False))
    found = []
    for size in (1, 2):
        for combo in combinations(slips, size):
            settings = {key: value for _, key, value in combo}
            if len(settings) < size:
                continue
            variants = [_size_variant(n, k, s, lo, hi, d, **{"ceil": ceil, **settings})
                        for n, k, s, (lo, hi), d in axes]
            sizes = tuple(v for v, _ in variants)
            if min(sizes) < 1:
                continue
            name = " and ".join(label for label, _, _ in combo)
            text = working.per_axis(step.axes, [t for _, t in variants], "{}'")
            found.append(Mistake(f"{name}: {text}", (row.output[0], *sizes)))
    return found


@diagnoses(Conv)
def _conv_mistakes(layer: Conv, step: working.Step) -> dict[str, list[Mistake]]:
    row = step.row
    c_in, c_out, g = row.input[0], layer.out_channels, layer.groups
    per, k, kk = c_in // g, working.product(layer.kernel_size), math.prod(layer.kernel_size)
    positions, out_text = math.prod(row.output[1:]), working.product(row.output)
    bias = c_out if layer.bias else 0
    bias_text = f" + {c_out}" if layer.bias else ""
    output = _window_output_mistakes(step, layer.kernel_size, layer.stride, layer.pads, layer.dilation, False)
    if c_in != c_out:
        output.append(Mistake(f"channels kept from the input ({c_in}): a conv outputs C_out = {c_out} channels",
                              (c_in, *row.output[1:])))
    params = [Mistake(f"bias left out: {c_out}·({per}·{k}) = {count(c_out * per * kk)}; each of the {c_out} "
                      f"filters also has a bias: + {c_out} = {count(row.params)}", c_out * per * kk)
              if layer.bias else
              Mistake(f"bias counted, but this conv has bias: false: {c_out}·({per}·{k}) = {count(row.params)}",
                      row.params + c_out),
              Mistake(f"input channels left out: {c_out}·({k}){bias_text} = {count(c_out * kk + bias)}; each filter "
                      f"spans all C_in/groups = {per} input channels", c_out * kk + bias),
              Mistake(f"parameters of one filter only: {per}·{k}{' + 1' if layer.bias else ''} = "
                      f"{count(per * kk + (1 if layer.bias else 0))}; there are {c_out} filters",
                      per * kk + (1 if layer.bias else 0))]
    if layer.bias:
        params.append(Mistake(f"one bias for the whole layer: {c_out}·({per}·{k}) + 1 = {count(c_out * per * kk + 1)}"
                              f"; there is one per filter, {c_out}", c_out * per * kk + 1))
    macs = [Mistake(f"kernel area left out: {out_text} · {per} = {count(c_out * positions * per)}; each output "
                    f"is a {per}·{k} = {per * kk}-term dot product", c_out * positions * per),
            Mistake(f"input channels left out: {out_text} · {k} = {count(c_out * positions * kk)}; each output "
                    f"also sums over C_in/groups = {per} channels", c_out * positions * kk),
            Mistake(f"one output position only: {c_out}·{per}·{k} = {count(c_out * per * kk)}; multiply by the "
                    f"{working.product(row.output[1:])} = {count(positions)} positions", c_out * per * kk)]
    if row.input[1:] != row.output[1:]:
        in_positions = math.prod(row.input[1:])
        macs.append(Mistake(f"input size used instead of the output size: {c_out}·{working.product(row.input[1:])} · "
                            f"{per}·{k} = {count(c_out * in_positions * per * kk)}", c_out * in_positions * per * kk))
    if layer.bias:
        macs.append(Mistake(f"bias adds counted: {count(row.macs)} + {out_text} = {count(row.macs + c_out * positions)}"
                            " (the contract counts multiply-adds only)", row.macs + c_out * positions))
    macs.append(Mistake(f"FLOPs, not MACs: 2·{count(row.macs)} = {count(2 * row.macs)}", 2 * row.macs))
    weight = [Mistake(f"in and out channels swapped: PyTorch stores a conv weight C_out × C_in/groups × K × K = "
                      f"{fmt_shape(row.weight)}", (per, c_out, *layer.kernel_size)),
              Mistake(f"kernel size left out: the weight is C_out × C_in/groups × K × K = {fmt_shape(row.weight)}",
                      (c_out, per)),
              Mistake(f"input channels left out: the weight is C_out × C_in/groups × K × K = {fmt_shape(row.weight)}",
                      (c_out, *layer.kernel_size))]
    bias_m = [Mistake(f"one bias per input channel: it is one per filter, C_out = {c_out}", (c_in,))] \
        if layer.bias and c_in != c_out else []
    if g != 1:
        params.append(Mistake(f"groups ignored: {c_out}·({c_in}·{k}){bias_text} = {count(c_out * c_in * kk + bias)};"
                              f" each filter sees C_in/groups = {c_in}/{g} = {per} channels", c_out * c_in * kk + bias))
        macs.append(Mistake(f"groups ignored: {out_text} · {c_in}·{k} = {count(c_out * positions * c_in * kk)}; "
                            f"each output sums over C_in/groups = {per} channels", c_out * positions * c_in * kk))
        weight.append(Mistake(f"groups ignored: the weight is C_out × C_in/groups × K × K = {fmt_shape(row.weight)}",
                              (c_out, c_in, *layer.kernel_size)))
    return {"output": output, "params": params, "macs": macs, "weight": weight, "bias": bias_m}


@diagnoses(_Pool)
def _pool_mistakes(layer: _Pool, step: working.Step) -> dict[str, list[Mistake]]:
    pads = [(p, p) for p in layer.padding]
    return {"output": _window_output_mistakes(step, layer.kernel_size, layer.stride, pads, layer.dilation,
                                              layer.ceil_mode)}


@diagnoses(ConvTranspose)
def _conv_transpose_mistakes(layer: ConvTranspose, step: working.Step) -> dict[str, list[Mistake]]:
    row = step.row
    c_in, c_out, g = row.input[0], layer.out_channels, layer.groups
    kk = math.prod(layer.kernel_size)
    forward = tuple(arith.conv_out(n, k, s, p, d) for n, k, s, p, d
                    in zip(row.input[1:], layer.kernel_size, layer.stride, layer.padding, layer.dilation))
    output = []
    if min(forward) >= 1:
        output.append(Mistake("computed like a forward conv ((W - K + 2P)/S + 1); a transposed conv gives "
                              "(W - 1)·S - 2P + D·(K - 1) + output_padding + 1", (c_out, *forward)))
    if any(layer.output_padding):
        without = tuple(o - op for o, op in zip(row.output[1:], layer.output_padding))
        output.append(Mistake("output_padding left out: it adds to one side of the output", (c_out, *without)))
    as_conv = c_out * math.prod(row.output[1:]) * (c_in // g) * kk
    macs = [Mistake(f"counted like a forward conv over the output: {count(as_conv)}; a transposed conv scatters "
                    "every input value: C_in·H·W · C_out/groups·K·K", as_conv),
            Mistake(f"FLOPs, not MACs: 2·{count(row.macs)} = {count(2 * row.macs)}", 2 * row.macs)]
    weight = [Mistake("stored like a forward conv's weight: PyTorch's ConvTranspose weight is C_in × C_out/groups "
                      f"× K × K = {fmt_shape(row.weight)}", (c_out, c_in // g, *layer.kernel_size))]
    params = [Mistake(f"bias left out: {count(row.params - c_out)} + {c_out} biases = {count(row.params)}",
                      row.params - c_out)] if layer.bias else []
    return {"output": output, "macs": macs, "weight": weight, "params": params}


@diagnoses(Linear)
def _linear_mistakes(layer: Linear, step: working.Step) -> dict[str, list[Mistake]]:
    row = step.row
    n_in, n_out = row.input[-1], layer.out_features
    params = [Mistake(f"bias left out: {n_out}·{n_in} = {count(n_out * n_in)}; + {n_out} biases = "
                      f"{count(row.params)}", n_out * n_in)] if layer.bias else \
        [Mistake(f"bias counted, but this layer has bias: false: {n_out}·{n_in} = {count(row.params)}",
                 row.params + n_out)]
    macs = [Mistake(f"FLOPs, not MACs: 2·{count(row.macs)} = {count(2 * row.macs)}", 2 * row.macs)]
    if layer.bias:
        adds = math.prod(row.output)
        macs.insert(0, Mistake(f"bias adds counted: {count(row.macs)} + {count(adds)} = {count(row.macs + adds)} "
                               "(the contract counts multiply-adds only)", row.macs + adds))
    return {"params": params, "macs": macs}


@diagnoses(BatchNorm)
def _batch_norm_mistakes(layer: BatchNorm, step: working.Step) -> dict[str, list[Mistake]]:
    c = step.row.input[0]
    if not layer.affine:
        return {}
    found = [Mistake(f"only γ counted: BatchNorm learns γ and β per channel, 2·{c} = {2 * c}", c)]
    if layer.track_running_stats:
        found.insert(0, Mistake(f"running mean and variance counted as parameters: they are buffers; 2·{c} = "
                                f"{2 * c}", 4 * c))
    return {"params": found}
