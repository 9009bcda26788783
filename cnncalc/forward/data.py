"""The pass's input (the user's array or random data) and its saved output."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..files import Output
from ..layers.base import fmt_shape
from ..spec import Network


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
    if array.ndim == 0:
        raise SpecError(f"{what} holds a single number (a 0-d array), but the network takes {fmt_shape(shape)} "
                        f"(one sample) or N×{fmt_shape(shape)} (a batch)", fix="save an array of that shape")
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != tuple(shape) or len(array) == 0:
        raise SpecError(f"{what} has shape {fmt_shape(array.shape)}, but the network takes {fmt_shape(shape)} "
                        f"(one sample) or N×{fmt_shape(shape)} (a batch)",
                        fix=f"pass --input {'x'.join(map(str, array.shape[-len(shape):]))} if the data is right, "
                            "or reshape the data")
    if batch not in (1, len(array)):
        raise SpecError(f"--batch {batch} disagrees with the {len(array)} samples in {what}",
                        fix="leave out --batch when giving --data")
    return len(array)


def output_bytes(network: Network, batch: int = 1, dtype: str = "float32") -> int:
    """The size of the .npy file `save_output` writes for a pass of `batch` (a 128-byte header)."""
    from ..analysis import analyse

    return math.prod(analyse(network).output) * batch * np.dtype(dtype).itemsize + 128


def save_output(array: np.ndarray, target: Output) -> None:
    """Write `array` as .npy into `target` (checked before the pass; written atomically)."""
    target.write(lambda f: np.save(f, array, allow_pickle=False))
