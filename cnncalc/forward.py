"""The NumPy forward pass: weights, one run over the Node tree, predicted vs actual shape per entry.

Weights are PyTorch's default initialisation drawn from a seed, or a state dict saved with
`np.savez` (keys `<path>.weight`, `.bias`, `.running_mean`, `.running_var`). The pass feeds a
batched array `(N, *per-sample shape)` through each leaf's kernel from `cnncalc.kernels` and
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
otherwise prepared weights are kept while the weight arrays live (`cnncalc.derived`).

>>> import cnncalc
>>> result = run(cnncalc.load("lenet5"))
>>> result.ok, result.output.shape
(True, (1, 10))
"""
from __future__ import annotations

import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import blas, kernels
from .analysis import DType, Report, Row, analyse
from .derived import derived
from .errors import SpecError
from .layers import activation, conv, linear, norm, pool, reshape
from .layers.base import Layer, fmt_shape, lookup, suggest
from .layers.composite import Concat, Residual
from .spec import Network, Node

DTYPES = {"float32": np.float32, "float64": np.float64}
MEMORY_FRACTION = 0.8          # of the RAM available now: the default --max-memory
IGNORED_SUFFIXES = (".num_batches_tracked",)

Weights = dict  # state_dict key (`3.body.0.weight`) -> np.ndarray
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
class Memory:
    """Estimated peak bytes of a pass: live activations (batch included), kernel scratch, weights."""

    activations: int
    workspace: int
    weights: int

    @property
    def total(self) -> int:
        return self.activations + self.workspace + self.weights


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

    `weights`: None (PyTorch's default initialisation from `seed`), an .npz path or a dict of
    state_dict arrays. `max_memory` (bytes, or text like `4G`): refuse (SpecError) when the estimate
    exceeds it; None uses MEMORY_FRACTION of the available RAM, 0 disables the check.
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
    `cnncalc.derived`'s cache after checking a fingerprint of every source array: in a resnet50
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
        self._memory(batch, max_memory)  # refuse before making or loading weights that may not fit
        if weights is None:
            self.weights, self.warnings = initial_weights(report, seed, self.dtype), []
        elif isinstance(weights, dict):
            self.weights, self.warnings = checked_weights(report, weights, self.dtype, "the weights")
        else:
            self.weights, self.warnings = load_weights(weights, report, self.dtype)
        self._params = _params_by_path(self.weights)
        self._folded: dict[str, dict] = {}  # conv path -> its parameters with the BatchNorm after it folded in

    def report(self, batch: int) -> Report:
        """The analysis at this batch size (made once per size)."""
        if batch not in self._reports:
            self._reports[batch] = analyse(self.network, DType(np.dtype(self.dtype).name), batch)
        return self._reports[batch]

    def _memory(self, batch: int, max_memory: int | str | None) -> Memory:
        """The estimate for a pass of `batch` (made once per size), or SpecError when it exceeds the limit."""
        if isinstance(max_memory, str):
            max_memory = parse_size(max_memory)
        if batch not in self._estimates:
            self._estimates[batch] = estimate_memory(self.report(batch), batch, self.dtype)
        memory = self._estimates[batch]
        check_memory(memory, default_memory_limit() if max_memory is None else max_memory, batch)
        return memory

    def run(self, data: str | Path | np.ndarray | None = None, *, batch: int = 1, seed: int = 0,
            max_memory: int | str | None = None, on_layer: OnLayer | None = None,
            keep_outputs: bool = False) -> Result:
        """One pass on `data` (see `run`; random normal from `seed` when None)."""
        given = _given_data(data)
        if given is not None:
            batch = _data_batch(given, self.network.input, batch, _what(data))
        memory = self._memory(batch, max_memory)
        x, owned = _input(self.network, given, batch, self.dtype, seed)
        folded = {} if keep_outputs else self._folded  # (keep_outputs folds nothing)
        return _Pass(self.report(batch), self._params, folded, on_layer, keep_outputs).run(
            x, owned, memory, list(self.warnings))


def _dtype(dtype) -> type:
    name = getattr(dtype, "value", dtype)
    name = np.dtype(name).name if not isinstance(name, str) else name
    if name not in DTYPES:
        raise SpecError(f"the forward pass runs in float32 or float64, not {name}",
                        fix="use --dtype float32 (the default) or --dtype float64")
    return DTYPES[name]


# --- weights -----------------------------------------------------------------------------------------

def expected_tensors(report: Report) -> dict[str, tuple[tuple, Row]]:
    """Every array the pass needs, keyed like PyTorch's state_dict: `<path>.weight` -> (shape, row)."""
    wanted = {}
    for row in _leaf_rows(report):
        layer = row.node.layer
        for name, shape in {**layer.tensors(row.input), **layer.buffers(row.input)}.items():
            wanted[f"{row.path}.{name}"] = (tuple(shape), row)
    return wanted


# Fan-in layers: weight kaiming_uniform(a=√5), i.e. U(±1/√fan_in), bias U(±1/√fan_in), where
# fan_in = weight.shape[1] · ∏kernel (for a transposed conv that is C_out/groups · ∏K, as in torch).
_FAN_IN_LAYERS = (conv._Convolution, linear.Linear)
# Everything else starts constant: norm weight 1, bias 0; running mean 0, running variance 1.
_CONSTANT_INIT = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}


