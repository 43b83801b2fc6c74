"""The fused element-wise kernels of the cells, NumPy edition (the reference and the fallback).

The equations are those of :mod:`rnnkit.cells`; these functions evaluate them for the rows
``[:n]`` still alive at a step, in place, on the buffers the recurrent layer owns. Every kernel
has a twin of the same name and signature in :mod:`rnnkit._numba_kernels` that fuses the same
arithmetic into one compiled loop; the tests run both engines against the same references.

Conventions (one step, N rows in the buffers, H hidden units, G gates):
  ``g``    (N, G·H) the recurrent product h_{t−1} W_hhᵀ (computed by the caller with BLAS);
  ``a``    (N, G·H) on entry the input projection XW_t (biases folded in), on exit of forward the
           gate activations (the cache), on exit of backward ∂L/∂XW_t;
  ``hp``/``cp`` the previous state, ``hn``/``cn`` the new one; ``dh``/``dc`` the gradient carried
  from step t+1 (updated in place); ``dout`` ∂L/∂h_t from the layer's output.
  Optional vectors (peepholes ``p``, GRU ``b_hn``) are passed as empty arrays when absent.

Backward flushes gradient values below 1e-30 (float32) / 1e-300 (float64) to zero: vanishing
gradients otherwise sink into denormal numbers over long sequences, which cost x86 CPUs ~100
cycles an operation (an LSTM's backward at T = 200 ran 6× slower); values that small carry no
information.
"""

from __future__ import annotations

import numpy as np

from .functional import sigmoid

name = "numpy"
has_sequence_kernels = False


def _flush(x):
    """Zero the entries of x below the denormal guard, in place; returns x."""
    tiny = 1e-30 if x.dtype == np.float32 else 1e-300
    x[np.abs(x) < tiny] = 0
    return x


# ------------------------------------------------------------------------------- RNN
def rnn_fwd(g, a, hn, relu, n):
    """h_t = f(XW_t + g), f = tanh or ReLU (``relu``): into ``a[:n]`` (the cache) and
    ``hn[:n]``.
    """
    s = a[:n]
    s += g[:n]
    if relu:
        np.maximum(s, 0, out=s)
    else:
        np.tanh(s, out=s)
    hn[:n] = s


def rnn_bwd(a, dh, dout, relu, n):
    """ds_t = (dh + dout) ⊙ f'(s_t) (from h_t in ``a``): into ``a[:n]`` (∂L/∂XW_t); the caller
    forms dh_{t−1} = ds_t W_hh.
    """
    h = a[:n]
    dht = dh[:n] + dout[:n]
    if relu:
        a[:n] = _flush(dht * (h > 0))
    else:
        a[:n] = _flush(dht * (1 - h * h))


# ------------------------------------------------------------------------------- LSTM
def lstm_fwd(g, a, cp, cn, hn, p, n):
    """Gates i, f, g, o from XW_t + g (+ peepholes ``p`` on c), c_t = f c_{t−1} + i g,
    h_t = o tanh(c_t): activations into ``a[:n]``, c_t into ``cn``, h_t into ``hn``.
    """
    H = cp.shape[1]
    x = a[:n]
    x += g[:n]
    c0 = cp[:n]
    if p.size:
        x[:, :H] += p[:H] * c0
        x[:, H:2 * H] += p[H:2 * H] * c0
    x[:, :2 * H] = sigmoid(x[:, :2 * H])
    np.tanh(x[:, 2 * H:3 * H], out=x[:, 2 * H:3 * H])
    i, f, gg = x[:, :H], x[:, H:2 * H], x[:, 2 * H:3 * H]
    c = cn[:n]
    np.multiply(f, c0, out=c)
    c += i * gg
    if p.size:
        x[:, 3 * H:] += p[2 * H:] * c
    x[:, 3 * H:] = sigmoid(x[:, 3 * H:])
    np.multiply(x[:, 3 * H:], np.tanh(c), out=hn[:n])


def lstm_bwd(a, cp, cn, dh, dout, dc, p, dp, n):
    """The LSTM step backwards (see LSTMCell): ∂L/∂(gate pre-activations) into ``a[:n]``,
    ∂L/∂c_{t−1} into ``dc``, peephole gradients added into ``dp``.
    """
    H = cp.shape[1]
    x = a[:n]
    i, f, g, o = (x[:, k * H:(k + 1) * H].copy() for k in range(4))
    c0, c = cp[:n], cn[:n]
    tc = np.tanh(c)
    dht = dh[:n] + dout[:n]
    da_o = dht * tc * o * (1 - o)
    dct = dc[:n] + dht * o * (1 - tc * tc)
    if p.size:
        dct += da_o * p[2 * H:]
    da_i = dct * g * i * (1 - i)
    da_f = dct * c0 * f * (1 - f)
    x[:, :H] = da_i
    x[:, H:2 * H] = da_f
    x[:, 2 * H:3 * H] = dct * i * (1 - g * g)
    x[:, 3 * H:] = da_o
    dcp = dct * f
    if p.size:
        dcp += da_i * p[:H] + da_f * p[H:2 * H]
        dp[:H] += (da_i * c0).sum(axis=0)
        dp[H:2 * H] += (da_f * c0).sum(axis=0)
        dp[2 * H:] += (da_o * c).sum(axis=0)
    _flush(x)
    dc[:n] = _flush(dcp)


