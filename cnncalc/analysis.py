"""Walk a validated network once: per-entry rows (numbers and tuples only), totals and warnings."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from . import keys
from .arith import PIXEL, Field
from .errors import SpecError
from .layers.base import fmt_shape
from .source import LARGEST
from .spec import Network, Node


class DType(str, Enum):
    """Element types for memory figures; the value is the name users type."""

    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float64 = "float64"
    int8 = "int8"

    @property
    def bytes(self) -> int:
        return {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1}[self.value]


@dataclass
class Row:
    """One entry's figures, per sample. `rf` is a tuple of Fields per spatial axis, None if global."""

    node: Node
    input: tuple
    output: tuple
    weight: tuple | None
    bias: tuple | None
    params: int
    buffers: int
    macs: int
    rf: tuple[Field, ...] | None
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return self.node.path

    @property
    def leaf(self) -> bool:
        return self.node.leaf


@dataclass
class Totals:
    params: int
    trainable_params: int
    buffers: int
    macs: int
    activation_bytes: int       # every leaf's output counted (the LeNet-5 table's convention)
    param_bytes: int
    allocated_bytes: int = 0    # what PyTorch allocates: views and in-place layers share their input's storage


@dataclass
class Warning:
    node: Node
    text: str


@dataclass
class Report:
    network: Network
    rows: list[Row]
    output: tuple
    rf: tuple[Field, ...] | None
    totals: Totals
    warnings: list[Warning]
    dtype: DType = DType.float32
    batch: int = 1
    training: object = None     # a training.Training, when asked for (summary --train)

    def row(self, path: str) -> Row:
        for r in self.rows:
            if r.path == path:
                return r
        raise KeyError(path)


def analyse(network: Network, dtype: DType | str = DType.float32, batch: int = 1) -> Report:
    """Every entry's output shape, weights, params, MACs and receptive field, then the totals."""
    dtype = DType(dtype)
    walker = _Walker()
    start = tuple(PIXEL for _ in network.input[1:]) or None
    output, rf = walker.sequence(network.root.branches[""], network.input, start)
    if not network.root.branches[""]:
        walker.warnings.append(Warning(network.root, "the network has no layers: its output is its input"))
    leaves = [r for r in walker.rows if r.leaf]
    for key, first, second in keys.clashes(leaves):
        walker.warnings.append(Warning(second, f"its state_dict key '{key}' is also that of {first.describe()}: "
                                               "weights cannot load by these names; give the layers different names"))
    params = sum(r.params for r in leaves)
    totals = Totals(params=params, trainable_params=params, buffers=sum(r.buffers for r in leaves),
                    macs=sum(r.macs for r in leaves),
                    activation_bytes=sum(math.prod(r.output) for r in leaves) * dtype.bytes,
                    param_bytes=params * dtype.bytes,
                    allocated_bytes=sum(math.prod(r.output) for r in walker.rows if allocates(r)) * dtype.bytes)
    return Report(network, walker.rows, output, rf, totals, walker.warnings, dtype, batch)


def allocates(row: Row, training: bool = False) -> bool:
    """Whether PyTorch allocates new memory for this entry's output: not for a view (flatten, identity,
    dropout at inference) or an in-place layer (`inplace: true`), nor for a sequence (its output is
    its last layer's); yes for other leaves and for a residual's sum, a concatenation or a product. The one
    per-tensor accounting that `allocated_bytes`, the training figures and the forward estimate share."""
    node = row.node
    if node.leaf:
        return node.layer.output_storage(row.input, training) == "new"
    return list(node.branches) != [""]


class _Walker:
    def __init__(self):
        self.rows: list[Row] = []
        self.warnings: list[Warning] = []
        self.siblings: list[tuple[Node, dict]] = []  # composites being walked, with their branches' outputs so far

    def sequence(self, nodes: list[Node], shape: tuple, rf):
        for node in nodes:
            row = self.node(node, shape, rf)
            shape, rf = row.output, row.rf
        return shape, rf

    def node(self, node: Node, shape: tuple, rf) -> Row:
        try:
            row = self.leaf(node, shape, rf) if node.leaf else self.composite(node, shape, rf)
            _check_sizes(row)
            return row
        except SpecError as e:
            raise e.located(node.where, node.describe()) from None

    def leaf(self, node: Node, shape: tuple, rf) -> Row:
        if node.layer.like is not None:   # sized like a sibling branch: bound to that size (spec._Frame)
            node.layer = node.layer.bound(self.sibling(node.layer.like))
        layer = node.layer
        layer.check_input(shape)
        out = layer.out_shape(shape)
        tensors = layer.tensors(shape)
        row = Row(node, shape, out, tensors.get("weight"), tensors.get("bias"),
                  params=sum(math.prod(t) for t in tensors.values()),
                  buffers=sum(math.prod(t) for t in layer.buffers(shape).values()),
                  macs=layer.macs(shape, out),
                  rf=layer.field_after(shape, rf) if rf else None,
                  notes=layer.notes_with(shape, rf))
        self.rows.append(row)
        self.warnings.extend(Warning(node, text) for text in row.notes)
        return row

    def sibling(self, branch: str) -> tuple:
        """The output of `branch` of the nearest composite around that has one (the parser checked it
        exists and ordered the branches so that it is walked first)."""
        for composite, outputs in reversed(self.siblings):
            if branch in composite.branches:
                return outputs[branch]
        raise AssertionError(f"no branch {branch} around")  # the parser refuses this

    def composite(self, node: Node, shape: tuple, rf) -> Row:
        index = len(self.rows)
        self.rows.append(None)  # placeholder: a composite's row comes before its children's
        outputs, fields, pieces = {}, {}, {}
        self.siblings.append((node, outputs))
        try:
            for branch in node.order or node.branches:  # a branch sized like a sibling after that sibling
                first = len(self.rows)
                outputs[branch], fields[branch] = self.sequence(node.branches[branch], shape, rf)
                if node.order:   # its rows are put back in document order below
                    pieces[branch] = self.rows[first:]
                    del self.rows[first:]
        finally:
            self.siblings.pop()
        for branch in node.branches if pieces else ():
            self.rows += pieces[branch]
        children = [r for r in self.rows[index + 1:] if r.node.depth == node.depth + 1]
        outputs = {branch: outputs[branch] for branch in node.branches}   # document order: concat's channels
        fields = {branch: fields[branch] for branch in node.branches}
        out = node.layer.combine(shape, outputs)
        row = Row(node, shape, out, None, None,
                  params=sum(r.params for r in children), buffers=sum(r.buffers for r in children),
                  macs=sum(r.macs for r in children),
                  rf=node.layer.combine_fields(fields) if rf else None)
        self.rows[index] = row
        return row


def _check_sizes(row: Row) -> None:
    """Refuse a tensor PyTorch could not hold (over 2^63 - 1 elements): it keeps every later figure
    finite, and no real network comes near it (3×100000×100000 is 3·10^10)."""
    for what, shape in (("output", row.output), ("weight", row.weight), ("bias", row.bias)):
        if shape is not None and math.prod(shape) > LARGEST:
            raise SpecError(f"the {what} {fmt_shape(shape)} has more elements than a tensor can hold (2^63 - 1)",
                            fix="check the sizes and scale factors up to this layer")