def initial_weights(report: Report, seed: int = 0, dtype=np.float32) -> Weights:
    """PyTorch's default initialisation (same distributions and fan-in rules), drawn from `seed`."""
    rng = np.random.default_rng(seed)
    weights = {}
    for row in _leaf_rows(report):
        layer = row.node.layer
        tensors = {**layer.tensors(row.input), **layer.buffers(row.input)}
        bound = None
        if isinstance(layer, _FAN_IN_LAYERS):
            shape = tensors["weight"]
            bound = 1.0 / math.sqrt(shape[1] * math.prod(shape[2:]))
        for name, shape in tensors.items():
            key = f"{row.path}.{name}"
            if bound is not None and name in ("weight", "bias"):
                weights[key] = _uniform(rng, shape, bound, dtype)
            else:
                weights[key] = np.full(shape, _CONSTANT_INIT[name], dtype)
    return weights


def _uniform(rng: np.random.Generator, shape, bound: float, dtype) -> np.ndarray:
    """U(-bound, bound) drawn directly in `dtype` (no float64 intermediate for float32)."""
    a = rng.random(shape, dtype=dtype)
    a *= 2 * bound
    a -= bound
    return a


def load_weights(path: str | Path, report: Report, dtype=np.float32) -> tuple[Weights, list[str]]:
    """Arrays from an .npz of state_dict keys, checked against the network; (weights, warnings)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SpecError(f"weights file '{path}' does not exist", fix="give the path of an .npz file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise SpecError(f"cannot read weights file '{path}': {e}", fix=_SAVE_HINT) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise SpecError(f"weights file '{path}' holds one array, not named arrays", fix=_SAVE_HINT)
    with archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise SpecError(f"cannot read weights file '{path}': {e}", fix=_SAVE_HINT) from None
    return checked_weights(report, arrays, dtype, f"weights file '{path}'")


_SAVE_HINT = "save a state dict with np.savez(path, **{k: v.numpy() for k, v in model.state_dict().items()})"


def checked_weights(report: Report, arrays: dict, dtype, what: str) -> tuple[Weights, list[str]]:
    """The arrays the network needs, converted to `dtype`; a missing or misshapen one is an error
    naming the key and both shapes; keys nobody uses are warnings (num_batches_tracked is ignored)."""
    weights = {}
    for key, (shape, row) in expected_tensors(report).items():
        if key not in arrays:
            raise SpecError(f"{what} has no '{key}' (expected shape {fmt_shape(shape)}, found none)"
                            f"{suggest(key, arrays)}", where=row.node.where, layer=row.node.describe(),
                            fix="keys are state_dict keys of the equivalent torch.nn.Sequential; "
                                "`cnncalc summary --format json` lists the paths")
        array = np.asarray(arrays[key])
        if array.shape != shape:
            raise SpecError(f"'{key}' in {what} has shape {fmt_shape(array.shape)}, expected {fmt_shape(shape)}",
                            where=row.node.where, layer=row.node.describe(),
                            fix="the weights belong to a different network, or the spec's input or "
                                "channels differ from the model that saved them")
        if array.dtype.kind not in "fiub":
            raise SpecError(f"'{key}' in {what} holds {array.dtype} values, not numbers",
                            where=row.node.where, layer=row.node.describe())
        weights[key] = np.ascontiguousarray(array, dtype)
    unused = [k for k in arrays if k not in weights and not k.endswith(IGNORED_SUFFIXES)]
    warnings = [f"{what}: {len(unused)} unused key{'s' if len(unused) > 1 else ''}: "
                f"{', '.join(unused[:8])}{', …' if len(unused) > 8 else ''}"] if unused else []
    return weights, warnings


def _leaf_rows(report: Report):
    return (row for row in report.rows if row.leaf)


# --- input data ---------------------------------------------------------------------------------------

def _given_data(data) -> np.ndarray | None:
    """The user's array (a .npy path is memory-mapped, not read yet), or None for random data."""
    if data is None:
        return None
    return load_data(data) if isinstance(data, (str, Path)) else np.asarray(data)