# ------------------------------------------------------------------------------- GRU
def gru_after_fwd(g, a, hp, e, hn, b_hn, n):
    """GRU, reset after the product (PyTorch): r, z = σ(·), n = tanh(XW_n + r ⊙ (g_n +
    b_hn)), h_t = (1 − z) n + z h_{t−1}; activations into ``a``, g_n + b_hn into ``e``.
    """
    H = hp.shape[1]
    x, gg = a[:n], g[:n]
    rz = sigmoid(x[:, :2 * H] + gg[:, :2 * H])
    ghn = gg[:, 2 * H:]
    if b_hn.size:
        ghn = ghn + b_hn
    e[:n] = ghn
    r, z = rz[:, :H], rz[:, H:]
    nn = np.tanh(x[:, 2 * H:] + r * ghn)
    x[:, :2 * H] = rz
    x[:, 2 * H:] = nn
    hn[:n] = nn + z * (hp[:n] - nn)


def gru_after_bwd(a, hp, e, dh, dout, dhw, n):
    """The reset-after GRU step backwards: ∂L/∂XW_t into ``a[:n]``, ∂L/∂(h_{t−1} W_hhᵀ)
    into ``dhw`` (the caller multiplies by W_hh), the direct z-path into ``dh``.
    """
    H = hp.shape[1]
    x = a[:n]
    r, z, nn = (x[:, k * H:(k + 1) * H].copy() for k in range(3))
    dht = dh[:n] + dout[:n]
    da_n = dht * (1 - z) * (1 - nn * nn)
    x[:, H:2 * H] = dht * (hp[:n] - nn) * z * (1 - z)
    x[:, :H] = da_n * e[:n] * r * (1 - r)
    x[:, 2 * H:] = da_n
    _flush(x)
    e[:n] = x[:, 2 * H:] * r
    dhw[:n, :2 * H] = x[:, :2 * H]
    dhw[:n, 2 * H:] = e[:n]
    dh[:n] = _flush(dht * z)


def gru_before_fwd1(g, a, hp, e, n):
    """GRU, reset before the product (the notes' form), first half: r, z = σ(XW + g) for the
    r and z blocks; r ⊙ h_{t−1} into ``e`` (the caller multiplies it by U_n).
    """
    H = hp.shape[1]
    x = a[:n]
    x[:, :2 * H] = sigmoid(x[:, :2 * H] + g[:n])
    e[:n] = x[:, :H] * hp[:n]


def gru_before_fwd2(gn, a, hp, hn, n):
    """Second half: n = tanh(XW_n + gn) with gn = (r ⊙ h_{t−1}) U_nᵀ, h_t = (1 − z) n +
    z h_{t−1} into ``hn``.
    """
    H = hp.shape[1]
    x = a[:n]
    nn = np.tanh(x[:, 2 * H:] + gn[:n])
    x[:, 2 * H:] = nn
    hn[:n] = nn + x[:, H:2 * H] * (hp[:n] - nn)


def gru_before_bwd1(a, hp, dh, dout, n):
    """The notes' GRU backwards, first half: ∂L/∂(n and z pre-activations) into ``a``, the
    z-path of ∂L/∂h_{t−1} into ``dh``.
    """
    H = hp.shape[1]
    x = a[:n]
    z, nn = x[:, H:2 * H].copy(), x[:, 2 * H:].copy()
    dht = dh[:n] + dout[:n]
    x[:, 2 * H:] = dht * (1 - z) * (1 - nn * nn)
    x[:, H:2 * H] = dht * (hp[:n] - nn) * z * (1 - z)
    _flush(x[:, H:])
    dh[:n] = _flush(dht * z)


def gru_before_bwd2(a, hp, drh, dh, n):
    """Second half: with drh = ∂L/∂(r ⊙ h_{t−1}), ∂L/∂r's pre-activation into ``a`` and
    r ⊙ drh added into ``dh``.
    """
    H = hp.shape[1]
    x = a[:n]
    r = x[:, :H].copy()
    x[:, :H] = _flush(drh[:n] * hp[:n] * r * (1 - r))
    dh[:n] += drh[:n] * r
    _flush(dh[:n])


# ------------------------------------------------------------------------------- Adam
def adam(p, g, m, v, b1, b2, step_size, root2, eps, tmp):
    """One Adam step on flat arrays, in place (the equations are in :class:`rnnkit.optim.Adam`):
    m ← b1 m + (1 − b1) g, v ← b2 v + (1 − b2) g², p ← p − step_size · m / (√v / root2 + eps).
    ``tmp`` is scratch of p's size, so no temporaries are made.
    """
    m *= b1
    m += np.multiply(g, 1 - b1, out=tmp)
    v *= b2
    np.multiply(g, 1 - b2, out=tmp)
    tmp *= g
    v += tmp
    np.sqrt(v, out=tmp)
    tmp /= root2
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= step_size
    p -= tmp
