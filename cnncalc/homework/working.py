"""The arithmetic behind every number, with the values substituted: `(28 - 5 + 2·2)/1 + 1 = 28`,
`20·(1·5·5) + 20 = 520`, `20·28·28 · 1·5·5 = 392,000`, `1 + (5 - 1)·1 = 5`.

`steps(report)` pairs each row with what its formulas need (the receptive field arriving at it, its
children); `explain(step)` returns one line of working per field (`output`, `weight`, `bias`,
`params`, `macs`, `rf`, `memory`). The formulas of a layer type are found through a registry keyed
by its class (subclasses inherit them); a field a type does not explain gets the generic wording.
Nothing here computes a figure the analysis did not: the working is checked against the row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

from .. import arith
from ..analysis import Report, Row, allocates
from ..arith import PIXEL, Field
from ..layers.activation import Activation
from ..layers.attention import MultiheadAttention, PatchMerging, ShiftedWindowAttention
from ..layers.base import Layer
from ..layers.composite import Concat, Multiply, Residual, Sequential
from ..layers.conv import Conv, ConvTranspose
from ..layers.learned import ClassToken
from ..layers.linear import Linear
from ..layers.norm import BatchNorm, GroupNorm, LayerNorm, TransformInput
from ..layers.pool import MaxPool, _AdaptivePool, _Pool
from ..layers.rearrange import CenterCrop, ChannelShuffle, Chunk, Narrow, PixelShuffle, PixelUnshuffle
from ..layers.reshape import Flatten, Permute, Select, Unflatten, Upsample, ZeroPad
from ..layers.window import decimal_text, working as size_formula
from ..render.text import count, number, shape as fmt_shape, size_bytes

FIELDS = ("output", "weight", "bias", "params", "macs", "rf", "memory")
AXES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
MAX_TERMS = 12  # longer sums are summarised ("sum over 53 layers")


@dataclass
class Step:
    """A row with what its working needs: the field arriving at it and its direct children."""

    row: Row
    field_in: tuple[Field, ...] | None
    children: list[Row] = field(default_factory=list)
    branch_outputs: dict[str, tuple] = field(default_factory=dict)
    dtype_bytes: int = 4

    @property
    def layer(self) -> Layer:
        return self.row.node.layer

    @property
    def axes(self) -> tuple[str, ...]:
        return AXES.get(len(self.row.input) - 1, ())


def steps(report: Report) -> dict[str, Step]:
    """One Step per row, keyed by path, in the report's order."""
    rows = {r.path: r for r in report.rows}
    found: dict[str, Step] = {}

    def sequence(nodes, field_in):
        for node in nodes:
            row = rows[node.path]
            visit(node, row, field_in)
            field_in = row.rf

    def visit(node, row, field_in):
        outputs = {}
        for branch, nodes in node.branches.items():
            sequence(nodes, field_in)
            outputs[branch] = rows[nodes[-1].path].output if nodes else row.input
        children = [rows[n.path] for nodes in node.branches.values() for n in nodes]
        found[node.path] = Step(row, field_in, children, outputs, report.dtype.bytes)

    start = tuple(PIXEL for _ in report.network.input[1:]) or None
    sequence(report.network.root.branches[""], start)
    return {r.path: found[r.path] for r in report.rows}


# --- the registry ----------------------------------------------------------------------------------

Formulas = Callable[[Layer, Step], dict]
_FORMULAS: dict[type, Formulas] = {}


def explains(*classes: type):
    """Register the formulas of these layer classes (and their subclasses)."""

    def add(fn: Formulas) -> Formulas:
        for cls in classes:
            _FORMULAS[cls] = fn
        return fn

    return add


def explain(step: Step) -> dict[str, str]:
    """Working for every field of one row: {'output': 'output = …', 'params': 'params = …', …}."""
    texts = {name: generic(step) for name, generic in _GENERIC.items()}
    for cls in type(step.layer).__mro__:
        if cls in _FORMULAS:
            texts.update(_FORMULAS[cls](step.layer, step))
            break
    return texts


# --- small formatting helpers ------------------------------------------------------------------------

def product(values) -> str:
    """(20, 28, 28) → '20·28·28'."""
    return "·".join(str(v) for v in values)


def primed(axes: tuple[str, ...]) -> str:
    """('H', 'W') → "H' × W'"."""
    return " × ".join(f"{a}'" for a in axes)


def per_axis(axes: tuple[str, ...], texts: list[str], template: str) -> str:
    """One formula when every axis agrees (`H' = W' = …`), else one per axis (`H' = …; W' = …`)."""
    if len(set(texts)) <= 1:
        names = " = ".join(template.format(a) for a in axes)
        return f"{names} = {texts[0]}" if texts else ""
    return "; ".join(f"{template.format(a)} = {t}" for a, t in zip(axes, texts))


def rounded(exact: Fraction, got: int, ceil: bool = False) -> str:
    """`28` when whole; `12.5 → 12` when PyTorch rounds (down, or up with ceil_mode)."""
    if exact.denominator == 1 and exact == got:
        return str(got)
    return f"{decimal_text(exact)} → {got}" + (" (ceil_mode)" if ceil else "")


def flops_text(macs: int) -> str:
    """`FLOPs = 2 × MACs = 2·392,000 = 784,000` — labelled: a multiply-add is two floating-point operations."""
    return f"FLOPs = 2 × MACs = 2·{count(macs)} = {count(2 * macs)} (each multiply-add is a multiply and an add)"


def memory_text(step: Step) -> str:
    values = math.prod(step.row.output)
    total = values * step.dtype_bytes
    human = size_bytes(total)
    tail = f" ({human})" if not human.endswith(" B") else ""
    text = f"memory = {product(step.row.output)} · {step.dtype_bytes} B = {count(total)} B{tail}"
    if step.row.leaf and not allocates(step.row):
        how = step.layer.output_storage(step.row.input, training=False)
        share = "a view of its input" if how == "view" else "computed in place"
        text += f" — {share}, so PyTorch allocates nothing for it (counted in activation_bytes, not allocated_bytes)"
    return text


def _sum(values: list[int], what: str) -> str:
    """`520 + 25,050 = 25,570` (zero terms dropped; long sums summarised)."""
    terms = [v for v in values if v]
    if not terms:
        return "0"
    if len(terms) > MAX_TERMS:
        return f"sum over the {len(terms)} {what} = {count(sum(terms))}"
    if len(terms) == 1:
        return count(terms[0])
    return " + ".join(count(v) for v in terms) + f" = {count(sum(terms))}"


# --- generic wording (any layer) -----------------------------------------------------------------------

def _generic_output(step: Step) -> str:
    row = step.row
    if row.output == row.input:
        return f"output = input = {fmt_shape(row.output)} (shape unchanged)"
    return f"output = {fmt_shape(row.output)}"


def _generic_tensor(name: str) -> Callable[[Step], str]:
    def text(step: Step) -> str:
        value = getattr(step.row, name)
        if value is not None:
            return f"{name} = {fmt_shape(value)}"
        if not step.row.leaf:
            return f"{name}: none (a {step.row.node.kind} has no {name} of its own)"
        return f"{name}: none ({step.row.node.kind} has no {name})"
    return text


def _generic_params(step: Step) -> str:
    row = step.row
    if not row.leaf:
        return f"params = sum over its layers = {_sum([c.params for c in step.children], 'layers')}"
    tensors = step.layer.tensors(row.input)
    if not tensors:
        return f"params = 0 ({row.node.kind} has no learnable parameters)"
    parts = [f"{name} {product(s)}" for name, s in tensors.items()]
    return f"params = {' + '.join(parts)} = {count(row.params)}"


def _generic_macs(step: Step) -> str:
    row = step.row
    if not row.leaf:
        return f"MACs = sum over its layers = {_sum([c.macs for c in step.children], 'layers')}"
    return f"MACs = 0 ({row.node.kind}: only conv, transposed conv, linear and attention layers are counted)"


def _generic_rf(step: Step) -> str:
    f_in, f_out = step.field_in, step.row.rf
    if f_out is None:
        if f_in is None:
            return "rf = global (already global before this layer)"
        return "rf = global (every output value depends on the whole input)"
    if f_in == f_out:
        return f"rf = unchanged = {_sizes(f_out)}"
    same = all(a.size == b.size for a, b in zip(f_in, f_out))
    parts = [f"rf = unchanged = {_sizes(f_out)}" if same else f"rf {_sizes(f_in)} → {_sizes(f_out)}"]
    if any(a.jump != b.jump for a, b in zip(f_in, f_out)):
        parts.append(f"jump {axis_values(f.jump for f in f_in)} → {axis_values(f.jump for f in f_out)}")
    if any(a.start != b.start for a, b in zip(f_in, f_out)):
        parts.append(f"start {axis_values(f.start for f in f_in)} → {axis_values(f.start for f in f_out)}")
    return ", ".join(parts)


