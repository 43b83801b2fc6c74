"""Run the numerical tests under every kernel engine: NumPy, numba per-step kernels, numba
whole-sequence kernels (normally used only for batches of a few rows), and numba time loops
around MKL's packed GEMM (when MKL is installed)."""

from __future__ import annotations

import pytest

from rnnkit import backend, blas, recurrent

# name: (kernel engine, rows up to which whole-sequence kernels run, BLAS)
ENGINES = {"numpy": ("numpy", 0, "numpy"), "numba-step": ("numba", 0, "numpy"),
           "numba-seq": ("numba", 10**9, "numpy"), "numba-mkl": ("numba", 0, "mkl")}


@pytest.fixture(params=list(ENGINES))
def engine(request, monkeypatch):
    name, max_rows, lib = ENGINES[request.param]
    if name == "numba":
        pytest.importorskip("numba")
    previous, previous_blas = backend.engine(), blas.blas()
    try:
        blas.set_blas(lib)
    except ImportError:
        pytest.skip("MKL is not installed")
    backend.set_engine(name)
    monkeypatch.setattr(recurrent, "SEQUENCE_KERNEL_MAX_ROWS", max_rows)
    yield request.param
    backend.set_engine(previous)
    blas.set_blas(previous_blas)
