"""The compiled engine: the cells' step functions for one element, and the time loops.

numba compiles the step functions of :mod:`rnnkit.cells` (the equations, defined once) for one
element, after registering scalar versions of :mod:`rnnkit.functional`'s primitives; row
functions apply them along a row's gate blocks. Three layers of code, none with maths of its own:

- per-step kernels (``lstm_fwd`` …): the rows alive at one step, for the per-step loop in
  Python (:func:`rnnkit.runner.step_forward`); the same signatures as :mod:`rnnkit.kernels`.
- :func:`_fwd_block` / :func:`_bwd_block`: one step of a block of rows for any cell, recurrent
  products included (MKL's packed GEMM, or a row-by-row product for a few rows).
- five time loops: time-major forward and backward, batch-major forward and backward, and
  batch-major inference; each runs every cell through the two block functions.

Compilation: ``cache=True`` (compiled once per machine and dtype, then loaded from disk),
single-threaded (BLAS keeps the threads; numba's ``parallel=True`` beside threaded OpenBLAS was
measured 5–70× slower), ``error_model="numpy"`` and the fast-math flags that allow
reciprocal/sign-of-zero shortcuts (no automatic FMA contraction: see _OPTS) — but not
``nnan``/``ninf``, so a NaN still propagates and training can notice it.

tanh: in float64, libm's. In float32, a rational approximation (the one Eigen uses for
``ptanh_float``: odd degree-13 numerator over even degree-6 denominator, on |x| ≤ 7.99881) that
LLVM vectorises; libm's scalar ``tanhf`` would be ~50× slower than NumPy's SIMD tanh. Measured
over 2·10⁷ float32 points in [−12, 12] and log-spaced small ones: at most 4.9 ulp (relative
error 2.9e-7) against float64 tanh. σ(x) = ½ + ½ tanh(x/2).

Caching: numba's on-disk cache is keyed by the file of the function it compiles; the step
functions live in cells.py and are inlined into the loops here, so a change to cells.py,
functional.py or _simd.py alone leaves stale loops in ``__pycache__`` (delete it; an installed
package is not affected, as an upgrade rewrites this file too).
"""

from __future__ import annotations

import math

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import _simd, cells
from . import functional as F
from ._barrier import barrier, share
from .cells import GRU_AFTER, GRU_BEFORE, LSTM, RNN
from .functional import ONE, ZERO

name = "numba"

# No "contract": LLVM then fuses a·b + c into an FMA where it likes, and the code numba runs
# right after compiling and the object code it caches for the next process fused differently
# (c_t = f⊙c_{t−1} + i⊙g: fma(f, c, i·g) in one, other choices in the other), so a training
# run resumed in a new process drifted from the uninterrupted one. FMAs that matter are written
# out (_fma), and fuse the same everywhere.
_OPTS = dict(cache=True, nogil=True, error_model="numpy", fastmath={"nsz", "arcp"})

# float32 constants: they keep float32 arithmetic in float32 and are exact in float64.
_CLAMP = np.float32(7.99881172180175781)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_TINY = np.float32(0.0004)


