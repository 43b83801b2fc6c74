"""Matrix products: NumPy's BLAS, or Intel MKL (packed GEMM) when it is installed.

    C = α·op(A)·op(B) + β·C      A (M, K), B (K, N), C (M, N), row-major, op = identity or ᵀ

A recurrent layer multiplies the *same* W_hh by a small (n, H) state at every step. MKL's packed
GEMM (``cblas_?gemm_pack`` once per call, then ``cblas_?gemm_compute`` per step) keeps W_hh in
the kernel's own layout and runs these products near the machine's peak; OpenBLAS repacks W_hh at
every call. Measured on the 2-core AVX-512 development machine, (32, 256) @ (256, 1024) in
float32: OpenBLAS 134 µs on 1 thread / 76 µs on 2, MKL packed 78 / 38 µs. The numba kernels
(:mod:`rnnkit._numba_kernels`) call the packed product from inside their compiled time loop, so
the loop also costs no Python dispatch.

MKL is optional (``pip install "rnnkit[mkl]"``, the ``mkl`` wheel) and not always the faster
choice: on a Zen 5 EPYC the same product took MKL packed 219 µs against OpenBLAS's AVX-512
kernel's 133 µs. ``"auto"`` therefore loads MKL when its runtime library ``mkl_rt`` loads, then
times one recurrent-sized product, (32, 256) @ (256, 1024) float32, both ways and keeps the
faster; the choice is cached per machine (``$XDG_CACHE_HOME/rnnkit/blas.json``, keyed by CPU
and library versions), so that every run on a machine takes the same path (a resumed run ends
bit-identical to an uninterrupted one only on the same path). Choose with :func:`set_blas` or
the environment variable ``RNNKIT_BLAS`` (``auto``, ``mkl``, ``numpy``). Both give the same
results up to rounding (the products sum in a different order). MKL runs in its conditional
numerical reproducibility mode (``MKL_CBWR=AUTO`` unless ``MKL_CBWR`` is set): otherwise its
kernels may depend on the operands' alignment, which differs between processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

BLAS = ("auto", "mkl", "numpy")

# CBLAS enumerations (mkl_cblas.h).
ROW_MAJOR, NO_TRANS, TRANS, PACKED = 101, 111, 112, 151
B_MATRIX = 162
# MKL's conditional numerical reproducibility (mkl_cbwr.h): the branch for this CPU, chosen once.
CBWR_AUTO = 2

#: Products of fewer multiply-adds than this run on one thread (see threads_for): after a
#: pause, waking MKL's second thread for a (100, 64) @ (64, 384) product cost ~9 ms.
SMALL_PRODUCT = 1 << 22

#: A time loop's batch is cut into one block of rows per MKL thread only when every block gets
#: at least this many rows (see run_blocks).
MIN_BLOCK_ROWS = 64

_name: str | None = None
_lib: SimpleNamespace | None = None
_executor: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, workers, pool)
# The cores this process may use, as rnnkit found them on import (see _pooled).
_CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def _candidates() -> list[str]:
    """Where pip, conda or the system put MKL's single dynamic library."""
    found = []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for pattern in ("lib/libmkl_rt.so*", "lib/libmkl_rt*.dylib", "Library/bin/mkl_rt*.dll"):
            found += sorted(glob.glob(os.path.join(prefix, pattern)), reverse=True)
    system = ctypes.util.find_library("mkl_rt")
    if system:
        found.append(system)
    return found


