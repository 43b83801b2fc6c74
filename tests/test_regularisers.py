"""Weight drop (DropConnect on W_hh) and variational dropout between layers: float64 centred
finite differences through every path, and what the masks must be (one per batch for W_hh,
one per sequence for variational dropout, none in eval mode)."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.layers import Dropout

from .test_recurrent import CELLS, LENGTHS, D, H, N, T, check_layer


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_gradients_with_weight_drop(cell, with_lengths, layer_engine):
    """Every path (the mask enters where the loops read W_hh and where dW_hh leaves them)."""
    _weight_drop_check(cell, with_lengths)


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "lstm-peep", "gru-after"])
def test_gradients_with_weight_drop_every_cell(cell):
    _weight_drop_check(cell, True)


def _weight_drop_check(cell, with_lengths):
    rng = np.random.default_rng(21)
    layer = CELLS[cell](num_layers=2, bidirectional=True, weight_drop=0.4, dtype="float64",
                        seed=6)
    x = rng.standard_normal((N, T, D))
    check_layer(layer, x, None, LENGTHS if with_lengths else None, rng, dropout_seed=7)


@pytest.mark.parametrize("cell", ["lstm", "gru-after", "rnn-tanh"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_gradients_with_variational_dropout_and_weight_drop(cell, with_lengths):
    rng = np.random.default_rng(22)
    layer = CELLS[cell](num_layers=3, bidirectional=True, dropout=0.4, variational=True,
                        weight_drop=0.3, dtype="float64", seed=8)
    x = rng.standard_normal((N, T, D))
    check_layer(layer, x, None, LENGTHS if with_lengths else None, rng, dropout_seed=9)


def _replayed_masks(layer, state, p):
    """The weight-drop masks a forward pass drew from a generator in ``state``."""
    g = np.random.default_rng()
    g.bit_generator.state = state
    masks = {}
    for name in layer.params:
        if name.startswith("weight_hh"):
            masks[name] = (g.random(layer.params[name].shape) < 1 - p) / (1 - p)
    return masks


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_weight_drop_runs_w_hh_times_its_mask_and_is_off_in_eval(cell):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, T, D))
    a = CELLS[cell](num_layers=2, weight_drop=0.5, dtype="float64", seed=4)
    plain = CELLS[cell](num_layers=2, dtype="float64", seed=4)
    state = a.rng.bit_generator.state
    out, _, _ = a.forward(x)
    masks = _replayed_masks(a, state, 0.5)
    assert len(masks) == 2 and all(0.3 < (m == 0).mean() < 0.7 for m in masks.values())
    for name, m in masks.items():
        plain.params[name] = plain.params[name] * m
    np.testing.assert_allclose(out, plain.forward(x)[0], rtol=1e-12, atol=1e-14)
    a.eval()
    np.testing.assert_array_equal(a.forward(x)[0], a.forward(x)[0])
    unmasked = CELLS[cell](num_layers=2, dtype="float64", seed=4).eval()
    np.testing.assert_allclose(a.forward(x)[0], unmasked.forward(x)[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layout", ["time-major", "batch-major"])
def test_variational_masks_are_shared_by_the_steps_of_a_sequence(layout):
    x = np.random.default_rng(0).standard_normal((N, T, D))
    layer = rnnkit.GRU(D, H, num_layers=2, dropout=0.5, variational=True, dtype="float64",
                       seed=1)
    lengths = None if layout == "batch-major" else LENGTHS
    with rnnkit.plan.forced(kernel="numba", products="loop", layout=layout):
        _, _, cache = layer.forward(x, lengths=lengths)
    mask = cache.masks[0]
    if layout == "batch-major":
        assert mask.shape == (N, 1, H)
    else:  # packed time-major rows, sorted by length: each sequence's rows equal
        pk = cache.packing
        rows = pk.rows
        for r in range(N):
            mine = mask[rows == r]
            assert len(mine) == sorted(LENGTHS, reverse=True)[r]
            assert np.all(mine == mine[0])
    assert 0 < (mask == 0).mean() < 1


def test_variational_dropout_layer_shares_the_mask_over_time():
    x = np.ones((40, 30, 20))
    y, mask = Dropout(0.5, seed=2, variational=True).forward(x)
    assert mask.shape == (40, 1, 20)
    assert np.all(y == y[:, :1, :])
    assert 0.4 < (y == 0).mean() < 0.6
    flat, _ = Dropout(0.5, seed=2, variational=True).forward(np.ones((40, 20)))
    assert flat.shape == (40, 20) and 0.4 < (flat == 0).mean() < 0.6


@pytest.mark.parametrize("value", [1.0, -0.5, True, "0.3"])
def test_weight_drop_must_lie_in_0_1(value):
    with pytest.raises(ValueError,
                       match=rf"weight_drop must be a number in \[0, 1\), got {value!r}"):
        rnnkit.LSTM(D, H, weight_drop=value)