def _what(data) -> str:
    return f"data file '{data}'" if isinstance(data, (str, Path)) else "the data"


def _input(network: Network, given: np.ndarray | None, batch: int, dtype, seed: int) -> tuple[np.ndarray, bool]:
    """(batched input, whether the pass owns it): random normal from `seed`, or the user's data."""
    if given is None:
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])  # independent of the weights
        return rng.standard_normal((batch, *network.input), dtype=dtype), True
    samples = given[None] if given.shape == tuple(network.input) else given
    return np.ascontiguousarray(samples, dtype), False


def load_data(path: str | Path) -> np.ndarray:
    """An array from a .npy file (no pickles), or SpecError."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except FileNotFoundError:
        raise SpecError(f"data file '{path}' does not exist", fix="give the path of a .npy file") from None
    except (OSError, ValueError, EOFError) as e:
        raise SpecError(f"cannot read data file '{path}': {e}",
                        fix="save the array with np.save('x.npy', array) (C×H×W or N×C×H×W)") from None
    if not isinstance(array, np.ndarray):
        raise SpecError(f"data file '{path}' holds several arrays (an .npz); give one .npy array",
                        fix="np.save('x.npy', array)")
    return array


def _data_batch(array: np.ndarray, shape: tuple, batch: int, what: str) -> int:
    """How many samples `array` holds: one sample `shape`, or a batch `(N, *shape)`; else SpecError.

    `batch` must be 1 (the default) or agree with N."""
    if array.dtype.kind not in "fiub":
        raise SpecError(f"{what} holds {array.dtype} values, not numbers", fix="save a float array")
    if tuple(array.shape) == tuple(shape):
        return 1
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != tuple(shape) or len(array) == 0:
        raise SpecError(f"{what} has shape {fmt_shape(array.shape)}, but the network takes {fmt_shape(shape)} "
                        f"(one sample) or N×{fmt_shape(shape)} (a batch)",
                        fix=f"pass --input {'x'.join(map(str, array.shape[-len(shape):]))} if the data is right, "
                            "or reshape the data")
    if batch not in (1, len(array)):
        raise SpecError(f"--batch {batch} disagrees with the {len(array)} samples in {what}",
                        fix="leave out --batch when giving --data")
    return len(array)


# --- memory --------------------------------------------------------------------------------------------

def estimate_memory(report: Report, batch: int, dtype=np.float32) -> Memory:
    """Peak memory of the pass, from the analysis alone (nothing is allocated).

    Live activations follow the pass: a leaf holds its input and output (plus a padded copy of the
    input for padded windows); a residual or concat keeps its input and its finished branches'
    outputs while the next branch runs. Kernel scratch (im2col / col2im chunks) is bounded by
    kernels.CHUNK_BYTES per chunk. Weights and buffers count once, whatever the batch.
    """
    itemsize = np.dtype(dtype).itemsize
    estimator = _MemoryWalk(report, batch, itemsize)
    peak = estimator.sequence(report.network.root.branches[""], math.prod(report.network.input))
    weights = sum(math.prod(shape) for shape, _ in expected_tensors(report).values()) * itemsize
    return Memory(peak * batch * itemsize, estimator.workspace, weights)


class _MemoryWalk:
    """Per-sample element counts of what is alive at the worst moment, walking like the pass."""

    def __init__(self, report: Report, batch: int, itemsize: int):
        self.rows = {row.path: row for row in report.rows}
        self.batch, self.itemsize = batch, itemsize
        self.buffers: dict[str, int] = {}  # scratch buffer -> bytes; the kernels keep and reuse them

    def sequence(self, nodes: list[Node], held: int) -> int:
        for node, after in zip(nodes, nodes[1:]):
            if _folds(node, after):
                # folded weights and bias (_conv_with_batch_norm), and a widening 1x1 conv's copy of
                # them with the bias as a column (kernels._conv_pointwise), prepared once and kept
                row = self.rows[node.path]
                self.buffers[f"folded {node.path}"] = 2 * (math.prod(row.weight) + row.output[0]) * self.itemsize
        return max((self.node(node, held) for node in nodes), default=held)

    def node(self, node: Node, held: int) -> int:
        row = self.rows[node.path]
        size_in, size_out = math.prod(row.input), math.prod(row.output)
        if node.leaf:
            return held + size_in + size_out + self.scratch(node.layer, row)
        if isinstance(node.layer, (Residual, Concat)):
            peak, finished = 0, 0
            for nodes in node.branches.values():
                peak = max(peak, self.sequence(nodes, held + size_in + finished))
                finished += math.prod(self.rows[nodes[-1].path].output) if nodes else 0
            return max(peak, held + size_in + finished + size_out)
        return self.sequence(node.branches[""], held)

    def scratch(self, layer: Layer, row: Row) -> int:
        """Per-sample elements a leaf allocates beyond its output; chunked scratch goes to workspace."""
        if isinstance(layer, conv.Conv):
            # Padded rows, im2col columns and GEMM results live in the kernels' reused, chunk-sized
            # scratch buffers; only a reflect/replicate/circular padding copies the whole input.
            # An im2col GEMM has one more row per group, for its bias (kernels._conv_im2col).
            self._winograd(layer, row)
            if f"folded {row.path}" not in self.buffers:  # its weights laid out for the GEMM, bias as a column
                self.buffers[f"prepared {row.path}"] = (math.prod(row.weight) + row.output[0]) * self.itemsize
            depth = row.input[0] * math.prod(layer.kernel_size) + layer.groups
            per_row = depth * math.prod(row.output[2:])
            # (without BLAS's beta = 1 a residual's last conv adds its products from a "product" buffer)
            for buffer in ("pad", "cols", "gemm") + (() if blas.available() else ("product",)):
                self._chunk(buffer, per_row * row.output[1], per_row)
            return _padded_size(layer, row.input) if layer.padding_mode != "zeros" else 0
        if isinstance(layer, pool._Pool):  # a padded copy, then one partial reduction per axis
            return _padded_size(layer, row.input) + math.prod(row.input)
        if isinstance(layer, conv.ConvTranspose):
            self._chunk("cols", layer.out_channels * math.prod(layer.kernel_size) * math.prod(row.input[1:]))
            self._chunk("canvas", 2 * math.prod(row.output))
            return 0
        return math.prod(row.output)  # elementwise kernels' temporaries

    def _winograd(self, layer, row: Row) -> None:
        """A Winograd layer's scratch (its padded input, tiles and transforms in the reused buffers)
        and its transformed filters, which stay cached beside the weights (36 values per 9 taps)."""
        x_shape, w_shape = (self.batch, *row.input), row.weight
        dtype = np.float32 if self.itemsize == 4 else np.float64  # float64 never takes the path
        if not kernels.winograd_suits(x_shape, w_shape, layer.stride, layer.dilation, layer.groups,
                                      row.output[1:], dtype):
            return
        largest = kernels.winograd_bytes(x_shape, w_shape, row.output[1:])  # every array it puts in a buffer
        for buffer in ("pad", "cols", "gemm"):
            self.buffers[buffer] = max(self.buffers.get(buffer, 0), largest)
        self.buffers[f"winograd {row.path}"] = 4 * math.prod(w_shape) * self.itemsize

    def _chunk(self, buffer: str, per_sample: int, per_row: int | None = None) -> None:
        """A scratch buffer holding whole samples up to kernels.CHUNK_BYTES, else rows of one sample;
        each buffer keeps its largest size (the kernels reuse them)."""
        sample_bytes = per_sample * self.itemsize
        row_bytes = (per_row or per_sample) * self.itemsize
        size = min(self.batch * sample_bytes, max(kernels.CHUNK_BYTES, row_bytes if sample_bytes > kernels.CHUNK_BYTES
                                                   else sample_bytes))
        self.buffers[buffer] = max(self.buffers.get(buffer, 0), size)

    @property
    def workspace(self) -> int:
        return sum(self.buffers.values())


def _padded_size(layer, shape: tuple) -> int:
    """Elements of a window layer's padded input copy (0 when it pads nothing)."""
    pads = getattr(layer, "pads", None) or [(p, p) for p in layer.padding]
    if not any(lo or hi for lo, hi in pads):
        return 0
    return shape[0] * math.prod(n + lo + hi for n, (lo, hi) in zip(shape[1:], pads))


