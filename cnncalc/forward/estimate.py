"""The memory guard: a pass's peak memory estimated from the analysis alone, and the limit it must fit."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .. import units
from ..analysis import Report, Row
from ..errors import SpecError
from ..layers.conv import Conv, ConvTranspose
from ..layers.linear import Linear
from ..layers.attention import MultiheadAttention, PatchMerging, ShiftedWindowAttention
from ..layers.pool import AdaptiveAvgPool, _AdaptivePool, _Pool
from ..layers.reshape import Upsample
from ..layers.base import Layer
from ..spec import Node
from . import blas
from . import conv, lanes, linear, parallel, pool
from .base import allocates, gather_rows
from .fusion import defers_relu, folds
from .memory import size_text
from .weights import expected_tensors

MEMORY_FRACTION = 0.8          # of the RAM available now: the default --max-memory


@dataclass
class Memory:
    """Estimated peak bytes of a pass: live activations (batch included), kernel scratch, weights."""

    activations: int
    workspace: int
    weights: int

    @property
    def total(self) -> int:
        return self.activations + self.workspace + self.weights


def estimate_memory(report: Report, batch: int, dtype=np.float32) -> Memory:
    """Peak memory of the pass, from the analysis alone (nothing is allocated).

    Live activations follow the pass: a leaf holds its input and output (plus a padded copy of the
    input for padded windows), its output new memory only where it allocates one (``base.allocates``:
    PyTorch's accounting, ``analysis.allocates``, where views and in-place layers share their input's
    storage, and the kernels that copy all the same); a residual or concat keeps its input and its
    finished branches' outputs while the next branch runs. Kernel scratch (im2col / col2im chunks) is bounded by
    conv.CHUNK_BYTES per chunk. Weights and buffers count once, whatever the batch. A pass in two
    lanes of samples (``lanes``) holds each lane's activations and scratch, and their joined outputs.
    """
    itemsize = np.dtype(dtype).itemsize
    n = lanes.count(report, batch)
    per_lane = -(-batch // n)  # (in lanes of samples: each its own activations and scratch)
    estimator = _MemoryWalk(report, per_lane, itemsize, n > 1 or not parallel.TWO_CORES)
    peak = estimator.sequence(report.network.root.branches[""], math.prod(report.network.input)) * per_lane * n
    weights = sum(math.prod(shape) for shape, _ in expected_tensors(report).values()) * itemsize
    return Memory((peak + _joined(report, batch, n)) * itemsize, estimator.workspace_in(n), weights)


def _joined(report: Report, batch: int, n: int) -> int:
    """Elements of the lanes' outputs joined into one array (none in one lane)."""
    if n == 1:
        return 0
    top = report.network.root.branches[""]
    split = lanes.entries(report, -(-batch // n))
    shape = report.network.input if split == 0 else next(r.output for r in report.rows if r.path == top[split - 1].path)
    return math.prod(shape) * batch


class _MemoryWalk:
    """Per-sample element counts of what is alive at the worst moment, walking like the pass."""

    def __init__(self, report: Report, batch: int, itemsize: int, one_thread: bool):
        self.rows = {row.path: row for row in report.rows}
        self.batch, self.itemsize = batch, itemsize
        self.one_thread = one_thread  # each GEMM on one thread (in lanes, or one core): conv.winograd_suits
        self.buffers: dict[str, int] = {}  # scratch buffer -> bytes; the kernels keep and reuse them
        self.relu_first: set[str] = set()  # entries that apply a ReLU deferred to them (fusion.defers_relu)

    def sequence(self, nodes: list[Node], held: int) -> int:
        for node, after in zip(nodes, nodes[1:]):
            if defers_relu(node, after):
                self.relu_first.add(after.path)
            if folds(node, after):
                # folded weights and bias (norm._conv_with_batch_norm), and a widening 1x1 conv's copy of
                # them with the bias as a column (conv._conv_pointwise), prepared once and kept
                row = self.rows[node.path]
                self.buffers[f"folded {node.path}"] = 2 * (math.prod(row.weight) + row.output[0]) * self.itemsize
        return max((self.node(node, held) for node in nodes), default=held)

    def node(self, node: Node, held: int) -> int:
        row = self.rows[node.path]
        size_in, size_out = math.prod(row.input), math.prod(row.output)
        if node.leaf:
            if not allocates(row):         # a view of its input: nothing new
                return held + size_in
            return held + size_in + size_out + self.scratch(node.layer, row)
        if not allocates(row):             # a sequence: its last entry's output
            return self.sequence(node.branches[""], held)
        peak, finished = 0, 0              # a residual, concat or product: its branches, then the result
        for nodes in node.branches.values():
            peak = max(peak, self.sequence(nodes, held + size_in + finished))
            finished += math.prod(self.rows[nodes[-1].path].output) if nodes else 0
        return max(peak, held + size_in + finished + size_out)

    def scratch(self, layer: Layer, row: Row) -> int:
        """Per-sample elements a leaf allocates beyond its output; chunked scratch goes to workspace.
        A ReLU deferred to a convolution or max pool may be applied to a copy of its input first."""
        relu_copy = math.prod(row.input) if row.path in self.relu_first else 0
        return relu_copy + self._scratch(layer, row)

    def _scratch(self, layer: Layer, row: Row) -> int:
        if isinstance(layer, Conv):
            # Padded rows, im2col columns and GEMM results live in the kernels' reused, chunk-sized
            # scratch buffers; only a reflect/replicate/circular padding copies the whole input.
            # An im2col GEMM has one more row per group, for its bias (conv._conv_im2col).
            self._winograd(layer, row)
            if f"folded {row.path}" not in self.buffers:  # its weights laid out for the GEMM, bias as a column
                self.buffers[f"prepared {row.path}"] = (math.prod(row.weight) + row.output[0]) * self.itemsize
            if layer.groups == row.input[0] and layer.groups > 1 and row.weight[1] == 1:
                self._depthwise(layer, row)
            else:
                depth = row.input[0] * math.prod(layer.kernel_size) + layer.groups
                per_row = depth * math.prod(row.output[2:])
                # (without BLAS's beta = 1 a residual's last conv adds its products from a "product" buffer)
                for buffer in ("pad", "cols", "gemm") + (() if blas.available() else ("product",)):
                    self._chunk(buffer, per_row * row.output[1], per_row)
            return _padded_size(layer, row.input) if layer.padding_mode != "zeros" else 0
        if isinstance(layer, Linear):  # a skinny GEMM's transposed result (linear.SKINNY_ROWS)
            rows = self.batch * math.prod(row.input[:-1])
            if 2 <= rows <= linear.SKINNY_ROWS and blas.available():
                self.buffers["linear"] = max(self.buffers.get("linear", 0), rows * row.output[-1] * self.itemsize)
            return 0
        if isinstance(layer, ConvTranspose):
            self._chunk("cols", layer.out_channels * math.prod(layer.kernel_size) * math.prod(row.input[1:]))
            self._chunk("canvas", 2 * math.prod(row.output))
            return 0
        if isinstance(layer, (MultiheadAttention, ShiftedWindowAttention)):
            # Q, K, V (3 per output value), the scaled Q, the scores and the heads' outputs before out_proj
            tokens, channels = math.prod(row.output[:-1]), row.output[-1]
            keys = layer.keys(row.input) if isinstance(layer, MultiheadAttention) else math.prod(layer.window_size)
            shifted = 0
            if isinstance(layer, ShiftedWindowAttention):
                tokens = math.prod(layer.padded(row.input))
                # rolled in and out, windows gathered and scattered: measured 4.3 inputs more (probe)
                shifted = 6 * tokens * channels if any(layer.shift_size) else 0
            return tokens * (5 * channels + 2 * layer.num_heads * keys) + shifted
        if isinstance(layer, PatchMerging):  # the 2×2 patches side by side, then normalised (probe: 5.3×)
            return 8 * math.prod(row.output)
        if isinstance(layer, _Pool):  # one reduction per axis into a new array (padding never copied)
            return self._separable(row)
        if isinstance(layer, _AdaptivePool):  # uneven windows gather in chunks, avg summing in float64
            temp = (pool.AVG_TEMP_BYTES if isinstance(layer, AdaptiveAvgPool) else 0) + self.itemsize
            return self._separable(row, temp)
        if isinstance(layer, Upsample):  # gathered taps, one at a time, in chunks
            return self._separable(row, None if layer.mode.startswith("nearest") else self.itemsize)
        return math.prod(row.output)  # elementwise kernels' temporaries

    def _separable(self, row: Row, temp_bytes: int | None = None) -> int:
        """A kernel that works one spatial axis at a time: the arrays between its axes (per sample),
        and with ``temp_bytes`` (bytes per output value) its chunked temporaries (base._axis_chunks)."""
        C, S, O = row.input[0], row.input[1:], row.output[1:]
        between = sum(C * math.prod(O[:i + 1]) * math.prod(S[i + 1:]) for i in range(len(S) - 1))
        if temp_bytes:  # twice: freed temporaries may stay resident on the C heap beside the next ones
            for i in range(len(S)):
                rows, per_row = self.batch * C * math.prod(O[:i]), O[i] * math.prod(S[i + 1:])
                chunk = gather_rows(rows, per_row, temp_bytes) * per_row * temp_bytes
                self.buffers["gather"] = max(self.buffers.get("gather", 0), 2 * chunk)
        return between

    def _depthwise(self, layer, row: Row) -> None:
        """A depthwise convolution's chunks (conv.depthwise_chunk): the padded input in "pad", the
        sum and one tap's products in "dw_acc" and "dw_tmp"."""
        C, S, O = row.input[0], row.input[1:], row.output[1:]
        padded = [n + lo + hi for n, (lo, hi) in zip(S, layer.pads)]
        if conv.banded_suits(row.weight, layer.groups):
            return self._banded(layer, row, padded)
        m = row.output[0] // C
        if all(s == 1 for s in layer.stride):  # flat lines at the padded row pitch
            pitch = [math.prod(padded[i + 1:]) for i in range(len(padded))]
            plane = m * (sum((o - 1) * p for o, p in zip(O, pitch)) + 1)
        else:
            plane = m * math.prod(O)
        nb, cb = conv.depthwise_chunk(self.batch, C, plane * self.itemsize)
        for buffer, size in (("pad", math.prod(padded)), ("dw_acc", plane), ("dw_tmp", plane)):
            self.buffers[buffer] = max(self.buffers.get(buffer, 0), nb * cb * size * self.itemsize)

    def _banded(self, layer, row: Row, padded: list[int]) -> None:
        """A banded depthwise convolution's chunks (conv.banded_chunk): the padded input in "pad" (as
        wide as the bands read), the gathered band rows in "cols", the output rows in "canvas" when
        the bands overhang the row or samples share a GEMM; and its banded weights, prepared once and kept."""
        C, (Ho, Wo) = row.input[0], row.output[1:]
        bands = conv.banded_layout(row.weight, layer.stride, layer.dilation, Wo, True)
        per_channel = Ho * bands.bands
        nb, cb = conv.banded_chunk(self.batch, C, per_channel * bands.depth * self.itemsize)
        sizes = [("pad", padded[0] * max(padded[1], bands.width)), ("cols", per_channel * bands.depth)]
        if bands.band * bands.bands != Wo or conv.banded_merges(self.batch, Ho, bands.bands):
            sizes.append(("canvas", per_channel * bands.band))
        for buffer, size in sizes:
            self.buffers[buffer] = max(self.buffers.get(buffer, 0), nb * cb * size * self.itemsize)
        self.buffers[f"banded {row.path}"] = C * bands.depth * bands.band * self.itemsize

    def _winograd(self, layer, row: Row) -> None:
        """A Winograd layer's scratch (its padded input, tiles and transforms in the reused buffers)
        and its transformed filters, which stay cached beside the weights (36 values per 9 taps)."""
        x_shape, w_shape = (self.batch, *row.input), row.weight
        dtype = np.float32 if self.itemsize == 4 else np.float64  # float64 never takes the path
        if not conv.winograd_suits(x_shape, w_shape, layer.stride, layer.dilation, layer.groups,
                                   row.output[1:], dtype, self.one_thread):
            return
        largest = conv.winograd_bytes(x_shape, w_shape, row.output[1:])  # every array it puts in a buffer
        for buffer in ("pad", "cols", "gemm"):
            self.buffers[buffer] = max(self.buffers.get(buffer, 0), largest)
        self.buffers[f"winograd {row.path}"] = 4 * math.prod(w_shape) * self.itemsize

    def _chunk(self, buffer: str, per_sample: int, per_row: int | None = None) -> None:
        """A scratch buffer holding whole samples up to conv.CHUNK_BYTES, else rows of one sample;
        each buffer keeps its largest size (the kernels reuse them)."""
        sample_bytes = per_sample * self.itemsize
        row_bytes = (per_row or per_sample) * self.itemsize
        size = min(self.batch * sample_bytes, max(conv.CHUNK_BYTES, row_bytes if sample_bytes > conv.CHUNK_BYTES
                                                   else sample_bytes))
        self.buffers[buffer] = max(self.buffers.get(buffer, 0), size)

    @property
    def workspace(self) -> int:
        return sum(self.buffers.values())

    def workspace_in(self, lanes: int) -> int:
        """Scratch of a pass in ``lanes`` lanes of samples: each lane's thread has its own reused
        buffers; a layer's prepared weights (keyed by its path) are made once for all."""
        shared = sum(size for name, size in self.buffers.items() if " " in name)
        return shared + (self.workspace - shared) * lanes


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
            f"the forward pass would need about {size_text(memory.total)} (activations {size_text(memory.activations)} "
            f"for batch {batch}, weights {size_text(memory.weights)}, scratch {size_text(memory.workspace)}), "
            f"more than the limit of {size_text(limit)}",
            fix="use a smaller --batch or --input, or raise the limit with --max-memory (e.g. --max-memory "
                f"{math.ceil(memory.total / 2**30 * 1.2)}G) if the machine has the RAM")


def parse_size(text: str) -> int:
    """--max-memory's bytes: `4G`, `512MiB`, `1000000`; `none` (or `off`, `unlimited`) → 0, no limit.

    >>> parse_size("2G"), parse_size("none")
    (2147483648, 0)
    """
    return units.parse_size(text, "--max-memory", unlimited=True)