def _load_mkl() -> SimpleNamespace:
    """ctypes prototypes of the six routines rnnkit calls, for float32 and float64."""
    errors = []
    for path in _candidates():
        # MKL's OpenMP workers spin 200 ms after each product by default, taking a core from
        # whatever runs next (NumPy's OpenBLAS, numba kernels); 1 ms still spans a time loop's
        # steps. Read when the OpenMP runtime loads, so set before MKL is.
        os.environ.setdefault("KMP_BLOCKTIME", "1")
        try:
            cdll = ctypes.CDLL(path)
            break
        except OSError as exc:  # a broken or foreign-architecture file: try the next one
            errors.append(f"{path}: {exc}")
    else:
        detail = "; ".join(errors) or "no libmkl_rt found"
        raise ImportError(f"Intel MKL is not available ({detail}); pip install mkl")
    if "MKL_CBWR" not in os.environ:
        # Without CNR, MKL may pick its kernels by the operands' alignment, which differs from
        # process to process: a run resumed in a new process would not end bit-identical to an
        # uninterrupted one. Must precede MKL's first product.
        cdll.MKL_CBWR_Set(CBWR_AUTO)
    i, p, z = ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t
    lib = SimpleNamespace(path=path, cdll=cdll)
    for prefix, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
        gemm = ctypes.CFUNCTYPE(None, i, i, i, i, i, i, real, p, i, p, i, real, p, i)
        compute = ctypes.CFUNCTYPE(None, i, i, i, i, i, i, p, i, p, i, real, p, i)
        pack = ctypes.CFUNCTYPE(None, i, i, i, i, i, i, real, p, i, p)
        size = ctypes.CFUNCTYPE(z, i, i, i, i)
        setattr(lib, prefix, SimpleNamespace(
            gemm=gemm((f"cblas_{prefix}gemm", cdll)),
            compute=compute((f"cblas_{prefix}gemm_compute", cdll)),
            pack=pack((f"cblas_{prefix}gemm_pack", cdll)),
            pack_size=size((f"cblas_{prefix}gemm_pack_get_size", cdll))))
    return lib


_numpy_gemm: dict | None = None


def _load_numpy_gemm() -> dict:
    """cblas_?gemm of the BLAS NumPy's wheel bundles (OpenBLAS, ILP64 or not), as ctypes
    routines a compiled loop can call: {"s": ..., "d": ...}, empty when it cannot be found
    (NumPy built against a system BLAS, say: its products then run from Python)."""
    root = os.path.dirname(np.__file__)
    paths = (glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
             + glob.glob(os.path.join(root, ".dylibs", "*openblas*")))
    for path in sorted(paths):
        try:
            cdll = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, ilp64 in (("scipy_cblas_{}gemm64_", True), ("cblas_{}gemm64_", True),
                              ("scipy_cblas_{}gemm", False), ("cblas_{}gemm", False)):
            if not hasattr(cdll, prefix.format("s")):
                continue
            i, p = ctypes.c_int, ctypes.c_void_p
            n = ctypes.c_int64 if ilp64 else ctypes.c_int
            out = {}
            for t, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
                proto = ctypes.CFUNCTYPE(None, i, i, i, n, n, n, real, p, n, p, n, real, p, n)
                out[t] = proto((prefix.format(t), cdll))
            for name in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                         "openblas_get_num_threads64_", "openblas_get_num_threads"):
                if hasattr(cdll, name):
                    out["threads"] = ctypes.CFUNCTYPE(ctypes.c_int)((name, cdll))
                    break
            return out
    return {}


def numpy_gemm(dtype: np.dtype):
    """NumPy's BLAS's cblas_?gemm for ``dtype`` as a ctypes routine (row-major C = α op(A)
    op(B) + β C), or None when it cannot be called directly (see _load_numpy_gemm)."""
    global _numpy_gemm
    if _numpy_gemm is None:
        _numpy_gemm = _load_numpy_gemm()
    return _numpy_gemm.get("s" if np.dtype(dtype) == np.float32 else "d")


def numpy_threads() -> int:
    """The threads NumPy's BLAS (OpenBLAS) runs a product on now (threadpoolctl and
    OPENBLAS_NUM_THREADS set it); 1 when that cannot be asked."""
    numpy_gemm("float32")
    get = _numpy_gemm.get("threads")
    return max(1, int(get())) if get is not None else 1


def set_blas(name: str = "auto") -> str:
    """Select the library for rnnkit's matrix products; returns the one now in use.

    ``"auto"`` takes MKL when it loads and measured faster on this machine (see the module
    docstring), NumPy's BLAS otherwise; ``"mkl"`` raises ImportError when MKL is missing."""
    global _name, _lib
    if name not in BLAS:
        raise ValueError(f"unknown BLAS {name!r}; expected one of {BLAS}")
    if name in ("auto", "mkl"):
        try:
            _lib = _lib or _load_mkl()
            _name = "mkl" if name == "mkl" or _mkl_measured_faster() else "numpy"
        except ImportError:
            if name == "mkl":
                raise
            _name = "numpy"
    else:
        _name = "numpy"
    return _name


def load_mkl() -> SimpleNamespace:
    """MKL's routines, loading MKL if need be (ImportError when it is missing), whichever
    library :func:`blas` chose."""
    global _lib
    _lib = _lib or _load_mkl()
    return _lib


