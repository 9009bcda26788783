"""``c += a @ b`` in one GEMM (beta = 1), and a cache-blocked transpose, through the OpenBLAS
that NumPy's own wheels carry.

``np.matmul`` always overwrites its ``out`` -- and OpenBLAS zero-fills ``out`` before it
multiplies -- so a sum with a product (a residual block's last convolution plus its shortcut,
a 1x1 convolution plus its bias) costs NumPy a pass over the output that BLAS does not need.
NumPy's wheels bundle scipy-openblas, whose CBLAS is exported under the names
``scipy_cblas_sgemm64_`` and ``scipy_cblas_dgemm64_`` (64-bit integers); when that library is
found beside NumPy it is called here through ``ctypes`` -- NumPy has already loaded it, so this
loads nothing new and uses the same threads.  Where it is not found (NumPy built against
Accelerate, MKL, a system BLAS) or ``CNNCALC_BLAS=numpy`` is set, ``gemm_add`` returns False
and the caller uses ``np.matmul`` and an add.

>>> import numpy as np
>>> a, b, c = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
>>> done = gemm_add(a, b, c)  # False where NumPy's own BLAS is not reachable
>>> float(c[0, 0]) if done else 4.0
4.0
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from pathlib import Path

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enum values


def _load() -> tuple[dict, dict, tuple]:
    """({dtype char: CBLAS gemm}, {dtype char: OpenBLAS omatcopy}, (get, set) of OpenBLAS's thread
    count), empty when NumPy's scipy-openblas is not found."""
    if os.environ.get("CNNCALC_BLAS", "").lower() == "numpy":
        return {}, {}, ()
    root = Path(np.__file__).parent
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):  # Linux / Windows wheels, macOS
        for path in sorted(folder.glob("libscipy_openblas64_*")):
            try:
                lib = ctypes.CDLL(str(path))
                found = {"f": (lib.scipy_cblas_sgemm64_, lib.scipy_cblas_somatcopy64_, ctypes.c_float),
                         "d": (lib.scipy_cblas_dgemm64_, lib.scipy_cblas_domatcopy64_, ctypes.c_double)}
                threads = (lib.scipy_openblas_get_num_threads64_, lib.scipy_openblas_set_num_threads64_)
            except (OSError, AttributeError):
                continue
            gemms, copies = {}, {}
            for char, (gemm, omatcopy, scalar) in found.items():
                gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64,
                                 scalar, ptr, i64, ptr, i64, scalar, ptr, i64]
                omatcopy.argtypes = [ctypes.c_int, ctypes.c_int, i64, i64, scalar, ptr, i64, ptr, i64]
                gemm.restype = omatcopy.restype = None
                gemms[char], copies[char] = gemm, omatcopy
            threads[0].restype, threads[1].argtypes, threads[1].restype = ctypes.c_int, [ctypes.c_int], None
            return gemms, copies, threads
    return {}, {}, ()


_GEMMS, _TRANSPOSES, _THREADS = _load()
_threads_lock = threading.Lock()


def available() -> bool:
    """Whether ``gemm_add`` calls BLAS (else it always returns False)."""
    return bool(_GEMMS)


def _leading(m: np.ndarray) -> int:
    """BLAS leading dimension of a 2-D row-major matrix with unit column stride, or 0 if it has none."""
    (rows, cols), (row_step, col_step), size = m.shape, m.strides, m.itemsize
    if col_step != size or row_step % size:
        return 0
    if rows == 1:
        return max(cols, 1)  # a single row's stride does not matter
    return row_step // size if row_step >= max(cols, 1) * size else 0


def gemm_add(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> bool:
    """``c += a @ b`` for 2-D ``a (M, K)``, ``b (K, N)``, ``c (M, N)`` of one float dtype, in
    one BLAS call; False (``c`` untouched) when BLAS is not available or the arrays do not suit
    it -- other dtypes, a column stride other than one, misaligned data, ``c`` read-only or
    overlapping ``a`` or ``b``."""
    gemm = _GEMMS.get(c.dtype.char)
    if gemm is None or a.dtype != c.dtype or b.dtype != c.dtype or not c.flags.writeable:
        return False
    (M, K), (K2, N) = a.shape, b.shape
    if c.shape != (M, N) or K2 != K:
        raise ValueError(f"gemm_add: {a.shape} @ {b.shape} into {c.shape}")
    if M == 0 or N == 0 or K == 0:
        return True  # nothing to add
    lda, ldb, ldc = _leading(a), _leading(b), _leading(c)
    pa, pb, pc = a.ctypes.data, b.ctypes.data, c.ctypes.data
    if (not (lda and ldb and ldc) or (pa | pb | pc) % c.itemsize
            or np.may_share_memory(c, a) or np.may_share_memory(c, b)):
        return False
    gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, M, N, K, 1.0, pa, lda, pb, ldb, 1.0, pc, ldc)
    return True


def transpose(a: np.ndarray, out: np.ndarray) -> bool:
    """``out[...] = a.T`` for C-contiguous 2-D ``a (R, C)`` and ``out (C, R)`` of one float dtype, by
    OpenBLAS's blocked out-of-place transpose (omatcopy); False (``out`` untouched) when it is not
    available or the arrays do not suit it.  NumPy's strided copy does not block for the cache:
    (3136, 96) -> (96, 3136), a ConvNeXt permute, took 0.22 ms by ``np.copyto``, 0.07 here."""
    omatcopy = _TRANSPOSES.get(out.dtype.char)
    if (omatcopy is None or a.dtype != out.dtype or a.ndim != 2 or out.shape != a.shape[::-1]
            or not (a.flags.c_contiguous and out.flags.c_contiguous and out.flags.writeable)
            or np.may_share_memory(a, out)):
        return False
    rows, cols = a.shape
    if rows and cols:
        omatcopy(_ROW_MAJOR, _TRANS, rows, cols, 1.0, a.ctypes.data, cols, out.ctypes.data, rows)
    return True


@contextlib.contextmanager
def single_threaded(threads: int = 1):
    """Each BLAS call inside runs on at most ``threads`` threads, by default its calling thread alone
    (OpenBLAS's thread count, restored after), for work split over Python threads
    (``parallel.halves``): two threads each running many small GEMMs get both cores without
    OpenBLAS waking and joining its workers for every one of them.  Does nothing where OpenBLAS's
    controls are not reachable."""
    global _limits
    if not _THREADS:
        yield
        return
    get, set_ = _THREADS
    with _threads_lock:
        before = get()
        set_(max(1, threads))
        _limits += 1
    try:
        yield
    finally:
        with _threads_lock:
            set_(before)
            _limits -= 1


_limits = 0  # single_threaded() contexts open now


def limited() -> bool:
    """Whether a ``single_threaded`` context holds OpenBLAS's threads down now (so that a kernel
    wanting every core for a long BLAS call splits it over two Python threads itself, each with
    the threads the context allows)."""
    return _limits > 0


def set_threads(n: int) -> bool:
    """OpenBLAS's thread count for the calls after this one (``cnncalc forward --threads``); False
    where OpenBLAS's controls are not reachable (then OMP_NUM_THREADS and the like still apply)."""
    if not _THREADS:
        return False
    with _threads_lock:
        _THREADS[1](n)
    return True
