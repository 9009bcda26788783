"""A training step's memory and compute, from the analysis alone: what autograd keeps for backward
(per layer, each storage counted once), gradients, optimizer state, backward MACs, a peak estimate and
the largest batch that fits a budget.

Every figure here is for the whole batch. The rules for what a layer keeps live with the layer
(`Layer.saved`); this module follows the tensors through the network: which storage each layer's
output uses (a view and an in-place layer share their input's, `Layer.output_storage`), its element
type (under autocast conv and linear compute in half precision) and whether it needs a gradient.
The same storage rule (`analysis.allocates`) gives the inference figure `allocated_bytes`.

>>> import cnncalc
>>> step = train(cnncalc.analyse(cnncalc.load("lenet5")), batch=1, device="cpu")
>>> step.totals.saved_bytes, step.totals.backward_macs
(183496, 12652000)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .analysis import DType, Report, Row, Warning, allocates
from .errors import SpecError
from .layers.base import Saved, TrainContext
from .layers.composite import Multiply, broadcast
from .spec import Node
from .train_options import DEFAULT_OPTIMIZER, Amp, Device, Optimizer  # noqa: F401 - part of this module's API


ITEMSIZE = {"int64": 8}


@dataclass
class Kept:
    """One tensor a layer keeps for backward; `shared` names the layer that already keeps its storage
    (then it is counted there, not here)."""

    why: str
    shape: tuple            # the whole tensor, batch included where it has one
    itemsize: int
    shared: str | None = None

    @property
    def bytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


@dataclass
class LayerStep:
    """One entry's training figures for the whole batch; a composite's are its layers' sums."""

    saved_bytes: int = 0
    backward_macs: int = 0
    kept: list[Kept] = field(default_factory=list)
    input_grad: bool = True
    own: int = 0            # a composite's own kept bytes (a product's factors), beside its layers'


@dataclass
class TrainTotals:
    saved_bytes: int
    forward_macs: int
    backward_macs: int
    param_bytes: int        # parameters and buffers
    grad_bytes: int
    optimizer_bytes: int
    transient_bytes: int    # the largest pair of gradients alive at once in the backward pass
    peak_bytes: int
    max_batch: int | None = None
    budget: int | None = None

    @property
    def step_macs(self) -> int:
        return self.forward_macs + self.backward_macs


@dataclass
class Training:
    report: Report
    batch: int
    optimizer: Optimizer
    amp: Amp
    device: Device
    rows: dict[str, LayerStep]
    totals: TrainTotals
    dtype: DType = DType.float32
    fits: dict[str, int] = field(default_factory=dict)   # precision choice -> largest batch in the budget
    warnings: list[Warning] = field(default_factory=list)


def train(report: Report, batch: int | None = None, optimizer: Optimizer | str = DEFAULT_OPTIMIZER,
          amp: Amp | str | None = Amp.none, device: Device | str = Device.cuda, budget: int | None = None,
          dtype: DType | str | None = None) -> Training:
    """The training figures of `report`'s network at `batch` (default: the report's), in `dtype`
    (default: the report's; the whole model cast to it, as `model.to(dtype)` does).

    `amp`: torch.autocast to float16/bfloat16 (parameters, gradients and optimizer state stay float32;
    conv and linear compute and keep half-precision tensors and half copies of their weights).
    `budget` (bytes): also find the largest batch whose peak fits, for this choice (`totals.max_batch`)
    and for the usual others (`fits`: float32, float16, AMP float16, AMP bfloat16).
    """
    batch = report.batch if batch is None else batch
    optimizer, amp, device = Optimizer(optimizer), Amp(amp or Amp.none), Device(device)
    dtype = DType(dtype or report.dtype)
    walk = _Walk(report, batch, amp, device, dtype)
    walk.run()
    totals = _totals(report, walk, optimizer, amp, batch, dtype)
    fits = {}
    if budget is not None:
        totals.budget = budget
        totals.max_batch = _largest(budget, totals, walk.fixed, batch)
        # One walk per distinct precision: both autocast types keep 2-byte copies, and this step's
        # own choice is already answered.
        answers = {(dtype, amp is not Amp.none): totals.max_batch}
        for label, (other, half) in PRECISIONS.items():
            key = (other, half is not Amp.none)
            if key not in answers:
                answers[key] = max_batch(report, budget, optimizer, half, device, other)
            fits[label] = answers[key]
    return Training(report, batch, optimizer, amp, device, walk.steps, totals, dtype, fits, walk.warnings)


# The precision choices whose largest batch `--budget` lists: (model dtype, autocast type).
PRECISIONS = {"float32": (DType.float32, Amp.none), "float16": (DType.float16, Amp.none),
              "AMP float16": (DType.float32, Amp.float16), "AMP bfloat16": (DType.float32, Amp.bfloat16)}