def _sizes(fields) -> str:
    return axis_values(f.size for f in fields)


def axis_values(values) -> str:
    """One value when every axis agrees (5), else all of them (5 × 3)."""
    values = [number(v) for v in values]
    return values[0] if len(set(values)) == 1 else " × ".join(values)


_GENERIC = {"output": _generic_output, "weight": _generic_tensor("weight"), "bias": _generic_tensor("bias"),
            "params": _generic_params, "macs": _generic_macs, "rf": _generic_rf, "memory": memory_text}


# --- sliding windows: conv, pool -------------------------------------------------------------------------

def window_sizes(step: Step, kernel, stride, pads, dilation, ceil: bool = False) -> str:
    """`H' = W' = (28 - 5 + 2·2)/1 + 1 = 28` with the values of every axis."""
    texts = []
    for n, k, s, (lo, hi), d, got in zip(step.row.input[1:], kernel, stride, pads, dilation, step.row.output[1:]):
        exact = arith.conv_out_exact(n, k, s, lo, d, p_hi=hi)
        text = f"{size_formula(n, k, s, lo, hi, d)} = {rounded(exact, got, ceil)}"
        if d != 1:
            text += f" (dilated kernel {d}·({k} - 1) + 1 = {arith.effective_kernel(k, d)})"
        if ceil and got != math.ceil(exact):
            text += "; the last window would start in the padding, so one fewer"
        texts.append(text)
    return per_axis(step.axes, texts, "{}'")


def window_rf(step: Step, kernel, stride, pad_lo, dilation) -> str:
    """`rf = 1 + (5 - 1)·1 = 5, jump = 1·1 = 1, start = 0 + ((5 - 1)/2 - 2)·1 = 0` per axis."""
    if step.field_in is None:
        return "rf = global (already global before this layer)"
    texts = []
    for f, f_out, k, s, p, d in zip(step.field_in, step.row.rf, kernel, stride, pad_lo, dilation):
        span = arith.effective_kernel(k, d)
        j = number(f.jump)
        texts.append(f"{number(f.size)} + ({span} - 1)·{j} = {number(f_out.size)}, "
                     f"jump = {j}·{s} = {number(f_out.jump)}, "
                     f"start = {number(f.start)} + (({span} - 1)/2 - {p})·{j} = {number(f_out.start)}")
    return per_axis(tuple(f"rf_{a}" for a in step.axes) if len(set(texts)) > 1 else ("rf",), texts, "{}")


@explains(Conv)
def _conv(layer: Conv, step: Step) -> dict:
    row = step.row
    c_in, g = row.input[0], layer.groups
    per_group = f"{c_in}/{g}" if g != 1 else str(c_in)
    k = product(layer.kernel_size)
    weights = f"{layer.out_channels}·({per_group}·{k})"
    bias = f" + {layer.out_channels}" if layer.bias else ""
    groups = f" (groups = {g})" if g != 1 else ""
    return {
        "output": f"output = C_out × {primed(step.axes)} = {fmt_shape(row.output)}: "
                  + window_sizes(step, layer.kernel_size, layer.stride, layer.pads, layer.dilation),
        "weight": f"weight = C_out × C_in/groups × {' × '.join('K_' + a for a in step.axes)} = "
                  f"{layer.out_channels} × {per_group} × {' × '.join(map(str, layer.kernel_size))}"
                  + (f" = {fmt_shape(row.weight)}{groups}" if g != 1 else ""),
        "bias": f"bias = C_out = {layer.out_channels}" if layer.bias else "bias: none (bias: false)",
        "params": f"params = {weights}{bias} = {count(row.params)}",
        "macs": f"MACs = {product(row.output)} · {per_group}·{k} = {count(row.macs)}",
        "rf": window_rf(step, layer.kernel_size, layer.stride, [lo for lo, _ in layer.pads], layer.dilation),
    }


