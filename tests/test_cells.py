"""One step of each cell (rnnkit.cells' step functions, run by rnnkit.runner.step_forward and
step_backward) under both kernel engines: forward against SPEC §1's equations written out here,
backward against finite differences."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rnnkit import backend, runner
from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.diagnostics import numerical_gradient

from .helpers import rel_error

N, H = 3, 5


@pytest.fixture(autouse=True)
def _every_engine(kernel_engine):
    """Each test here runs under every kernel engine (see conftest.py)."""


def sig(x):
    return 1 / (1 + np.exp(-x))


def reference_step(name, xw, h, c, w_hh, b_hh, p):
    """SPEC §1, one step, with xw = W x + b_ih already computed."""
    if name.startswith("rnn"):
        s = xw + h @ w_hh.T + b_hh
        return (np.maximum(s, 0) if name == "rnn-relu" else np.tanh(s)), None
    if name.startswith("lstm"):
        a = xw + h @ w_hh.T + b_hh
        ai, af, ag, ao = np.split(a, 4, axis=1)
        if p is not None:
            ai, af = ai + p[:H] * c, af + p[H:2 * H] * c
        i, f, g = sig(ai), sig(af), np.tanh(ag)
        c_new = f * c + i * g
        o = sig(ao + (p[2 * H:] * c_new if p is not None else 0))
        return o * np.tanh(c_new), c_new
    xr, xz, xn = np.split(xw, 3, axis=1)
    ur, uz, un = np.split(w_hh, 3, axis=0)
    br, bz, bn = np.split(b_hh, 3)
    r, z = sig(xr + h @ ur.T + br), sig(xz + h @ uz.T + bz)
    if name == "gru":
        n = np.tanh(xn + (r * h) @ un.T + bn)
    else:
        n = np.tanh(xn + r * (h @ un.T + bn))
    return (1 - z) * n + z * h, None


CELLS = {
    "rnn-tanh": lambda: RNNCell(H, "tanh"),
    "rnn-relu": lambda: RNNCell(H, "relu"),
    "lstm": lambda: LSTMCell(H),
    "lstm-peep": lambda: LSTMCell(H, peepholes=True),
    "gru": lambda: GRUCell(H),
    "gru-after": lambda: GRUCell(H, reset_after=True),
}


def run_step(cell, xw, h, c, w_hh, b_hh, p, b_ih):
    """Forward one step; returns (h_t, c_t, buffers, weights, scratch)."""
    G = cell.gates
    A = xw + cell.input_bias(b_ih, b_hh)  # the step's rows of XW
    Hx = np.stack([h, np.zeros_like(h)])
    Cx = None if c is None else np.stack([c, np.zeros_like(c)])
    E = np.zeros((N, H)) if cell.needs_extra else None
    buf = SimpleNamespace(A=A, Hx=Hx, Cx=Cx, E=E)
    empty = np.empty(0)
    b_hn = cell.hidden_bias(b_hh)
    w = runner.Weights(w_ih=np.empty((G * H, 0)), w_hh=w_hh, b=None,
                       p=empty if p is None else p, dp=empty if p is None else np.zeros_like(p),
                       b_hn=empty if b_hn is None else b_hn, suffix="")
    work = [np.empty((N, G * H)), np.empty((N, H)), np.empty((N, H))]
    runner.step_forward(backend.kernels(), cell, w, N, A, E, Hx[0],
                        None if Cx is None else Cx[0], Hx[1], None if Cx is None else Cx[1],
                        work[0], work[1])
    return Hx[1].copy(), (None if Cx is None else Cx[1].copy()), buf, w, work


@pytest.mark.parametrize("name", list(CELLS))
def test_step_forward_and_backward(name):
    cell = CELLS[name]()
    G = cell.gates
    rng = np.random.default_rng(1)
    xw = rng.standard_normal((N, G * H))
    b_ih = np.zeros(G * H)
    h = rng.standard_normal((N, H))
    c = rng.standard_normal((N, H)) if cell.has_cell_state else None
    w_hh = rng.standard_normal((G * H, H)) * 0.5
    b_hh = rng.standard_normal(G * H)
    p = rng.standard_normal(3 * H) if getattr(cell, "peepholes", False) else None
    gh, gc = rng.standard_normal((N, H)), rng.standard_normal((N, H))

    h_new, c_new, buf, w, work = run_step(cell, xw, h, c, w_hh, b_hh, p, b_ih)
    ref_h, ref_c = reference_step(name, xw, h, c, w_hh, b_hh, p)
    np.testing.assert_allclose(h_new, ref_h, rtol=1e-12, atol=1e-13)
    if c is not None:
        np.testing.assert_allclose(c_new, ref_c, rtol=1e-12, atol=1e-13)

    def loss():
        hh, cc = reference_step(name, xw, h, c, w_hh, b_hh, p)
        return float((hh * gh).sum() + (0.0 if cc is None else (cc * gc).sum()))

    dh, dc = np.zeros((N, H)), (gc.copy() if c is not None else None)
    runner.step_backward(backend.kernels(), cell, w, N, buf.A, buf.E, buf.Hx[0],
                         None if dc is None else buf.Cx[0], None if dc is None else buf.Cx[1],
                         dh, dc, gh, *work)
    dA = buf.A
    dw_hh, db_hh = np.zeros_like(w_hh), np.zeros_like(b_hh)
    cell.add_hh_grad(dA, h, buf.E, dA.sum(axis=0), dw_hh, db_hh)
    checks = [("xw", xw, dA), ("h", h, dh), ("w_hh", w_hh, dw_hh), ("b_hh", b_hh, db_hh)]
    if c is not None:
        checks.append(("c", c, dc))
    if p is not None:
        checks.append(("p", p, w.dp))
    for what, arr, analytic in checks:
        assert rel_error(analytic, numerical_gradient(loss, arr)) < 1e-7, what


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match="unknown nonlinearity 'sigmoid'"):
        RNNCell(3, "sigmoid")
