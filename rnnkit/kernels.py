"""The cells' element-wise kernels, NumPy edition (the reference and the fallback).

Each kernel applies one of :mod:`rnnkit.cells`' step functions (the equations, defined once) to
the rows ``[:n]`` still alive at a step, on whole (n, H) blocks of gate columns, in place on the
buffers the recurrent layer owns. :mod:`rnnkit._numba_kernels` has the same functions with the
same signatures, compiling the same step functions for one element; the tests compare the two.

Conventions (one step, N rows in the buffers, H hidden units, G gates):
  ``g``    (N, G·H) the recurrent product h_{t−1} W_hhᵀ (computed by the caller with BLAS);
  ``a``    (N, G·H) on entry the input projection XW_t (biases folded in), on exit of forward the
           gate activations (the cache), on exit of backward ∂L/∂XW_t;
  ``hp``/``cp`` the previous state, ``hn``/``cn`` the new one; ``dh``/``dc`` the gradient carried
  from step t+1 (updated in place); ``dout`` ∂L/∂h_t from the layer's output.
  Optional vectors (peepholes ``p``, GRU ``b_hn``) are passed as empty arrays when absent.
"""

from __future__ import annotations

from . import cells
from .functional import ZERO, adam_update

name = "numpy"


def _blocks(a, n, k):
    """The k gate blocks of the rows [:n] of a (N, k·H), as views."""
    H = a.shape[1] // k
    return [a[:n, j * H:(j + 1) * H] for j in range(k)]


def _peepholes(p):
    H = p.shape[0] // 3
    return (p[:H], p[H:2 * H], p[2 * H:]) if p.size else (ZERO, ZERO, ZERO)


def rnn_fwd(g, a, hn, relu, n):
    """h_t = f(XW_t + g) into ``a[:n]`` (the cache) and ``hn[:n]``."""
    a[:n] = cells.rnn_forward(a[:n] + g[:n], relu)
    hn[:n] = a[:n]


def rnn_bwd(a, dh, dout, relu, n):
    """ds_t into ``a[:n]`` (∂L/∂XW_t); the caller forms dh_{t−1} = ds_t W_hh."""
    a[:n] = cells.rnn_backward(a[:n], dh[:n] + dout[:n], relu)


def lstm_fwd(g, a, cp, cn, hn, p, n):
    """Gates into ``a[:n]``, c_t into ``cn``, h_t into ``hn``."""
    x, gg = _blocks(a, n, 4), _blocks(g, n, 4)
    i, f, u, o, cn[:n], hn[:n] = cells.lstm_forward(
        *(x[k] + gg[k] for k in range(4)), cp[:n], *_peepholes(p), bool(p.size))
    for k, v in enumerate((i, f, u, o)):
        x[k][...] = v


def lstm_bwd(a, cp, cn, dh, dout, dc, p, dp, n):
    """∂L/∂(gate pre-activations) into ``a[:n]``, ∂L/∂c_{t−1} into ``dc``, peephole gradients
    added into ``dp``."""
    x = _blocks(a, n, 4)
    out = cells.lstm_backward(*x, cp[:n], cn[:n], dh[:n] + dout[:n], dc[:n], *_peepholes(p),
                              bool(p.size))
    for k in range(4):
        x[k][...] = out[k]
    dc[:n] = out[4]
    if p.size:
        H = cp.shape[1]
        for k in range(3):
            dp[k * H:(k + 1) * H] += out[5 + k].sum(axis=0)


def gru_after_fwd(g, a, hp, e, hn, b_hn, n):
    """Activations into ``a``, U_n h + b_hn into ``e``, h_t into ``hn``."""
    x, gg = _blocks(a, n, 3), _blocks(g, n, 3)
    r, z, nn, e[:n], hn[:n] = cells.gru_after_forward(*x, *gg, hp[:n],
                                                      b_hn if b_hn.size else ZERO)
    for k, v in enumerate((r, z, nn)):
        x[k][...] = v


def gru_after_bwd(a, hp, e, dh, dout, dhw, n):
    """∂L/∂XW_t into ``a[:n]``, ∂L/∂(h_{t−1} W_hhᵀ) into ``dhw`` and ``e`` its n-block (the
    caller multiplies by W_hh), the direct z-path into ``dh``."""
    x = _blocks(a, n, 3)
    out = cells.gru_after_backward(*x, e[:n], hp[:n], dh[:n] + dout[:n])
    for k in range(3):
        x[k][...] = out[k]
    e[:n] = out[3]
    w = _blocks(dhw, n, 3)
    w[0][...], w[1][...], w[2][...] = out[0], out[1], out[3]
    dh[:n] = out[4]


def gru_before_fwd1(g, a, hp, e, n):
    """r, z into ``a``, r ⊙ h_{t−1} into ``e`` (``g`` holds the r and z blocks)."""
    x, gg = _blocks(a, n, 3), _blocks(g[:, :2 * hp.shape[1]], n, 2)
    x[0][...], x[1][...], e[:n] = cells.gru_before_forward_gates(x[0], x[1], *gg, hp[:n])


def gru_before_fwd2(gn, a, hp, hn, n):
    """n into ``a``, h_t into ``hn``, from gn = (r ⊙ h_{t−1}) U_nᵀ."""
    x = _blocks(a, n, 3)
    x[2][...], hn[:n] = cells.gru_before_forward_state(x[2], gn[:n], x[1], hp[:n])


def gru_before_bwd1(a, hp, dh, dout, n):
    """∂L/∂(n and z pre-activations) into ``a``, the z-path of ∂L/∂h_{t−1} into ``dh``."""
    x = _blocks(a, n, 3)
    x[2][...], x[1][...], dh[:n] = cells.gru_before_backward_state(
        x[1], x[2], hp[:n], dh[:n] + dout[:n])


def gru_before_bwd2(a, hp, drh, dh, n):
    """With drh = ∂L/∂(r ⊙ h_{t−1}): ∂L/∂r's pre-activation into ``a``, r ⊙ drh into ``dh``."""
    x = _blocks(a, n, 3)
    x[0][...], dh[:n] = cells.gru_before_backward_gates(x[0], hp[:n], drh[:n], dh[:n])


def adam(p, g, m, v, b1, b2, step_size, root2, eps, tmp):
    """One Adam step on flat arrays, in place (:func:`rnnkit.functional.adam_update`)."""
    p[...], m[...], v[...] = adam_update(p, g, m, v, b1, b2, step_size, root2, eps)