def _machine_key() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    mkl = _lib.cdll.MKL_Get_Version_String if _lib is not None else None
    version = ""
    if mkl is not None:
        buf = ctypes.create_string_buffer(256)
        mkl(buf, 256)
        version = buf.value.decode(errors="replace")
    return f"{cpu} | {version} | numpy {np.__version__} | {os.cpu_count()} cpus"


def _cache_file() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "rnnkit", "blas.json")


def choice(field: str = "mkl") -> dict | None:
    """The measurement behind an "auto" choice on this machine — ``"mkl"``: MKL or NumPy's BLAS
    (``mkl_faster``, ``mkl_us``, ``numpy_us``; None when MKL is not loaded); other fields:
    what :func:`remembered` stored under them (rnnkit.plan's products) — or None when nothing
    was measured yet."""
    if field == "mkl" and _lib is None:
        return None
    try:
        with open(_cache_file(), encoding="utf-8") as f:
            entry = json.load(f).get(_machine_key())
    except (OSError, ValueError, AttributeError):
        return None
    found = entry.get(field) if isinstance(entry, dict) else None
    return found if isinstance(found, dict) else None


def remembered(field: str, measure: Callable[[], dict]) -> dict:
    """``measure()``'s result for this machine under ``field``: read from the on-disk cache
    (``$XDG_CACHE_HOME/rnnkit/blas.json``, keyed by CPU and library versions), or measured now
    and stored (an unwritable cache only means measuring again next time)."""
    key, path = _machine_key(), _cache_file()
    try:
        with open(path, encoding="utf-8") as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key) if isinstance(known.get(key), dict) else {}
    if isinstance(entry.get(field), dict):
        return entry[field]
    entry[field] = result = measure()
    known[key] = entry
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(known, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass
    return result


def _mkl_measured_faster() -> bool:
    """Whether MKL's packed product beat NumPy's BLAS on this machine, measured once."""
    def measure() -> dict:
        mkl_us, numpy_us = measure_recurrent_product()
        return {"mkl_faster": mkl_us < numpy_us, "mkl_us": mkl_us, "numpy_us": numpy_us}
    return bool(remembered("mkl", measure)["mkl_faster"])


def time_calls(fns: dict[str, Callable[[], None]], rounds: int = 5,
               calls: int = 20) -> dict[str, float]:
    """µs per call of each function: the best of ``rounds`` means of ``calls`` calls, all
    warmed up first and measured interleaved (twice each), so that a machine's drift in
    clock speed favours none."""
    best: dict[str, float] = {}
    for name in list(fns) * 2:
        fn = fns[name]
        fn()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - t0) / calls * 1e6)
        best[name] = min(min(times), best.get(name, float("inf")))
    return best


