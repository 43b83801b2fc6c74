"""Gradient checks of the recurrent layers: float64 centred finite differences over every
parameter, the input and the initial state, on odd sizes, for each cell × {1, 2 layers} ×
{uni, bi} × {full, variable lengths} × {zeros, given, learned} initial state."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import rnnkit
from rnnkit.diagnostics import numerical_gradient

from .helpers import rel_error

N, T, D, H = 3, 5, 3, 4
LENGTHS = np.array([2, 5, 3])
MAX_REL = 1e-6

CELLS = {
    "rnn-tanh": lambda **kw: rnnkit.RNN(D, H, nonlinearity="tanh", **kw),
    "rnn-relu": lambda **kw: rnnkit.RNN(D, H, nonlinearity="relu", **kw),
    "lstm": lambda **kw: rnnkit.LSTM(D, H, **kw),
    "lstm-peep": lambda **kw: rnnkit.LSTM(D, H, peepholes=True, **kw),
    "gru": lambda **kw: rnnkit.GRU(D, H, **kw),
    "gru-after": lambda **kw: rnnkit.GRU(D, H, reset_after=True, **kw),
}


def _randomise(layer, rng):
    # Learned initial states start at zero; make every parameter generic for the check.
    for p in layer.params.values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)


def check_layer(layer, x, state, lengths, rng, dropout_seed=None):
    """Compare backward with finite differences on L = Σ out⊙G + Σ state_n⊙G_s."""
    lstm = layer.cell.has_cell_state
    dirs, L = layer.num_directions, layer.num_layers
    gout = rng.standard_normal((N, T, dirs * H))
    gs = [rng.standard_normal((L * dirs, N, H)) for _ in range(2 if lstm else 1)]

    def reseed():
        if dropout_seed is not None:  # the same dropout masks in every evaluation
            layer._rng = np.random.default_rng(dropout_seed)

    def loss():
        reseed()
        out, final, _ = layer.forward(x, state, lengths, inference=True)
        finals = final if lstm else (final,)
        return float((out * gout).sum() + sum((f * g).sum() for f, g in zip(finals, gs)))

    reseed()
    out, _, cache = layer.forward(x, state, lengths)
    layer.zero_grad()
    dx, dstate0 = layer.backward(gout, tuple(gs) if lstm else gs[0], cache)

    checks = [("x", x, dx)]
    if state is not None:
        states = state if lstm else (state,)
        dstates = dstate0 if lstm else (dstate0,)
        checks += [(f"state[{i}]", s, d) for i, (s, d) in enumerate(zip(states, dstates))]
    checks += [(name, p, layer.grads[name]) for name, p in layer.params.items()]
    for name, arr, analytic in checks:
        numeric = numerical_gradient(loss, arr)
        err = rel_error(analytic, numeric)
        assert err < MAX_REL, f"{name}: relative error {err:.2e}"
    if lengths is not None:
        # Padded steps receive no gradient and output exact zeros.
        for i, n in enumerate(lengths):
            assert np.all(dx[i, n:] == 0) and np.all(out[i, n:] == 0)
    return dx


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("init", ["zeros", "given", "learned"])
def test_gradients(cell, layers, bidir, with_lengths, init):
    rng = np.random.default_rng(zlib.crc32(repr((cell, layers, bidir, with_lengths, init)).encode()))
    layer = CELLS[cell](num_layers=layers, bidirectional=bidir, dtype="float64", seed=3,
                        init_state="learned" if init == "learned" else "zeros")
    _randomise(layer, rng)
    x = rng.standard_normal((N, T, D))
    state = None
    if init == "given":
        shape = (layers * layer.num_directions, N, H)
        state = rng.standard_normal(shape)
        if layer.cell.has_cell_state:
            state = (state, rng.standard_normal(shape))
    check_layer(layer, x, state, LENGTHS if with_lengths else None, rng)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_gradients_with_dropout_between_layers(cell):
    rng = np.random.default_rng(11)
    layer = CELLS[cell](num_layers=3, bidirectional=True, dropout=0.4, dtype="float64", seed=5)
    x = rng.standard_normal((N, T, D))
    check_layer(layer, x, None, LENGTHS, rng, dropout_seed=99)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_random_initial_state_is_seeded_and_differentiable(cell):
    a = CELLS[cell](init_state="random", seed=1, dtype="float64")
    b = CELLS[cell](init_state="random", seed=1, dtype="float64")
    assert set(a.buffers) == ({"h0", "c0"} if cell == "lstm" else {"h0"})
    for name in a.buffers:
        np.testing.assert_array_equal(a.buffers[name], b.buffers[name])
        assert np.abs(a.buffers[name]).max() > 0
        assert name not in a.params  # random is not trained
    x = np.random.default_rng(0).standard_normal((N, T, D))
    out_a, _, _ = a.forward(x)
    out_z, _, _ = CELLS[cell](seed=1, dtype="float64").forward(x)
    assert not np.allclose(out_a, out_z)
    check_layer(a, x, None, LENGTHS, np.random.default_rng(2))