def default_memory_limit() -> int:
    """MEMORY_FRACTION of the RAM available now (/proc/meminfo, else sysconf); 0 = unknown, no limit."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * MEMORY_FRACTION)
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * MEMORY_FRACTION)
    except (ValueError, OSError, AttributeError):
        return 0


def check_memory(memory: Memory, limit: int, batch: int) -> None:
    """Refuse a pass whose estimate exceeds `limit` bytes (0: no limit) before it allocates anything."""
    if limit and memory.total > limit:
        raise SpecError(
            f"the forward pass would need about {_gib(memory.total)} (activations {_gib(memory.activations)} "
            f"for batch {batch}, weights {_gib(memory.weights)}, scratch {_gib(memory.workspace)}), "
            f"more than the limit of {_gib(limit)}",
            fix="use a smaller --batch or --input, or raise the limit with --max-memory (e.g. --max-memory "
                f"{math.ceil(memory.total / 2**30 * 1.2)}G) if the machine has the RAM")


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


_UNITS = {"": 1, "b": 1, **{f"{prefix}{suffix}": 1024 ** (i + 1) for i, prefix in enumerate("kmgt")
                             for suffix in ("", "b", "ib")}}


def parse_size(text: str) -> int:
    """`4G`, `512MiB`, `1.5gb`, `1000000` → bytes, in binary units as memory is (G = GB = GiB = 2³⁰);
    `0` means no limit.

    >>> parse_size("2G"), parse_size("512MiB")
    (2147483648, 536870912)
    """
    value = str(text).strip().lower().replace("_", "").replace(" ", "")
    number = value.rstrip("kmgtib")
    unit = value[len(number):]
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    if unit not in _UNITS or not amount >= 0 or amount == float("inf"):
        raise SpecError(f"--max-memory '{text}' is not a size", fix="write it like 4G, 512MiB or 2000000000 (bytes)")
    return int(amount * _UNITS[unit])


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

    def run(self, x: np.ndarray, owned: bool, memory: Memory, warnings: list[str]) -> Result:
        batch = len(x)
        start = time.perf_counter()
        try:
            y, _ = self.sequence(self.report.network.root.branches[""], x, owned)
        except _Stopped:
            y = None
        except MemoryError:
            raise SpecError(f"the forward pass ran out of memory (estimated {_gib(memory.total)})",
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
            if self.outputs is None and _defers_relu(node, nodes[i + 1] if i + 1 < len(nodes) else None):
                self.record(node, x)  # same shape; the next entry applies the ReLU as it reads x
                i, relu = i + 1, True
                continue
            params, absorbed = self.fusion(nodes, i)
            if node.leaf:
                adds = add_to is not None and i + 1 + len(absorbed) == len(nodes) and _takes_sum(node)
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
        if self.outputs is not None or not _folds(node, after):
            return params, []
        folded = self.folded.get(node.path)
        if folded is None:
            folded = self.folded[node.path] = _conv_with_batch_norm(params, self.params[after.path], after.layer.eps)
        return folded, [after]

    def leaf(self, node: Node, x: np.ndarray, owned: bool, params: dict, relu: bool = False,
             add_to: np.ndarray | None = None):
        """(output, owned) of one leaf's kernel, on relu(x) with ``relu`` (see _TAKE_RELU), added
        into ``add_to`` when given (see _takes_sum)."""
        check = self.checks[node.path]
        started = time.perf_counter()
        options = {"relu": True} if relu else {}
        if add_to is not None:
            options["add_to"] = add_to
        try:
            y = _apply(node.layer, x, params, owned, **options)
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
        if not isinstance(layer, (Residual, Concat)):
            return self.sequence(node.branches[""], x, owned)
        # Every branch reads x, so none may change it in place.
        branches = list(node.branches.values())
        last = _summing_branch(branches) if isinstance(layer, Residual) and self.outputs is None else None
        outputs = [self.sequence(nodes, x, False) for j, nodes in enumerate(branches) if j != last]
        if isinstance(layer, Concat):
            return np.concatenate([y for y, _ in outputs], axis=1), True
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
        if nodes and (_takes_sum(nodes[-1]) or len(nodes) > 1 and _folds(nodes[-2], nodes[-1])):
            return j
    return None


class _Stopped(Exception):
    """A kernel failed; the pass stops and the failing entry is reported."""


def _per_sample(shape: tuple, batch: int) -> tuple:
    return tuple(shape[1:]) if shape and shape[0] == batch else tuple(shape)


def _params_by_path(weights: Weights) -> dict[str, dict[str, np.ndarray]]:
    """`{"3.weight": w}` → `{"3": {"weight": w}}`."""
    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, array in weights.items():
        path, _, name = key.rpartition(".")
        grouped.setdefault(path, {})[name] = array
    return grouped


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


# --- one function per layer type: (layer, x (N, *S), params, owned) -> y --------------------------------

_KERNELS: dict[type, Callable] = {}


def _kernel(*classes):
    def add(fn):
        for cls in classes:
            _KERNELS[cls] = fn
        return fn
    return add


def _apply(layer: Layer, x: np.ndarray, p: dict, owned: bool, **options) -> np.ndarray:
    """The layer's kernel on x; options ``relu=True`` (on relu(x): only kernels in _TAKE_RELU are
    asked) and ``add_to`` (see _takes_sum)."""
    for cls in type(layer).__mro__:
        if cls in _KERNELS:
            return _KERNELS[cls](layer, x, p, owned, **options)
    raise NotImplementedError(f"no NumPy kernel for {layer.kind}")


def _out_size(layer: Layer, x: np.ndarray) -> tuple:
    """Output spatial size for the array actually received (kernels that take it as an argument)."""
    return layer.out_shape(x.shape[1:])[1:]


@_kernel(conv.Conv)
def _conv(layer, x, p, owned, relu=False, add_to=None):
    return kernels.conv(x, p["weight"], p.get("bias"), layer.stride, layer.pads, layer.dilation, layer.groups,
                        layer.padding_mode, relu_input=relu, overwrite_input=owned, add_to=add_to)


@_kernel(conv.ConvTranspose)
def _conv_transpose(layer, x, p, owned):
    return kernels.conv_transpose(x, p["weight"], p.get("bias"), layer.stride, layer.padding,
                                  layer.output_padding, layer.dilation, layer.groups)


@_kernel(pool.MaxPool)
def _max_pool(layer, x, p, owned, relu=False):
    return kernels.max_pool(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation, _out_size(layer, x),
                            relu_input=relu)


#: Kernels that apply a ReLU to their input as they read it (``relu_input``): a ReLU right before
#: one of them is deferred to it, unless every entry's output is kept.
_TAKE_RELU = (conv.Conv, pool.MaxPool)


def _takes_sum(node: Node) -> bool:
    """Whether ``node``'s kernel adds its output into a given array (``add_to``): a convolution,
    whose GEMM adds its products in -- a residual block's last convolution adds itself to the
    shortcut's output with no pass of its own."""
    return node.leaf and isinstance(node.layer, conv.Conv)