@explains(ConvTranspose)
def _conv_transpose(layer: ConvTranspose, step: Step) -> dict:
    row = step.row
    c_in, g = row.input[0], layer.groups
    per_group = f"{layer.out_channels}/{g}" if g != 1 else str(layer.out_channels)
    k = product(layer.kernel_size)
    texts = []
    for n, kk, s, p, op, d, got in zip(row.input[1:], layer.kernel_size, layer.stride, layer.padding,
                                        layer.output_padding, layer.dilation, row.output[1:]):
        spread = f"{d}·({kk} - 1)" if d != 1 else f"({kk} - 1)"
        extra = f" + {op} (output_padding)" if op else ""
        texts.append(f"({n} - 1)·{s} - 2·{p} + {spread}{extra} + 1 = {got}")
    rf = "rf = global (already global before this layer)"
    if step.field_in is not None:
        rf_texts = []
        for f, f_out, kk, s, p, d in zip(step.field_in, row.rf, layer.kernel_size, layer.stride, layer.padding,
                                         layer.dilation):
            span, g = arith.effective_kernel(kk, d), math.gcd(d, s)
            j = number(f.jump)
            taps = f"⌈{kk}/{s}⌉" if g == 1 else f"⌈{kk}·{g}/{s}⌉"      # the taps landing on one output
            apart = f"·{d // g}" if d // g != 1 else ""                  # … d/g inputs apart
            rf_texts.append(f"{number(f.size)} + ({taps} - 1){apart}·{j} = {number(f_out.size)}, "
                            f"jump = {j}/{s} = {number(f_out.jump)}, "
                            f"start = {number(f.start)} + ({p} - ({span} - 1)/2)·{number(f_out.jump)} = "
                            f"{number(f_out.start)}")
        rf = per_axis(("rf",) if len(set(rf_texts)) == 1 else tuple(f"rf_{a}" for a in step.axes), rf_texts, "{}")
    return {
        "output": f"output = C_out × {primed(step.axes)} = {fmt_shape(row.output)}: "
                  + per_axis(step.axes, texts, "{}'"),
        "weight": f"weight = C_in × C_out/groups × {' × '.join('K_' + a for a in step.axes)} = "
                  f"{c_in} × {per_group} × {' × '.join(map(str, layer.kernel_size))}"
                  + (f" = {fmt_shape(row.weight)}" if g != 1 else ""),
        "bias": f"bias = C_out = {layer.out_channels}" if layer.bias else "bias: none (bias: false)",
        "params": f"params = {c_in}·({per_group}·{k})" + (f" + {layer.out_channels}" if layer.bias else "")
                  + f" = {count(row.params)}",
        "macs": f"MACs = {product(row.input)} · {per_group}·{k} = {count(row.macs)} (every input value is "
                "scattered through the kernel)",
        "rf": rf,
    }


@explains(_Pool)
def _pool(layer: _Pool, step: Step) -> dict:
    row = step.row
    pads = [(p, p) for p in layer.padding]
    what = "maximum" if isinstance(layer, MaxPool) else "average"
    return {
        "output": f"output = C × {primed(step.axes)} = {fmt_shape(row.output)}: "
                  f"C = {row.input[0]} kept; "
                  + window_sizes(step, layer.kernel_size, layer.stride, pads, layer.dilation, layer.ceil_mode),
        "params": f"params = 0 (pooling takes the {what} of each window: no learnable parameters)",
        "macs": "MACs = 0 (pooling does no multiply-adds)",
        "rf": window_rf(step, layer.kernel_size, layer.stride, layer.padding, layer.dilation),
    }


@explains(_AdaptivePool)
def _adaptive_pool(layer: _AdaptivePool, step: Step) -> dict:
    row = step.row
    texts = []
    for n, o in zip(row.input[1:], row.output[1:]):
        texts.append(f"{o} (kernel = stride = {n}/{o} = {n // o})" if n % o == 0
                     else f"{o} (windows of {arith.adaptive_widest(n, o) - 1} or {arith.adaptive_widest(n, o)})")
    rf = _generic_rf(step)
    if row.rf is None and step.field_in is not None:
        rf = "rf = global (one window covers the whole input)"
    return {"output": f"output = C × output_size = {fmt_shape(row.output)}: " + per_axis(step.axes, texts, "{}'"),
            "params": "params = 0 (pooling has no learnable parameters)",
            "macs": "MACs = 0 (pooling does no multiply-adds)", "rf": rf}


# --- fully connected, reshaping, normalisation ---------------------------------------------------------------

