"""rnnkit layers against torch.nn.RNN/LSTM/GRU in float64: weights copied by name; outputs,
final states, dx, dstate and every parameter gradient equal to 1e-10."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

N, T, D, H = 3, 5, 3, 4
TOL = 1e-10


@pytest.fixture(autouse=True)
def _every_engine(layer_engine):
    """Each test here runs under every kernel engine (see conftest.py)."""



def _close(ours, ref, what):
    ref = ref.detach().numpy() if hasattr(ref, "detach") else ref
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != torch {ref.shape}"
    np.testing.assert_allclose(ours, ref, rtol=TOL, atol=TOL, err_msg=what)


def _make(kind, layers, bidir, nonlinearity="tanh"):
    kw = dict(num_layers=layers, bidirectional=bidir, dtype="float64", seed=7)
    if kind == "lstm-proj":  # h_t = W_hr (o ⊙ tanh(c_t)), P = 3 of H = 4
        ours = rnnkit.LSTM(D, H, proj_size=3, **kw)
        ref = torch.nn.LSTM(D, H, layers, batch_first=True, bidirectional=bidir, proj_size=3,
                            dtype=torch.float64)
    elif kind == "rnn":
        ours = rnnkit.RNN(D, H, nonlinearity=nonlinearity, **kw)
        ref = torch.nn.RNN(D, H, layers, nonlinearity=nonlinearity, batch_first=True,
                           bidirectional=bidir, dtype=torch.float64)
    elif kind == "lstm":
        ours = rnnkit.LSTM(D, H, **kw)
        ref = torch.nn.LSTM(D, H, layers, batch_first=True, bidirectional=bidir,
                            dtype=torch.float64)
    else:
        ours = rnnkit.GRU(D, H, reset_after=True, **kw)
        ref = torch.nn.GRU(D, H, layers, batch_first=True, bidirectional=bidir,
                           dtype=torch.float64)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.from_numpy(ours.params[name]))
    return ours, ref


CASES = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("lstm-proj", None), ("gru", None)]


@pytest.mark.parametrize("kind,nl", CASES, ids=[f"{k}-{n}" if n else k for k, n in CASES])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_matches_torch(kind, nl, layers, bidir, with_lengths):
    ours, ref = _make(kind, layers, bidir, nl or "tanh")
    rng = np.random.default_rng(0)
    dirs = 2 if bidir else 1
    Ho = ours.output_size  # P for the projected LSTM
    x = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((layers * dirs, N, Ho))
    c0 = rng.standard_normal((layers * dirs, N, H))
    lengths = np.array([2, 5, 3]) if with_lengths else None
    gout = rng.standard_normal((N, T, dirs * Ho))
    gh = rng.standard_normal((layers * dirs, N, Ho))
    gc = rng.standard_normal((layers * dirs, N, H))
    lstm = kind.startswith("lstm")

    state = (h0, c0) if lstm else h0
    out, final, cache = ours.forward(x, state, lengths)
    dstate = (gh, gc) if lstm else gh
    dx, dstate0 = ours.backward(gout, dstate, cache)

    tx = torch.tensor(x, requires_grad=True)
    th0 = torch.tensor(h0, requires_grad=True)
    tc0 = torch.tensor(c0, requires_grad=True)
    tstate = (th0, tc0) if lstm else th0
    if with_lengths:
        packed = pack_padded_sequence(tx, torch.tensor(lengths), batch_first=True,
                                      enforce_sorted=False)
        tout, tfinal = ref(packed, tstate)
        tout, _ = pad_packed_sequence(tout, batch_first=True, total_length=T)
    else:
        tout, tfinal = ref(tx, tstate)
    loss = (tout * torch.tensor(gout)).sum()
    if lstm:
        loss = loss + (tfinal[0] * torch.tensor(gh)).sum() + (tfinal[1] * torch.tensor(gc)).sum()
    else:
        loss = loss + (tfinal * torch.tensor(gh)).sum()
    loss.backward()

    _close(out, tout, "out")
    if lstm:
        _close(final[0], tfinal[0], "h_n")
        _close(final[1], tfinal[1], "c_n")
        _close(dstate0[0], th0.grad, "dh0")
        _close(dstate0[1], tc0.grad, "dc0")
    else:
        _close(final, tfinal, "h_n")
        _close(dstate0, th0.grad, "dh0")
    _close(dx, tx.grad, "dx")
    for name, p in ref.named_parameters():
        _close(ours.grads[name], p.grad, f"grad {name}")
    assert set(ours.grads) == {name for name, _ in ref.named_parameters()}
