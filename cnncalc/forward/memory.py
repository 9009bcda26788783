"""Buffers of the forward pass: the output-block pool (``_empty``) and per-thread scratch (``_scratch``).

Outputs of PLAIN_PAGES_BYTES (256 KiB) and more come from a pool of mmap blocks on plain pages
(see ``_empty``); im2col columns, padded chunks and GEMM results live in scratch buffers kept per
thread and reused from call to call.  The estimate of a pass's peak memory, which sizes these
the same way, is in ``cnncalc.forward.estimate``.
"""
from __future__ import annotations

import math
import mmap
import sys
import threading

import numpy as np

#: Scratch buffers up to this size are kept per thread and reused; larger ones are freed after use.
SCRATCH_KEEP = 64 << 20

_tls = threading.local()  # per-thread scratch buffers, reused across calls


#: Arrays of at least this many bytes are allocated by ``_empty`` from a pool of anonymous mmap
#: blocks, whose pages stay mapped between passes.  With the layer outputs of a batch-1 pass
#: (0.25-32 MiB) from malloc instead, resnet50's pass took 62 rather than 57 ms in the benchmark
#: (and 65-67 rather than 58-60 ms in a plain loop of passes).
PLAIN_PAGES_BYTES = 256 << 10
#: At most this many bytes of idle pool blocks are kept for reuse; the rest are unmapped.
POOL_IDLE_BYTES = 1 << 30

_pool: list = []  # mmap blocks handed out by _empty, in use or idle
_pool_lock = threading.Lock()
_idle_budget: int | None = None  # bytes of idle blocks kept (None: POOL_IDLE_BYTES), see keep_idle


def _refs_when_idle() -> int:
    """sys.getrefcount of a pool block that no array uses (measured, not assumed)."""
    probe = [mmap.mmap(-1, mmap.PAGESIZE)]
    count = _block_refs(probe, 0)
    probe[0].close()
    return count


def _block_refs(blocks: list, i: int) -> int:
    """References to ``blocks[i]`` (the pool's own, plus one per array made on it)."""
    return sys.getrefcount(blocks[i])


_IDLE_REFS = _refs_when_idle()


def _empty(shape, dtype) -> np.ndarray:
    """``np.empty`` for the kernels' outputs and big temporaries: large ones from a block pool.

    Arrays from PLAIN_PAGES_BYTES up live on plain pages of an anonymous mmap block.  A block
    goes back to the pool when no array refers to it any more (every view of an array made
    here holds a reference to its block), so its pages stay mapped: writing a recycled block
    costs no page faults.  Why not ``np.empty``: numpy asks for huge pages (MADV_HUGEPAGE) on
    big arrays, and on a VM that hands freed memory back to its host (virtio balloon free-page
    reporting, as on this project's machines) the first touch of such an array a few seconds
    after memory was freed costs about 2 ms per MiB -- a 411 MB conv output took 1.6 s to write
    instead of 0.83 s.
    """
    dtype = np.dtype(dtype)
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes < max(PLAIN_PAGES_BYTES, 1):
        return np.empty(shape, dtype)
    with _pool_lock:
        budget = POOL_IDLE_BYTES if _idle_budget is None else _idle_budget
        idle = [i for i in range(len(_pool)) if _block_refs(_pool, i) == _IDLE_REFS]
        fits = [i for i in idle if nbytes <= len(_pool[i]) <= nbytes + min(nbytes, budget)]
        if fits:
            block = _pool[min(fits, key=lambda i: len(_pool[i]))]
        else:
            _unmap_idle(idle, budget - nbytes)  # make room
            block = mmap.mmap(-1, nbytes)
            _pool.append(block)
    return np.frombuffer(block, dtype, count).reshape(shape)  # views keep `block` referenced


def _copy(view: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``view`` in an array from ``_empty`` (``np.ascontiguousarray`` asks the
    allocator for fresh pages, faulted in again on every call)."""
    out = _empty(view.shape, view.dtype)
    np.copyto(out, view)
    return out


def _unmap_idle(idle: list[int], keep: int) -> None:
    """Unmap the idle blocks (indices into _pool) beyond ``keep`` bytes, oldest first."""
    for i in reversed(idle):
        keep -= len(_pool[i])
        if keep < 0:
            _pool.pop(i).close()


def keep_idle(nbytes: int | None) -> None:
    """Keep at most ``nbytes`` of idle pool blocks from now on (None: POOL_IDLE_BYTES), unmapping
    the rest. A pass sets what its memory limit leaves beside its estimate, so that blocks kept
    for reuse never take it past the limit; the pool also reuses a block only if it is at most
    that much larger than the array."""
    global _idle_budget
    with _pool_lock:
        _idle_budget = nbytes
        if nbytes is not None:
            _unmap_idle([i for i in range(len(_pool)) if _block_refs(_pool, i) == _IDLE_REFS], max(nbytes, 0))


def _scratch(key: str, shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` carved from a per-thread reused buffer."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > SCRATCH_KEEP:
        return _empty(shape, dtype)
    buf = getattr(_tls, key, None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 64), np.uint8)
        setattr(_tls, key, buf)
    return buf[:nbytes].view(dtype).reshape(shape)  # flat bytes -> typed, shaped view



def size_text(n: int) -> str:
    """Bytes for a message: `1.25 GiB` from 256 MiB up, else `12.0 MiB`."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"
