"""The fused element-wise kernels of the cells, numba edition.

Same functions, signatures and maths as :mod:`rnnkit.kernels` (read the conventions there and the
equations in :mod:`rnnkit.cells`); here each step's element-wise work is one compiled loop over the
rows alive at the step, with no temporaries. Besides the per-step kernels, ``*_seq_fwd`` /
``*_seq_bwd`` run a direction's *whole* time loop, recurrent products included, for batches so
small (N ≤ a few rows) that calling BLAS and a kernel from Python at every step would cost more
than the arithmetic.

Compilation: ``cache=True`` (compiled once per machine and dtype, then loaded from disk),
single-threaded (BLAS keeps the threads; numba's ``parallel=True`` beside threaded OpenBLAS was
measured 5–70× slower), ``error_model="numpy"`` and the fast-math flags that allow contraction
(FMA) and reciprocal/sign-of-zero shortcuts — but not ``nnan``/``ninf``, so a NaN still
propagates and training can notice it.

tanh: in float64, libm's. In float32, a rational approximation (the one Eigen uses for
``ptanh_float``: odd degree-13 numerator over even degree-6 denominator, on |x| ≤ 7.99881) that
LLVM vectorises; libm's scalar ``tanhf`` would be ~50× slower than NumPy's SIMD tanh. Measured
over 2·10⁷ float32 points in [−12, 12] and log-spaced small ones: at most 4.9 ulp (relative
error 2.9e-7) against float64 tanh. σ(x) = ½ + ½ tanh(x/2).

Denormals: backward flushes gradient values below 1e-30 (float32) / 1e-300 (float64) to zero, as
:mod:`rnnkit.kernels` does. Over long sequences vanishing gradients otherwise sink into denormal
numbers, which cost x86 CPUs ~100 cycles an operation (measured: an LSTM's backward at T = 200
with the loss on the last step ran 6× slower); values that small carry no information.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

name = "numba"
has_sequence_kernels = True

_OPTS = dict(cache=True, nogil=True, error_model="numpy",
             fastmath={"nsz", "arcp", "contract"})

# float32 constants: they keep float32 arithmetic in float32 and are exact in float64.
ONE = np.float32(1.0)
HALF = np.float32(0.5)
ZERO = np.float32(0.0)
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
_FLUSH32 = np.float32(1e-30)
_FLUSH64 = 1e-300


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
            p = ((((((_A13 * x2 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2
                 + _A1) * y
            q = ((_B6 * x2 + _B4) * x2 + _B2) * x2 + _B0
            r = p / q
            if abs(x) < _TINY:  # tanh(x) = x to float32 precision; avoids 0/0-like noise
                r = x
            return r
        return impl
    return lambda x: math.tanh(x)


def _flush(x):  # pure-Python stand-in; compiled code uses the overload below
    return x


@overload(_flush)
def _flush_overload(x):
    """Gradients below 1e-30 (float32) or 1e-300 (float64) become 0: see the module docstring."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: x if abs(x) >= _FLUSH32 else ZERO
    return lambda x: x if abs(x) >= _FLUSH64 else 0.0


@njit(**_OPTS)
def _sigmoid(x):
    return HALF + HALF * _tanh(HALF * x)


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


def _slots(t, reverse):
    return (t + 1, t) if reverse else (t, t + 1)


_slots = njit(**_OPTS)(_slots)


# Row functions index per-gate slices (``a[:H]``, ``a[H:2H]``…) with the loop variable itself:
# numba then knows the index is non-negative and in range, and LLVM vectorises the loop. Indexing
# ``a[H + j]`` instead keeps a negative-index check per access and runs ~5× slower.

# ------------------------------------------------------------------------------- RNN
@njit(**_OPTS)
def _rnn_fwd_row(g, a, hn, relu):
    for j in range(a.shape[0]):
        s = a[j] + g[j]
        h = (s if s > ZERO else ZERO) if relu else _tanh(s)
        a[j] = h
        hn[j] = h


@njit(**_OPTS)
def _rnn_bwd_row(a, dh, dout, relu):
    for j in range(a.shape[0]):
        h = a[j]
        d = dh[j] + dout[j]
        if relu:
            a[j] = _flush(d) if h > ZERO else ZERO
        else:
            a[j] = _flush(d * (ONE - h * h))


@njit(**_OPTS)
def rnn_fwd(g, a, hn, relu, n):
    for r in range(n):
        _rnn_fwd_row(g[r], a[r], hn[r], relu)


@njit(**_OPTS)
def rnn_bwd(a, dh, dout, relu, n):
    for r in range(n):
        _rnn_bwd_row(a[r], dh[r], dout[r], relu)


