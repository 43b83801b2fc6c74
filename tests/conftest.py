"""Run the numerical tests under every kernel engine: NumPy, numba per-step kernels, numba
whole-sequence kernels (normally used only for batches of a few rows), and numba time loops
around MKL's packed GEMM (when MKL is installed): as one loop, and cut into three blocks of
rows run on three threads (rnnkit.blas.run_blocks; normally only for ≥ 64 rows a block)."""

from __future__ import annotations

import pytest

from rnnkit import backend, blas, recurrent

# name: (kernel engine, rows up to which whole-sequence kernels run, BLAS, row blocks)
ENGINES = {"numpy": ("numpy", 0, "numpy", 1), "numba-step": ("numba", 0, "numpy", 1),
           "numba-seq": ("numba", 10**9, "numpy", 1), "numba-mkl": ("numba", 0, "mkl", 1),
           "numba-mkl-blocks": ("numba", 0, "mkl", 3)}


def _use(name, monkeypatch):
    kind, max_rows, lib, blocks = ENGINES[name]
    if kind == "numba":
        pytest.importorskip("numba")
    previous, previous_blas = backend.engine(), blas.blas()
    try:
        blas.set_blas(lib)
    except ImportError:
        pytest.skip("MKL is not installed")
    backend.set_engine(kind)
    monkeypatch.setattr(recurrent, "SEQUENCE_KERNEL_MAX_ROWS", max_rows)
    if blocks > 1:
        monkeypatch.setattr(blas, "MIN_BLOCK_ROWS", 1)
        monkeypatch.setattr(blas, "max_threads", lambda: blocks)
    yield name
    backend.set_engine(previous)
    blas.set_blas(previous_blas)


@pytest.fixture(params=[e for e in ENGINES if ENGINES[e][3] == 1])
def engine(request, monkeypatch):
    """Each engine (row blocks aside: only layers' time loops have them)."""
    yield from _use(request.param, monkeypatch)


@pytest.fixture(params=list(ENGINES))
def layer_engine(request, monkeypatch):
    """Each engine, row blocks included: for tests of whole recurrent layers."""
    yield from _use(request.param, monkeypatch)
