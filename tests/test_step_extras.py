"""Layer normalisation, zoneout and recurrent dropout (rnnkit.step_extras): float64 centred
finite differences over every parameter, input and initial state; the equations written again,
step by step, in PyTorch float64 autograd (outputs and every gradient); what the masks must be."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit
import rnnkit.interop
from rnnkit.options import RecurrentOptions, make_recurrent
from rnnkit.plan import plan as make_plan

from .helpers import rel_error
from .test_recurrent import CELLS, LENGTHS, D, H, N, T, _randomise, check_layer

torch = pytest.importorskip("torch")

EVERYTHING = dict(layer_norm=True, zoneout=0.2, recurrent_dropout=0.3, dropout=0.3,
                  variational=True, weight_drop=0.2)


def _check(cell, with_lengths, given_state=False, **kw):
    rng = np.random.default_rng(11)
    layer = CELLS[cell](num_layers=2, bidirectional=True, dtype="float64", seed=3, **kw)
    _randomise(layer, rng)
    x = rng.standard_normal((N, T, D))
    state = None
    if given_state:
        h = rng.standard_normal((4, N, H))
        state = (h, rng.standard_normal((4, N, H))) if layer.cell.has_cell_state else h
    check_layer(layer, x, state, LENGTHS if with_lengths else None, rng, dropout_seed=5)


@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "lstm", "gru", "gru-after"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_gradients_with_everything_at_once(cell, with_lengths):
    """Layer norm, zoneout, recurrent dropout, variational dropout between layers and weight
    drop together, 2 layers, both directions, a given initial state."""
    _check(cell, with_lengths, given_state=True, **EVERYTHING)


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru-after"])
@pytest.mark.parametrize("kernel", ["numpy", "numba"])
def test_gradients_with_layer_norm(cell, kernel):
    """Under either engine's kernels (every forced path of a layer with extras is the step
    loop: test_layer_norm_runs_the_step_loop_on_either_engine)."""
    if kernel == "numba":
        pytest.importorskip("numba")
    with rnnkit.plan.forced(kernel=kernel):
        _check(cell, True, layer_norm=True)


@pytest.mark.parametrize("cell, extra", [
    ("lstm", dict(zoneout=0.3)), ("lstm", dict(zoneout=0.1, zoneout_cell=0.5)),
    ("gru", dict(zoneout=0.3)), ("gru-after", dict(zoneout=0.3)),
    ("lstm", dict(recurrent_dropout=0.4)), ("gru", dict(recurrent_dropout=0.4)),
    ("gru-after", dict(recurrent_dropout=0.4))])
def test_gradients_of_each_regulariser(cell, extra):
    _check(cell, True, **extra)


def test_gradients_in_eval_mode_with_zoneout():
    """Evaluation mixes by the expectation, h_t = p h_{t−1} + (1 − p) h̃_t: differentiable too."""
    rng = np.random.default_rng(2)
    layer = CELLS["lstm"](num_layers=2, dtype="float64", seed=1, zoneout=0.3,
                          layer_norm=True).eval()
    _randomise(layer, rng)
    check_layer(layer, rng.standard_normal((N, T, D)), None, LENGTHS, rng)


# ------------------------------------------------------------------ the equations, in torch
def _ln(v):
    return torch.nn.functional.layer_norm(v, v.shape[-1:], eps=1e-5)


def _torch_step(kind, p, x, h, c, mask):
    """One step of the layer-normalised cell as rnnkit.step_extras' docstring writes it."""
    sig = torch.sigmoid
    hm = h * mask
    a = _ln(x @ p["weight_ih_l0"].T) * p["ln_weight_ih_l0"] + p["bias_ih_l0"]
    b_hh, g_hh = p["bias_hh_l0"], p["ln_weight_hh_l0"]
    if kind == "gru":  # reset before: r,z product and the n product normalised apart
        U = p["weight_hh_l0"]
        a = a + b_hh
        rz = a[:, :2 * H] + _ln(hm @ U[:2 * H].T) * g_hh[:2 * H]
        r, z = sig(rz[:, :H]), sig(rz[:, H:])
        n = torch.tanh(a[:, 2 * H:] + _ln((r * hm) @ U[2 * H:].T) * g_hh[2 * H:])
        return (1 - z) * n + z * h, None
    g = _ln(hm @ p["weight_hh_l0"].T) * g_hh
    if kind == "gru-after":
        g = g + b_hh
        r, z = sig(a[:, :H] + g[:, :H]), sig(a[:, H:2 * H] + g[:, H:2 * H])
        n = torch.tanh(a[:, 2 * H:] + r * g[:, 2 * H:])
        return (1 - z) * n + z * h, None
    s = a + g + b_hh
    if kind == "rnn-tanh":
        return torch.tanh(s), None
    i, f, u, o = (s[:, k * H:(k + 1) * H] for k in range(4))
    c = sig(f) * c + sig(i) * torch.tanh(u)
    return sig(o) * torch.tanh(_ln(c) * p["ln_weight_c_l0"] + p["ln_bias_c_l0"]), c


