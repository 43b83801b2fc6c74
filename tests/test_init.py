from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.init import init_recurrent


def test_orthogonal_blocks():
    layer = init_recurrent(rnnkit.LSTM(3, 6, num_layers=2, dtype="float64"), "orthogonal",
                           gain=1.5, seed=0)
    for name, w in layer.params.items():
        if name.startswith("weight_hh"):
            for g in range(4):
                block = w[g * 6:(g + 1) * 6]
                np.testing.assert_allclose(block @ block.T, 1.5**2 * np.eye(6), atol=1e-12)


def test_identity_is_the_irnn():
    layer = init_recurrent(rnnkit.RNN(3, 5, nonlinearity="relu", dtype="float64"), "identity",
                           seed=0)
    np.testing.assert_array_equal(layer.params["weight_hh_l0"], np.eye(5))
    assert np.all(layer.params["bias_ih_l0"] == 0) and np.all(layer.params["bias_hh_l0"] == 0)
    assert np.abs(layer.params["weight_ih_l0"]).max() < 0.01
    # With zero input the state is carried unchanged: h_t = relu(h_{t-1}).
    h0 = np.abs(np.random.default_rng(0).standard_normal((1, 2, 5)))
    out, h, _ = layer.forward(np.zeros((2, 7, 3)), h0)
    np.testing.assert_allclose(h, h0)


def test_default_with_gain_scales_only_w_hh():
    a = rnnkit.GRU(3, 4, seed=2, dtype="float64")
    b = init_recurrent(rnnkit.GRU(3, 4, seed=2, dtype="float64"), "default", gain=2.0)
    np.testing.assert_allclose(b.params["weight_hh_l0"], 2 * a.params["weight_hh_l0"])
    np.testing.assert_array_equal(b.params["weight_ih_l0"], a.params["weight_ih_l0"])


def test_bad_init():
    with pytest.raises(ValueError, match="unknown initialisation 'xavier'"):
        init_recurrent(rnnkit.RNN(2, 2), "xavier")
    with pytest.raises(ValueError, match="gain must be positive, got 0"):
        init_recurrent(rnnkit.RNN(2, 2), "orthogonal", gain=0)
