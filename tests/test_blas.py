"""rnnkit.blas: products through MKL agree with NumPy's for every operand layout."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit import blas


@pytest.fixture
def mkl():
    previous = blas.blas()
    try:
        blas.set_blas("mkl")
    except ImportError:
        pytest.skip("MKL is not installed")
    yield
    blas.set_blas(previous)


def layouts(rng, rows, cols, dtype):
    """The same (rows, cols) matrix as a C array, a transposed view and a column block."""
    m = rng.standard_normal((rows, cols)).astype(dtype)
    wide = np.zeros((rows, cols + 3), dtype=dtype)
    wide[:, 1:cols + 1] = m
    return {"c": m, "t": np.ascontiguousarray(m.T).T, "block": wide[:, 1:cols + 1],
            "fortran": np.asfortranarray(m), "strided": np.repeat(m, 2, axis=1)[:, ::2]}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matmul_every_layout(mkl, dtype):
    rng = np.random.default_rng(0)
    tol = 1e-5 if dtype == "float32" else 1e-12
    for na, a in layouts(rng, 7, 5, dtype).items():
        for nb, b in layouts(rng, 5, 3, dtype).items():
            ref = a.astype(np.float64) @ b.astype(np.float64)
            np.testing.assert_allclose(blas.matmul(a, b), ref, rtol=tol, atol=tol,
                                       err_msg=f"{na} @ {nb}")
            out = np.ones((7, 3), dtype=dtype)
            blas.matmul(a, b, out=out, accumulate=True)
            np.testing.assert_allclose(out, ref + 1, rtol=tol, atol=tol, err_msg=f"{na} @ {nb}")
            # A column block of a wider array as the output, and a transposed one.
            wide = np.zeros((7, 5), dtype=dtype)
            blas.matmul(a, b, out=wide[:, 1:4])
            np.testing.assert_allclose(wide[:, 1:4], ref, rtol=tol, atol=tol)
            assert not wide[:, [0, 4]].any()
            outT = np.zeros((3, 7), dtype=dtype).T
            blas.matmul(a, b, out=outT)
            np.testing.assert_allclose(outT, ref, rtol=tol, atol=tol)


def test_matmul_mixed_dtypes_and_empty(mkl):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(6, dtype=np.float64).reshape(3, 2)
    np.testing.assert_array_equal(blas.matmul(a, b), a.astype(np.float64) @ b)
    np.testing.assert_array_equal(blas.matmul(np.ones((2, 0)), np.ones((0, 4))), np.zeros((2, 4)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_packed_product_for_fewer_rows(mkl, dtype):
    """A right operand packed for m rows serves products with fewer (variable lengths)."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 12)).astype(dtype)
    packed = blas.pack(w.T, 9)  # as the layers pack W_hhᵀ: a transposed view
    gemm = blas.routines(dtype).compute
    for m in (9, 4, 1):
        x = rng.standard_normal((m, 12)).astype(dtype)
        out = np.zeros((m, 8), dtype=dtype)
        gemm(blas.ROW_MAJOR, blas.NO_TRANS, blas.PACKED, m, 8, 12, x.ctypes.data, 12,
             packed.ctypes.data, 8, 0.0, out.ctypes.data, 8)
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(out, x @ w.T, rtol=tol, atol=tol)


def test_choice():
    previous = blas.blas()
    try:
        with pytest.raises(ValueError, match="unknown BLAS 'openblas'"):
            blas.set_blas("openblas")
        assert blas.set_blas("numpy") == "numpy"
        a = np.ones((2, 2))
        np.testing.assert_array_equal(blas.matmul(a, a), 2 * a)
        assert blas.set_blas("auto") in ("mkl", "numpy")
    finally:
        blas.set_blas(previous)


