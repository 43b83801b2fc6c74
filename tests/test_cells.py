"""One step of each cell in isolation: backward_step against finite differences (float64), on
odd sizes, for ∂L/∂(XW_t), ∂L/∂h_{t−1}, ∂L/∂c_{t−1}, ∂L/∂W_hh, ∂L/∂b_hh and the peepholes."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.cells import GRUCell, LSTMCell, RNNCell
from rnnkit.diagnostics import numerical_gradient

from .helpers import rel_error

n, H = 3, 5

CELLS = {
    "rnn-tanh": lambda: RNNCell(H, "tanh"),
    "rnn-relu": lambda: RNNCell(H, "relu"),
    "lstm": lambda: LSTMCell(H),
    "lstm-peep": lambda: LSTMCell(H, peepholes=True),
    "gru": lambda: GRUCell(H),
    "gru-after": lambda: GRUCell(H, reset_after=True),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_step_backward(name):
    cell = CELLS[name]()
    G = cell.gates
    rng = np.random.default_rng(1)
    xw = rng.standard_normal((n, G * H))
    h = rng.standard_normal((n, H))
    c = rng.standard_normal((n, H)) if cell.has_cell_state else None
    w_hh = rng.standard_normal((G * H, H)) * 0.5
    b_hh = rng.standard_normal(G * H)
    p = rng.standard_normal(3 * H) if getattr(cell, "peepholes", False) else None
    gh = rng.standard_normal((n, H))
    gc = rng.standard_normal((n, H))
    # The layer folds b_hh into XW wherever the cell allows; do the same here.
    fold = cell.input_bias(np.zeros(G * H), b_hh)

    def loss():
        hn, cn, _ = cell.forward_step(xw + fold, h, c, w_hh, b_hh, p, False)
        return float((hn * gh).sum() + (0.0 if cn is None else (cn * gc).sum()))

    hn, cn, cache = cell.forward_step(xw + fold, h, c, w_hh, b_hh, p, True)
    dp = None if p is None else np.zeros_like(p)
    dxw, dhw, dh, dc = cell.backward_step(gh, gc if c is not None else None, cache, w_hh, p, dp)
    dw_hh = cell.hh_weight_grad(dhw, h, [cache], np.array([n]))
    # ∂L/∂b_hh: the part folded into XW flows through dXW, the rest through dHW.
    db_hh = dhw.sum(axis=0)
    checks = [("xw", xw, dxw), ("h", h, dh), ("w_hh", w_hh, dw_hh), ("b_hh", b_hh, db_hh)]
    if c is not None:
        checks.append(("c", c, dc))
    if p is not None:
        checks.append(("p", p, dp))
    for what, arr, analytic in checks:
        if what == "b_hh":
            # b_hh enters through the fold and (for GRU reset-after) inside the step.
            def loss_b():
                f = cell.input_bias(np.zeros(G * H), b_hh)
                hn, cn, _ = cell.forward_step(xw + f, h, c, w_hh, b_hh, p, False)
                return float((hn * gh).sum() + (0.0 if cn is None else (cn * gc).sum()))
            numeric = numerical_gradient(loss_b, arr)
        else:
            numeric = numerical_gradient(loss, arr)
        assert rel_error(analytic, numeric) < 1e-7, what


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match="unknown nonlinearity 'sigmoid'"):
        RNNCell(3, "sigmoid")
