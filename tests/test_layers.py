from __future__ import annotations

import numpy as np
import pytest

from rnnkit.diagnostics import numerical_gradient
from rnnkit.layers import Linear

from .helpers import rel_error


def test_linear_gradients():
    rng = np.random.default_rng(0)
    lin = Linear(5, 3, dtype="float64", seed=1)
    x = rng.standard_normal((3, 7, 5))
    g = rng.standard_normal((3, 7, 3))

    def loss():
        return float((lin.forward(x)[0] * g).sum())

    y, cache = lin.forward(x)
    dx = lin.backward(g, cache)
    assert y.shape == (3, 7, 3)
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-8
    for name, p in lin.params.items():
        assert rel_error(lin.grads[name], numerical_gradient(loss, p)) < 1e-8, name


def test_linear_bad_input():
    lin = Linear(5, 3)
    with pytest.raises(ValueError, match=r"Linear expects input \(\.\.\., 5\), got shape \(2, 4\)"):
        lin.forward(np.zeros((2, 4)))
    _, cache = lin.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(2, 4\)"):
        lin.backward(np.zeros((2, 4)), cache)
