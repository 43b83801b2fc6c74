"""The planner's rules (rnnkit.plan): one function decides the path, forced() overrides it."""

from __future__ import annotations

import json

import pytest

import rnnkit
from rnnkit import backend, blas, plan
from rnnkit.plan import Plan

pytest.importorskip("numba")


@pytest.fixture
def numba_engine():
    previous = backend.engine()
    backend.set_engine("numba")
    yield
    backend.set_engine(previous)


@pytest.fixture
def library_products(monkeypatch):
    """The rules as where rnnkit's own GEMM measured slower than the library's."""
    monkeypatch.setattr(plan, "recurrent_products", lambda: "library")


def test_rules(numba_engine, library_products, monkeypatch):
    cell = rnnkit.LSTM(3, 4).cell
    monkeypatch.setattr(blas, "blas", lambda: "numpy")
    assert plan.plan(cell, 3, False, False) == Plan("numba", "loop", "time-major")
    assert plan.plan(cell, 32, False, True).products in ("cblas", "numpy")
    monkeypatch.setattr(blas, "numpy_gemm", lambda dtype: None)  # NumPy's BLAS not callable
    assert plan.plan(cell, 32, False, False) == Plan("numba", "numpy", "step")
    assert plan.plan(cell, 32, False, False, probe=True).layout == "step"
    monkeypatch.setattr(blas, "numpy_gemm", lambda dtype: print)
    assert plan.plan(cell, 32, False, False) == Plan("numba", "cblas", "time-major")
    assert plan.plan(cell, 32, False, True) == Plan("numba", "cblas", "time-major")
    monkeypatch.setattr(blas, "blas", lambda: "mkl")
    monkeypatch.setattr(blas, "max_threads", lambda: 2)
    assert plan.plan(cell, 32, False, False) == Plan("numba", "mkl", "time-major")
    assert plan.plan(cell, 32, True, True).layout == "batch-major"
    assert plan.plan(cell, 32, False, True, dropout_between=True).layout == "time-major"
    assert plan.plan(cell, 256, False, True) == Plan("numba", "mkl", "batch-major", 2, 2)
    peep = rnnkit.LSTM(3, 4, peepholes=True).cell
    assert plan.plan(peep, 256, False, False) == Plan("numba", "mkl", "time-major", 2, 1)


def test_packed_products_where_they_measured_faster(numba_engine, monkeypatch):
    """rnnkit's own GEMM replaces the library's for batches over SMALL_BATCH rows, on all the
    threads once a step has PACKED_THREAD_MACS multiply-adds; few rows stay in the loop."""
    monkeypatch.setattr(plan, "recurrent_products", lambda: "packed")
    monkeypatch.setattr(blas, "max_threads", lambda: 3)
    big = rnnkit.GRU(3, 64).cell
    assert plan.plan(big, 43, True, True, steps=200).threads == 1  # one unless asked
    monkeypatch.setenv("RNNKIT_STEP_THREADS", "4")  # asked: as many as the BLAS may use
    small, big = rnnkit.GRU(3, 4).cell, rnnkit.GRU(3, 64).cell  # 3·64² MACs a row
    assert plan.plan(small, 3, False, False) == Plan("numba", "loop", "time-major")
    assert plan.plan(small, 40, False, True) == Plan("numba", "packed", "time-major")
    assert plan.plan(big, 42, False, False, steps=200) == Plan("numba", "packed", "time-major")
    assert plan.plan(big, 43, True, True, steps=200) == Plan("numba", "packed", "time-major",
                                                             1, 1, 3, 3)
    assert plan.plan(big, 43, True, True, steps=100).threads == 1  # too little a call
    peep = rnnkit.LSTM(3, 64, peepholes=True).cell  # its backward sums over rows: one thread
    assert plan.plan(peep, 64, False, False, steps=100) == Plan("numba", "packed",
                                                                "time-major", 1, 1, 3, 1)


def test_products_choice_is_measured_once_and_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def timed(fns):
        calls.append(sorted(fns))
        return {"packed": 50.0, "library": 100.0}

    monkeypatch.setattr(blas, "time_calls", timed)
    previous = plan.recurrent_products()
    try:
        assert plan.set_recurrent_products("auto") == "packed"
        assert plan.set_recurrent_products("auto") == "packed"  # from the disk, not timed
        assert calls == [["library", "packed"]]
        field = next(f for f in json.loads((tmp_path / "rnnkit" / "blas.json").read_text())
                     [blas._machine_key()] if f.startswith("products"))
        assert blas.choice(field)["packed_us"] == 50.0
        assert plan.set_recurrent_products("library") == "library"
        with pytest.raises(ValueError, match="unknown recurrent products 'fast'"):
            plan.set_recurrent_products("fast")
    finally:
        plan.set_recurrent_products(previous)


def test_numpy_engine_always_steps():
    previous = backend.engine()
    backend.set_engine("numpy")
    try:
        assert plan.plan(rnnkit.GRU(3, 4).cell, 2, True, True) == Plan("numpy", "numpy", "step")
    finally:
        backend.set_engine(previous)


def test_forced_paths_and_bad_choices(numba_engine):
    layer = rnnkit.RNN(3, 4)
    with plan.forced(products="loop", layout="batch-major", blocks=2):
        assert layer.plan(40) == Plan("numba", "loop", "batch-major", 2, 2)
        assert layer.plan(40, padded=True).layout == "time-major"  # training needs packing
    with plan.forced(kernel="numpy", products="loop"):
        assert layer.plan(40) == Plan("numpy", "numpy", "step")
    with plan.forced(layout="step"):
        assert layer.plan(2) == Plan("numba", "numpy", "step")
    assert layer.plan(2) == Plan("numba", "loop", "time-major")  # back to the rules
    with plan.forced(products="packed", blocks=1):  # own GEMM: time-major, inference too
        assert layer.plan(40, inference=True) == Plan("numba", "packed", "time-major")
    with pytest.raises(ValueError, match="unknown layout 'diagonal'"):
        with plan.forced(layout="diagonal"):
            pass
    with pytest.raises(ValueError, match="blocks must be a positive integer"):
        with plan.forced(blocks=0):
            pass


def test_blas_choice_is_measured_and_cached(tmp_path, monkeypatch):
    try:
        blas.load_mkl()
    except ImportError:
        pytest.skip("MKL is not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(blas, "measure_recurrent_product",
                        lambda: calls.append(1) or (200.0, 100.0))
    previous = blas.blas()
    try:
        assert blas.set_blas("auto") == "numpy"  # MKL measured slower: not taken
        assert blas.set_blas("auto") == "numpy" and len(calls) == 1  # cached on disk
        assert (tmp_path / "rnnkit" / "blas.json").is_file()
        assert blas.set_blas("mkl") == "mkl"  # asked for by name: taken
    finally:
        blas.set_blas(previous)


def test_numpy_gemm_is_callable():
    import numpy as np

    gemm = blas.numpy_gemm(np.float64)
    if gemm is None:
        pytest.skip("NumPy's BLAS is not callable from compiled code here")
    a, b = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    c = np.zeros((2, 4))
    gemm(101, 111, 111, 2, 4, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 4, 0.0, c.ctypes.data, 4)
    np.testing.assert_array_equal(c, a @ b)


def test_measurement_returns_two_timings():
    try:
        blas.load_mkl()
    except ImportError:
        pytest.skip("MKL is not installed")
    mkl_us, numpy_us = blas.measure_recurrent_product(rounds=1, calls=2)
    assert mkl_us > 0 and numpy_us > 0