@explains(Linear)
def _linear(layer: Linear, step: Step) -> dict:
    row = step.row
    n_in, n_out = row.input[-1], layer.out_features
    positions = math.prod(row.input[:-1])
    where = f"{positions}·" if positions != 1 else ""
    return {
        "output": f"output = (…, out_features) = {fmt_shape(row.output)}" if len(row.input) > 1
                  else f"output = out_features = {n_out}",
        "weight": f"weight = out × in = {n_out} × {n_in} (PyTorch's layout; the seed's table writes in × out = "
                  f"{n_in} × {n_out})",
        "bias": f"bias = out = {n_out}" if layer.bias else "bias: none (bias: false)",
        "params": f"params = {n_out}·{n_in}" + (f" + {n_out}" if layer.bias else "") + f" = {count(row.params)}",
        "macs": f"MACs = {where}{n_in}·{n_out} = {count(row.macs)}",
        "rf": "rf = global (every output depends on every input value)" if row.rf is None else
              f"rf = unchanged = {_sizes(row.rf)} (on channels last a linear is a 1×1 convolution)",
    }


@explains(Flatten)
def _flatten(layer: Flatten, step: Step) -> dict:
    first, last = layer.span(step.row.input)
    merged = step.row.input[first:last + 1]
    out = {"output": f"output = {product(merged)} = {fmt_shape(step.row.output)}" if len(step.row.output) == 1
           else f"output = {fmt_shape(step.row.output)} (merging {product(merged)})"}
    if step.row.rf is None and step.field_in is not None:
        out["rf"] = "rf = global (after flattening, a position means nothing)"
    return out


@explains(Permute)
def _permute(layer: Permute, step: Step) -> dict:
    row = step.row
    moved = ", ".join(f"{n} (dim {axis + 1})" for n, axis in zip(row.output, layer.perm(row.input)))
    return {"output": f"output = input dims in the order {list(layer.dims)} = {moved} = {fmt_shape(row.output)}"}


@explains(Unflatten)
def _unflatten(layer: Unflatten, step: Step) -> dict:
    axis, sizes = layer.split(step.row.input)
    return {"output": f"output = {fmt_shape(step.row.output)} (dim {layer.dim}, {step.row.input[axis]} = "
                      f"{product(sizes)})"}


@explains(Select)
def _select(layer: Select, step: Step) -> dict:
    axis, index = layer.position(step.row.input)
    return {"output": f"output = {fmt_shape(step.row.output)} (position {index} of dim {layer.dim}, which "
                      f"goes: {fmt_shape(step.row.input)} without its {step.row.input[axis]})"}


@explains(ClassToken)
def _class_token(layer: ClassToken, step: Step) -> dict:
    n, d = step.row.input
    return {"output": f"output = (L + 1) × D = ({n} + 1) × {d} = {fmt_shape(step.row.output)} "
                      "(the class token first)"}


def _attention_macs(terms: dict[str, int], formulas: dict[str, str]) -> str:
    parts = " + ".join(f"{name} {formulas[name]}" for name in terms)
    return f"MACs = {parts} = {' + '.join(count(v) for v in terms.values())} = {count(sum(terms.values()))}"


@explains(MultiheadAttention)
def _multihead_attention(layer: MultiheadAttention, step: Step) -> dict:
    n, e = step.row.input
    s = layer.keys(step.row.input)
    keys = f"{s}" if s == n else f"{s} (with {s - n} added key{'s' * (s - n > 1)})"
    return {"macs": _attention_macs(layer.mac_terms(step.row.input), {
                "in_proj": f"L·E·3E = {n}·{e}·{3 * e}", "QKᵀ": f"L·S·E = {n}·{keys}·{e}",
                "AV": f"L·S·E = {n}·{s}·{e}", "out_proj": f"L·E·E = {n}·{e}·{e}"}),
            "rf": "rf = global (every token attends to every token)"}


@explains(ShiftedWindowAttention)
def _window_attention(layer: ShiftedWindowAttention, step: Step) -> dict:
    c = step.row.input[2]
    (ph, pw), (wh, ww) = layer.padded(step.row.input), layer.window_size
    t, n = f"{ph}·{pw}", f"{wh}·{ww}"
    out = {"macs": _attention_macs(layer.mac_terms(step.row.input), {
        "qkv": f"T·C·3C = {t}·{c}·{3 * c}", "QKᵀ": f"T·N·C = {t}·{n}·{c}", "AV": f"T·N·C = {t}·{n}·{c}",
        "proj": f"T·C·C = {t}·{c}·{c}"}) + f" (T = {t} tokens padded to whole {wh}×{ww} windows of N = {n})"}
    if step.row.rf is not None:
        out["rf"] = (f"rf = {_sizes(step.field_in)} + (window - 1)·jump = {_sizes(step.row.rf)} (each token sees "
                     f"its {wh}×{ww} window; where that lies depends on its place in it)")
    return out


