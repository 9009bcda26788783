"""The pass's input (the user's array or random data) and its saved output."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import SpecError
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
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != tuple(shape) or len(array) == 0:
        raise SpecError(f"{what} has shape {fmt_shape(array.shape)}, but the network takes {fmt_shape(shape)} "
                        f"(one sample) or N×{fmt_shape(shape)} (a batch)",
                        fix=f"pass --input {'x'.join(map(str, array.shape[-len(shape):]))} if the data is right, "
                            "or reshape the data")
    if batch not in (1, len(array)):
        raise SpecError(f"--batch {batch} disagrees with the {len(array)} samples in {what}",
                        fix="leave out --batch when giving --data")
    return len(array)


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