def recurrent_product_calls(n: int = 32, h: int = 256, gates: int = 4
                            ) -> tuple[dict[str, Callable[[], None]], tuple]:
    """Calls that each make one (n, h) @ (h, gates·h) float32 product as a time loop makes
    them: ``"numpy"`` (NumPy's BLAS) and, when MKL is loaded, ``"mkl"`` (its packed GEMM);
    with the operands (a, w, c) for other contenders."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, h)).astype(np.float32)
    w = rng.standard_normal((h, gates * h)).astype(np.float32)
    c = np.empty((n, gates * h), np.float32)
    calls = {"numpy": lambda: np.matmul(a, w, out=c)}
    if _lib is not None:
        wp = pack(w, n)
        r = _lib.s
        calls["mkl"] = lambda: r.compute(ROW_MAJOR, NO_TRANS, PACKED, n, gates * h, h, _ptr(a),
                                         h, _ptr(wp), gates * h, 0.0, _ptr(c), gates * h)
    return calls, (a, w, c)


def measure_recurrent_product(n: int = 32, h: int = 256, gates: int = 4,
                              rounds: int = 5, calls: int = 20) -> tuple[float, float]:
    """(MKL packed, NumPy's BLAS) time in µs of one (n, h) @ (h, gates·h) float32 product, as
    a time loop makes them (MKL needs to be loaded); see :func:`time_calls`."""
    best = time_calls(recurrent_product_calls(n, h, gates)[0], rounds, calls)
    return best["mkl"], best["numpy"]


def blas() -> str:
    """The library in use: ``"mkl"`` or ``"numpy"`` (chosen on first use from RNNKIT_BLAS)."""
    if _name is None:
        set_blas(os.environ.get("RNNKIT_BLAS", "auto"))
    return _name


def routines(dtype: np.dtype) -> SimpleNamespace:
    """MKL's ctypes routines for ``dtype`` (float32 → ``s``, float64 → ``d``); MKL in use."""
    return _lib.s if np.dtype(dtype) == np.float32 else _lib.d


def _operand(x: np.ndarray) -> tuple[int, int] | None:
    """(op, leading dimension) describing a 2-D array to CBLAS row-major, or None when its
    strides fit neither x nor xᵀ stored row by row."""
    it = x.itemsize
    s0, s1 = x.strides
    rows, cols = x.shape
    if s1 == it and s0 % it == 0 and s0 >= max(1, cols) * it:
        return NO_TRANS, s0 // it
    if s0 == it and s1 % it == 0 and s1 >= max(1, rows) * it:
        return TRANS, s1 // it
    return None


def _ptr(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


_invariant = threading.local()


class FrozenPacks:
    """rnnkit's own packed form (rnnkit._simd.pack) of the right operands that are views of
    some frozen arrays, made once and remembered: a served model's weights, whose packing
    otherwise cost more than the arithmetic of a one-sentence request (a 2-layer BiLSTM 256
    tagger on a Zen 5 EPYC: ~2.5 of 3.5 ms). The arrays are made read-only, so that an
    in-place change (an optimiser step) raises instead of leaving a stale pack."""

    def __init__(self, arrays):
        self._owners: dict[int, np.ndarray] = {}
        for a in arrays:
            if a.base is None and a.dtype in (np.float32, np.float64):
                a.flags.writeable = False
                self._owners[id(a)] = a
        self._packs: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def pack(self, w: np.ndarray) -> np.ndarray:
        """``_simd.pack(w)``, remembered when ``w`` views a frozen array."""
        from . import _simd

        owner = w if w.base is None else w.base
        if id(owner) not in self._owners or owner.flags.writeable:
            return _simd.pack(w)
        key = (id(owner), w.__array_interface__["data"][0], w.shape, w.strides, w.dtype.str)
        packed = self._packs.get(key)
        if packed is None:
            packed = _simd.pack(w)
            with self._lock:
                self._packs[key] = packed
        return packed


def own_pack(w: np.ndarray) -> np.ndarray:
    """rnnkit._simd.pack(w), through the :class:`FrozenPacks` of the :func:`batch_invariant`
    block this thread is in, if it has one."""
    packs = getattr(_invariant, "packs", None)
    if packs is not None:
        return packs.pack(w)
    from . import _simd

    return _simd.pack(w)


@contextmanager
def batch_invariant(packs: FrozenPacks | None = None) -> Iterator[None]:
    """Within this block (this thread), each row of every product is made from that row of
    ``a`` alone, summed in the order k = 0, 1, … (rnnkit._simd), and the recurrent layers'
    loops make theirs the same way (rnnkit.plan): a row's numbers then do not depend on how
    many rows, or which, share its batch. A BLAS's GEMM gives no such promise (OpenBLAS on a
    Zen 5 EPYC: row 0 of a (40, 100) @ (100, 256) product differs in the last bits from the
    same row alone), so a served request's probabilities would change with its neighbours.
    ``packs``: weights packed once (:class:`FrozenPacks`). Needs the numba engine
    (:func:`batch_invariant_available`); without it the block changes nothing."""
    previous = getattr(_invariant, "on", False), getattr(_invariant, "packs", None)
    _invariant.on = batch_invariant_available()
    _invariant.packs = packs if _invariant.on else None
    try:
        yield
    finally:
        _invariant.on, _invariant.packs = previous


def batch_invariant_available() -> bool:
    """Whether :func:`batch_invariant` can hold here: rnnkit's own products and loops need the
    numba engine (rnnkit.backend)."""
    from . import backend

    return backend.engine() == "numba"


def batch_invariant_active() -> bool:
    """Whether this thread is inside :func:`batch_invariant` (and it holds)."""
    return getattr(_invariant, "on", False)


def _invariant_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool):
    from . import _simd

    m, k = a.shape
    target = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    if accumulate and target is not out:
        target[...] = out
    _simd.product_rows(0, m, b.shape[1], k, np.ascontiguousarray(a), own_pack(b),
                       1.0 if accumulate else 0.0, target)
    if target is not out:
        out[...] = target
    return out


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
           accumulate: bool = False) -> np.ndarray:
    """``out = a @ b``, or ``out += a @ b`` with ``accumulate``: a (M, K), b (K, N), 2-D, one
    floating dtype; a and b may be transposed views. ``out`` (M, N) must be row-major. Inside
    :func:`batch_invariant`, rnnkit's own row-by-row products."""
    m, k = a.shape
    n = b.shape[1]
    if out is None:
        out = (np.zeros if accumulate else np.empty)((m, n), dtype=np.result_type(a, b))
    if batch_invariant_active() and a.dtype == b.dtype == out.dtype \
            and a.dtype in (np.float32, np.float64) and 0 not in (m, n, k):
        return _invariant_matmul(a, b, out, accumulate)
    if blas() != "mkl" or not (a.dtype == b.dtype == out.dtype) or a.dtype.kind != "f" \
            or 0 in (m, n, k):
        if accumulate:
            out += a @ b
        else:
            np.matmul(a, b, out=out)
        return out
    oa, ob, oc = _operand(a), _operand(b), _operand(out)
    if oa is None:
        a = np.ascontiguousarray(a)
        oa = (NO_TRANS, max(1, k))
    if ob is None:
        b = np.ascontiguousarray(b)
        ob = (NO_TRANS, max(1, n))
    if oc is None or oc[0] != NO_TRANS:
        res = matmul(a, b)
        if accumulate:
            out += res
        else:
            out[...] = res
        return out
    with threads_for(m * n * k):
        routines(a.dtype).gemm(ROW_MAJOR, oa[0], ob[0], m, n, k, 1.0, _ptr(a), oa[1], _ptr(b),
                               ob[1], 1.0 if accumulate else 0.0, _ptr(out), oc[1])
    return out