@explains(PatchMerging)
def _patch_merging(layer: PatchMerging, step: Step) -> dict:
    h, w, c = step.row.input
    ho, wo, co = step.row.output
    return {"output": f"output = ⌈H/2⌉ × ⌈W/2⌉ × 2C = ⌈{h}/2⌉ × ⌈{w}/2⌉ × 2·{c} = {fmt_shape(step.row.output)}",
            "macs": f"MACs = H'·W'·4C·2C = {ho}·{wo}·{4 * c}·{co} = {count(step.row.macs)} (the reduction linear)"}


@explains(ZeroPad)
def _zero_pad(layer: ZeroPad, step: Step) -> dict:
    texts = [f"{n} + {lo} + {hi} = {n + lo + hi}" for n, (lo, hi) in zip(step.row.input[1:], layer.pads)]
    like = f" (the size of branch {layer.like}'s output, like: {layer.like})" if layer.like else ""
    return {"output": f"output = {fmt_shape(step.row.output)}: " + per_axis(step.axes, texts, "{}'") + like}


@explains(Upsample)
def _upsample(layer: Upsample, step: Step) -> dict:
    if layer.scale_factor is None:
        return {"output": f"output = C × size = {fmt_shape(step.row.output)}"}
    scales = layer._per_axis(step.row.input, "scale_factor")
    texts = [f"⌊{n}·{s}⌋ = {o}" for n, s, o in zip(step.row.input[1:], scales, step.row.output[1:])]
    like = f" (the size of branch {layer.like}'s output, like: {layer.like})" if layer.like else ""
    return {"output": f"output = {fmt_shape(step.row.output)}: " + per_axis(step.axes, texts, "{}'") + like}


@explains(Chunk)
def _chunk(layer: Chunk, step: Step) -> dict:
    axis, start, length = layer.span(step.row.input)
    n = step.row.input[axis]
    return {"output": f"output = {fmt_shape(step.row.output)}: chunk {layer.index % layer.chunks} of {layer.chunks} "
                      f"along dim {layer.dim}, {n}/{layer.chunks} = {length} positions from {start}",
            **_channel_slice_rf(axis, step)}


@explains(Narrow)
def _narrow(layer: Narrow, step: Step) -> dict:
    axis, start, length = layer.span(step.row.input)
    return {"output": f"output = {fmt_shape(step.row.output)}: positions {start} … {start + length - 1} of dim "
                      f"{layer.dim} ({step.row.input[axis]} → {length})", **_channel_slice_rf(axis, step)}


def _channel_slice_rf(axis: int, step: Step) -> dict:
    """A slice of the channels keeps the one field cnncalc tracks per tensor: the widest over all the
    channels it arrived with, so after a concat of unequal branches an upper bound for the ones kept."""
    if axis or step.row.rf is None:
        return {}
    return {"rf": f"rf = the field arriving = {_sizes(step.row.rf)} (the widest over all the channels; "
                  "after a concat of unequal branches the channels kept may see less)"}


@explains(ChannelShuffle)
def _channel_shuffle(layer: ChannelShuffle, step: Step) -> dict:
    c, g = step.row.input[0], layer.groups
    return {"output": f"output = input = {fmt_shape(step.row.output)} (channels seen as {g} × {c // g}, "
                      f"transposed to {c // g} × {g})"}


@explains(PixelShuffle)
def _pixel_shuffle(layer: PixelShuffle, step: Step) -> dict:
    (c, h, w), r = step.row.input, layer.r
    return {"output": f"output = C/r² × H·r × W·r = {c}/{r * r} × {h}·{r} × {w}·{r} = {fmt_shape(step.row.output)}",
            "rf": f"rf = unchanged = {_field_or_global(step.row.rf)} (each output copies one input position), "
                  f"jump ÷ {r}" if step.row.rf else _generic_rf(step)}


@explains(PixelUnshuffle)
def _pixel_unshuffle(layer: PixelUnshuffle, step: Step) -> dict:
    (c, h, w), r = step.row.input, layer.r
    return {"output": f"output = C·r² × H/r × W/r = {c}·{r * r} × {h}/{r} × {w}/{r} = {fmt_shape(step.row.output)}",
            "rf": window_rf(step, (r, r), (r, r), (0, 0), (1, 1)) + f" (an {r}×{r} block per position)"
            if step.row.rf else _generic_rf(step)}


