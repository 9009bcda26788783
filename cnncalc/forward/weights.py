"""The pass's weights: PyTorch's default initialisation from a seed, or a state dict from a file
(`weightfile`: .npz or .safetensors), checked against the network (every key present, every shape
right) before any array is read."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from .. import keys
from ..analysis import Report, Row
from ..errors import SpecError
from ..layers import conv, linear
from .memory import size_text
from .weightfile import Entry, WeightFile, open_weights


Weights = dict  # state_dict key (`3.body.0.weight`) -> np.ndarray


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
# Layers with their own initialisation (attention, learned tokens), registered by their kernel files:
# layer class -> fn(layer, tensor name, {name: shape} of the layer, rng, dtype) -> array.
INITIALISERS: dict[type, Callable] = {}


# Buffers that are a function of a layer's arguments, not state (Swin's relative_position_index), registered
# by their kernel files: layer class -> fn(layer) -> {buffer name: its values}. A loaded one is checked.
FIXED: dict[type, Callable] = {}


def _registrar(table: dict[type, Callable], what: str) -> Callable:
    """A decorator factory: `@name(Class, ...)` registers the function in `table` for each class."""
    def register(*classes: type) -> Callable:
        def add(fn: Callable) -> Callable:
            for cls in classes:
                table[cls] = fn
            return fn
        return add
    register.__doc__ = f"Register the decorated function as {what} of each layer class given."
    return register


fixed = _registrar(FIXED, "the values of the fixed buffers")
initialiser = _registrar(INITIALISERS, "the initialisation of the tensors")


def initial_weights(report: Report, seed: int = 0, dtype=np.float32) -> Weights:
    """PyTorch's default initialisation (same distributions and fan-in rules), drawn from `seed`."""
    rng = np.random.default_rng(seed)
    weights = {}
    for row in _leaf_rows(report):
        layer = row.node.layer
        tensors = {**layer.tensors(row.input), **layer.buffers(row.input)}
        own = next((INITIALISERS[cls] for cls in type(layer).__mro__ if cls in INITIALISERS), None)
        if own is not None:
            weights.update({f"{row.path}.{name}": own(layer, name, tensors, rng, dtype) for name in tensors})
            continue
        bound = None
        if isinstance(layer, _FAN_IN_LAYERS):
            shape = tensors["weight"]
            bound = 1.0 / math.sqrt(shape[1] * math.prod(shape[2:]))
        for name, shape in tensors.items():
            key = f"{row.path}.{name}"
            if bound is not None and name in ("weight", "bias"):
                weights[key] = uniform(rng, shape, bound, dtype)
            else:
                weights[key] = np.full(shape, _CONSTANT_INIT[name], dtype)
    return weights


def uniform(rng: np.random.Generator, shape, bound: float, dtype) -> np.ndarray:
    """U(-bound, bound) drawn directly in `dtype` (no float64 intermediate for float32)."""
    a = rng.random(shape, dtype=dtype)
    a *= 2 * bound
    a -= bound
    return a


def load_weights(path: str | Path, report: Report, dtype=np.float32, limit: int = 0) -> tuple[Weights, list[str]]:
    """Arrays from an .npz or .safetensors file of state_dict keys, checked against the network and
    read key by key (keys it does not use are never read); (weights, warnings). `limit`: bytes
    that loading may take (0: no limit)."""
    with open_weights(path) as source:
        return checked_weights(report, source, dtype, f"weights file '{path}'", limit)