@pytest.mark.parametrize("kind", ["rnn-tanh", "lstm", "gru", "gru-after"])
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.4])
def test_layer_norm_and_recurrent_dropout_match_torch_autograd(kind, recurrent_dropout):
    rng = np.random.default_rng(4)
    layer = CELLS[kind](dtype="float64", seed=2, layer_norm=True,
                        recurrent_dropout=recurrent_dropout)
    _randomise(layer, rng)
    x = rng.standard_normal((N, T, D))
    gout = rng.standard_normal((N, T, H))
    layer.rng = np.random.default_rng(9)
    out, _, cache = layer.forward(x)
    layer.backward(gout, None, cache)
    # The mask the layer drew: one (N, H) inverted-dropout mask, the only draw here.
    mask = np.ones((N, H))
    if recurrent_dropout:
        keep = 1 - recurrent_dropout
        mask = (np.random.default_rng(9).random((N, H)) < keep) / keep
    p = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    xt = torch.tensor(x, requires_grad=True)
    h = torch.zeros(N, H, dtype=torch.float64)
    c = torch.zeros_like(h) if kind == "lstm" else None
    outs = []
    for t in range(T):
        h, c = _torch_step(kind, p, xt[:, t], h, c, torch.tensor(mask))
        outs.append(h)
    ref = torch.stack(outs, 1)
    (ref * torch.tensor(gout)).sum().backward()
    assert rel_error(out, ref.detach().numpy()) < 1e-12
    for name, t_param in p.items():
        assert rel_error(layer.grads[name], t_param.grad.numpy()) < 1e-10, name


