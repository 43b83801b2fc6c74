"""Run the numerical tests under every kernel engine: NumPy, numba per-step kernels, and numba
whole-sequence kernels (normally used only for batches of a few rows)."""

from __future__ import annotations

import pytest

from rnnkit import backend, recurrent

ENGINES = {"numpy": ("numpy", 0), "numba-step": ("numba", 0), "numba-seq": ("numba", 10**9)}


@pytest.fixture(params=list(ENGINES))
def engine(request, monkeypatch):
    name, max_rows = ENGINES[request.param]
    if name == "numba":
        pytest.importorskip("numba")
    previous = backend.engine()
    backend.set_engine(name)
    monkeypatch.setattr(recurrent, "SEQUENCE_KERNEL_MAX_ROWS", max_rows)
    yield request.param
    backend.set_engine(previous)