@explains(CenterCrop)
def _center_crop(layer: CenterCrop, step: Step) -> dict:
    texts = []
    for n, c, o in zip(step.row.input[1:], layer.size, layer.offsets(step.row.input)):
        texts.append(f"{c} from {n}, offset round(({n} - {c})/2) = {o}" if o >= 0 else
                     f"{c} from {n}, zero padding ({c} - {n})//2 = {-o} before and {c - n + o} after")
    like = f" (the size of branch {layer.like}'s output, like: {layer.like})" if layer.like else ""
    return {"output": f"output = {fmt_shape(step.row.output)}: " + per_axis(step.axes, texts, "{}'") + like}


@explains(TransformInput)
def _transform_input(layer: TransformInput, step: Step) -> dict:
    terms = [f"x{c}·{s:.6g} {'-' if t < 0 else '+'} {abs(t):.6g}" for c, (s, t) in enumerate(zip(*layer.scale_shift()))]
    return {"output": f"output = x_c·(std_c/0.5) + (mean_c - 0.5)/0.5 per channel: {', '.join(terms)} "
                      f"(shape kept, {fmt_shape(step.row.output)})",
            "params": "params = 0 (mean and std are constants of the model, not parameters)"}


@explains(BatchNorm)
def _batch_norm(layer: BatchNorm, step: Step) -> dict:
    c = step.row.input[0]
    if not layer.affine:
        return {"params": "params = 0 (affine: false)"}
    stats = f"; running mean and variance are {2 * c} buffers, not parameters" if layer.track_running_stats else ""
    return {"weight": f"weight (γ) = C = {c}", "bias": f"bias (β) = C = {c}",
            "params": f"params = 2·{c} = {count(step.row.params)} (γ and β per channel{stats})"}


@explains(GroupNorm)
def _group_norm(layer: GroupNorm, step: Step) -> dict:
    c = step.row.input[0]
    if not layer.affine:
        return {"params": "params = 0 (affine: false)"}
    return {"weight": f"weight (γ) = C = {c}", "bias": f"bias (β) = C = {c}",
            "params": f"params = 2·{c} = {count(step.row.params)} (γ and β per channel)"}


@explains(LayerNorm)
def _layer_norm(layer: LayerNorm, step: Step) -> dict:
    shape = layer.normalized(step.row.input)
    if not layer.affine:
        return {"params": "params = 0 (elementwise_affine: false)"}
    copies = 2 if layer.bias else 1
    return {"params": f"params = {copies}·{product(shape)} = {count(step.row.params)} "
                      f"({'γ and β' if layer.bias else 'γ'} over normalized_shape {fmt_shape(shape)})"}


@explains(Activation)
def _activation(layer: Activation, step: Step) -> dict:
    return {"output": f"output = input = {fmt_shape(step.row.output)} ({layer.display} is elementwise)"}


# --- composites ---------------------------------------------------------------------------------------------

@explains(Sequential)
def _sequential(layer: Sequential, step: Step) -> dict:
    if not step.children:
        return {"output": f"output = its input = {fmt_shape(step.row.output)} (no layers)",
                "rf": f"rf = the field arriving = {_field_or_global(step.row.rf)}"}
    return {"output": f"output = the output of its last layer = {fmt_shape(step.row.output)}",
            "rf": f"rf = the field after its last layer = {_field_or_global(step.row.rf)}"}


@explains(Residual)
def _residual(layer: Residual, step: Step) -> dict:
    parts = [f"{name} {fmt_shape(s)}" for name, s in step.branch_outputs.items()]
    return {"output": f"output = {' + '.join(parts)} = {fmt_shape(step.row.output)} (summed elementwise)",
            "rf": _union_text(step)}


@explains(Concat)
def _concat(layer: Concat, step: Step) -> dict:
    channels = [s[0] for s in step.branch_outputs.values()]
    rest = fmt_shape(step.row.output[1:])
    return {"output": f"output = C × {rest or '…'}: C = {' + '.join(map(str, channels))} = {step.row.output[0]}"
                      f" = {fmt_shape(step.row.output)}",
            "rf": _union_text(step)}


