from __future__ import annotations

import numpy as np
import pytest

from rnnkit.diagnostics import numerical_gradient
from rnnkit.losses import cross_entropy, mse_loss

from .helpers import rel_error

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_mse_matches_torch_and_finite_differences():
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    loss, dpred = mse_loss(pred, target)
    tp = torch.tensor(pred, requires_grad=True)
    tl = F.mse_loss(tp, torch.tensor(target))
    tl.backward()
    assert abs(loss - tl.item()) < 1e-14
    np.testing.assert_allclose(dpred, tp.grad.numpy(), rtol=1e-13)
    assert rel_error(dpred, numerical_gradient(lambda: mse_loss(pred, target)[0], pred)) < 1e-8


def test_mse_bad_input():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 1\) and \(2,\)"):
        mse_loss(np.zeros((2, 1)), np.zeros(2))


@pytest.mark.parametrize("reduction", ["sum", "mean", "sequence_mean"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_masked_sequence_cross_entropy_matches_torch(reduction, smoothing, weighted):
    rng = np.random.default_rng(0)
    N, T, V = 3, 5, 7
    z = rng.standard_normal((N, T, V)) * 3
    y = rng.integers(0, V, (N, T))
    lengths = np.array([5, 2, 4])
    mask = np.arange(T)[None, :] < lengths[:, None]
    y[~mask] = -100  # anything may stand at padded positions
    w = rng.uniform(0.5, 2.0, V) if weighted else None
    loss, dz = cross_entropy(z, y, mask, reduction, smoothing, w)

    tz = torch.tensor(z, requires_grad=True)
    per_token = F.cross_entropy(tz.reshape(-1, V), torch.tensor(y).reshape(-1),
                                weight=None if w is None else torch.tensor(w),
                                ignore_index=-100, label_smoothing=smoothing,
                                reduction="sum" if reduction != "mean" else "mean")
    ref = per_token / N if reduction == "sequence_mean" else per_token
    ref.backward()
    assert abs(loss - ref.item()) < 1e-12 * max(1.0, abs(loss))
    np.testing.assert_allclose(dz, tz.grad.numpy(), rtol=1e-11, atol=1e-14)
    assert np.all(dz[~mask] == 0)
    num = numerical_gradient(lambda: cross_entropy(z, y, mask, reduction, smoothing, w)[0], z)
    assert rel_error(dz, num) < 1e-7


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, -1000.0, 0.0]])
    loss, dz = cross_entropy(z, np.array([1]))
    assert np.isfinite(loss) and abs(loss - 2000.0) < 1e-9
    assert np.all(np.isfinite(dz))


def test_cross_entropy_bad_input():
    z = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"target class 4 out of range \[0, 4\)"):
        cross_entropy(z, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"targets must have shape \(2,\)"):
        cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="targets must be integer class ids"):
        cross_entropy(z, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        cross_entropy(z, np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="empty batch"):
        cross_entropy(z, np.array([0, 1]), mask=np.zeros(2, bool))
    with pytest.raises(ValueError, match=r"class_weights must have shape \(4,\)"):
        cross_entropy(z, np.array([0, 1]), class_weights=np.ones(3))