@intrinsic
def _fma(typingctx, a, b, c):
    """a·b + c rounded once (llvm.fma), for float32 or float64 scalars of one type."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        ty = context.get_value_type(a)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3),
                                            f"llvm.fma.f{a.bitwidth}")
        return builder.call(fn, args)
    return a(a, b, c), codegen


def _tanh(x):  # pure-Python stand-in; compiled code uses the overload below
    return math.tanh(x)


@overload(_tanh)
def _tanh_overload(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        def impl(x):
            y = x
            if y > _CLAMP:  # comparisons keep NaN as NaN
                y = _CLAMP
            elif y < -_CLAMP:
                y = -_CLAMP
            x2 = y * y
            p = _fma(_fma(_fma(_fma(_fma(_fma(_A13, x2, _A11), x2, _A9), x2, _A7), x2, _A5),
                          x2, _A3), x2, _A1) * y
            q = _fma(_fma(_fma(_B6, x2, _B4), x2, _B2), x2, _B0)
            r = p / q
            if abs(x) < _TINY:  # tanh(x) = x to float32 precision; avoids 0/0-like noise
                r = x
            return r
        return impl
    return lambda x: math.tanh(x)


# Scalar versions of rnnkit.functional's primitives, so that numba compiles the cells' step
# functions (rnnkit.cells) for one element. Only scalars: NumPy runs the array versions. σ is
# functional.sigmoid itself, compiled (it calls functional.tanh, whose scalar form is above).
def _scalar(fn):
    def register(make):
        overload(fn)(lambda x: make(x) if isinstance(x, types.Float) else None)
        return make
    return register


@_scalar(F.tanh)
def _tanh_scalar(x):
    return lambda x: _tanh(x)


@_scalar(F.sigmoid)
def _sigmoid_scalar(x):
    return F.sigmoid


@_scalar(F.relu)
def _relu_scalar(x):
    return lambda x: x if x > ZERO else ZERO


@_scalar(F.positive)
def _positive_scalar(x):
    if x.bitwidth == 32:
        return lambda x: ONE if x > ZERO else ZERO
    return lambda x: 1.0 if x > 0.0 else 0.0


@_scalar(F.flush)
def _flush_scalar(x):
    if x.bitwidth == 32:
        return lambda x: x if abs(x) >= F.FLUSH32 else ZERO
    return lambda x: x if abs(x) >= F.FLUSH64 else 0.0


def _compile(fn):
    """One of the cells' step functions, compiled for scalars (inlined where it is called)."""
    return njit(inline="always", **_OPTS)(fn)


_rnn_forward = _compile(cells.rnn_forward)
_rnn_backward = _compile(cells.rnn_backward)
_lstm_forward = _compile(cells.lstm_forward)
_lstm_backward = _compile(cells.lstm_backward)
_gru_after_forward = _compile(cells.gru_after_forward)
_gru_after_backward = _compile(cells.gru_after_backward)
_gru_before_forward_gates = _compile(cells.gru_before_forward_gates)
_gru_before_forward_state = _compile(cells.gru_before_forward_state)
_gru_before_backward_state = _compile(cells.gru_before_backward_state)
_gru_before_backward_gates = _compile(cells.gru_before_backward_gates)
_adam_update = _compile(F.adam_update)


# Row functions map a row's gate blocks to the step functions' arguments. They index per-gate
# slices (``a[:H]``, ``a[H:2H]``…) with the loop variable itself: numba then knows the index is
# non-negative and in range, and LLVM vectorises the loop. Indexing ``a[H + j]`` instead keeps a
# negative-index check per access and runs ~5× slower.

# ------------------------------------------------------------------------------- RNN
@njit(**_OPTS)
def _rnn_fwd_row(g, a, hn, relu):
    for j in range(a.shape[0]):
        h = _rnn_forward(a[j] + g[j], relu)
        a[j] = h
        hn[j] = h


@njit(**_OPTS)
def _rnn_bwd_row(a, dh, dout, relu):
    for j in range(a.shape[0]):
        a[j] = _rnn_backward(a[j], dh[j] + dout[j], relu)


@njit(**_OPTS)
def _lstm_fwd_row(g, a, cp, cn, hn, p):
    H = cp.shape[0]
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    gi, gf, gg, go = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
    if p.shape[0] > 0:
        pi, pf, po = p[:H], p[H:2 * H], p[2 * H:]
        for j in range(H):
            ai[j], af[j], ag[j], ao[j], cn[j], hn[j] = _lstm_forward(
                ai[j] + gi[j], af[j] + gf[j], ag[j] + gg[j], ao[j] + go[j], cp[j], pi[j],
                pf[j], po[j], True)
    else:
        for j in range(H):
            ai[j], af[j], ag[j], ao[j], cn[j], hn[j] = _lstm_forward(
                ai[j] + gi[j], af[j] + gf[j], ag[j] + gg[j], ao[j] + go[j], cp[j], ZERO, ZERO,
                ZERO, False)


@njit(**_OPTS)
def _lstm_bwd_row(a, cp, cn, dh, dout, dc, p, dp):
    H = cp.shape[0]
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    if p.shape[0] == 0:
        # Its own loop: with the peephole arrays in it LLVM does not vectorise (5× slower).
        for j in range(H):
            ai[j], af[j], ag[j], ao[j], dc[j], _, _, _ = _lstm_backward(
                ai[j], af[j], ag[j], ao[j], cp[j], cn[j], dh[j] + dout[j], dc[j], ZERO, ZERO,
                ZERO, False)
        return
    pi, pf, po = p[:H], p[H:2 * H], p[2 * H:]
    dpi, dpf, dpo = dp[:H], dp[H:2 * H], dp[2 * H:]
    for j in range(H):
        ai[j], af[j], ag[j], ao[j], dc[j], gi, gf, go = _lstm_backward(
            ai[j], af[j], ag[j], ao[j], cp[j], cn[j], dh[j] + dout[j], dc[j], pi[j], pf[j],
            po[j], True)
        dpi[j] += gi
        dpf[j] += gf
        dpo[j] += go


@njit(**_OPTS)
def _gru_after_fwd_row(g, a, hp, e, hn, b_hn):
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    gr, gz, gn = g[:H], g[H:2 * H], g[2 * H:]
    if b_hn.shape[0] > 0:
        for j in range(H):
            ar[j], az[j], an[j], e[j], hn[j] = _gru_after_forward(
                ar[j], az[j], an[j], gr[j], gz[j], gn[j], hp[j], b_hn[j])
    else:
        for j in range(H):
            ar[j], az[j], an[j], e[j], hn[j] = _gru_after_forward(
                ar[j], az[j], an[j], gr[j], gz[j], gn[j], hp[j], ZERO)


@njit(**_OPTS)
def _gru_after_bwd_row(a, hp, e, dh, dout, dhw):
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    wr, wz, wn = dhw[:H], dhw[H:2 * H], dhw[2 * H:]
    for j in range(H):
        da_r, da_z, da_n, en, dh[j] = _gru_after_backward(ar[j], az[j], an[j], e[j], hp[j],
                                                         dh[j] + dout[j])
        ar[j] = da_r
        az[j] = da_z
        an[j] = da_n
        e[j] = en
        wr[j] = da_r
        wz[j] = da_z
        wn[j] = en


@njit(**_OPTS)
def _gru_before_fwd1_row(g, a, hp, e):
    H = hp.shape[0]
    ar, az = a[:H], a[H:2 * H]
    gr, gz = g[:H], g[H:2 * H]
    for j in range(H):
        ar[j], az[j], e[j] = _gru_before_forward_gates(ar[j], az[j], gr[j], gz[j], hp[j])


@njit(**_OPTS)
def _gru_before_fwd2_row(gn, a, hp, hn):
    H = hp.shape[0]
    az, an = a[H:2 * H], a[2 * H:]
    for j in range(H):
        an[j], hn[j] = _gru_before_forward_state(an[j], gn[j], az[j], hp[j])


@njit(**_OPTS)
def _gru_before_bwd1_row(a, hp, dh, dout):
    H = hp.shape[0]
    az, an = a[H:2 * H], a[2 * H:]
    for j in range(H):
        an[j], az[j], dh[j] = _gru_before_backward_state(az[j], an[j], hp[j], dh[j] + dout[j])


@njit(**_OPTS)
def _gru_before_bwd2_row(a, hp, drh, dh):
    ar = a[:hp.shape[0]]
    for j in range(hp.shape[0]):
        ar[j], dh[j] = _gru_before_backward_gates(ar[j], hp[j], drh[j], dh[j])


# ------------------------------------------------------------------------------- per step
# The rows [:n] alive at one step, for the per-step loop in Python (rnnkit.runner.step_forward
# and step_backward); same signatures as rnnkit.kernels.

@njit(**_OPTS)
def rnn_fwd(g, a, hn, relu, n):
    for r in range(n):
        _rnn_fwd_row(g[r], a[r], hn[r], relu)


@njit(**_OPTS)
def rnn_bwd(a, dh, dout, relu, n):
    for r in range(n):
        _rnn_bwd_row(a[r], dh[r], dout[r], relu)


@njit(**_OPTS)
def lstm_fwd(g, a, cp, cn, hn, p, n):
    for r in range(n):
        _lstm_fwd_row(g[r], a[r], cp[r], cn[r], hn[r], p)


@njit(**_OPTS)
def lstm_bwd(a, cp, cn, dh, dout, dc, p, dp, n):
    for r in range(n):
        _lstm_bwd_row(a[r], cp[r], cn[r], dh[r], dout[r], dc[r], p, dp)


@njit(**_OPTS)
def gru_after_fwd(g, a, hp, e, hn, b_hn, n):
    for r in range(n):
        _gru_after_fwd_row(g[r], a[r], hp[r], e[r], hn[r], b_hn)


