"""Weight files read key by key: `.npz` (NumPy's zip of `.npy` members) and `.safetensors`.

Opening a file reads only its directory: each key's stored shape and dtype, from the zip's
central directory and the member's `.npy` header (a few hundred bytes decompressed), or from
the safetensors JSON header.  An array's data is read when `read(key)` asks for it, so keys the
network does not use are never decompressed (a zip bomb under an unused key costs nothing), and
a misshapen array is refused before its data is read.  Pickles (`torch.save`'s `.pt`/`.pth`,
`.bin`, `.ckpt`) are refused by their name or first bytes: nothing here ever unpickles.

safetensors is read by this small reader rather than the `safetensors` package: no dependency,
memory bounded by the keys used (each read into its own array), and one code path that can only
read numbers.  The format: an 8-byte little-endian header length N, N bytes of JSON
`{key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the
little-endian data, offsets counted from its start.
"""
from __future__ import annotations

import json
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from ..errors import SpecError

#: Names under which PyTorch and friends save pickles.
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
#: The safetensors package allows headers up to 100 MB; real ones take about 100 bytes per tensor,
#: so 16 MiB (150,000 tensors) bounds what parsing a hostile header's JSON can cost.
MAX_HEADER_BYTES = 16 << 20
#: A `.npy` member's header (NumPy's own default bound).
MAX_NPY_HEADER = 10_000
#: safetensors dtype -> NumPy dtype as stored (little-endian); BF16 is widened to float32 on reading.
SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
#: Formats NumPy cannot hold: one byte each, refused when a used key has them.
SAFETENSORS_UNSUPPORTED = {"F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1}

SAVEZ = 'np.savez("w.npz", **{k: v.numpy() for k, v in model.state_dict().items()})'
CONVERT = ("convert it once where torch is installed: `from safetensors.torch import save_file; "
           f"save_file(model.state_dict(), \"w.safetensors\")`, or `{SAVEZ}`")


class Entry(NamedTuple):
    """One stored array: its shape, its dtype as stored, and how to find its data."""

    shape: tuple
    dtype: np.dtype
    where: object  # the zip member, or the safetensors byte range
    unreadable: str | None = None  # why NumPy cannot hold it (refused if the network needs it)


class WeightFile:
    """A weight file's keys with their stored shapes and dtypes; `read(key)` reads one array."""

    def __init__(self, path: Path, entries: dict[str, Entry], f: BinaryIO):
        self.path, self.entries, self._f = path, entries, f

    def keys(self):
        """The stored keys (a set-like view)."""
        return self.entries.keys()

    def header(self, key: str) -> Entry:
        """The stored shape and dtype of `key` (read from the file's directory, not its data)."""
        return self.entries[key]

    def read(self, key: str) -> np.ndarray:
        """The array stored under `key`, as stored (the caller converts it)."""
        raise NotImplementedError

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "WeightFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def error(self, what: str, fix: str = "") -> SpecError:
        return SpecError(f"weights file '{self.path}': {what}", fix=fix or None)


def open_weights(path: str | Path) -> WeightFile:
    """The weight file at `path`, its directory read (no array data yet); SpecError if it cannot
    be read, is a pickle, or is malformed."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise _pickle_error(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # (a FIFO would block, a device never end)
            raise SpecError(f"weights file '{path}' is not a regular file",
                            fix="give the path of an .npz or .safetensors file")
        f = open(path, "rb")
    except FileNotFoundError:
        raise SpecError(f"weights file '{path}' does not exist",
                        fix="give the path of an .npz or .safetensors file") from None
    except OSError as e:
        raise SpecError(f"cannot read weights file '{path}': {e.strerror or e}") from None
    try:
        head = f.read(16)
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise _pickle_error(path)
        if head.startswith(b"\x93NUMPY"):
            raise SpecError(f"weights file '{path}' holds one array, not named arrays",
                            fix=f"save a state dict: {SAVEZ}")
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return _Npz(path, f)
        if path.suffix.lower() == ".safetensors" or head[8:9] == b"{":
            return _SafeTensors(path, f)
        raise SpecError(f"cannot read weights file '{path}': it is neither an .npz (zip) nor a .safetensors file",
                        fix="save the state dict as .safetensors or with np.savez; " + CONVERT)
    except BaseException:
        f.close()
        raise


def _pickle_error(path: Path) -> SpecError:
    return SpecError(f"weights file '{path}' is a pickle (torch.save's format); cnncalc never unpickles "
                     "a file, because loading a pickle can run any code in it",
                     fix=CONVERT)


# --- .npz --------------------------------------------------------------------------------------------

_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, RuntimeError,
               NotImplementedError, KeyError)


class _Npz(WeightFile):
    """`np.savez` / `np.savez_compressed` archives: one `.npy` member per key."""

    def __init__(self, path: Path, f: BinaryIO):
        try:
            self._zip = zipfile.ZipFile(f)
        except _ZIP_ERRORS as e:
            raise SpecError(f"cannot read weights file '{path}': {e}",
                            fix="save the state dict with np.savez") from None
        if any(name.endswith(".pkl") for name in self._zip.namelist()):
            raise _pickle_error(path)  # torch.save's zip format: a pickle inside
        members = {}
        for info in self._zip.infolist():
            if not info.is_dir():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                members[key] = info
        super().__init__(path, {}, f)
        self._members = members

    # The npz's keys are known from the zip's directory; shapes and dtypes only once asked for.
    def keys(self):
        return self._members.keys()

    def header(self, key: str) -> Entry:
        if key not in self.entries:
            info = self._members[key]
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise self.error(f"'{key}' is compressed with method {info.compress_type}, which is not read",
                                 fix="save it with np.savez or np.savez_compressed")
            try:
                with self._zip.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(member, max_header_size=MAX_NPY_HEADER)
            except _ZIP_ERRORS as e:
                raise self.error(f"'{key}' is not a readable .npy array ({e})",
                                 fix="save the state dict with np.savez") from None
            if dtype.hasobject:
                raise self.error(f"'{key}' holds Python objects (a pickle), not numbers",
                                 fix="save plain numeric arrays, e.g. tensor.numpy()")
            self.entries[key] = Entry(tuple(shape), dtype, info)
        return self.entries[key]

    def read(self, key: str) -> np.ndarray:
        info = self.header(key).where
        try:
            with self._zip.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False, max_header_size=MAX_NPY_HEADER)
        except _ZIP_ERRORS as e:
            raise self.error(f"cannot read '{key}': {e}", fix="save the state dict again with np.savez") from None

    def close(self) -> None:
        self._zip.close()
        super().close()


# --- .safetensors ------------------------------------------------------------------------------------

class _SafeTensors(WeightFile):
    """The safetensors format, validated whole when opened: every entry's dtype, shape and byte
    range (inside the data, of the size its shape and dtype make, no two overlapping)."""

    def __init__(self, path: Path, f: BinaryIO):
        super().__init__(path, {}, f)
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        prefix = f.read(8)
        if len(prefix) < 8:
            raise self.error(f"too short for a safetensors file ({size} bytes)", fix=CONVERT)
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise self.error(f"its header length {n:,} exceeds the file ({size:,} bytes) or the "
                             f"{MAX_HEADER_BYTES:,}-byte limit: not a safetensors file, or a damaged one", fix=CONVERT)
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise self.error(f"its header is not JSON ({type(e).__name__})", fix=CONVERT) from None
        if not isinstance(header, dict):
            raise self.error("its header is not a JSON object", fix=CONVERT)
        self._data_start, data_size = 8 + n, size - 8 - n
        ranges = []
        for key, spec in header.items():
            if key == "__metadata__":
                continue
            entry = self._entry(key, spec, data_size)
            self.entries[key] = entry
            ranges.append((entry.where[0], entry.where[1], key))
        ranges.sort()
        for (_, end, first), (begin, _, second) in zip(ranges, ranges[1:]):
            if begin < end:
                raise self.error(f"the data of '{first}' and '{second}' overlap", fix=CONVERT)

    def _entry(self, key: str, spec, data_size: int) -> Entry:
        if not isinstance(spec, dict):
            raise self.error(f"'{key}' is not described by an object")
        kind, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
        if not isinstance(kind, str) or (kind not in SAFETENSORS_DTYPES and kind not in SAFETENSORS_UNSUPPORTED):
            raise self.error(f"'{key}' has an unknown dtype {str(kind)[:40]!r}")
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape) and len(shape) <= 64):
            raise self.error(f"'{key}' has no valid shape (a list of non-negative integers)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise self.error(f"'{key}' has data_offsets {str(offsets)[:60]} outside its {data_size:,} bytes of data")
        dtype = np.dtype(SAFETENSORS_DTYPES.get(kind, "u1"))
        itemsize = SAFETENSORS_UNSUPPORTED.get(kind, dtype.itemsize)
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise self.error(f"'{key}' holds {offsets[1] - offsets[0]:,} bytes, but {kind} of shape "
                             f"{tuple(shape)} takes {math.prod(shape) * itemsize:,}")
        if kind in SAFETENSORS_UNSUPPORTED:
            return Entry(tuple(shape), np.dtype("V1"), (*offsets, kind), f"is stored as {kind}, which NumPy cannot hold")
        stored = np.dtype(np.float32) if kind == "BF16" else dtype  # (BF16: uint16 bit patterns, widened)
        return Entry(tuple(shape), stored, (offsets[0], offsets[1], kind))

    def read(self, key: str) -> np.ndarray:
        entry = self.header(key)
        begin, end, kind = entry.where
        if entry.unreadable:
            raise self.error(f"'{key}' {entry.unreadable}", fix="save it as float32 (tensor.float()) first")
        raw = np.empty(entry.shape, SAFETENSORS_DTYPES[kind])
        self._f.seek(self._data_start + begin)
        got = self._f.readinto(raw.reshape(-1).view(np.uint8)) if raw.size else 0
        if got != end - begin:
            raise self.error(f"'{key}' is cut short ({got:,} of {end - begin:,} bytes)")
        if kind == "BF16":  # the upper half of a float32
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw
