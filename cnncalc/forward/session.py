"""The NumPy forward pass: weights, one run over the Node tree, predicted vs actual shape per entry.

Weights are PyTorch's default initialisation drawn from a seed, or a state dict saved with
`np.savez` (keys `<path>.weight`, `.bias`, `.running_mean`, `.running_var`). The pass feeds a
batched array `(N, *per-sample shape)` through each leaf's kernel (`base.apply`) and
records the shape it produced beside the analysis's prediction. Before running, the peak memory
is estimated from the analysis, and a pass that would not fit is refused.

Arrays the pass itself allocated ("owned") are updated in place by ReLU, ReLU6, BatchNorm and
the residual sum; the caller's data and an input that a residual's shortcut still needs never are.
Unless every entry's output is kept (`keep_outputs`), an inference BatchNorm right after a
convolution is folded into the convolution's weights, as inference engines do: one GEMM gives
the BatchNorm's output, and both entries record its shape. Likewise a ReLU right before a
convolution or max pool is left to that kernel (`relu_input`), which applies it where it is
cheapest: as a 1x1 convolution copies its input in, or on a max pool's smaller output. And a
residual branch that ends in a convolution runs last, its GEMM adding into the other branch's
output (or into x itself, when the pass owns it) instead of a separate sum. Folded and
otherwise prepared weights are kept while the weight arrays live (`cnncalc.forward.derived`).

>>> import cnncalc
>>> result = run(cnncalc.load("lenet5"))
>>> result.ok, result.output.shape
(True, (1, 10))
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..analysis import DType, Report, analyse
from ..errors import SpecError
from ..layers.composite import Concat, Multiply, Residual
from ..spec import Network, Node
from . import base, fusion, norm
from .data import _data_batch, _given_data, _input, _what
from . import blas, lanes, parallel
from .estimate import Memory, check_memory, default_memory_limit, estimate_memory, parse_size
from .memory import POOL_IDLE_BYTES, _empty, keep_idle, size_text
from .parallel import halves
from .weights import Weights, _leaf_rows, checked_weights, expected_tensors, initial_weights, load_weights

DTYPES = {"float32": np.float32, "float64": np.float64}

OnLayer = Callable[[int, int, str], None]  # (leaves done, leaves in all, path just finished)


@dataclass
class Check:
    """One entry's shape, per sample: what the analysis predicted and what NumPy produced.

    `actual` is None when the pass did not reach the entry (or its kernel failed: `error`); it keeps
    the batch axis when that axis itself came out wrong, so the disagreement shows.
    """

    node: Node
    predicted: tuple
    actual: Optional[tuple] = None
    seconds: float = 0.0
    error: Optional[str] = None

    @property
    def path(self) -> str:
        return self.node.path

    @property
    def ok(self) -> bool:
        return self.actual == self.predicted


@dataclass
class Result:
    report: Report
    checks: list[Check]
    output: Optional[np.ndarray]     # (N, *output shape); None if the pass stopped early
    seconds: float                   # the pass alone: no start-up, weights or data
    memory: Memory
    warnings: list[str] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)  # path -> copy of its output, with keep_outputs

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def batch(self) -> int:
        return self.report.batch


# --- the public entry point --------------------------------------------------------------------------

def run(network: Network, *, batch: int = 1, seed: int = 0, dtype: str = "float32",
        weights: str | Path | Weights | None = None, data: str | Path | np.ndarray | None = None,
        max_memory: int | str | None = None, on_layer: OnLayer | None = None, keep_outputs: bool = False) -> Result:
    """Run `network` on `data` (a path to .npy or an array; random normal when None) and compare
    every entry's output shape with the analysis: one pass of a new `Session`.

    `weights`: None (PyTorch's default initialisation from `seed`), an .npz or .safetensors path,
    or a dict of state_dict arrays. `max_memory` (bytes, or text like `4G` or `none`): refuse
    (SpecError) when the estimate exceeds it; None uses MEMORY_FRACTION of the available RAM, 0 or
    `none` disables the check.
    `keep_outputs` keeps a copy of every entry's output in `Result.outputs` (for comparisons).
    """
    given = _given_data(data)
    if given is not None:
        batch = _data_batch(given, network.input, batch, _what(data))
    session = Session(network, seed=seed, dtype=dtype, weights=weights, batch=batch, max_memory=max_memory)
    return session.run(given, batch=batch, seed=seed, max_memory=max_memory, on_layer=on_layer,
                       keep_outputs=keep_outputs)


class Session:
    """A network and its weights, checked and prepared once for any number of forward passes.

    Like an inference session (ONNX Runtime's, a frozen TorchScript module): the weights are
    checked against the network when the session is made, and each inference BatchNorm is folded
    into its convolution on the session's first pass and kept -- later passes run the kernels
    only.  (`run` makes a new session per call, which finds its prepared weights again in
    `cnncalc.forward.derived`'s cache after checking a fingerprint of every source array: in a resnet50
    pass at batch 1 those lookups took 1.5 ms against 0.24 ms in a session, mostly cache
    misses.)  The folded weights are read at the first pass: to change weights, make a new
    session.  `batch` and `max_memory` (see `run`): the weights are made or loaded only if a
    pass of that batch fits.

    >>> import cnncalc
    >>> session = Session(cnncalc.load("lenet5"))
    >>> [session.run(batch=b).output.shape for b in (1, 4)]
    [(1, 10), (4, 10)]
    """

    def __init__(self, network: Network, *, seed: int = 0, dtype: str = "float32",
                 weights: str | Path | Weights | None = None, batch: int = 1, max_memory: int | str | None = None):
        self.network, self.dtype = network, _dtype(dtype)
        self._reports: dict[int, Report] = {}
        self._estimates: dict[int, Memory] = {}
        report = self.report(batch)
        limit = _limit(max_memory)
        self._memory(batch, limit)  # refuse before making or loading weights that may not fit
        if weights is None:
            self.weights, self.warnings = initial_weights(report, seed, self.dtype), []
        elif isinstance(weights, dict):
            self.weights, self.warnings = checked_weights(report, weights, self.dtype, "the weights", limit)
        else:
            self.weights, self.warnings = load_weights(weights, report, self.dtype, limit)
        self._params = _params_by_path(self.weights, report)
        self._folded: dict[str, dict] = {}  # conv path -> its parameters with the BatchNorm after it folded in

    def report(self, batch: int) -> Report:
        """The analysis at this batch size (made once per size)."""
        if batch not in self._reports:
            self._reports[batch] = analyse(self.network, DType(np.dtype(self.dtype).name), batch)
        return self._reports[batch]

    def _memory(self, batch: int, limit: int) -> Memory:
        """The estimate for a pass of `batch` (made once per size), or SpecError when it exceeds
        `limit` bytes (0: no limit)."""
        if batch not in self._estimates:
            self._estimates[batch] = estimate_memory(self.report(batch), batch, self.dtype)
        memory = self._estimates[batch]
        check_memory(memory, limit, batch)
        return memory

    def run(self, data: str | Path | np.ndarray | None = None, *, batch: int = 1, seed: int = 0,
            max_memory: int | str | None = None, on_layer: OnLayer | None = None,
            keep_outputs: bool = False) -> Result:
        """One pass on `data` (see `run`; random normal from `seed` when None)."""
        given = _given_data(data)
        if given is not None:
            batch = _data_batch(given, self.network.input, batch, _what(data))
        limit = _limit(max_memory)
        memory = self._memory(batch, limit)
        keep_idle(min(POOL_IDLE_BYTES, limit - memory.total) if limit else None)  # the pool within the limit
        try:
            x, owned = _input(self.network, given, batch, self.dtype, seed)
            report = self.report(batch)
            folded = {} if keep_outputs else self._folded  # (keep_outputs folds nothing)
            new_pass = lambda progress=on_layer: _Pass(report, self._params, folded, progress, keep_outputs)  # noqa: E731
            split = 0 if keep_outputs or lanes.count(report, batch) == 1 else lanes.entries(report, -(-batch // 2))
            if not split:
                return new_pass().run(x, owned, memory, list(self.warnings))
            return _in_lanes(new_pass, report.network.root.branches[""], split, on_layer, x, owned, memory,
                             self.warnings)
        finally:
            keep_idle(None)


def _limit(max_memory: int | str | None) -> int:
    """Bytes a pass may take (0: no limit) from `max_memory` (see `run`)."""
    if max_memory is None:
        return default_memory_limit()
    if isinstance(max_memory, str):
        return parse_size(max_memory)
    if max_memory < 0:
        raise SpecError(f"a memory limit of {max_memory} bytes is below zero", fix="give a size in bytes, or 0 (or \"none\") for no limit")
    return int(max_memory)


def _dtype(dtype) -> type:
    name = getattr(dtype, "value", dtype)
    name = np.dtype(name).name if not isinstance(name, str) else name
    if name not in DTYPES:
        raise SpecError(f"the forward pass runs in float32 or float64, not {name}",
                        fix="use --dtype float32 (the default) or --dtype float64")
    return DTYPES[name]


def _in_lanes(new_pass: Callable[..., "_Pass"], entries: list[Node], split: int, on_layer: OnLayer | None,
              x: np.ndarray, owned: bool, memory: Memory, warnings: list[str]) -> Result:
    """The pass over x's samples in two lanes, one per core (``parallel.halves``), BLAS single-threaded
    in each: every kernel's work splits, not just the GEMMs that OpenBLAS threads itself -- the
    im2col copies, elementwise passes and softmaxes that NumPy runs on one thread.  (At batch 32,
    two lanes took resnet18's pass from 0.76 to 0.55 s, convnext_tiny's from 3.5 to 2.5.)  A lane
    is a pass of its own over the network's first ``split`` top-level ``entries``, all but its
    weight-bound tail (``lanes.entries``: a classifier whose weights both lanes would stream from
    memory), which then runs once on the lanes' outputs joined, with BLAS's threads.  The first lane reports progress;
    each entry's check is the first lane's unless only the second's failed, or the tail's; the
    per-entry seconds are the first lane's."""
    results: dict[int, Result] = {}
    passes = []
    start = time.perf_counter()

    def lane(part: slice) -> None:
        passes.append(new_pass(on_layer if part.start == 0 else None))
        results[part.start] = passes[-1].run(x[part], owned, memory, list(warnings), entries[:split])
    halves(lane, len(x))
    first, second = results[0], results[max(results)]  # (one lane only on one core: run in one call)
    checks = [b if a.ok and not b.ok else a for a, b in zip(first.checks, second.checks)]
    outputs = [results[start].output for start in sorted(results)]
    output = None if any(y is None for y in outputs) else outputs[0]
    if output is not None and len(outputs) > 1:
        output = np.concatenate(outputs, out=_empty((len(x), *output.shape[1:]), np.result_type(*outputs)))
    if output is not None and split < len(entries):
        rest = new_pass()
        rest.done = passes[0].done  # (both lanes ran every entry before the tail)
        with blas.single_threaded(parallel.CPUS // 2):  # (no OpenBLAS workers left spinning into the next pass's lanes)
            tail = rest.run(output, True, memory, list(warnings), entries[split:])
        output, checks = tail.output, [t if t.actual is not None or t.error else c for c, t in zip(checks, tail.checks)]
    return Result(first.report, checks, output, time.perf_counter() - start, memory, first.warnings)


# --- the pass -----------------------------------------------------------------------------------------

class _Pass:
    """Walks the Node tree once, applying each leaf's kernel and recording every entry's shape."""

    def __init__(self, report: Report, params: dict[str, dict], folded: dict[str, dict], on_layer: OnLayer | None,
                 keep_outputs: bool = False):
        self.report, self.on_layer = report, on_layer
        self.outputs = {} if keep_outputs else None
        self.checks = {row.path: Check(row.node, row.output) for row in report.rows}
        self.params, self.folded = params, folded  # (folded: the session's, kept from pass to pass)
        self.leaves = sum(1 for _ in _leaf_rows(report))
        self.done = 0

    def run(self, x: np.ndarray, owned: bool, memory: Memory, warnings: list[str],
            entries: list[Node] | None = None) -> Result:
        """The pass over the network's top-level ``entries`` (all of them by default)."""
        batch = len(x)
        start = time.perf_counter()
        if entries is None:
            entries = self.report.network.root.branches[""]
        try:
            with np.errstate(all="ignore"):  # NaN or inf weights or data: a warning of their own, or none
                y, _ = self.sequence(entries, x, owned)
        except _Stopped:
            y = None
        except MemoryError:
            raise SpecError(f"the forward pass ran out of memory (estimated {size_text(memory.total)})",
                            fix="use a smaller --batch or --input") from None
        seconds = time.perf_counter() - start
        checks = [self.checks[row.path] for row in self.report.rows]
        for check in checks:
            if check.actual is not None and batch:
                check.actual = _per_sample(check.actual, batch)
        return Result(self.report, checks, y, seconds, memory, warnings, self.outputs or {})

    def sequence(self, nodes: list[Node], x: np.ndarray, owned: bool, add_to: np.ndarray | None = None
                 ) -> tuple[np.ndarray, bool]:
        """Run ``nodes`` on x; with ``add_to``, return ``add_to`` plus their output, written into
        ``add_to`` (by the last entry's kernel when it is a convolution, which adds its GEMM's
        products in)."""
        i, relu = 0, False
        while i < len(nodes):
            node = nodes[i]
            if self.outputs is None and fusion.defers_relu(node, nodes[i + 1] if i + 1 < len(nodes) else None):
                self.record(node, x)  # same shape; the next entry applies the ReLU as it reads x
                i, relu = i + 1, True
                continue
            params, absorbed = self.fusion(nodes, i)
            if node.leaf:
                adds = add_to is not None and i + 1 + len(absorbed) == len(nodes) and fusion.takes_sum(node)
                x, owned = self.leaf(node, x, owned, params, relu, add_to if adds else None)
                if adds:
                    add_to, owned = None, True
            else:
                x, owned = self.composite(node, x, owned)
            for done in (node, *absorbed):  # entries fused into this one share its output
                self.record(done, x)
            i, relu = i + 1 + len(absorbed), False
        if add_to is not None:  # no convolution at the end to add it in
            add_to += x
            return add_to, True
        return x, owned

    def fusion(self, nodes: list[Node], i: int) -> tuple[dict | None, list[Node]]:
        """(kernel parameters, entries absorbed) for ``nodes[i]``: an inference BatchNorm right after
        a convolution is folded into the convolution's weights, as inference engines do (one GEMM,
        no passes over the conv's output) -- only when no one sees the conv's own output, so not
        with keep_outputs, where every entry is computed on its own."""
        node, after = nodes[i], nodes[i + 1] if i + 1 < len(nodes) else None
        params = self.params.get(node.path, {}) if node.leaf else None
        if self.outputs is not None or not fusion.folds(node, after):
            return params, []
        folded = self.folded.get(node.path)
        if folded is None:
            folded = self.folded[node.path] = norm._conv_with_batch_norm(params, self.params[after.path], after.layer.eps)
        return folded, [after]

    def leaf(self, node: Node, x: np.ndarray, owned: bool, params: dict, relu: bool = False,
             add_to: np.ndarray | None = None):
        """(output, owned) of one leaf's kernel, on relu(x) with ``relu`` (see fusion.TAKE_RELU), added
        into ``add_to`` when given (see fusion.takes_sum)."""
        check = self.checks[node.path]
        started = time.perf_counter()
        options = {"relu": True} if relu else {}
        if add_to is not None:
            options["add_to"] = add_to
        try:
            y = base.apply(node.layer, x, params, owned, **options)
        except (ValueError, TypeError, IndexError, NotImplementedError, FloatingPointError) as e:
            check.error = f"{type(e).__name__}: {e}"
            raise _Stopped from None
        check.seconds = time.perf_counter() - started
        return y, owned or not np.may_share_memory(y, x)

    def record(self, node: Node, y: np.ndarray) -> None:
        self.checks[node.path].actual = y.shape
        if self.outputs is not None:
            self.outputs[node.path] = y.copy()  # later layers may work in place on y
        if node.leaf:
            self.done += 1
            if self.on_layer:
                self.on_layer(self.done, self.leaves, node.path)

    def composite(self, node: Node, x: np.ndarray, owned: bool) -> tuple[np.ndarray, bool]:
        layer = node.layer
        if not isinstance(layer, (Residual, Concat, Multiply)):
            return self.sequence(node.branches[""], x, owned)
        # Every branch reads x, so none may change it in place.
        branches = list(node.branches.values())
        if isinstance(layer, Multiply):  # (every branch has read x: an owned x may take the product)
            return _product([self.sequence(nodes, x, False) for nodes in branches], x if owned else None), True
        last = _summing_branch(branches) if isinstance(layer, Residual) and self.outputs is None else None
        outputs = [self.sequence(nodes, x, False) for j, nodes in enumerate(branches) if j != last]
        if isinstance(layer, Concat):
            return _concat([y for y, _ in outputs]), True
        if last is None:
            return _sum(outputs), True
        # The other branches' sum, in an array the pass owns (x itself when x is owned and the
        # other branch is the identity: the last branch reads x before its last GEMM adds into it).
        if any(mine for _, mine in outputs):
            total = _sum(outputs)
        elif owned and len(outputs) == 1 and outputs[0][0] is x:
            total = x
        else:
            return _sum(outputs + [self.sequence(branches[last], x, False)]), True
        return self.sequence(branches[last], x, False, add_to=total)[0], True


def _summing_branch(branches: list[list[Node]]) -> int | None:
    """The residual branch to run last, adding its output into the others' sum: the last one that
    ends in a convolution (with its BatchNorm folded in), if any."""
    for j in reversed(range(len(branches))):
        nodes = branches[j]
        if nodes and (fusion.takes_sum(nodes[-1]) or len(nodes) > 1 and fusion.folds(nodes[-2], nodes[-1])):
            return j
    return None


class _Stopped(Exception):
    """A kernel failed; the pass stops and the failing entry is reported."""


def _per_sample(shape: tuple, batch: int) -> tuple:
    return tuple(shape[1:]) if shape and shape[0] == batch else tuple(shape)


def _params_by_path(weights: Weights, report: Report) -> dict[str, dict[str, np.ndarray]]:
    """`{"3.weight": w, "5.out_proj.weight": v}` → `{"3": {"weight": w}, "5": {"out_proj.weight": v}}`
    (a tensor's name may hold dots, as attention's do: the layer's path decides)."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, (_, row) in expected_tensors(report).items():
        grouped.setdefault(row.path, {})[key[len(row.path) + 1:]] = weights[key]
    return grouped


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays joined along the channel axis, into an array from the block pool (whose idle
    blocks are unmapped first when the memory limit leaves no room for them)."""
    first = arrays[0]
    shape = (first.shape[0], sum(a.shape[1] for a in arrays), *first.shape[2:])
    return np.concatenate(arrays, axis=1, out=_empty(shape, np.result_type(*arrays)))


def _product(outputs: list[tuple[np.ndarray, bool]], spare: np.ndarray | None = None) -> np.ndarray:
    """Elementwise product of the branches' outputs, broadcast as PyTorch does (an SE gate's (N, C, 1, 1)
    over (N, C, H, W)), in place into an owned output of the full shape when there is one, else into
    ``spare`` (the block's input, when the pass owns it and every branch has read it) when it suits,
    else into a new array from the block pool."""
    shape = np.broadcast_shapes(*(y.shape for y, _ in outputs))
    outputs = sorted(outputs, key=lambda pair: not (pair[1] and pair[0].shape == shape))
    (total, owned), rest = outputs[0], [y for y, _ in outputs[1:]]
    if not (owned and total.shape == shape):
        dtype = np.result_type(total, *rest)
        suits = (spare is not None and spare.shape == shape and spare.dtype == dtype and spare.flags.writeable
                 and all(y is spare or not np.may_share_memory(y, spare) for y in (total, *rest)))
        result = spare if suits else _empty(shape, dtype)
        if rest:
            np.multiply(total, rest.pop(0), out=result)
        elif result is not total:
            result[...] = total
        total = result
    for y in rest:
        total *= y
    return total


def _sum(outputs: list[tuple[np.ndarray, bool]]) -> np.ndarray:
    """Sum of the branches' outputs, accumulated in place into one the pass owns when there is one."""
    outputs = sorted(outputs, key=lambda pair: not pair[1])  # an owned array first
    (total, owned), rest = outputs[0], outputs[1:]
    if not rest:
        return total if owned else total.copy()
    total = total if owned else total + rest.pop(0)[0]
    for y, _ in rest:
        total += y
    return total