@njit(**_OPTS)
def gru_after_bwd(a, hp, e, dh, dout, dhw, n):
    for r in range(n):
        _gru_after_bwd_row(a[r], hp[r], e[r], dh[r], dout[r], dhw[r])


@njit(**_OPTS)
def gru_before_fwd1(g, a, hp, e, n):
    for r in range(n):
        _gru_before_fwd1_row(g[r], a[r], hp[r], e[r])


@njit(**_OPTS)
def gru_before_fwd2(gn, a, hp, hn, n):
    for r in range(n):
        _gru_before_fwd2_row(gn[r], a[r], hp[r], hn[r])


@njit(**_OPTS)
def gru_before_bwd1(a, hp, dh, dout, n):
    for r in range(n):
        _gru_before_bwd1_row(a[r], hp[r], dh[r], dout[r])


@njit(**_OPTS)
def gru_before_bwd2(a, hp, drh, dh, n):
    for r in range(n):
        _gru_before_bwd2_row(a[r], hp[r], drh[r], dh[r])


@njit(**_OPTS)
def adam(p, g, m, v, b1, b2, step_size, root2, eps, tmp):
    """One pass over the flat arrays (:func:`rnnkit.functional.adam_update`; ``tmp`` unused)."""
    for i in range(p.shape[0]):
        p[i], m[i], v[i] = _adam_update(p[i], g[i], m[i], v[i], b1, b2, step_size, root2, eps)


# ------------------------------------------------------------------------------- products
# A time loop's recurrent product c[:m, :cols] = a[:m, :k] @ W (+ c when beta is 1), in one of
# four forms chosen by the type of ``gemm`` when the loop is compiled: MKL's packed GEMM
# (``gemm`` is cblas_?gemm_compute's ctypes routine, ``Wp`` W packed by rnnkit.blas.pack),
# rnnkit's own (``gemm`` an empty int8 array, ``Wp`` W packed by rnnkit._simd.pack), a
# plain cblas_?gemm (NumPy's own BLAS, rnnkit.blas.numpy_gemm; ``W`` (k, cols) contiguous), or,
# with ``gemm=None``, a row-by-row product in the loop itself (``W`` likewise), for batches of a
# few rows, where calling a library per step would cost more than the arithmetic.
# a and c are 2-D views whose rows may lie any whole number of elements apart (batch-major
# arrays: T·G·H).

_RM, _NT, _PK = 101, 111, 151


@njit(**_OPTS)
def _matvec(x, w, out, accumulate):
    """out[j] (+)= Σ_k x[k] w[k, j]: x (K,), w (K, M) row-major, out (M,)."""
    m = out.shape[0]
    if not accumulate:
        for j in range(m):
            out[j] = 0
    for k in range(x.shape[0]):
        xk = x[k]
        for j in range(m):
            out[j] += xk * w[k, j]


def _product(gemm, m, cols, k, a, Wp, W, beta, c, tid, nt):  # compiled: the overload below
    raise NotImplementedError


@overload(_product)
def _product_overload(gemm, m, cols, k, a, Wp, W, beta, c, tid, nt):
    if isinstance(gemm, types.NoneType):
        def rows(gemm, m, cols, k, a, Wp, W, beta, c, tid, nt):
            if tid != 0:  # made whole by the first of a loop's threads
                return
            # Summed in an array of the loop's own: LLVM then knows it overlaps no operand
            # and keeps the inner loop vectorised without alias checks (1.4x at N = 1,
            # Zen 5 EPYC).
            tmp = np.empty(cols, c.dtype)
            for r in range(m):
                _matvec(a[r, :k], W, tmp, False)
                out = c[r, :cols]
                if beta != 0:
                    for j in range(cols):
                        out[j] += tmp[j]
                else:
                    for j in range(cols):
                        out[j] = tmp[j]
        return rows

    if isinstance(gemm, types.Array):  # rnnkit's own GEMM, Wp = rnnkit._simd.pack(W)
        def own(gemm, m, cols, k, a, Wp, W, beta, c, tid, nt):
            _simd.product(m, cols, k, a, Wp, beta, c, tid, nt)  # each thread its panels
        return own

    if len(gemm.sig.args) == 14:  # cblas_?gemm
        def plain(gemm, m, cols, k, a, Wp, W, beta, c, tid, nt):
            if tid != 0:
                return
            it = a.itemsize
            gemm(_RM, _NT, _NT, m, cols, k, ONE, a.ctypes.data, a.strides[0] // it,
                 W.ctypes.data, W.shape[1], beta, c.ctypes.data, c.strides[0] // it)
        return plain

    def packed(gemm, m, cols, k, a, Wp, W, beta, c, tid, nt):
        if tid != 0:
            return
        it = a.itemsize
        gemm(_RM, _NT, _PK, m, cols, k, a.ctypes.data, a.strides[0] // it, Wp.ctypes.data,
             cols, beta, c.ctypes.data, c.strides[0] // it)
    return packed


# ------------------------------------------------------------------------------- one block
# The one dispatch point of the compiled engine: a step of a block of m rows, for any cell
# (``kind``: rnnkit.cells.RNN, LSTM, GRU_AFTER, GRU_BEFORE), on 2-D row views of the layer's
# arrays, whatever their layout. Operands a cell lacks are empty arrays; the weights are
# (W1, W2): W_hhᵀ, or for the reset-before GRU its r,z and n blocks (backward: W_hh's).

@njit(**_OPTS)
def _row_bias(a, b):
    """a += b: the input bias, added step by step while the row is hot."""
    for j in range(a.shape[0]):
        a[j] += b[j]


@njit(inline="always", **_OPTS)
def _fwd_block(kind, relu, gemm, Wp1, Wp2, W1, W2, b, p, b_hn, m, hp, cp, a, e, hn, cn, G, S,
               tid, nt, sync):
    """Forward: a (m, G·H) holds XW_t (without b) and becomes the cache; h_t into hn, c_t
    into cn, the cell's extra into e; G, S scratch; b (G·H,) the input bias (zeros if none).
    Thread tid of nt makes its share of each product's panels and of the rows (a barrier
    between); the caller meets the others before the next step reads h_t."""
    H = hp.shape[1]
    lo, hi = share(m, tid, nt)
    for r in range(lo, hi):
        _row_bias(a[r], b)
    if kind == RNN or kind == LSTM:
        # G, not a: a batch-major a's rows lie T·G·H apart, and a product written there
        # touched a page a row (LSTM (32, 100, 128, 256) training forward on a Zen 5 EPYC:
        # 35 → 58 ms).
        _product(gemm, m, a.shape[1], H, hp, Wp1, W1, ZERO, G, tid, nt)
        barrier(sync, tid, nt)
        for r in range(lo, hi):
            if kind == RNN:
                _rnn_fwd_row(G[r], a[r], hn[r], relu)
            else:
                _lstm_fwd_row(G[r], a[r], cp[r], cn[r], hn[r], p)
        return
    if kind == GRU_BEFORE:
        _product(gemm, m, 2 * H, H, hp, Wp1, W1, ZERO, G, tid, nt)
        barrier(sync, tid, nt)
        for r in range(lo, hi):
            _gru_before_fwd1_row(G[r], a[r], hp[r], e[r])
        barrier(sync, tid, nt)
        _product(gemm, m, H, H, e, Wp2, W2, ZERO, S, tid, nt)
        barrier(sync, tid, nt)
        for r in range(lo, hi):
            _gru_before_fwd2_row(S[r], a[r], hp[r], hn[r])
        return
    _product(gemm, m, a.shape[1], H, hp, Wp1, W1, ZERO, G, tid, nt)
    barrier(sync, tid, nt)
    for r in range(lo, hi):
        _gru_after_fwd_row(G[r], a[r], hp[r], e[r], hn[r], b_hn)


@njit(inline="always", **_OPTS)
def _bwd_block(kind, relu, gemm, Wp1, Wp2, W1, W2, p, dp, m, hp, cp, cn, a, e, dout, dh, dc,
               G, S, tid, nt, sync):
    """Backward: a becomes ∂L/∂XW_t, dh (dc) go from ∂L/∂h_t to ∂L/∂h_{t−1} (c likewise);
    threads as in :func:`_fwd_block` (the peephole LSTM's, which sums dp over rows: one)."""
    H = dh.shape[1]
    GH = a.shape[1]
    lo, hi = share(m, tid, nt)
    if kind == RNN:
        for r in range(lo, hi):
            _rnn_bwd_row(a[r], dh[r], dout[r], relu)
        barrier(sync, tid, nt)
        _product(gemm, m, H, GH, a, Wp1, W1, ZERO, dh, tid, nt)
    elif kind == LSTM:
        for r in range(lo, hi):
            _lstm_bwd_row(a[r], cp[r], cn[r], dh[r], dout[r], dc[r], p, dp)
        barrier(sync, tid, nt)
        _product(gemm, m, H, GH, a, Wp1, W1, ZERO, dh, tid, nt)
    elif kind == GRU_AFTER:
        for r in range(lo, hi):
            _gru_after_bwd_row(a[r], hp[r], e[r], dh[r], dout[r], G[r])
        barrier(sync, tid, nt)
        _product(gemm, m, H, GH, G, Wp1, W1, ONE, dh, tid, nt)
    else:
        for r in range(lo, hi):
            _gru_before_bwd1_row(a[r], hp[r], dh[r], dout[r])
        barrier(sync, tid, nt)
        _product(gemm, m, H, H, a[:, 2 * H:], Wp2, W2, ZERO, S, tid, nt)
        barrier(sync, tid, nt)
        for r in range(lo, hi):
            _gru_before_bwd2_row(a[r], hp[r], S[r], dh[r])
        barrier(sync, tid, nt)
        _product(gemm, m, H, 2 * H, a, Wp1, W1, ONE, dh, tid, nt)


# ------------------------------------------------------------------------------- time loops
# Five loops run every cell. Each covers the batch rows [r0, r1) only: rows are independent
# through time, so threads can each run one block with single-threaded BLAS (rnnkit.blas.
# run_blocks), the element-wise work parallel too. And nt threads (tid = 0 … nt−1, one shared
# ``sync``, rnnkit._barrier) can run one block together: each makes its share of every
# product's column panels (rnnkit's own GEMM; other products are made whole by thread 0) and
# of the rows' element-wise work, meeting at a barrier between the two and at the end of each
# step. Every number is made by the same arithmetic whatever the thread count, so results are
# identical to one thread's; and each core reads only its share of W_hh at every step, where a
# row block reads all of it.
#
# Time-major (packed, any padding): A (P, G·H) packed XW, then the cache; step t's rows at
# A[off[t]:]; Hx, Cx (T+1, N, H) the states, h_0 at slot 0 (T reversed); rows that have ended
# (or not begun) carry their state.
#
# Batch-major (training without padding): A (N, T, G·H) is X Wᵀ of the layer's batch-major
# input, then the cache; Hp (N, T, H) holds in Hp[r, t] the state step t of row r reads (h_0 in
# place at the first step); h_t goes to y[r, t, d] of the output (N, T, dirs, H). A row's steps
# follow each other in A, Hp and E, so the weight gradients are one product each over (N·T, ·)
# views, and x, y, ∂L/∂y and ∂L/∂x are the caller's arrays: no time-major copy of any of them
# goes through memory. Cx (T+1, N, H) stays time-major.
#
# Inference (batch-major, rows sorted by length): each step's input product is made in the loop
# from x (N, T, D); the state lives in two slots (2, N, H), slot s % 2 before iteration s; h_t
# goes to y[r, t, col:col + H]; nothing is kept for backward.

@njit(**_OPTS)
def _slots(t, reverse):
    return (t + 1, t) if reverse else (t, t + 1)


@njit(**_OPTS)
def _carry(Hx, Cx, has_c, src, dst, lo, hi, tid, nt):
    """Rows [lo, hi) have ended (or not begun): they keep their state (thread tid's share)."""
    first, last = share(max(hi - lo, 0), tid, nt)
    for r in range(lo + first, lo + last):
        Hx[dst, r] = Hx[src, r]
        if has_c:
            Cx[dst, r] = Cx[src, r]


@njit(**_OPTS)
def _alive(t, steps, r0, r1):
    """Rows of the block [r0, r1) alive at step t, and rows alive in the batch."""
    n = steps[t]
    return max(min(n, r1) - r0, 0), n


@njit(**_OPTS)
def tm_forward(kind, relu, gemm, Wp1, Wp2, W1, W2, b, p, b_hn, A, E, Hx, Cx, G, S, steps, off,
               reverse, r0, r1, tid, nt, sync):
    T = steps.shape[0]
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = _slots(t, reverse)
        m, n = _alive(t, steps, r0, r1)
        if m:
            k = off[t] + r0
            _fwd_block(kind, relu, gemm, Wp1, Wp2, W1, W2, b, p, b_hn, m, Hx[src, r0:],
                       Cx[src, r0:], A[k:], E[k:], Hx[dst, r0:], Cx[dst, r0:], G[r0:], S[r0:],
                       tid, nt, sync)
        _carry(Hx, Cx, kind == LSTM, src, dst, max(n, r0), r1, tid, nt)
        barrier(sync, tid, nt)


@njit(**_OPTS)
def tm_backward(kind, relu, gemm, Wp1, Wp2, W1, W2, p, dp, A, E, Hx, Cx, G, S, steps, off,
                reverse, dout, dh, dc, r0, r1, tid, nt, sync):
    T = steps.shape[0]
    for s in range(T):
        t = s if reverse else T - 1 - s
        src, dst = _slots(t, reverse)
        m, _ = _alive(t, steps, r0, r1)
        if m:
            k = off[t] + r0
            _bwd_block(kind, relu, gemm, Wp1, Wp2, W1, W2, p, dp, m, Hx[src, r0:],
                       Cx[src, r0:], Cx[dst, r0:], A[k:], E[k:], dout[k:], dh[r0:], dc[r0:],
                       G[r0:], S[r0:], tid, nt, sync)
            barrier(sync, tid, nt)


@njit(**_OPTS)
def bm_forward(kind, relu, gemm, Wp1, Wp2, W1, W2, b, p, b_hn, A, E, Hp, Cx, Y, d, G, S,
               reverse, r0, r1, tid, nt, sync):
    T = A.shape[1]
    lo, hi = share(r1 - r0, tid, nt)
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = _slots(t, reverse)
        _fwd_block(kind, relu, gemm, Wp1, Wp2, W1, W2, b, p, b_hn, r1 - r0, Hp[r0:r1, t],
                   Cx[src, r0:], A[r0:r1, t], E[r0:r1, t], Y[r0:r1, t, d], Cx[dst, r0:],
                   G[r0:], S[r0:], tid, nt, sync)
        nxt = t - 1 if reverse else t + 1
        if 0 <= nxt < T:
            for r in range(r0 + lo, r0 + hi):
                Hp[r, nxt] = Y[r, t, d]
        barrier(sync, tid, nt)


@njit(**_OPTS)
def bm_backward(kind, relu, gemm, Wp1, Wp2, W1, W2, p, dp, A, E, Hp, Cx, dY, d, dh, dc, G, S,
                reverse, r0, r1, tid, nt, sync):
    T = A.shape[1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        src, dst = _slots(t, reverse)
        _bwd_block(kind, relu, gemm, Wp1, Wp2, W1, W2, p, dp, r1 - r0, Hp[r0:r1, t],
                   Cx[src, r0:], Cx[dst, r0:], A[r0:r1, t], E[r0:r1, t], dY[r0:r1, t, d],
                   dh[r0:r1], dc[r0:r1], G[r0:], S[r0:], tid, nt, sync)
        barrier(sync, tid, nt)


@njit(**_OPTS)
def bm_infer(kind, relu, gemm, Wxp, Wx, Wp1, Wp2, W1, W2, b, p, b_hn, X, Hx, Cx, Gx, E, Y, col,
             G, S, steps, reverse, r0, r1, tid, nt, sync):
    T, D, H = X.shape[1], X.shape[2], Hx.shape[2]
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = s % 2, 1 - s % 2
        m, n = _alive(t, steps, r0, r1)
        if m:
            _product(gemm, m, Gx.shape[1], D, X[r0:r0 + m, t], Wxp, Wx, ZERO, Gx[r0:], tid,
                     nt)
            barrier(sync, tid, nt)
            _fwd_block(kind, relu, gemm, Wp1, Wp2, W1, W2, b, p, b_hn, m, Hx[src, r0:],
                       Cx[src, r0:], Gx[r0:], E[r0:], Hx[dst, r0:], Cx[dst, r0:], G[r0:],
                       S[r0:], tid, nt, sync)
            lo, hi = share(m, tid, nt)
            for r in range(r0 + lo, r0 + hi):
                Y[r, t, col:col + H] = Hx[dst, r]
        _carry(Hx, Cx, kind == LSTM, src, dst, max(n, r0), r1, tid, nt)
        barrier(sync, tid, nt)