@contextmanager
def threads_for(macs: int) -> Iterator[None]:
    """Within this block, MKL runs this thread's products on one thread when each has fewer
    than :data:`SMALL_PRODUCT` multiply-adds (a time loop's per-step products, say): for so
    little work, handing half to a second thread and waiting for it costs more than it saves
    (an RNN at N = 32, H = 256 trained 1.4× slower on 2 threads than on 1)."""
    if blas() != "mkl" or macs >= SMALL_PRODUCT:
        yield
        return
    previous = _lib.cdll.MKL_Set_Num_Threads_Local(1)
    try:
        yield
    finally:
        _lib.cdll.MKL_Set_Num_Threads_Local(previous)


def max_threads() -> int:
    """The threads the library in use would give this thread's next product."""
    return int(_lib.cdll.MKL_Get_Max_Threads()) if blas() == "mkl" else numpy_threads()


def _pooled(fn: Callable[..., None], cpu: int | None, *args) -> None:
    """A block on a pool thread, free to run on any of rnnkit's cores: bound OpenMP
    (OMP_PROC_BIND, KMP_AFFINITY) pins a thread to its first place at its first parallel
    region, MKL's call included, which put both blocks on one core (inference at (128, 200,
    256, 256) on 2 threads, OMP_PROC_BIND=true: 189 ms, 96 with this). With ``cpu``, the
    thread moves there first (then is free again): see :func:`_run_tasks`."""
    if _CPUS:
        try:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            os.sched_setaffinity(0, _CPUS)
        except OSError:  # the process's cores changed since: stay where we are
            pass
    _one_thread(fn, *args)


def _sched_getcpu() -> Callable[[], int] | None:
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn


_current_cpu = _sched_getcpu() if _CPUS else None


def _one_thread(fn: Callable[..., None], *args) -> None:
    if _lib is None:  # products of rnnkit's own (rnnkit._simd): no library to hold back
        fn(*args)
        return
    previous = _lib.cdll.MKL_Set_Num_Threads_Local(1)
    try:
        fn(*args)
    finally:
        _lib.cdll.MKL_Set_Num_Threads_Local(previous)


