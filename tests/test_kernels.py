"""Every compiled row function against the NumPy block function it mirrors, row by row: both run
the same step functions of rnnkit.cells, so in float64 they agree to rounding (LLVM may reorder
what fast-math allows); in float32 numba's tanh is a rational approximation (≤ 5 ulp)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from rnnkit import kernels as NP

NB = pytest.importorskip("rnnkit._numba_kernels")

N, H = 5, 7  # the kernels see rows [:n] of N; n < N checks that rows past n are left alone
TOL = {np.float64: 1e-13, np.float32: 3e-6}


def _arrays(rng, dtype, **shapes):
    return {k: (rng.uniform(-1.5, 1.5, s) if s else np.empty(0)).astype(dtype)
            for k, s in shapes.items()}


def _gates(rng, dtype, k):
    """Activations in (0, 1) for the cache a backward kernel reads."""
    return rng.uniform(0.05, 0.95, (N, k * H)).astype(dtype)


CASES = {
    # name: (argument builder (rng, dtype) -> dict, argument order, the extra scalars)
    "rnn_fwd": (lambda r, d: _arrays(r, d, g=(N, H), a=(N, H), hn=(N, H)), "g a hn", (False,)),
    "rnn_fwd-relu": (lambda r, d: _arrays(r, d, g=(N, H), a=(N, H), hn=(N, H)), "g a hn",
                     (True,)),
    "rnn_bwd": (lambda r, d: dict(a=np.tanh(_arrays(r, d, a=(N, H))["a"]),
                                  **_arrays(r, d, dh=(N, H), dout=(N, H))), "a dh dout",
                (False,)),
    "rnn_bwd-relu": (lambda r, d: dict(a=np.maximum(_arrays(r, d, a=(N, H))["a"], 0),
                                       **_arrays(r, d, dh=(N, H), dout=(N, H))), "a dh dout",
                     (True,)),
    "lstm_fwd": (lambda r, d: _arrays(r, d, g=(N, 4 * H), a=(N, 4 * H), cp=(N, H), cn=(N, H),
                                      hn=(N, H), p=None), "g a cp cn hn p", ()),
    "lstm_fwd-peep": (lambda r, d: _arrays(r, d, g=(N, 4 * H), a=(N, 4 * H), cp=(N, H),
                                           cn=(N, H), hn=(N, H), p=(3 * H,)),
                      "g a cp cn hn p", ()),
    "lstm_bwd": (lambda r, d: dict(a=_gates(r, d, 4), **_arrays(
        r, d, cp=(N, H), cn=(N, H), dh=(N, H), dout=(N, H), dc=(N, H), p=None, dp=None)),
        "a cp cn dh dout dc p dp", ()),
    "lstm_bwd-peep": (lambda r, d: dict(a=_gates(r, d, 4), **_arrays(
        r, d, cp=(N, H), cn=(N, H), dh=(N, H), dout=(N, H), dc=(N, H), p=(3 * H,),
        dp=(3 * H,))), "a cp cn dh dout dc p dp", ()),
    "gru_after_fwd": (lambda r, d: _arrays(r, d, g=(N, 3 * H), a=(N, 3 * H), hp=(N, H),
                                           e=(N, H), hn=(N, H), b_hn=(H,)),
                      "g a hp e hn b_hn", ()),
    "gru_after_bwd": (lambda r, d: dict(a=_gates(r, d, 3), **_arrays(
        r, d, hp=(N, H), e=(N, H), dh=(N, H), dout=(N, H), dhw=(N, 3 * H))),
        "a hp e dh dout dhw", ()),
    "gru_before_fwd1": (lambda r, d: _arrays(r, d, g=(N, 3 * H), a=(N, 3 * H), hp=(N, H),
                                             e=(N, H)), "g a hp e", ()),
    "gru_before_fwd2": (lambda r, d: dict(a=_gates(r, d, 3), **_arrays(
        r, d, gn=(N, H), hp=(N, H), hn=(N, H))), "gn a hp hn", ()),
    "gru_before_bwd1": (lambda r, d: dict(a=_gates(r, d, 3), **_arrays(
        r, d, hp=(N, H), dh=(N, H), dout=(N, H))), "a hp dh dout", ()),
    "gru_before_bwd2": (lambda r, d: dict(a=_gates(r, d, 3), **_arrays(
        r, d, hp=(N, H), drh=(N, H), dh=(N, H))), "a hp drh dh", ()),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("case", list(CASES))
def test_numba_rows_match_numpy_blocks(case, dtype):
    build, order, extra = CASES[case]
    name = case.split("-")[0]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    args = build(rng, dtype)
    n = N - 2
    ours = {k: v.copy() for k, v in args.items()}
    theirs = {k: v.copy() for k, v in args.items()}
    getattr(NB, name)(*(ours[k] for k in order.split()), *extra, n)
    getattr(NP, name)(*(theirs[k] for k in order.split()), *extra, n)
    changed = False
    for k in args:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=TOL[dtype], atol=TOL[dtype],
                                   err_msg=f"{case}: {k}")
        if args[k].ndim == 2:  # rows past n are never touched
            np.testing.assert_array_equal(ours[k][n:], args[k][n:], err_msg=f"{case}: {k}")
        changed |= not np.array_equal(ours[k], args[k])
    assert changed, "the kernel wrote nothing"


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_adam_kernels_agree(dtype):
    rng = np.random.default_rng(3)
    p, g, m, v = (rng.standard_normal(101).astype(dtype) for _ in range(4))
    v = np.abs(v)
    f = np.dtype(dtype).type
    scalars = (f(0.9), f(0.999), f(1e-3), f(0.3), f(1e-8))
    ours = [a.copy() for a in (p, g, m, v)]
    theirs = [a.copy() for a in (p, g, m, v)]
    NB.adam(*ours, *scalars, np.empty_like(p))
    NP.adam(*theirs, *scalars, np.empty_like(p))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=TOL[dtype] * 10, atol=TOL[dtype])
