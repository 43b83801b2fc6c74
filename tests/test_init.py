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


@pytest.mark.parametrize("layer,keep", [
    (rnnkit.LSTM(3, 5, num_layers=2, bidirectional=True, dtype="float64"), slice(5, 10)),
    (rnnkit.GRU(3, 5, dtype="float64"), slice(5, 10)),
    (rnnkit.GRU(3, 5, reset_after=True, dtype="float64"), slice(5, 10)),
])
def test_forget_bias_is_the_keep_gates_whole_bias(layer, keep):
    before = {k: v.copy() for k, v in layer.params.items()}
    init_recurrent(layer, forget_bias=1.0)
    for name, b in layer.params.items():
        if name.startswith("bias_ih"):
            assert np.all(b[keep] == 1.0)
        elif name.startswith("bias_hh"):
            assert np.all(b[keep] == 0.0)
        if name.startswith("bias"):  # the other gates keep PyTorch's initialisation
            rest = np.ones(b.shape, bool)
            rest[keep] = False
            np.testing.assert_array_equal(b[rest], before[name][rest])
        else:
            np.testing.assert_array_equal(b, before[name])
    # The effective bias the loops add (b_ih + b_hh) is 1 on the keep gate.
    w = layer.weights(0, 0)
    np.testing.assert_array_equal(w.b[keep], 1.0)


def test_chrono_spreads_the_forget_gates_time_constants():
    T_max = 60
    layer = init_recurrent(rnnkit.LSTM(3, 400, dtype="float64"), chrono=T_max, seed=1)
    H = 400
    b = layer.weights(0, 0).b
    b_i, b_f = b[:H], b[H:2 * H]
    assert np.all((b_f >= 0) & (b_f <= np.log(T_max - 1)))
    np.testing.assert_array_equal(b_i, -b_f)
    # Time constants 1 / (1 − σ(b_f)) = 1 + u, u ~ U[1, T_max − 1]: spread over [2, T_max].
    tau = 1 / (1 - 1 / (1 + np.exp(-b_f)))
    assert 2 - 1e-9 <= tau.min() < 5 and T_max - 5 < tau.max() <= T_max + 1e-9
    # The GRU's update gate z keeps the state: only its bias changes.
    g = init_recurrent(rnnkit.GRU(3, 50, dtype="float64", seed=3), chrono=T_max, seed=1)
    ref = rnnkit.GRU(3, 50, dtype="float64", seed=3)
    bz = g.weights(0, 0).b[50:100]
    assert np.all((bz >= 0) & (bz <= np.log(T_max - 1)))
    np.testing.assert_array_equal(g.params["bias_ih_l0"][:50], ref.params["bias_ih_l0"][:50])


@pytest.mark.parametrize("layer,kwargs,match", [
    (rnnkit.RNN(2, 3), dict(forget_bias=1.0), "the simple RNN has no gate"),
    (rnnkit.LSTM(2, 3, bias=False), dict(chrono=10), "this layer has bias=False"),
    (rnnkit.LSTM(2, 3), dict(forget_bias=1.0, chrono=10), "choose forget_bias or chrono"),
    (rnnkit.LSTM(2, 3), dict(chrono=2), r"chrono must be an integer T_max >= 3 .* got 2"),
    (rnnkit.LSTM(2, 3), dict(chrono=10.5), r"chrono must be an integer .* got 10.5"),
    (rnnkit.LSTM(2, 3), dict(forget_bias=float("nan")), "forget_bias must be a finite number"),
])
def test_bad_gate_bias_options(layer, kwargs, match):
    with pytest.raises(ValueError, match=match):
        init_recurrent(layer, **kwargs)