def row_blocks(n: int, min_rows: int | None = None) -> int:
    """How many row blocks a time loop over n rows runs on (see :func:`run_blocks`): one per
    thread of the library in use, each of at least ``min_rows`` rows (MIN_BLOCK_ROWS)."""
    return max(1, min(max_threads(), n // (min_rows or MIN_BLOCK_ROWS)))


def run_blocks(fn: Callable[..., None], lengths: np.ndarray, weights: int, blocks: int = 1,
               threads: int = 1) -> None:
    """``fn(r0, r1, tid, nt, sync)`` over ``blocks`` blocks of rows covering the batch, each on
    ``threads`` threads of its own (tid = 0 … nt−1, nt = ``threads``, sharing ``sync``, a
    rnnkit._barrier counter array) with single-threaded MKL; this thread runs the first.

    A time loop's rows are independent, so its blocks need no synchronisation at all, where
    one multi-threaded product per step meets at a barrier every step and leaves the
    element-wise work on one core. But each block streams all of W_hh through its core at every
    step: blocks pay only for large batches (:func:`row_blocks`). The threads of one block
    (rnnkit's own products) split each product's columns and the rows' element-wise work, and
    meet at barriers (rnnkit._numba_kernels): each streams its share of W_hh.
    ``fn`` must release the GIL (numba ``nogil``), and the threads of a block must all run at
    once: blocks of more than one thread run under one lock, so that two such runs never wait
    for each other's threads in the pool.
    ``lengths`` (N,) are the rows' step counts, longest first: blocks are cut to hold equal
    numbers of steps. With one block of one thread, ``fn(0, N, 0, 1, sync)`` runs here, its
    products (N rows by ``weights`` elements of W) on the threads :func:`threads_for` gives."""
    from ._barrier import LINE

    n = len(lengths)
    p = min(blocks, n)
    if p <= 1 and threads <= 1:
        with threads_for(n * weights):
            fn(0, n, 0, 1, np.zeros(LINE, np.int64))
        return
    p = max(p, 1)
    work = np.concatenate(([0], np.cumsum(lengths)))
    bounds = np.abs(work[None, :] - work[-1] * np.arange(p + 1)[:, None] / p).argmin(1).tolist()
    bounds[0], bounds[-1] = 0, n
    tasks = []
    for i in range(p):
        if bounds[i] < bounds[i + 1]:
            sync = np.zeros(threads * LINE, np.int64)
            tasks += [(bounds[i], bounds[i + 1], tid, threads, sync) for tid in range(threads)]
    if threads <= 1:
        _run_tasks(fn, tasks)
        return
    with _together:
        _run_tasks(fn, tasks)


_together = threading.Lock()


def _run_tasks(fn: Callable[..., None], tasks: list[tuple]) -> None:
    """The first task here, the others on the pool's threads, all at once, each pool thread
    first moved to a core other than this thread's: after a pause, Linux woke the pool thread
    on the caller's own core, where the two took turns (threads that meet at barriers, LSTM
    (32, 100, 128, 256) inference on 2 threads, Zen 5 EPYC: 8 ms back to back, 13–16 ms
    after 0.15 s pauses, 10.5 with this)."""
    global _executor
    others = len(tasks) - 1
    # A forked child inherits the pool object but not its threads: it needs a pool of its own.
    if _executor is None or _executor[0] != os.getpid() or _executor[1] < others:
        pool = ThreadPoolExecutor(max(others, 1), thread_name_prefix="rnnkit-rows")
        _executor = (os.getpid(), max(others, 1), pool)
    cpus: list = [None] * len(tasks)
    if _current_cpu is not None:
        here = _current_cpu()
        free = [c for c in sorted(_CPUS) if c != here] or [here]
        cpus = [here] + [free[i % len(free)] for i in range(others)]
    futures = [_executor[2].submit(_pooled, fn, cpu, *task)
               for cpu, task in zip(cpus[1:], tasks[1:], strict=True)]
    try:
        _one_thread(fn, *tasks[0])
    finally:
        for f in futures:
            f.result()


def pack(b: np.ndarray, m: int) -> np.ndarray:
    """MKL's packed form of b (K, N), the right operand of products with at most ``m`` rows
    (``cblas_?gemm_compute`` with ``PACKED``). Returned as a 64-byte-aligned byte buffer that
    must not be copied: MKL's layout refers to its own address."""
    k, n = b.shape
    op = _operand(b)
    if op is None:
        b = np.ascontiguousarray(b)
        op = (NO_TRANS, max(1, n))
    r = routines(b.dtype)
    size = int(r.pack_size(B_MATRIX, m, n, k))
    raw = np.empty(size + 64, dtype=np.uint8)
    start = (-_ptr(raw)) % 64
    buf = raw[start:start + size]
    r.pack(ROW_MAJOR, B_MATRIX, op[0], m, n, k, 1.0, _ptr(b), op[1], _ptr(buf))
    return buf