def checked_weights(report: Report, arrays: dict | WeightFile, dtype, what: str,
                    limit: int = 0) -> tuple[Weights, list[str]]:
    """The arrays the network needs, converted to `dtype` and keyed `<path>.<tensor>`; the file's keys
    are the layers' keys (from their names) or their paths (cnncalc.keys.match). Every key's stored
    shape and dtype is checked before any array is read: a missing or misshapen one is an error naming
    the key, both shapes and the closest unused key, and loading that would exceed `limit` bytes is
    refused. Keys nobody uses are a warning (num_batches_tracked is ignored), and so are NaN or
    infinite values, naming the keys."""
    source = arrays if isinstance(arrays, WeightFile) else _InMemory(arrays)
    shapes = {key: source.header(key).shape for key in source.keys()}  # (headers only: no array data)
    found, warnings = keys.match(report.rows, shapes, what)
    stored = {wanted: _stored(source, report, wanted, key, what) for wanted, key in found.items()}
    _check_loading(stored, dtype, what, limit)
    weights, nonfinite = {}, []
    for wanted, key in found.items():
        weights[wanted] = array = np.ascontiguousarray(source.read(key), dtype)
        if array.size and not (np.isfinite(array.min()) and np.isfinite(array.max())):
            nonfinite.append(key)
    _check_fixed(report, weights, found, what)
    if nonfinite:
        warnings.append(f"{what}: {_listed(nonfinite)} hold{'s' if len(nonfinite) == 1 else ''} NaN or "
                        "infinite values; every output they reach will too")
    return weights, warnings


def _check_fixed(report: Report, weights: Weights, found: dict[str, str], what: str) -> None:
    """A fixed buffer (see FIXED) must hold the values its layer's arguments give: a file with others was
    saved from a different network (or altered), and its output would silently differ."""
    for row in _leaf_rows(report):
        values = next((FIXED[cls] for cls in type(row.node.layer).__mro__ if cls in FIXED), None)
        for name, value in (values(row.node.layer) if values else {}).items():
            wanted = f"{row.path}.{name}"
            if not np.array_equal(weights[wanted], value):
                raise SpecError(f"'{found[wanted]}' in {what} is not this layer's {name}, which is not learned "
                                "but follows from its arguments", where=row.node.where, layer=row.node.describe(),
                                fix="the weights belong to a layer with other arguments (e.g. another window size); "
                                    "save the state_dict of the model the spec describes")


def _stored(source: WeightFile, report: Report, wanted: str, key: str, what: str) -> Entry:
    """The stored shape and dtype of file key `key` (holding the network's `wanted`), checked to be
    numbers NumPy can read (no data read)."""
    entry = source.header(key)
    if entry.unreadable or entry.dtype.kind not in "fiub":
        node = report.row(wanted.rpartition(".")[0]).node
        raise SpecError(f"'{key}' in {what} {entry.unreadable or f'holds {entry.dtype} values, not numbers'}",
                        where=node.where, layer=node.describe(),
                        fix="save it as float32 (tensor.float()) before writing the file")
    return entry


def _check_loading(stored: dict[str, Entry], dtype, what: str, limit: int) -> None:
    """Refuse loading whose peak -- every array in `dtype`, plus the largest one as stored while it
    is converted -- exceeds `limit` bytes (0: no limit)."""
    dtype = np.dtype(dtype)
    total = sum(math.prod(e.shape) for e in stored.values()) * dtype.itemsize
    converting = max((math.prod(e.shape) * e.dtype.itemsize for e in stored.values() if e.dtype != dtype),
                     default=0)
    if limit and total + converting > limit:
        raise SpecError(f"loading {what} would need about {size_text(total + converting)}, more than the "
                        f"limit of {size_text(limit)}",
                        fix=f"raise --max-memory (e.g. --max-memory {math.ceil((total + converting) / 2**30 * 1.2)}G) "
                            "if the machine has the RAM")


def _listed(keys: list[str], most: int = 8) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


class _InMemory(WeightFile):
    """A dict of arrays (from Python) seen as a weight file."""

    def __init__(self, arrays: dict):
        self._arrays = arrays

    def keys(self):
        return self._arrays.keys()

    def header(self, key: str) -> Entry:
        array = np.asarray(self._arrays[key])
        return Entry(array.shape, array.dtype, None)

    def read(self, key: str) -> np.ndarray:
        return np.asarray(self._arrays[key])


def _leaf_rows(report: Report):
    return (row for row in report.rows if row.leaf)