def _defers_relu(node: Node, after: Node | None) -> bool:
    """Whether the ReLU ``node`` is left to the entry ``after`` it (see _TAKE_RELU)."""
    return (after is not None and node.leaf and after.leaf and type(node.layer) is lookup("relu")
            and isinstance(after.layer, _TAKE_RELU))


@_kernel(pool.AvgPool)
def _avg_pool(layer, x, p, owned):
    return kernels.avg_pool(x, layer.kernel_size, layer.stride, layer.padding, _out_size(layer, x),
                            layer.count_include_pad, layer.divisor_override)


@_kernel(pool.AdaptiveAvgPool)
def _adaptive_avg_pool(layer, x, p, owned):
    return kernels.adaptive_avg_pool(x, _out_size(layer, x))


@_kernel(pool.AdaptiveMaxPool)
def _adaptive_max_pool(layer, x, p, owned):
    return kernels.adaptive_max_pool(x, _out_size(layer, x))


@_kernel(linear.Linear)
def _linear(layer, x, p, owned):
    return kernels.linear(x, p["weight"], p.get("bias"))


@_kernel(norm.BatchNorm)
def _batch_norm(layer, x, p, owned):
    if "running_mean" not in p:  # track_running_stats=False: PyTorch uses the batch's statistics
        axes = (0, *range(2, x.ndim))
        return kernels.batch_norm(x, x.mean(axis=axes), x.var(axis=axes), p.get("weight"), p.get("bias"), layer.eps)
    if "scale" not in p:  # folded once per layer into y = x·scale + shift
        shape = (-1,) + (1,) * (x.ndim - 2)  # (C, 1, …)
        p["scale"], p["shift"] = (v.astype(x.dtype).reshape(shape) for v in _batch_norm_affine(p, layer.eps))
    y = np.multiply(x, p["scale"], out=x if owned else None)
    y += p["shift"]
    return y