@explains(Multiply)
def _multiply(layer: Multiply, step: Step) -> dict:
    parts = [f"{name or 'identity'} {fmt_shape(s)}" for name, s in step.branch_outputs.items()]
    return {"output": f"output = {' · '.join(parts)} = {fmt_shape(step.row.output)} (multiplied elementwise, "
                      "size-1 axes broadcast)",
            "macs": f"MACs = sum over its layers = {_sum([c.macs for c in step.children], 'layers')} "
                    "(the elementwise product itself is not counted)",
            "rf": _union_text(step)}


def _union_text(step: Step) -> str:
    rows = {r.node.path: r for r in step.children}
    fields = []
    for name, nodes in step.row.node.branches.items():
        f = rows[nodes[-1].path].rf if nodes else step.field_in
        fields.append(f"{name or 'identity'} {_field_or_global(f)}")
    return f"rf = union of the branches' fields ({', '.join(fields)}) = {_field_or_global(step.row.rf)}"


def _field_or_global(rf) -> str:
    return "global" if rf is None else _sizes(rf)


# --- totals ---------------------------------------------------------------------------------------------------

def explain_totals(report: Report) -> dict[str, str]:
    """Working for the top-level figures (the fields an `expect:` at the top may hold)."""
    t = report.totals
    leaves = [r for r in report.rows if r.leaf]
    values = sum(math.prod(r.output) for r in leaves)
    b = report.dtype.bytes
    params = f"params = sum over the layers = {_sum([r.params for r in leaves], 'layers with parameters')}"
    activations = f"{count(values)} values in the layers' outputs · {b} B = {count(t.activation_bytes)} B " \
                  f"({size_bytes(t.activation_bytes)}), every layer's output counted"
    allocated = sum(math.prod(r.output) for r in report.rows if allocates(r))
    allocated_text = (f"allocated_bytes = {count(allocated)} values in the outputs PyTorch allocates · {b} B = "
                      f"{count(t.allocated_bytes)} B ({size_bytes(t.allocated_bytes)}): views (flatten, identity, "
                      "dropout) and in-place layers share their input's storage; residual sums and "
                      "concatenations are new tensors")
    return {
        "output": f"output = the output of the last layer = {fmt_shape(report.output)}",
        "params": params,
        "trainable_params": params.replace("params", "trainable params", 1) + " (all parameters are trainable)",
        "macs": f"MACs = sum over the layers = {_sum([r.macs for r in leaves], 'layers with multiply-adds')}",
        "rf": f"rf = the field after the last layer = {_field_or_global(report.rf)}",
        "memory": f"memory = {activations}",
        "activation_bytes": f"activation_bytes = {activations}",
        "param_bytes": f"param_bytes = {count(t.params)} · {b} B = {count(t.param_bytes)} B "
                       f"({size_bytes(t.param_bytes)})",
        "allocated_bytes": allocated_text,
    }


# --- training (explain --train, check's `saved` and `backward_macs`) --------------------------------------

def train_working(training, row) -> list[str]:
    """What a layer keeps for backward, one tensor a line with its rule, and its backward MACs
    (the whole batch of the training step)."""
    step, batch = training.rows[row.path], training.batch
    if not row.leaf:
        return [f"saved for backward = sum over its layers = {count(step.saved_bytes)} B",
                f"backward MACs = sum over its layers = {count(step.backward_macs)}"]
    lines = []
    for kept in step.kept:
        if kept.shared is not None:
            lines.append(f"saved: {kept.why}: already kept by {kept.shared} (counted there)")
        else:
            lines.append(f"saved: {kept.why}: {product(kept.shape) or '1 value'} · {kept.itemsize} B = "
                         f"{count(kept.bytes)} B")
    if not step.kept:
        why = "its input needs no gradient and it has no parameters" if not step.input_grad and not row.params \
            else "its backward needs only sizes (or it is a view)"
        lines.append(f"saved: nothing ({why})")
    lines.append(f"saved for backward = {count(step.saved_bytes)} B ({size_bytes(step.saved_bytes)})"
                 + (" for the batch of " + str(batch) if batch > 1 else ""))
    if step.backward_macs:
        forward = row.macs * batch
        parts = [f"{count(forward)} for the weight's gradient"] if row.weight else []
        if step.input_grad:
            parts.append(f"{count(forward)} for the input's gradient")
        lines.append(f"backward MACs = {' + '.join(parts)} = {count(step.backward_macs)}"
                     + ("" if step.input_grad else " (its input needs no gradient)"))
    return lines