@njit(**_OPTS)
def rnn_seq_fwd(A, Hx, w_hhT, relu, steps, off, reverse):
    T, N = steps.shape[0], Hx.shape[1]
    GH = A.shape[1]
    g = np.empty(GH, A.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = _slots(t, reverse)
        n = steps[t]
        for r in range(n):
            _matvec(Hx[src, r], w_hhT, g, False)
            _rnn_fwd_row(g, A[off[t] + r], Hx[dst, r], relu)
        for r in range(n, N):
            Hx[dst, r] = Hx[src, r]


@njit(**_OPTS)
def rnn_seq_bwd(A, w_hh, relu, steps, off, reverse, dout, dh):
    T = steps.shape[0]
    for s in range(T):
        t = s if reverse else T - 1 - s
        for r in range(steps[t]):
            _rnn_bwd_row(A[off[t] + r], dh[r], dout[off[t] + r], relu)
            _matvec(A[off[t] + r], w_hh, dh[r], False)


# ------------------------------------------------------------------------------- LSTM
@njit(**_OPTS)
def _lstm_fwd_row(g, a, cp, cn, hn, p):
    H = cp.shape[0]
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    gi, gf, gg, go = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
    if p.shape[0] > 0:
        pi, pf, po = p[:H], p[H:2 * H], p[2 * H:]
        for j in range(H):
            c0 = cp[j]
            i = _sigmoid(ai[j] + gi[j] + pi[j] * c0)
            f = _sigmoid(af[j] + gf[j] + pf[j] * c0)
            u = _tanh(ag[j] + gg[j])
            c = f * c0 + i * u
            o = _sigmoid(ao[j] + go[j] + po[j] * c)
            ai[j] = i
            af[j] = f
            ag[j] = u
            ao[j] = o
            cn[j] = c
            hn[j] = o * _tanh(c)
    else:
        for j in range(H):
            i = _sigmoid(ai[j] + gi[j])
            f = _sigmoid(af[j] + gf[j])
            u = _tanh(ag[j] + gg[j])
            o = _sigmoid(ao[j] + go[j])
            c = f * cp[j] + i * u
            ai[j] = i
            af[j] = f
            ag[j] = u
            ao[j] = o
            cn[j] = c
            hn[j] = o * _tanh(c)


@njit(**_OPTS)
def _lstm_fused_row(g, b, cp, cn, hn):
    """:func:`_lstm_fwd_row` without peepholes for inference: g holds both products,
    x_t Wᵀ + h_{t−1} Uᵀ, the input bias b is added here, and nothing is kept for backward."""
    H = cp.shape[0]
    gi, gf, gg, go = g[:H], g[H:2 * H], g[2 * H:3 * H], g[3 * H:]
    bi, bf, bg, bo = b[:H], b[H:2 * H], b[2 * H:3 * H], b[3 * H:]
    for j in range(H):
        i = _sigmoid(gi[j] + bi[j])
        f = _sigmoid(gf[j] + bf[j])
        u = _tanh(gg[j] + bg[j])
        o = _sigmoid(go[j] + bo[j])
        c = f * cp[j] + i * u
        cn[j] = c
        hn[j] = o * _tanh(c)


@njit(**_OPTS)
def _lstm_bwd_row(a, cp, cn, dh, dout, dc, p, dp):
    H = cp.shape[0]
    ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
    if p.shape[0] == 0:
        # Its own loop: with the peephole arrays in it LLVM does not vectorise (5× slower).
        for j in range(H):
            i = ai[j]
            f = af[j]
            u = ag[j]
            o = ao[j]
            tc = _tanh(cn[j])
            dht = dh[j] + dout[j]
            da_o = dht * tc * o * (ONE - o)
            dct = dc[j] + dht * o * (ONE - tc * tc)
            ai[j] = _flush(dct * u * i * (ONE - i))
            af[j] = _flush(dct * cp[j] * f * (ONE - f))
            ag[j] = _flush(dct * i * (ONE - u * u))
            ao[j] = _flush(da_o)
            dc[j] = _flush(dct * f)
        return
    pi, pf, po = p[:H], p[H:2 * H], p[2 * H:]
    dpi, dpf, dpo = dp[:H], dp[H:2 * H], dp[2 * H:]
    for j in range(H):
        i = ai[j]
        f = af[j]
        u = ag[j]
        o = ao[j]
        c0 = cp[j]
        c = cn[j]
        tc = _tanh(c)
        dht = dh[j] + dout[j]
        da_o = dht * tc * o * (ONE - o)
        dct = dc[j] + dht * o * (ONE - tc * tc) + da_o * po[j]
        da_i = dct * u * i * (ONE - i)
        da_f = dct * c0 * f * (ONE - f)
        dpi[j] += da_i * c0
        dpf[j] += da_f * c0
        dpo[j] += da_o * c
        ai[j] = _flush(da_i)
        af[j] = _flush(da_f)
        ag[j] = _flush(dct * i * (ONE - u * u))
        ao[j] = _flush(da_o)
        dc[j] = _flush(dct * f + da_i * pi[j] + da_f * pf[j])


@njit(**_OPTS)
def lstm_fwd(g, a, cp, cn, hn, p, n):
    for r in range(n):
        _lstm_fwd_row(g[r], a[r], cp[r], cn[r], hn[r], p)


@njit(**_OPTS)
def lstm_bwd(a, cp, cn, dh, dout, dc, p, dp, n):
    for r in range(n):
        _lstm_bwd_row(a[r], cp[r], cn[r], dh[r], dout[r], dc[r], p, dp)


@njit(**_OPTS)
def lstm_seq_fwd(A, Hx, Cx, w_hhT, p, steps, off, reverse):
    T, N = steps.shape[0], Hx.shape[1]
    GH = A.shape[1]
    g = np.empty(GH, A.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = _slots(t, reverse)
        n = steps[t]
        for r in range(n):
            _matvec(Hx[src, r], w_hhT, g, False)
            _lstm_fwd_row(g, A[off[t] + r], Cx[src, r], Cx[dst, r], Hx[dst, r], p)
        for r in range(n, N):
            Hx[dst, r] = Hx[src, r]
            Cx[dst, r] = Cx[src, r]


@njit(**_OPTS)
def lstm_seq_bwd(A, Cx, w_hh, p, dp, steps, off, reverse, dout, dh, dc):
    T = steps.shape[0]
    for s in range(T):
        t = s if reverse else T - 1 - s
        src, dst = _slots(t, reverse)
        for r in range(steps[t]):
            k = off[t] + r
            _lstm_bwd_row(A[k], Cx[src, r], Cx[dst, r], dh[r], dout[k], dc[r], p, dp)
            _matvec(A[off[t] + r], w_hh, dh[r], False)


# ------------------------------------------------------------------------------- GRU
@njit(**_OPTS)
def _gru_after_fwd_row(g, a, hp, e, hn, b_hn):
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    gr, gz, gn = g[:H], g[H:2 * H], g[2 * H:]
    has_b = b_hn.shape[0] > 0
    for j in range(H):
        r = _sigmoid(ar[j] + gr[j])
        z = _sigmoid(az[j] + gz[j])
        ghn = gn[j] + b_hn[j] if has_b else gn[j]
        nn = _tanh(an[j] + r * ghn)
        ar[j] = r
        az[j] = z
        an[j] = nn
        e[j] = ghn
        hn[j] = nn + z * (hp[j] - nn)


@njit(**_OPTS)
def _gru_after_bwd_row(a, hp, e, dh, dout, dhw):
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    wr, wz, wn = dhw[:H], dhw[H:2 * H], dhw[2 * H:]
    for j in range(H):
        r = ar[j]
        z = az[j]
        nn = an[j]
        dht = dh[j] + dout[j]
        da_n = _flush(dht * (ONE - z) * (ONE - nn * nn))
        da_z = _flush(dht * (hp[j] - nn) * z * (ONE - z))
        da_r = _flush(da_n * e[j] * r * (ONE - r))
        ar[j] = da_r
        az[j] = da_z
        an[j] = da_n
        e[j] = da_n * r
        wr[j] = da_r
        wz[j] = da_z
        wn[j] = da_n * r
        dh[j] = _flush(dht * z)


@njit(**_OPTS)
def gru_after_fwd(g, a, hp, e, hn, b_hn, n):
    for r in range(n):
        _gru_after_fwd_row(g[r], a[r], hp[r], e[r], hn[r], b_hn)


@njit(**_OPTS)
def gru_after_bwd(a, hp, e, dh, dout, dhw, n):
    for r in range(n):
        _gru_after_bwd_row(a[r], hp[r], e[r], dh[r], dout[r], dhw[r])


@njit(**_OPTS)
def gru_after_seq_fwd(A, Hx, E, w_hhT, b_hn, steps, off, reverse):
    T, N = steps.shape[0], Hx.shape[1]
    GH = A.shape[1]
    g = np.empty(GH, A.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = _slots(t, reverse)
        n = steps[t]
        for r in range(n):
            _matvec(Hx[src, r], w_hhT, g, False)
            _gru_after_fwd_row(g, A[off[t] + r], Hx[src, r], E[off[t] + r], Hx[dst, r], b_hn)
        for r in range(n, N):
            Hx[dst, r] = Hx[src, r]


@njit(**_OPTS)
def gru_after_seq_bwd(A, Hx, E, w_hh, steps, off, reverse, dout, dh):
    T, GH = steps.shape[0], A.shape[1]
    dhw = np.empty(GH, A.dtype)
    for s in range(T):
        t = s if reverse else T - 1 - s
        src, dst = _slots(t, reverse)
        for r in range(steps[t]):
            k = off[t] + r
            _gru_after_bwd_row(A[k], Hx[src, r], E[k], dh[r], dout[k], dhw)
            _matvec(dhw, w_hh, dh[r], True)


@njit(**_OPTS)
def _gru_before_fwd1_row(g, a, hp, e):
    H = hp.shape[0]
    ar, az = a[:H], a[H:2 * H]
    gr, gz = g[:H], g[H:2 * H]
    for j in range(H):
        r = _sigmoid(ar[j] + gr[j])
        ar[j] = r
        az[j] = _sigmoid(az[j] + gz[j])
        e[j] = r * hp[j]


@njit(**_OPTS)
def _gru_before_fwd2_row(gn, a, hp, hn):
    H = hp.shape[0]
    az, an = a[H:2 * H], a[2 * H:]
    for j in range(H):
        nn = _tanh(an[j] + gn[j])
        an[j] = nn
        hn[j] = nn + az[j] * (hp[j] - nn)


@njit(**_OPTS)
def _gru_before_bwd1_row(a, hp, dh, dout):
    H = hp.shape[0]
    az, an = a[H:2 * H], a[2 * H:]
    for j in range(H):
        z = az[j]
        nn = an[j]
        dht = dh[j] + dout[j]
        an[j] = _flush(dht * (ONE - z) * (ONE - nn * nn))
        az[j] = _flush(dht * (hp[j] - nn) * z * (ONE - z))
        dh[j] = _flush(dht * z)


@njit(**_OPTS)
def _gru_before_bwd2_row(a, hp, drh, dh):
    H = hp.shape[0]
    ar = a[:H]
    for j in range(H):
        r = ar[j]
        ar[j] = _flush(drh[j] * hp[j] * r * (ONE - r))
        dh[j] = _flush(dh[j] + drh[j] * r)


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
def gru_before_seq_fwd(A, Hx, E, w_rz, w_n, steps, off, reverse):
    """w_rz = W_hh[:2H]ᵀ (H, 2H) and w_n = W_hh[2H:]ᵀ (H, H), each contiguous: column blocks
    of W_hhᵀ would have a row stride unknown to the compiler, which then does not vectorise
    (measured 1.7× slower)."""
    T, N = steps.shape[0], Hx.shape[1]
    GH = A.shape[1]
    H = GH // 3
    g = np.empty(2 * H, A.dtype)
    gn = np.empty(H, A.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        src, dst = _slots(t, reverse)
        n = steps[t]
        for r in range(n):
            _matvec(Hx[src, r], w_rz, g, False)
            _gru_before_fwd1_row(g, A[off[t] + r], Hx[src, r], E[off[t] + r])
            _matvec(E[off[t] + r], w_n, gn, False)
            _gru_before_fwd2_row(gn, A[off[t] + r], Hx[src, r], Hx[dst, r])
        for r in range(n, N):
            Hx[dst, r] = Hx[src, r]


@njit(**_OPTS)
def gru_before_seq_bwd(A, Hx, w_hh, steps, off, reverse, dout, dh):
    T, GH = steps.shape[0], A.shape[1]
    H = GH // 3
    drh = np.empty(H, A.dtype)
    w_rz = w_hh[: 2 * H]
    w_n = w_hh[2 * H:]
    for s in range(T):
        t = s if reverse else T - 1 - s
        src, dst = _slots(t, reverse)
        for r in range(steps[t]):
            a = A[off[t] + r]
            _gru_before_bwd1_row(a, Hx[src, r], dh[r], dout[off[t] + r])
            _matvec(a[2 * H:], w_n, drh, False)
            _gru_before_bwd2_row(a, Hx[src, r], drh, dh[r])
            _matvec(a[: 2 * H], w_rz, dh[r], True)


# ------------------------------------------------------------------------------- Adam
@njit(**_OPTS)
def adam(p, g, m, v, b1, b2, step_size, root2, eps, tmp):
    """One pass over the flat arrays instead of NumPy's eleven (``tmp`` is unused here)."""
    c1, c2 = 1 - b1, 1 - b2
    for i in range(p.shape[0]):
        gi = g[i]
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * (mi / (math.sqrt(vi) / root2 + eps))


# ------------------------------------------------------------------------------- BLAS time loops
# A direction's whole time loop for batches of any size when MKL is in use (rnnkit.blas): each
# step's recurrent product is MKL's packed GEMM, called from here through its ctypes pointer
# ``gemm`` (cblas_?gemm_compute), then the same fused row kernels as above. ``Wp`` are packed
# right operands (rnnkit.blas.pack); ``G`` (N, G·H) and ``S`` (N, H) are scratch. Rows [:n] of
# every operand are contiguous, and the rows of a step's packed block start at A[off[t]].
# A kernel runs the batch rows [r0, r1) only: rows are independent through time, so threads
# can each run one block with single-threaded MKL, and the element-wise work is parallel too.

_RM, _NT, _PK = 101, 111, 151


@njit(**_OPTS)
def _row_bias(a, b):
    """a += b (b may be empty): the input bias, added step by step while the row is hot."""
    if b.shape[0] > 0:
        for j in range(a.shape[0]):
            a[j] += b[j]


@njit(**_OPTS)
def _add_bias(A, k, n, b):
    """A[k:k+n] += b, row by row (:func:`_row_bias`)."""
    for r in range(k, k + n):
        _row_bias(A[r], b)


@njit(**_OPTS)
def _gemm(gemm, n, cols, k, a, lda, wp, beta, c, ldc):
    """c[:n, :cols] = a[:n, :k] @ W (+ beta·c) with W packed in wp; a, c given by address."""
    gemm(_RM, _NT, _PK, n, cols, k, a, lda, wp.ctypes.data, cols, beta, c, ldc)


@njit(**_OPTS)
def _carry(Hx, Cx, src, dst, lo, hi):
    """Rows [lo, hi) have ended (or not begun): they keep their state."""
    for r in range(lo, hi):
        Hx[dst, r] = Hx[src, r]
        if Cx.shape[0] > 0:
            Cx[dst, r] = Cx[src, r]


@njit(**_OPTS)
def _fwd_step(s, steps, off, reverse, r0, r1):
    """Iteration s of a forward time loop over rows [r0, r1) → (src slot, dst slot, rows of the
    block alive, packed row of the block's first row, rows alive in the batch)."""
    t = steps.shape[0] - 1 - s if reverse else s
    src, dst = _slots(t, reverse)
    n = steps[t]
    return src, dst, max(min(n, r1) - r0, 0), off[t] + r0, n


@njit(**_OPTS)
def _bwd_step(s, steps, off, reverse, r0, r1):
    """Iteration s of a backward time loop (steps in the opposite order to forward)."""
    t = s if reverse else steps.shape[0] - 1 - s
    src, dst = _slots(t, reverse)
    n = steps[t]
    return src, dst, max(min(n, r1) - r0, 0), off[t] + r0, n


@njit(**_OPTS)
def rnn_blas_fwd(gemm, Wp, A, b, Hx, G, relu, steps, off, reverse, r0, r1):
    H = Hx.shape[2]
    for s in range(steps.shape[0]):
        src, dst, m, k, n = _fwd_step(s, steps, off, reverse, r0, r1)
        if m:
            _add_bias(A, k, m, b)
            _gemm(gemm, m, H, H, Hx[src, r0:].ctypes.data, H, Wp, ZERO, G[r0:].ctypes.data, H)
            rnn_fwd(G[r0:], A[k:], Hx[dst, r0:], relu, m)
        _carry(Hx, Hx[:0], src, dst, max(n, r0), r1)


@njit(**_OPTS)
def _infer_step(gemm, Wxp, X, Gx, b, s, steps, reverse, r0, r1):
    """Iteration s of a batch-major inference loop (see :func:`lstm_blas_infer`): makes the
    input product x_t Wᵀ + b of the block's rows in Gx (b may be empty). → (t, src slot, dst
    slot, rows of the block alive, rows alive)."""
    T, D = X.shape[1], X.shape[2]
    t = T - 1 - s if reverse else s
    src, dst = s % 2, 1 - s % 2
    n = steps[t]
    m = max(min(n, r1) - r0, 0)
    if m:
        cols = Gx.shape[1]
        _gemm(gemm, m, cols, D, X[r0, t].ctypes.data, T * D, Wxp, ZERO, Gx[r0:].ctypes.data,
              cols)
        _add_bias(Gx, r0, m, b)
    return t, src, dst, m, n


@njit(**_OPTS)
def rnn_blas_infer(gemm, Wxp, Whp, X, b, Hx, Gx, G, Y, col, relu, steps, reverse, r0, r1):
    """:func:`lstm_blas_infer` for the RNN: h_t = f((x_t Wᵀ + b) + h Uᵀ), summed in the order
    of training's forward pass (so the numbers are the same)."""
    T, H = X.shape[1], Hx.shape[2]
    for s in range(T):
        t, src, dst, m, n = _infer_step(gemm, Wxp, X, Gx, b, s, steps, reverse, r0, r1)
        if m:
            _gemm(gemm, m, H, H, Hx[src, r0:].ctypes.data, H, Whp, ZERO, G[r0:].ctypes.data, H)
            for r in range(r0, r0 + m):
                h = Hx[dst, r]
                _rnn_fwd_row(G[r], Gx[r], h, relu)
                Y[r, t, col:col + H] = h
        _carry(Hx, Hx[:0], src, dst, max(n, r0), r1)


@njit(**_OPTS)
def rnn_blas_bwd(gemm, Wp, A, relu, steps, off, reverse, dout, dh, r0, r1):
    H = dh.shape[1]
    for s in range(steps.shape[0]):
        _, _, m, k, _ = _bwd_step(s, steps, off, reverse, r0, r1)
        if m:
            rnn_bwd(A[k:], dh[r0:], dout[k:], relu, m)
            _gemm(gemm, m, H, H, A[k:].ctypes.data, H, Wp, ZERO, dh[r0:].ctypes.data, H)


@njit(**_OPTS)
def lstm_blas_fwd(gemm, Wp, A, b, Hx, Cx, G, p, steps, off, reverse, r0, r1):
    H = Hx.shape[2]
    for s in range(steps.shape[0]):
        src, dst, m, k, n = _fwd_step(s, steps, off, reverse, r0, r1)
        if m:
            _gemm(gemm, m, 4 * H, H, Hx[src, r0:].ctypes.data, H, Wp, ZERO, G[r0:].ctypes.data,
                  4 * H)
            _add_bias(A, k, m, b)
            lstm_fwd(G[r0:], A[k:], Cx[src, r0:], Cx[dst, r0:], Hx[dst, r0:], p, m)
        _carry(Hx, Cx, src, dst, max(n, r0), r1)


@njit(**_OPTS)
def lstm_blas_infer(gemm, Wxp, Whp, X, b, Hx, Cx, G, Y, col, steps, reverse, r0, r1):
    """Inference on batch-major arrays, the input projection inside the loop: per step
    G = x_t Wᵀ + h Uᵀ, two packed products into the same rows, the first reading x_t straight
    from X (N, T, D) (rows T·D apart); h_t goes to Y[r, t, col:col + H] of the output
    (N, T, ·). No (P, 4H) projection and no time-major copy of x or of the output go through
    memory. Hx, Cx (2, N, H) hold the state: slot s % 2 before iteration s, the other after.
    Summing x Wᵀ + h Uᵀ first and b last, in the row, measured 2–4% faster than training's
    order (b added to x Wᵀ), so LSTM inference rounds differently from its training forward
    (the other cells keep the order; see the tests)."""
    T, H = X.shape[1], Hx.shape[2]
    for s in range(T):
        t, src, dst, m, n = _infer_step(gemm, Wxp, X, G, b[:0], s, steps, reverse, r0, r1)
        if m:
            _gemm(gemm, m, 4 * H, H, Hx[src, r0:].ctypes.data, H, Whp, ONE, G[r0:].ctypes.data,
                  4 * H)
            for r in range(r0, r0 + m):
                h = Hx[dst, r]
                _lstm_fused_row(G[r], b, Cx[src, r], Cx[dst, r], h)
                Y[r, t, col:col + H] = h
        _carry(Hx, Cx, src, dst, max(n, r0), r1)


@njit(**_OPTS)
def lstm_blas_bwd(gemm, Wp, A, Cx, p, dp, steps, off, reverse, dout, dh, dc, r0, r1):
    H = dh.shape[1]
    for s in range(steps.shape[0]):
        src, dst, m, k, _ = _bwd_step(s, steps, off, reverse, r0, r1)
        if m:
            lstm_bwd(A[k:], Cx[src, r0:], Cx[dst, r0:], dh[r0:], dout[k:], dc[r0:], p, dp, m)
            _gemm(gemm, m, H, 4 * H, A[k:].ctypes.data, 4 * H, Wp, ZERO, dh[r0:].ctypes.data,
                  H)


@njit(**_OPTS)
def gru_after_blas_fwd(gemm, Wp, A, b, Hx, E, G, b_hn, steps, off, reverse, r0, r1):
    H = Hx.shape[2]
    for s in range(steps.shape[0]):
        src, dst, m, k, n = _fwd_step(s, steps, off, reverse, r0, r1)
        if m:
            _add_bias(A, k, m, b)
            _gemm(gemm, m, 3 * H, H, Hx[src, r0:].ctypes.data, H, Wp, ZERO, G[r0:].ctypes.data,
                  3 * H)
            gru_after_fwd(G[r0:], A[k:], Hx[src, r0:], E[k:], Hx[dst, r0:], b_hn, m)
        _carry(Hx, Hx[:0], src, dst, max(n, r0), r1)


@njit(**_OPTS)
def gru_after_blas_bwd(gemm, Wp, A, Hx, E, G, steps, off, reverse, dout, dh, r0, r1):
    H = dh.shape[1]
    for s in range(steps.shape[0]):
        src, dst, m, k, _ = _bwd_step(s, steps, off, reverse, r0, r1)
        if m:
            gru_after_bwd(A[k:], Hx[src, r0:], E[k:], dh[r0:], dout[k:], G[r0:], m)
            _gemm(gemm, m, H, 3 * H, G[r0:].ctypes.data, 3 * H, Wp, ONE, dh[r0:].ctypes.data,
                  H)


@njit(**_OPTS)
def gru_before_blas_fwd(gemm, Wp_rz, Wp_n, A, b, Hx, E, G, S, steps, off, reverse, r0, r1):
    H = Hx.shape[2]
    for s in range(steps.shape[0]):
        src, dst, m, k, n = _fwd_step(s, steps, off, reverse, r0, r1)
        if m:
            _add_bias(A, k, m, b)
            _gemm(gemm, m, 2 * H, H, Hx[src, r0:].ctypes.data, H, Wp_rz, ZERO,
                  G[r0:].ctypes.data, 3 * H)
            gru_before_fwd1(G[r0:], A[k:], Hx[src, r0:], E[k:], m)
            _gemm(gemm, m, H, H, E[k:].ctypes.data, H, Wp_n, ZERO, S[r0:].ctypes.data, H)
            gru_before_fwd2(S[r0:], A[k:], Hx[src, r0:], Hx[dst, r0:], m)
        _carry(Hx, Hx[:0], src, dst, max(n, r0), r1)


@njit(**_OPTS)
def gru_before_blas_bwd(gemm, Wp_rz, Wp_n, A, Hx, S, steps, off, reverse, dout, dh, r0, r1):
    H = dh.shape[1]
    for s in range(steps.shape[0]):
        src, dst, m, k, _ = _bwd_step(s, steps, off, reverse, r0, r1)
        if m:
            gru_before_bwd1(A[k:], Hx[src, r0:], dh[r0:], dout[k:], m)
            _gemm(gemm, m, H, H, A[k:, 2 * H:].ctypes.data, 3 * H, Wp_n, ZERO,
                  S[r0:].ctypes.data, H)
            gru_before_bwd2(A[k:], Hx[src, r0:], S[r0:], dh[r0:], m)
            _gemm(gemm, m, H, 2 * H, A[k:].ctypes.data, 3 * H, Wp_rz, ONE,
                  dh[r0:].ctypes.data, H)


@njit(**_OPTS)
def gru_after_blas_infer(gemm, Wxp, Whp, X, b, Hx, Gx, G, E, Y, col, b_hn, steps, reverse,
                         r0, r1):
    """:func:`lstm_blas_infer` for the GRU with the reset gate after the product; E (N, H)
    is scratch."""
    T, H = X.shape[1], Hx.shape[2]
    for s in range(T):
        t, src, dst, m, n = _infer_step(gemm, Wxp, X, Gx, b, s, steps, reverse, r0, r1)
        if m:
            _gemm(gemm, m, 3 * H, H, Hx[src, r0:].ctypes.data, H, Whp, ZERO,
                  G[r0:].ctypes.data, 3 * H)
            for r in range(r0, r0 + m):
                h = Hx[dst, r]
                _gru_after_fwd_row(G[r], Gx[r], Hx[src, r], E[r], h, b_hn)
                Y[r, t, col:col + H] = h
        _carry(Hx, Hx[:0], src, dst, max(n, r0), r1)


@njit(**_OPTS)
def gru_before_blas_infer(gemm, Wxp, Wp_rz, Wp_n, X, b, Hx, Gx, G, E, S, Y, col, steps,
                          reverse, r0, r1):
    """:func:`lstm_blas_infer` for the GRU with the reset gate before the product (r ⊙ h
    into E, its product into S: both (N, H) scratch)."""
    T, H = X.shape[1], Hx.shape[2]
    for s in range(T):
        t, src, dst, m, n = _infer_step(gemm, Wxp, X, Gx, b, s, steps, reverse, r0, r1)
        if m:
            _gemm(gemm, m, 2 * H, H, Hx[src, r0:].ctypes.data, H, Wp_rz, ZERO,
                  G[r0:].ctypes.data, 3 * H)
            gru_before_fwd1(G[r0:], Gx[r0:], Hx[src, r0:], E[r0:], m)
            _gemm(gemm, m, H, H, E[r0:].ctypes.data, H, Wp_n, ZERO, S[r0:].ctypes.data, H)
            for r in range(r0, r0 + m):
                h = Hx[dst, r]
                _gru_before_fwd2_row(S[r], Gx[r], Hx[src, r], h)
                Y[r, t, col:col + H] = h
        _carry(Hx, Hx[:0], src, dst, max(n, r0), r1)


# ------------------------------------------------------------------------------- batch-major
# Training on batch-major arrays, for batches without padding (every row alive at every step):
# A (N, T, G·H) is X Wᵀ of the layer's batch-major input x (N, T, D), one product, then the
# cache; Hp (N, T, H) holds in Hp[r, t] the state that step t of row r reads (h_{t−1}, or
# h_{t+1} backwards; h_0 in place at the first step); the output y (N, T, dirs, H) gets h_t
# in y[r, t, d]. Hp is y shifted by a step (one row copy a step, from cache): with it the rows
# of A and of the states they multiplied pair up. A row's steps follow each other in A, Hp and
# E, so the weight gradients are one product each over (N·T, ·) views, and x, y, ∂L/∂y and
# ∂L/∂x are the caller's arrays: no time-major copy of any of them goes through memory.
# Cx (T+1, N, H) stays time-major (only the kernels read it). The per-step products read
# Hp[r0:, t] with lda = T·H.


@njit(**_OPTS)
def _bm_fwd_t(s, T, reverse):
    """Iteration s of a batch-major forward loop → (step t, the step after it or −1)."""
    t = T - 1 - s if reverse else s
    nxt = t - 1 if reverse else t + 1
    return t, (nxt if nxt < T else -1)


@njit(**_OPTS)
def rnn_bm_fwd(gemm, Wp, A, b, Hp, Y, d, G, relu, reverse, r0, r1):
    T, H = A.shape[1], Hp.shape[2]
    for s in range(T):
        t, nxt = _bm_fwd_t(s, T, reverse)
        _gemm(gemm, r1 - r0, H, H, Hp[r0, t].ctypes.data, T * H, Wp, ZERO, G[r0:].ctypes.data,
              H)
        for r in range(r0, r1):
            a = A[r, t]
            _row_bias(a, b)
            _rnn_fwd_row(G[r], a, Y[r, t, d], relu)
            if nxt >= 0:
                Hp[r, nxt] = Y[r, t, d]


@njit(**_OPTS)
def rnn_bm_bwd(gemm, Wp, A, relu, reverse, dY, d, dh, r0, r1):
    T, H = A.shape[1], dh.shape[1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        for r in range(r0, r1):
            _rnn_bwd_row(A[r, t], dh[r], dY[r, t, d], relu)
        _gemm(gemm, r1 - r0, H, H, A[r0, t].ctypes.data, T * H, Wp, ZERO, dh[r0:].ctypes.data,
              H)


@njit(**_OPTS)
def lstm_bm_fwd(gemm, Wp, A, b, Hp, Cx, Y, d, G, p, reverse, r0, r1):
    T, H = A.shape[1], Hp.shape[2]
    for s in range(T):
        t, nxt = _bm_fwd_t(s, T, reverse)
        src, dst = _slots(t, reverse)
        _gemm(gemm, r1 - r0, 4 * H, H, Hp[r0, t].ctypes.data, T * H, Wp, ZERO,
              G[r0:].ctypes.data, 4 * H)
        for r in range(r0, r1):
            a = A[r, t]
            _row_bias(a, b)
            _lstm_fwd_row(G[r], a, Cx[src, r], Cx[dst, r], Y[r, t, d], p)
            if nxt >= 0:
                Hp[r, nxt] = Y[r, t, d]


@njit(**_OPTS)
def lstm_bm_bwd(gemm, Wp, A, Cx, p, dp, reverse, dY, d, dh, dc, r0, r1):
    T, H = A.shape[1], dh.shape[1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        src, dst = _slots(t, reverse)
        for r in range(r0, r1):
            _lstm_bwd_row(A[r, t], Cx[src, r], Cx[dst, r], dh[r], dY[r, t, d], dc[r], p, dp)
        _gemm(gemm, r1 - r0, H, 4 * H, A[r0, t].ctypes.data, T * 4 * H, Wp, ZERO,
              dh[r0:].ctypes.data, H)


@njit(**_OPTS)
def gru_after_bm_fwd(gemm, Wp, A, b, Hp, E, Y, d, G, b_hn, reverse, r0, r1):
    T, H = A.shape[1], Hp.shape[2]
    for s in range(T):
        t, nxt = _bm_fwd_t(s, T, reverse)
        _gemm(gemm, r1 - r0, 3 * H, H, Hp[r0, t].ctypes.data, T * H, Wp, ZERO,
              G[r0:].ctypes.data, 3 * H)
        for r in range(r0, r1):
            a = A[r, t]
            _row_bias(a, b)
            _gru_after_fwd_row(G[r], a, Hp[r, t], E[r, t], Y[r, t, d], b_hn)
            if nxt >= 0:
                Hp[r, nxt] = Y[r, t, d]


@njit(**_OPTS)
def gru_after_bm_bwd(gemm, Wp, A, Hp, E, G, reverse, dY, d, dh, r0, r1):
    T, H = A.shape[1], dh.shape[1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        for r in range(r0, r1):
            _gru_after_bwd_row(A[r, t], Hp[r, t], E[r, t], dh[r], dY[r, t, d], G[r])
        _gemm(gemm, r1 - r0, H, 3 * H, G[r0:].ctypes.data, 3 * H, Wp, ONE,
              dh[r0:].ctypes.data, H)


@njit(**_OPTS)
def gru_before_bm_fwd(gemm, Wp_rz, Wp_n, A, b, Hp, E, Y, d, G, S, reverse, r0, r1):
    T, H = A.shape[1], Hp.shape[2]
    for s in range(T):
        t, nxt = _bm_fwd_t(s, T, reverse)
        for r in range(r0, r1):
            _row_bias(A[r, t], b)
        _gemm(gemm, r1 - r0, 2 * H, H, Hp[r0, t].ctypes.data, T * H, Wp_rz, ZERO,
              G[r0:].ctypes.data, 3 * H)
        for r in range(r0, r1):
            _gru_before_fwd1_row(G[r], A[r, t], Hp[r, t], E[r, t])
        _gemm(gemm, r1 - r0, H, H, E[r0, t].ctypes.data, T * H, Wp_n, ZERO, S[r0:].ctypes.data,
              H)
        for r in range(r0, r1):
            _gru_before_fwd2_row(S[r], A[r, t], Hp[r, t], Y[r, t, d])
            if nxt >= 0:
                Hp[r, nxt] = Y[r, t, d]


@njit(**_OPTS)
def gru_before_bm_bwd(gemm, Wp_rz, Wp_n, A, Hp, S, reverse, dY, d, dh, r0, r1):
    T, H = A.shape[1], dh.shape[1]
    for s in range(T):
        t = s if reverse else T - 1 - s
        for r in range(r0, r1):
            _gru_before_bwd1_row(A[r, t], Hp[r, t], dh[r], dY[r, t, d])
        _gemm(gemm, r1 - r0, H, H, A[r0, t, 2 * H:].ctypes.data, T * 3 * H, Wp_n, ZERO,
              S[r0:].ctypes.data, H)
        for r in range(r0, r1):
            _gru_before_bwd2_row(A[r, t], Hp[r, t], S[r], dh[r])
        _gemm(gemm, r1 - r0, H, 2 * H, A[r0, t].ctypes.data, T * 3 * H, Wp_rz, ONE,
              dh[r0:].ctypes.data, H)
