from __future__ import annotations

import numpy as np
import pytest

from rnnkit.optim import Adam

torch = pytest.importorskip("torch")


def test_adam_matches_torch():
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = Adam([(params, grads)], lr=0.05)
    topt = torch.optim.Adam(list(tparams.values()), lr=0.05)
    for _ in range(5):
        for k in params:
            g = rng.standard_normal(params[k].shape)
            grads[k][...] = g
            tparams[k].grad = torch.tensor(g)
        opt.step()
        topt.step()
    for k in params:
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-12,
                                   atol=1e-12)


def test_adam_bad_lr():
    with pytest.raises(ValueError, match="lr must be positive, got 0"):
        Adam([], lr=0)