@pytest.mark.parametrize("kind", ["lstm", "gru-after"])
def test_zoneout_in_eval_mixes_by_the_expectation(kind):
    """torch's own LSTMCell / GRUCell (reset after) with h ← p h + (1 − p) h̃ (c likewise)."""
    rng = np.random.default_rng(5)
    layer = CELLS[kind](dtype="float64", seed=2, zoneout=0.25, zoneout_cell=0.6).eval() \
        if kind == "lstm" else CELLS[kind](dtype="float64", seed=2, zoneout=0.25).eval()
    x = rng.standard_normal((N, T, D))
    out, _, _ = layer.forward(x, inference=True)
    mod = (torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(D, H).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(mod, name).copy_(torch.tensor(layer.params[f"{name}_l0"]))
        h = torch.zeros(N, H, dtype=torch.float64)
        c = torch.zeros_like(h)
        outs = []
        for t in range(T):
            xt = torch.tensor(x[:, t])
            if kind == "lstm":
                h1, c1 = mod(xt, (h, c))
                c = 0.6 * c + 0.4 * c1
            else:
                h1 = mod(xt, h)
            h = 0.25 * h + 0.75 * h1
            outs.append(h)
    assert rel_error(out, torch.stack(outs, 1).numpy()) < 1e-12


# ------------------------------------------------------------------ the masks
def test_zoneout_in_training_keeps_whole_units_at_a_fresh_rate_each_step():
    """In training each unit either keeps h_{t−1} exactly or takes the cell's new value, with
    masks drawn afresh at every step."""
    rng = np.random.default_rng(6)
    layer = rnnkit.GRU(D, 64, dtype="float64", seed=1, zoneout=0.3)
    x = rng.standard_normal((200, 6, D))
    out, _, _ = layer.forward(x)
    kept = out[:, 1:] == out[:, :-1]  # (N, T−1, H)
    assert 0.27 < kept.mean() < 0.33
    # Fresh at each step: the kept units of steps 1 and 2 agree only by chance (p² + (1−p)²).
    same = (kept[:, 0] == kept[:, 1]).mean()
    assert 0.55 < same < 0.61
    plain = rnnkit.GRU(D, 64, dtype="float64", seed=1)
    assert not np.allclose(out, plain.forward(x)[0])


def test_recurrent_dropout_is_off_in_eval_and_a_plain_layer_then():
    rng = np.random.default_rng(7)
    layer = rnnkit.LSTM(D, H, dtype="float64", seed=3, recurrent_dropout=0.5)
    plain = rnnkit.LSTM(D, H, dtype="float64", seed=3)
    x = rng.standard_normal((N, T, D))
    assert not np.allclose(layer.forward(x)[0], plain.forward(x)[0])
    layer.eval()
    assert np.allclose(layer.forward(x)[0], plain.forward(x)[0], rtol=1e-12, atol=1e-14)
    assert layer.plan(N).layout != "step"  # nothing of it left in eval: the fast loops


def test_layer_norm_runs_the_step_loop_on_either_engine():
    layer = rnnkit.LSTM(D, H, layer_norm=True)
    chosen = layer.plan(64, inference=True, steps=50)
    assert chosen.layout == "step"
    for forced in (dict(layout="batch-major"), dict(products="packed", layout="time-major"),
                   dict(products="loop")):
        with rnnkit.plan.forced(**forced):
            assert layer.plan(64, inference=True, steps=50).layout == "step"
    assert make_plan(layer.cell, 64, False, True, steps=50).layout != "step"
    assert {n for n in layer.params if n.startswith("ln_")} == {
        "ln_weight_ih_l0", "ln_weight_hh_l0", "ln_weight_c_l0", "ln_bias_c_l0"}
    assert np.all(layer.params["ln_weight_ih_l0"] == 1) and np.all(
        layer.params["ln_bias_c_l0"] == 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(cell="lstm", peepholes=True, layer_norm=True), "peepholes cannot be combined"),
    (dict(cell="lstm", proj_size=2, zoneout=0.1), "proj_size cannot be combined"),
    (dict(cell="gru", zoneout=1.0), "zoneout must be a number in"),
    (dict(cell="rnn", recurrent_dropout=-0.1), "recurrent_dropout must be a number in"),
])
def test_bad_options(kwargs, match):
    cls = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[kwargs.pop("cell")]
    with pytest.raises(ValueError, match=match):
        cls(D, H, **kwargs)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_zoneout_cell_is_the_lstms(cell):
    with pytest.raises(ValueError, match="zoneout_cell is an LSTM option"):
        make_recurrent(cell, D, H, options=RecurrentOptions(zoneout_cell=0.2))


@pytest.mark.parametrize("options", [dict(layer_norm=True), dict(zoneout=0.1)])
def test_exports_refuse_what_they_cannot_compute(options, tmp_path):
    """Recurrent dropout is off in evaluation and exports; layer norm and zoneout change the
    function, and PyTorch's modules and ONNX's operators have neither."""
    layer = make_recurrent("gru-after", D, H, options=RecurrentOptions(**options))
    with pytest.raises(ValueError, match="layer-normalised|zoneout"):
        rnnkit.interop.to_torch_state_dict(layer)
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="cannot be exported"):
        rnnkit.interop.export_layer_onnx(layer, tmp_path / "layer.onnx")
    ok = make_recurrent("gru-after", D, H, options=RecurrentOptions(recurrent_dropout=0.3))
    assert set(rnnkit.interop.to_torch_state_dict(ok)) == {
        n for n in ok.params if n.startswith(("weight", "bias"))}
