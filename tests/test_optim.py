from __future__ import annotations

import numpy as np
import pytest

from rnnkit import optim

torch = pytest.importorskip("torch")

CASES = [
    ("sgd", dict(lr=0.1), dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.01), dict(lr=0.1, momentum=0.9,
                                                             weight_decay=0.01)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True), dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.1, momentum=0.5, dampening=0.3), dict(lr=0.1, momentum=0.5, dampening=0.3)),
    ("adam", dict(lr=0.05), dict(lr=0.05)),
    ("adam", dict(lr=0.05, weight_decay=0.1, betas=(0.8, 0.99)), dict(lr=0.05, weight_decay=0.1,
                                                                      betas=(0.8, 0.99))),
    ("adamw", dict(lr=0.05, weight_decay=0.1), dict(lr=0.05, weight_decay=0.1)),
    ("rmsprop", dict(lr=0.01), dict(lr=0.01)),
    ("rmsprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01),
     dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    ("adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.05), dict(lr=0.1, lr_decay=0.01,
                                                                   weight_decay=0.05)),
]
TORCH = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop",
         "adagrad": "Adagrad"}


@pytest.mark.parametrize("name,ours_kw,torch_kw", CASES)
def test_optimizer_matches_torch(name, ours_kw, torch_kw, kernel_engine):
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = optim.make_optimizer(name, params, grads, **ours_kw)
    topt = getattr(torch.optim, TORCH[name])(list(tparams.values()), **torch_kw)
    for _ in range(6):
        for k in params:
            g = rng.standard_normal(params[k].shape)
            grads[k][...] = g
            tparams[k].grad = torch.tensor(g)
        opt.step()
        topt.step()
        for k in params:
            np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-12,
                                       atol=1e-12)


def test_adam_float32_matches_torch(kernel_engine):
    """The fused float32 update (one pass, scalars in float32) stays within rounding of torch's
    over many steps, including the largest parameter (the shared scratch's size)."""
    rng = np.random.default_rng(1)
    params = {"big": rng.standard_normal((7, 33)).astype(np.float32),
              "small": rng.standard_normal(5).astype(np.float32)}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = optim.Adam(params, grads, lr=1e-2)
    topt = torch.optim.Adam(list(tparams.values()), lr=1e-2)
    for _ in range(50):
        for k in params:
            g = rng.standard_normal(params[k].shape).astype(np.float32)
            grads[k][...] = g
            tparams[k].grad = torch.tensor(g)
        opt.step()
        topt.step()
    for k in params:  # |p| ≲ 3 is rounded at each of 50 steps: ≤ 50 · ½ ulp(2) ≈ 6e-6 apart
        np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=0, atol=6e-6)


def test_optimizer_state_round_trip():
    rng = np.random.default_rng(0)
    p1 = {"w": rng.standard_normal(5)}
    g1 = {"w": rng.standard_normal(5)}
    a = optim.Adam(p1, g1, lr=0.1)
    a.step()
    arrays, scalars = a.state_dict()
    p2 = {"w": p1["w"].copy()}
    b = optim.Adam(p2, {"w": g1["w"].copy()}, lr=0.1)
    b.load_state_dict({k: v.copy() for k, v in arrays.items()}, scalars)
    a.step()
    b.step()
    np.testing.assert_array_equal(p1["w"], p2["w"])
    with pytest.raises(ValueError, match="optimizer state is for Adam, not SGD"):
        optim.SGD(p2, g1, lr=0.1).load_state_dict(arrays, scalars)


def test_clipping_matches_torch_and_returns_the_norm_before():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)) * 5, "b": rng.standard_normal(7) * 5}
    ts = [torch.zeros(3, 4, dtype=torch.float64, requires_grad=True),
          torch.zeros(7, dtype=torch.float64, requires_grad=True)]
    ts[0].grad, ts[1].grad = torch.tensor(grads["a"]), torch.tensor(grads["b"])
    ref = torch.nn.utils.clip_grad_norm_(ts, 2.0)
    norm = optim.clip_grad_norm(grads, 2.0)
    assert abs(norm - ref.item()) < 1e-12
    np.testing.assert_allclose(grads["a"], ts[0].grad.numpy(), rtol=1e-12)
    assert abs(optim.global_norm(grads) - 2.0) < 1e-5
    before = optim.global_norm(grads)
    assert optim.clip_grad_value(grads, 0.1) == pytest.approx(before)
    assert max(np.abs(g).max() for g in grads.values()) <= 0.1


@pytest.mark.parametrize("kind", ["step", "cosine"])
def test_schedules_match_torch(kind):
    p = {"w": np.zeros(2)}
    opt = optim.SGD(p, {"w": np.zeros(2)}, lr=0.5)
    tp = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.5)
    if kind == "step":
        ours, ref = optim.StepLR(opt, 3, 0.5), torch.optim.lr_scheduler.StepLR(topt, 3, 0.5)
    else:
        ours = optim.CosineLR(opt, 10, 0.01)
        ref = torch.optim.lr_scheduler.CosineAnnealingLR(topt, 10, 0.01)
    for _ in range(10):
        topt.step()
        ref.step()
        ours.step()
        assert abs(opt.lr - topt.param_groups[0]["lr"]) < 1e-12


def test_warmup_and_plateau():
    opt = optim.SGD({"w": np.zeros(1)}, {"w": np.zeros(1)}, lr=1.0)
    w = optim.LinearWarmup(opt, 4)
    seen = [opt.lr] + [w.step() for _ in range(5)]
    assert seen == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    opt = optim.SGD({"w": np.zeros(1)}, {"w": np.zeros(1)}, lr=1.0)
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=1.0)
    ours = optim.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, factor=0.5, patience=2)
    for metric in [5, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3]:
        ours.step(metric)
        ref.step(metric)
        assert abs(opt.lr - topt.param_groups[0]["lr"]) < 1e-12


def test_bad_options():
    p, g = {"w": np.zeros(1)}, {"w": np.zeros(1)}
    with pytest.raises(ValueError, match="lr must be a positive finite number, got 0"):
        optim.SGD(p, g, lr=0)
    for bad in (float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="lr must be a positive finite number"):
            optim.Adam(p, g, lr=bad)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        optim.make_optimizer("lbfgs", p, g, lr=1)
    with pytest.raises(ValueError, match=r"no gradient for parameter\(s\) \['w'\]"):
        optim.Adam(p, {}, lr=1)
    with pytest.raises(ValueError, match="Nesterov momentum needs momentum > 0"):
        optim.SGD(p, g, lr=0.1, nesterov=True)
