"""The planner: one function decides how a recurrent layer's time loops run.

A :class:`Plan` names the path; :func:`plan` chooses it from the layer's cell, the batch and the
machine; :mod:`rnnkit.runner` runs it. Every path computes the same equations (rnnkit.cells) and
gives the same numbers to rounding; they differ in speed only.

    kernel    "numpy" (rnnkit.kernels) or "numba" (rnnkit._numba_kernels): who runs the
              element-wise step functions.
    products  how each step's recurrent product is made: "numpy" (np.matmul from a loop in
              Python), "cblas" (the cblas_?gemm of NumPy's own BLAS, called inside a compiled
              loop), "mkl" (MKL's packed GEMM inside a compiled loop), "packed" (rnnkit's
              own GEMM on W packed once per call, rnnkit._simd, inside a compiled loop; with
              threads that share each step, the layer's other products too), "loop" (row by
              row inside a compiled loop: batches of a few rows, where calling a library per
              step costs more than the arithmetic).
    layout    "step" (the loop over steps is Python's; products "numpy"), "time-major"
              (compiled loops on packed time-major arrays: any padding), "batch-major"
              (compiled loops on the caller's (N, T, ·) arrays: training without padding, and
              inference, which then makes each step's input product in the loop).
    blocks    row blocks run on threads of their own (rnnkit.blas.run_blocks), forward and
              backward (backward_blocks: the peephole LSTM's backward sums over rows, so one).

The rules of :func:`plan`, in order: the NumPy engine, a gradient probe (rnnkit.diagnostics
reads the Python loop), or a layer with step extras (layer norm, zoneout, recurrent dropout:
rnnkit.step_extras), take "step". A compiled engine takes "loop" products for at most
:data:`SMALL_BATCH` rows; above, "packed" where rnnkit's own GEMM measured faster than the
library's on this machine (:func:`recurrent_products`: timed once, remembered on disk), else
the library's: "mkl" when rnnkit.blas chose MKL for this machine (a measurement too, not a
vendor rule), "cblas" when NumPy's BLAS can be called from compiled code, and otherwise "step"
with NumPy's BLAS from Python. MKL's loops run "batch-major" for inference (unless
dropout between layers is active); everything else runs "time-major". Batch-major training
(forced with ``layout="batch-major"``) is exact but, in its generic form, slower: its per-row
views of (N, T, ·) arrays have a runtime stride, which keeps LLVM from vectorising the row
functions as it does on time-major rows (LSTM (32, 100, 128, 256) training on MKL, Zen 5 EPYC:
125 ms batch-major, 112 time-major); with OpenBLAS, whose GEMM also dislikes rows T·G·H apart,
10–30% slower. MKL loops take one row block per MKL thread once each block has
rnnkit.blas.MIN_BLOCK_ROWS rows; "packed" loops run one block on all the threads NumPy's BLAS
may use, up to :func:`step_threads` (one unless ``RNNKIT_STEP_THREADS`` says more: ``threads``
split each product's columns and each step's rows, and meet at barriers; each core reads only
its share of W_hh) once a step has :data:`PACKED_THREAD_MACS` multiply-adds and the call
:data:`PACKED_CALL_MACS`; "cblas" one block (the library threads each product itself).

Choosing a path yourself (tests, benchmarks, a user comparing paths)::

    with rnnkit.plan.forced(kernel="numba", products="mkl", layout="batch-major", blocks=3):
        out, state, cache = layer.forward(x)

Anything not given is planned as usual; a forced choice that cannot run here (numba or MKL
missing) raises ImportError.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from . import backend, blas

KERNELS = ("numpy", "numba")
PRODUCTS = ("numpy", "cblas", "mkl", "packed", "loop")
LAYOUTS = ("step", "time-major", "batch-major")

#: Batches of at most this many rows run compiled loops with products made row by row.
SMALL_BATCH = 4

#: rnnkit's own products (rnnkit._simd) run on every thread NumPy's BLAS may use (threads that
#: share each step: rnnkit._numba_kernels) once a step's recurrent product has this many
#: multiply-adds: below, the barriers of a step cost more than the threads save (2 threads of a
#: Zen 5 EPYC: even at 2¹⁸, an RNN (16, 100, 32, 128) trained 1.3× slower; at 2¹⁹ LSTMs gain).
PACKED_THREAD_MACS = 1 << 19

#: ... and once a call (all its steps) has this many: handing work to the pool's threads costs
#: ~0.25 ms a call on that machine, so a decoder's one-step calls (LSTM N = 32, H = 256:
#: 0.38 ms on one thread, 0.47 on two) stay on one thread; from ~2²⁶ two threads gain.
PACKED_CALL_MACS = 1 << 26


def step_threads() -> int:
    """How many threads may share each step (``RNNKIT_STEP_THREADS``, default 1): opt-in, as
    on the machine measured they sped a layer alone up (LSTM (32, 100, 128, 256) on 2 threads:
    inference 14 → 8 ms, training 40 → 25 ms) but slowed whole training runs down, where the
    model's other products leave OpenBLAS's threads spinning on the same cores and the steps
    come after pauses (``rnnkit demo``: 79 s on one thread, 177 s on two; docs/speed.md)."""
    value = os.environ.get("RNNKIT_STEP_THREADS", "1")
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"RNNKIT_STEP_THREADS must be a positive integer, got {value!r}") \
            from None


@dataclass(frozen=True)
class Plan:
    """How one forward (and its backward) runs; see the module docstring."""

    kernel: str  # "numpy" | "numba"
    products: str  # one of PRODUCTS
    layout: str  # "step" | "time-major" | "batch-major"
    blocks: int = 1  # row blocks of the forward loops
    backward_blocks: int = 1  # row blocks of the backward loops
    threads: int = 1  # threads that run each forward block together
    backward_threads: int = 1  # threads that run each backward block together


_forced = threading.local()

#: Who makes a compiled loop's recurrent products (batches over SMALL_BATCH rows): "packed"
#: (rnnkit._simd) or "library" (MKL's packed GEMM where rnnkit.blas chose MKL, else NumPy's
#: cblas_?gemm); "auto" measures both on this machine.
RECURRENT = ("auto", "packed", "library")
_recurrent: str | None = None


def library_products() -> str:
    """The products the BLAS in use makes inside compiled loops: "mkl", "cblas", or "numpy"
    (NumPy's BLAS cannot be called from compiled code: products from Python)."""
    if blas.blas() == "mkl":
        return "mkl"
    return "cblas" if blas.numpy_gemm("float32") is not None else "numpy"


def _products_field() -> str:
    """Where the products' measurement is remembered: the library, rnnkit's and numba's
    versions, as any of them changes the answer (the machine is rnnkit.blas's key)."""
    import numba

    from . import __version__

    return f"products | {library_products()} | rnnkit {__version__} | numba {numba.__version__}"


def products_choice() -> dict | None:
    """The measurement behind "auto"'s recurrent products on this machine (``packed_us``,
    ``library_us``, ``library``, ``packed_faster``), or None when none was made."""
    try:
        return blas.choice(_products_field())
    except ImportError:
        return None


def _packed_measured_faster() -> bool:
    """Whether rnnkit's own GEMM beat the library's on this machine, timed once on the
    (32, 256) @ (256, 1024) float32 product of an LSTM step and remembered on disk."""
    from . import _simd

    library = library_products()

    def measure() -> dict:
        calls, (a, w, c) = blas.recurrent_product_calls()
        packed = _simd.pack(w)
        m, k = a.shape
        contenders = {"packed": lambda: _simd.product(m, w.shape[1], k, a, packed, 0.0, c, 0, 1),
                      "library": calls["mkl" if library == "mkl" else "numpy"]}
        us = blas.time_calls(contenders)
        return {"packed_faster": us["packed"] < us["library"], "packed_us": us["packed"],
                "library_us": us["library"], "library": library}

    return bool(blas.remembered(_products_field(), measure)["packed_faster"])


def set_recurrent_products(name: str = "auto") -> str:
    """Choose who makes the compiled loops' recurrent products (see :data:`RECURRENT`); returns
    the choice now in effect, "packed" or "library". "auto" takes rnnkit's own GEMM where it
    measured faster than the library's (numba required: without it, "library")."""
    global _recurrent
    if name not in RECURRENT:
        raise ValueError(f"unknown recurrent products {name!r}; expected one of {RECURRENT}")
    if name == "packed":
        backend.numba_kernels()  # ImportError when numba is missing
    elif name == "auto":
        try:
            backend.numba_kernels()
            name = "packed" if _packed_measured_faster() else "library"
        except ImportError:
            name = "library"
    _recurrent = name
    return name


def recurrent_products() -> str:
    """"packed" or "library" (chosen on first use from RNNKIT_PRODUCTS, default "auto")."""
    if _recurrent is None:
        set_recurrent_products(os.environ.get("RNNKIT_PRODUCTS", "auto"))
    return _recurrent


@contextmanager
def forced(kernel: str | None = None, products: str | None = None, layout: str | None = None,
           blocks: int | None = None, threads: int | None = None) -> Iterator[None]:
    """Within this block (this thread), layers run the given path; see the module docstring."""
    for value, allowed, what in ((kernel, KERNELS, "kernel"), (products, PRODUCTS, "products"),
                                 (layout, LAYOUTS, "layout")):
        if value is not None and value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; expected one of {allowed}")
    for value, what in ((blocks, "blocks"), (threads, "threads")):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if kernel == "numba" or products == "packed":
        backend.numba_kernels()  # ImportError when numba is missing
    if products == "mkl":
        blas.load_mkl()  # ImportError when MKL is missing
    if products == "cblas" and blas.numpy_gemm("float32") is None:
        raise ImportError("NumPy's BLAS cannot be called from compiled code here")
    previous = getattr(_forced, "value", None)
    _forced.value = dict(kernel=kernel, products=products, layout=layout, blocks=blocks,
                         threads=threads)
    try:
        yield
    finally:
        _forced.value = previous


def plan(cell, n: int, padded: bool, inference: bool, probe: bool = False,
         dropout_between: bool = False, steps: int = 1, step_only: bool = False) -> Plan:
    """The path for a batch of ``n`` rows through a layer of ``cell`` over ``steps`` steps
    (``padded``: some rows shorter than that; ``probe``: gradient norms requested;
    ``dropout_between``: dropout between stacked layers active; ``step_only``: the layer
    wraps its cell's step in rnnkit.step_extras). See the module docstring."""
    f = getattr(_forced, "value", None) or {}
    kernel = f.get("kernel") or backend.engine()
    probe = probe or step_only
    if kernel == "numpy" or probe:
        chosen = Plan(kernel, "numpy", "step")
    else:
        products = f.get("products") or (
            "packed" if blas.batch_invariant_active()
            else "loop" if n <= SMALL_BATCH else "packed" if recurrent_products() == "packed"
            else library_products())
        if products == "numpy":
            layout = "step"
        elif products in ("loop", "cblas", "packed") or not inference:
            layout = "time-major"
        else:
            layout = "time-major" if dropout_between else "batch-major"
        blocks = blas.row_blocks(n) if products == "mkl" else 1
        macs = n * cell.hidden_size * cell.gates * cell.hidden_size  # a step's product
        threads = min(step_threads(), blas.max_threads()) if (
            products == "packed" and macs >= PACKED_THREAD_MACS
            and macs * steps >= PACKED_CALL_MACS) else 1
        chosen = Plan(kernel, products, layout, blocks, blocks, threads, threads)
    if f.get("layout"):
        layout = f["layout"]
        if kernel == "numpy" or probe:
            layout = "step"
        elif layout == "step":
            chosen = replace(chosen, products="numpy")
        elif chosen.products == "numpy":
            chosen = replace(chosen, products="loop")
        if layout == "batch-major" and padded and not inference:
            layout = "time-major"  # batch-major training keeps no packing
        chosen = replace(chosen, layout=layout)
    if f.get("blocks") and chosen.layout != "step":
        chosen = replace(chosen, blocks=f["blocks"], backward_blocks=f["blocks"])
    if f.get("threads") and chosen.layout != "step":
        chosen = replace(chosen, threads=f["threads"], backward_threads=f["threads"])
    if getattr(cell, "peepholes", False):
        chosen = replace(chosen, backward_blocks=1, backward_threads=1)
    if chosen.layout == "step":
        chosen = replace(chosen, products="numpy", blocks=1, backward_blocks=1, threads=1,
                         backward_threads=1)
    return chosen