def max_batch(report: Report, budget: int, optimizer=DEFAULT_OPTIMIZER, amp=Amp.none, device=Device.cuda,
              dtype=None) -> int:
    """The largest batch whose peak estimate fits `budget` bytes (0 if not even one sample fits)."""
    amp, dtype = Amp(amp or Amp.none), DType(dtype or report.dtype)
    walk = _Walk(report, 1, amp, Device(device), dtype)
    walk.run()
    return _largest(budget, _totals(report, walk, Optimizer(optimizer), amp, 1, dtype), walk.fixed, 1)


def _largest(budget: int, t: TrainTotals, fixed_saved: int, batch: int) -> int:
    """The peak is affine in the batch: the model's state and the saved tensors that do not grow with it
    (BatchNorm's statistics, autocast's weight copies) are fixed, every other term is per sample."""
    fixed = t.param_bytes + t.grad_bytes + t.optimizer_bytes + fixed_saved
    per_sample = (t.peak_bytes - fixed) // batch
    if budget < fixed + per_sample:
        return 0
    return (budget - fixed) // per_sample if per_sample else 2**63 - 1


def _totals(report: Report, walk: "_Walk", optimizer: Optimizer, amp: Amp, batch: int, dtype: DType) -> TrainTotals:
    t = report.totals
    param_size = 4 if amp is not Amp.none else dtype.bytes    # autocast keeps float32 parameters
    saved = sum(s.saved_bytes if walk.leaf[path] else s.own for path, s in walk.steps.items())
    backward = sum(s.backward_macs for path, s in walk.steps.items() if walk.leaf[path])
    param_bytes = (t.params + t.buffers) * param_size
    grads = t.trainable_params * param_size
    states = optimizer.states * t.trainable_params * param_size
    peak = param_bytes + grads + states + saved + walk.transient
    return TrainTotals(saved, t.macs * batch, backward, param_bytes, grads, states, walk.transient, peak)


class _Tensor:
    """An activation as the step sees it: its storage (shared by views and in-place layers), the
    element count of the whole batch, its element size and whether it needs a gradient."""

    __slots__ = ("storage", "elements", "itemsize", "grad")

    def __init__(self, storage: int, elements: int, itemsize: int, grad: bool):
        self.storage, self.elements, self.itemsize, self.grad = storage, elements, itemsize, grad


