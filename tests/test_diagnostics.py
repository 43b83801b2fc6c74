"""gradient_flow reads ‖∂L/∂h_k‖ off the real backward pass; checked against the gradient of
the same loss with respect to the initial state of the suffix x[k+1:] started from h_k."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.diagnostics import gradient_flow, plot_gradient_flow
from rnnkit.models import (
    RegressorConfig,
    SequenceRegressor,
    StepClassifier,
    StepClassifierConfig,
    make_recurrent,
)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "gru-after"])
def test_gradient_flow_equals_suffix_initial_state_gradient(cell):
    rng = np.random.default_rng(0)
    N, T, D, H = 3, 9, 4, 5
    layer = make_recurrent(cell, D, H, dtype="float64", seed=1)
    x = rng.standard_normal((N, T, D))
    dout = np.zeros((N, T, H))
    dout[:, -1] = rng.standard_normal((N, H))
    norms = gradient_flow(layer, x, dout=dout)["l0"]
    assert norms.shape == (T,)
    lstm = layer.cell.has_cell_state
    for k in (0, 3, T - 2):
        _, state, _ = layer.forward(x[:, :k + 1])
        _, _, cache = layer.forward(x[:, k + 1:], state)
        _, dstate0 = layer.backward(dout[:, k + 1:], None, cache)
        dh = dstate0[0] if lstm else dstate0
        expected = np.linalg.norm(dh[0], axis=1).mean()
        assert abs(norms[k] - expected) < 1e-12 * max(expected, 1e-300), k
    np.testing.assert_allclose(norms[-1], np.linalg.norm(dout[:, -1], axis=1).mean())


def test_gradient_flow_of_models_and_stacks(tmp_path):
    rng = np.random.default_rng(0)
    model = SequenceRegressor(RegressorConfig(input_size=2, hidden_size=6, num_layers=2,
                                              cell="gru"))
    batch = model.collate([(rng.random((7, 2)), np.ones(1)) for _ in range(3)])
    flow = gradient_flow(model, batch)
    assert set(flow) == {"rnn.l0", "rnn.l1"} and all(v.shape == (7,) for v in flow.values())
    assert all(np.all(g == 0) for g in model.grads.values())  # the diagnostic leaves no trace
    clf = StepClassifier(StepClassifierConfig(num_symbols=10, num_classes=9, hidden_size=6))
    ids = rng.integers(0, 10, (2, 5))
    assert gradient_flow(clf, (ids, ids % 9))["rnn.l0"].shape == (5,)
    plot_gradient_flow(flow, tmp_path / "flow.png")
    assert (tmp_path / "flow.png").read_bytes()[:4] == b"\x89PNG"


def test_gradient_flow_needs_a_recurrent_layer():
    from rnnkit.layers import Linear

    class NoRNN:
        layers = {"head": Linear(2, 2)}

    with pytest.raises(ValueError, match="NoRNN has no recurrent layer"):
        gradient_flow(NoRNN(), None)
