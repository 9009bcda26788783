"""The pass's weights: PyTorch's default initialisation from a seed, or a state dict from a file,
checked against the network (every key present, every shape right)."""
from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from .. import keys
from ..analysis import Report, Row
from ..errors import SpecError
from ..layers import conv, linear


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


def initialiser(*classes: type) -> Callable:
    """Register the decorated function as the initialisation of each layer class's tensors."""
    def add(fn: Callable) -> Callable:
        for cls in classes:
            INITIALISERS[cls] = fn
        return fn
    return add


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
    """The arrays the network needs, converted to `dtype` and keyed `<path>.<tensor>`; the file's keys
    are the layers' keys (from their names) or their paths (cnncalc.keys.match). A missing or misshapen
    one is an error naming the key, both shapes and the closest unused key; keys nobody uses are warnings
    (num_batches_tracked is ignored)."""
    found, warnings = keys.match(report.rows, {k: np.shape(a) for k, a in arrays.items()}, what)
    weights = {}
    for wanted, key in found.items():
        array = np.asarray(arrays[key])
        if array.dtype.kind not in "fiub":
            node = report.row(wanted.rpartition(".")[0]).node
            raise SpecError(f"'{key}' in {what} holds {array.dtype} values, not numbers",
                            where=node.where, layer=node.describe())
        weights[wanted] = np.ascontiguousarray(array, dtype)
    return weights, warnings


def _leaf_rows(report: Report):
    return (row for row in report.rows if row.leaf)