def _batch_norm_affine(p: dict, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm as a per-channel (scale, shift), in float64: y = x·scale + shift."""
    scale = 1.0 / np.sqrt(p["running_var"].astype(np.float64) + eps)
    if "weight" in p:
        scale *= p["weight"]
    shift = -p["running_mean"] * scale
    if "bias" in p:
        shift += p["bias"]
    return scale, shift


def _folds(node: Node, after: Node | None) -> bool:
    """Whether ``after`` is an inference BatchNorm (running statistics: a fixed affine map) right
    after the convolution ``node``, which the pass folds into it."""
    return (after is not None and node.leaf and after.leaf and isinstance(node.layer, conv.Conv)
            and isinstance(after.layer, norm.BatchNorm) and after.layer.track_running_stats)


def _conv_with_batch_norm(conv_p: dict, bn_p: dict, eps: float) -> dict:
    """Convolution parameters computing conv-then-BatchNorm: weight·scale, bias·scale + shift per
    output channel (prepared once per set of weights, see cnncalc.derived)."""
    weight, bias = conv_p["weight"], conv_p.get("bias")

    def fold() -> dict:
        scale, shift = _batch_norm_affine(bn_p, eps)  # float64; the weights are scaled in their own dtype
        per_output = scale.astype(weight.dtype).reshape((-1,) + (1,) * (weight.ndim - 1))  # (C_out, 1, …)
        return {"weight": weight * per_output,
                "bias": (shift if bias is None else bias * scale + shift).astype(weight.dtype)}
    sources = (weight, bias, *(bn_p.get(k) for k in ("running_mean", "running_var", "weight", "bias")))
    return derived(f"conv+batchnorm eps={eps!r}", sources, fold)


@_kernel(norm.GroupNorm)
def _group_norm(layer, x, p, owned):
    return kernels.group_norm(x, layer.num_groups, p.get("weight"), p.get("bias"), layer.eps)


@_kernel(norm.LayerNorm)
def _layer_norm(layer, x, p, owned):
    return kernels.layer_norm(x, len(layer.normalized(x.shape[1:])), p.get("weight"), p.get("bias"), layer.eps)


@_kernel(reshape.Flatten)
def _flatten(layer, x, p, owned):
    first, last = layer.span(x.shape[1:])
    first, last = first + 1, last + 1  # the batch is axis 0
    return x.reshape(*x.shape[:first], -1, *x.shape[last + 1:])


@_kernel(reshape.Identity, reshape._Dropout)
def _identity(layer, x, p, owned):
    return x


@_kernel(reshape.ZeroPad)
def _zero_pad(layer, x, p, owned):
    return kernels.pad(x, layer.pads)


@_kernel(reshape.Upsample)
def _upsample(layer, x, p, owned):
    # With recompute_scale_factor PyTorch derives the coordinate scale from the sizes, as without one.
    scale = None if getattr(layer, "recompute_scale_factor", None) else layer.scale_factor
    return kernels.upsample(x, _out_size(layer, x), layer.mode, layer.align_corners, scale)


@_kernel(lookup("relu"))
def _relu(layer, x, p, owned):
    return np.maximum(x, 0, out=x) if owned else kernels.relu(x)


@_kernel(lookup("relu6"))
def _relu6(layer, x, p, owned):
    return np.clip(x, 0, 6, out=x) if owned else kernels.relu6(x)


_ELEMENTWISE = {  # YAML name -> the kernel, called with the layer's PyTorch options
    "leakyrelu": lambda x, o: kernels.leaky_relu(x, o["negative_slope"]),
    "elu": lambda x, o: kernels.elu(x, o["alpha"]),
    "gelu": lambda x, o: kernels.gelu(x, o["approximate"]),
    "silu": lambda x, o: kernels.silu(x),
    "sigmoid": lambda x, o: kernels.sigmoid(x),
    "tanh": lambda x, o: kernels.tanh(x),
    "hardswish": lambda x, o: kernels.hardswish(x),
    "hardsigmoid": lambda x, o: kernels.hardsigmoid(x),
}
for _name, _fn in _ELEMENTWISE.items():
    _kernel(lookup(_name))(lambda layer, x, p, owned, fn=_fn: fn(x, layer.options))


@_kernel(lookup("softmax"))
def _softmax(layer, x, p, owned):
    return kernels.softmax(x, layer.axis(x.shape[1:]) + 1)


@_kernel(lookup("logsoftmax"))
def _log_softmax(layer, x, p, owned):
    return kernels.log_softmax(x, layer.axis(x.shape[1:]) + 1)


# --- saving ---------------------------------------------------------------------------------------------

def check_writable(path: str | Path, force: bool) -> Path:
    """Refuse (before any work) to overwrite an existing file without `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise SpecError(f"'{path}' already exists", fix="choose another name, or add --force to overwrite it")
    if path.is_dir():
        raise SpecError(f"'{path}' is a directory", fix="give a file name such as out.npy")
    if not path.parent.is_dir():
        raise SpecError(f"the folder of '{path}' does not exist", fix="create it first, or choose another path")
    return path


def save_output(array: np.ndarray, path: str | Path, force: bool = False) -> None:
    """Write `array` as .npy atomically: a temporary file beside it, then a rename (never a half file)."""
    path = check_writable(path, force)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        if not force and path.exists():
            raise SpecError(f"'{path}' appeared while the pass ran", fix="add --force to overwrite it")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
