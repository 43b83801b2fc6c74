from __future__ import annotations

import numpy as np
import pytest

from rnnkit.diagnostics import numerical_gradient
from rnnkit.losses import mse_loss

from .helpers import rel_error

torch = pytest.importorskip("torch")


def test_mse_matches_torch_and_finite_differences():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss, dpred = mse_loss(pred, target)
    tp = torch.tensor(pred, requires_grad=True)
    tl = torch.nn.functional.mse_loss(tp, torch.tensor(target))
    tl.backward()
    assert abs(loss - tl.item()) < 1e-14
    np.testing.assert_allclose(dpred, tp.grad.numpy(), rtol=1e-13)
    assert rel_error(dpred, numerical_gradient(lambda: mse_loss(pred, target)[0], pred)) < 1e-8


def test_mse_bad_input():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 1\) and \(2,\)"):
        mse_loss(np.zeros((2, 1)), np.zeros(2))