class _Walk:
    def __init__(self, report: Report, batch: int, amp: Amp, device: Device, dtype: DType):
        self.rows = {r.path: r for r in report.rows}
        self.leaf = {r.path: r.leaf for r in report.rows}
        self.batch, self.device = batch, device.value
        self.amp = amp is not Amp.none
        self.value = dtype.bytes
        self.half = 2
        self.network = report.network
        self.steps: dict[str, LayerStep] = {}
        self.kept_by: dict[int, str] = {}         # storage -> the first layer keeping it
        self.storages = 0
        self.transient = 0
        self.fixed = 0                            # saved bytes that do not grow with the batch
        self.warnings: list[Warning] = []

    def new(self, shape: tuple, itemsize: int, grad: bool, per_sample: bool = True) -> _Tensor:
        self.storages += 1
        return _Tensor(self.storages, math.prod(shape) * (self.batch if per_sample else 1), itemsize, grad)

    def run(self) -> None:
        network = self.network
        x = self.new(network.input, 4 if self.amp else self.value, grad=False)
        self.sequence(network.root.branches[""], x)

    def sequence(self, nodes: list[Node], x: _Tensor) -> _Tensor:
        for node in nodes:
            x = self.node(node, x)
        return x

    def node(self, node: Node, x: _Tensor) -> _Tensor:
        row = self.rows[node.path]
        if node.leaf:
            return self.layer(node, row, x)
        outputs = [self.sequence(nodes, x) for nodes in node.branches.values()]
        children = [self.steps[n.path] for nodes in node.branches.values() for n in nodes]
        step = self.steps[node.path] = LayerStep(sum(c.saved_bytes for c in children),
                                                 sum(c.backward_macs for c in children), input_grad=x.grad)
        if list(node.branches) == [""]:          # a sequence: its last layer's output
            return outputs[0]
        if isinstance(node.layer, Multiply):
            return self.product(node, step, outputs)
        # a residual sum or a concatenation: a new tensor; it keeps nothing (its backward needs sizes only)
        grad = any(y.grad for y in outputs)
        return self.new(row.output, max(y.itemsize for y in outputs), grad)

    def product(self, node: Node, step: LayerStep, outputs: list[_Tensor]) -> _Tensor:
        """Branches multiplied in order, ((a·b)·c)…, as PyTorch's `*`: each product keeps one factor
        for the other's gradient (a when b needs one, b when a does); the products' own kept bytes are
        the composite's (`step.own`), not its layers'."""
        shapes = [self.rows[nodes[-1].path].output if nodes else self.rows[node.path].input
                  for nodes in node.branches.values()]
        total, shape = outputs[0], shapes[0]
        for other, other_shape in zip(outputs[1:], shapes[1:]):
            for kept, kept_shape, needed in ((total, shape, other.grad), (other, other_shape, total.grad)):
                if needed and kept.storage not in self.kept_by:
                    self.kept_by[kept.storage] = node.path
                    step.kept.append(Kept("a factor of the product, for the other's gradient", (self.batch, *kept_shape),
                                          kept.itemsize))
                    step.own += kept.elements * kept.itemsize
            shape = broadcast(shape, other_shape)
            total = self.new(shape, max(total.itemsize, other.itemsize), total.grad or other.grad)
        step.saved_bytes += step.own
        return total

    def layer(self, node: Node, row: Row, x: _Tensor) -> _Tensor:
        layer = node.layer
        # Under autocast, conv and linear compute in half precision, a few layers in float32 (torch.autocast's
        # op lists: `autocast_float32`), the rest in their input's type.
        cast = self.half if self.amp and layer.autocast else \
            4 if self.amp and layer.autocast_float32(self.device) else None
        grad = x.grad or row.params > 0
        if allocates(row, training=True):
            promoted = max(x.itemsize, 4) if self.amp and layer.promotes else x.itemsize   # float32 parameters
            y = self.new(row.output, cast or promoted, grad)
            y.elements = layer.output_elements(row.input, row.output, self.batch)
        else:                                     # a view or in place: the input's storage
            y = _Tensor(x.storage, x.elements, x.itemsize, grad)
        step = LayerStep(input_grad=x.grad)
        self.warnings += [Warning(node, text) for text in layer.training_notes(row.input, self.batch)]
        step.backward_macs = layer.backward_macs(row.input, row.output, x.grad) * self.batch
        # Autograd records nothing where neither the input nor a parameter needs a gradient.
        for saved in layer.saved(row.input, row.output, TrainContext(self.device, x.grad, self.amp, self.batch)) if grad else ():
            self.keep(step, node.path, saved, row, x, y, cast)
        self.steps[node.path] = step
        gradients = y.elements * y.itemsize + (x.elements * x.itemsize if x.grad else 0)
        self.transient = max(self.transient, gradients)
        return y

    def keep(self, step: LayerStep, path: str, saved: Saved, row: Row, x: _Tensor, y: _Tensor, cast: int | None) -> None:
        if saved.of == "weight":
            shape = saved.shape or row.weight
            if cast == self.half and shape:       # autocast's half copy of the weight
                step.kept.append(Kept(saved.why + " (its half-precision copy, under autocast)", shape, self.half))
                step.saved_bytes += step.kept[-1].bytes
                self.fixed += step.kept[-1].bytes
            return
        want = {"layer": cast, "none": None, "float32": 4 if self.amp else None}[saved.cast]
        if saved.of in ("input", "output") and not (want and saved.of == "input" and x.itemsize != want):
            tensor = x if saved.of == "input" else y
            shape = (self.batch, *(row.input if saved.of == "input" else row.output))
            first = self.kept_by.setdefault(tensor.storage, path)
            kept = Kept(saved.why, shape, tensor.itemsize, None if first == path else first)
            if kept.shared is None and math.prod(shape) != tensor.elements:
                kept.shape = (tensor.elements,)  # a view of a larger or differently shaped storage
            step.kept.append(kept)
            if kept.shared is None:
                step.saved_bytes += tensor.elements * tensor.itemsize
            return
        if saved.of == "input":                   # autocast's copy of its input in the type it computes in
            precision = "half precision" if want == self.half else "float32"
            shape, itemsize, why = (self.batch, *row.input), want, saved.why + f" (cast to {precision} by autocast)"
        else:
            shape = (self.batch, *saved.shape) if saved.per_sample else saved.shape
            itemsize, why = self._itemsize(saved, cast, x, y, row), saved.why
        kept = Kept(why, shape, itemsize)
        step.kept.append(kept)
        step.saved_bytes += kept.bytes
        if saved.of == "new" and not saved.per_sample:
            self.fixed += kept.bytes

    def _itemsize(self, saved: Saved, cast: int | None, x: _Tensor, y: _Tensor, row: Row) -> int:
        if saved.dtype == "stat":
            # Statistics are float32 where the kernel mixes types: CUDA's under autocast, and the CPU's
            # when a half input meets float32 parameters or running statistics; else the input's type.
            mixed = self.amp and (self.device == "cuda" or row.params or row.buffers)
            return 4 if mixed else x.itemsize
        if saved.dtype == "mask":
            return 1
        if saved.dtype == "float32" and self.amp:
            return 4                              # autocast leaves it in float32
        if saved.dtype in ITEMSIZE:
            return ITEMSIZE[saved.dtype]
        if saved.cast == "none":
            return x.itemsize                     # made from the input before the layer casts
        if saved.cast == "float32" and self.amp:
            return 4                              # for an operation autocast runs in float32
        return cast if cast and saved.cast == "layer" else y.itemsize