def test_run_blocks_cuts_equal_work(mkl, monkeypatch):
    """One block per thread, each holding about half the steps; too few rows: one block."""
    monkeypatch.setattr(blas, "max_threads", lambda: 2)
    monkeypatch.setattr(blas, "MIN_BLOCK_ROWS", 8)
    lengths = np.array([40, 30, 20, 10, 8, 6, 5, 5, 4, 3, 2, 2, 1, 1, 1, 1, 1, 1])
    calls = []
    assert blas.row_blocks(len(lengths)) == 2 and blas.row_blocks(15) == 1
    blas.run_blocks(lambda r0, r1, *_: calls.append((r0, r1)), lengths, 10, 2)
    calls.sort()
    assert calls[0][0] == 0 and calls[-1][1] == len(lengths)
    assert [a for a, _ in calls[1:]] == [b for _, b in calls[:-1]]  # contiguous, no overlap
    assert calls == [(0, 2), (2, 18)]  # 70 of 141 steps, then 71
    calls.clear()
    blas.run_blocks(lambda r0, r1, *_: calls.append((r0, r1)), lengths, 10, 1)
    assert calls == [(0, 18)]


def test_row_blocks_leave_a_bound_thread_for_all_cores(mkl, monkeypatch):
    """Under bound OpenMP threads the caller sits on one core and threads it starts inherit
    that; the pool's blocks take back the cores rnnkit found, the caller's block stays put."""
    import os

    if not hasattr(os, "sched_setaffinity") or len(blas._CPUS or ()) < 2:
        pytest.skip("needs thread affinity and two cores")
    import threading

    monkeypatch.setattr(blas, "max_threads", lambda: 2)
    monkeypatch.setattr(blas, "MIN_BLOCK_ROWS", 1)
    seen = {}

    def block(r0, r1, *_):
        seen[r0] = (threading.get_ident(), os.sched_getaffinity(0))

    result = {}

    def bound_caller():  # a fresh thread, so the pool is created while it is bound
        os.sched_setaffinity(0, {min(blas._CPUS)})
        monkeypatch.setattr(blas, "_executor", None)
        blas.run_blocks(block, np.array([3, 2]), 1, 2)
        result["caller"] = threading.get_ident()

    t = threading.Thread(target=bound_caller)
    t.start()
    t.join()
    assert seen[0] == (result["caller"], {min(blas._CPUS)})
    assert seen[1][0] != result["caller"] and seen[1][1] == blas._CPUS


def test_run_blocks_in_a_forked_child(mkl, monkeypatch):
    """A child process forked after the pool started gets threads of its own (the inherited
    pool has none: waiting on it would hang)."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(blas, "max_threads", lambda: 2)
    monkeypatch.setattr(blas, "MIN_BLOCK_ROWS", 1)
    rows = []
    blas.run_blocks(lambda r0, r1, *_: rows.append((r0, r1)), np.array([3, 2]), 1, 2)
    assert sorted(rows) == [(0, 1), (1, 2)]
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_blocks_in_child).get(timeout=60) == [(0, 1), (1, 2)]


def _blocks_in_child():
    rows = []
    blas.run_blocks(lambda r0, r1, *_: rows.append((r0, r1)), np.array([3, 2]), 1, 2)
    return sorted(rows)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_invariant_rows_are_the_rows_alone(dtype):
    if not blas.batch_invariant_available():
        pytest.skip("batch-invariant products need the numba engine")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((41, 37)).astype(dtype)
    w = rng.standard_normal((53, 37)).astype(dtype).T  # a transposed view, as a layer's
    with blas.batch_invariant():
        assert blas.batch_invariant_active()
        whole = blas.matmul(a, w)
        for rows in ([0], [3, 4], list(range(5, 22)), [40]):
            assert np.array_equal(blas.matmul(a[rows], w), whole[rows])
        acc = np.ones((41, 53), dtype)
        blas.matmul(a, w, out=acc, accumulate=True)
        assert np.array_equal(acc, whole + 1)  # the sum made, then c added
    assert not blas.batch_invariant_active()
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(whole, a @ w, rtol=tol, atol=tol)
