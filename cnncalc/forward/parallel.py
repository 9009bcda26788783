"""Work on both cores: a pass's samples in two lanes, or a few large kernel steps in two halves,
one on a worker thread.

NumPy releases the GIL inside a ufunc's loop and inside matmul, so two Python threads each working
on half of a kernel's arrays run at once -- when each call is long against the GIL's hand-over
(hundreds of microseconds, not the few of an elementwise kernel's cached blocks, which measured no
gain split).  ``halves`` runs a kernel's two halves so, each with half the CPUs' BLAS threads (one
on two cores: see ``blas.single_threaded``); with one CPU, or OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set to 1 (as
for a single-threaded comparison), it runs the whole in the calling thread.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from . import blas


def _cpus() -> int:
    """CPUs this process may use, or the thread count OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on every platform)
        return os.cpu_count() or 1


CPUS = _cpus()
TWO_CORES = CPUS >= 2


def set_threads(n: int) -> None:
    """Use at most ``n`` threads from now on: this module's halves and OpenBLAS's own (``cnncalc
    forward --threads``)."""
    global CPUS, TWO_CORES
    CPUS, TWO_CORES = n, n >= 2
    blas.set_threads(n)


_worker: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_busy = threading.local()  # set while a thread runs a half: halves inside halves run serially


def in_half() -> bool:
    """Whether this thread runs one of two halves (or lanes of samples) now, BLAS held to its share
    of the cores (one thread on two cores)."""
    return getattr(_busy, "on", False)


def halves(run, n: int) -> None:
    """``run(slice)`` over ``slice(0, n)``, as two halves at once when two cores are free (``run``
    writes only its half of any output), else in one call."""
    global _worker
    if not TWO_CORES or n < 2 or in_half():
        run(slice(0, n))
        return
    with _lock:
        if _worker is None:
            _worker = ThreadPoolExecutor(1, thread_name_prefix="cnncalc")
    middle = n // 2

    def half(part: slice) -> None:
        _busy.on = True
        try:
            run(part)
        finally:
            _busy.on = False

    with blas.single_threaded(CPUS // 2):  # (each half its share of the cores' BLAS threads)
        other = _worker.submit(half, slice(middle, n))
        try:
            half(slice(0, middle))
        finally:
            other.result()
