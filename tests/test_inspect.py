"""rnnkit inspect (rnnkit.inspector, rnnkit.inspect_page): the values read from the engine's
cache are the cell's gates and states (checked against the equations evaluated from the
weights), the gradient through time is torch autograd's, the features and correlations find
what is planted, every task's run gives a page, and bad input is one line."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from rnnkit import GRU, LSTM, RNN
from rnnkit.cli import main
from rnnkit.inspect_page import collect, write_page
from rnnkit.inspector import correlations, quantise, recording, states, text_features
from rnnkit.pipeline import Task, train

from .helpers import write_task_files

TEXT = 'The cat (a "small" one) sat.\nA dog [big] ran 42 laps!\n' * 12


def _sig(a):
    return 1 / (1 + np.exp(-a))


@pytest.mark.parametrize("make", [LSTM, GRU, RNN], ids=["lstm", "gru", "rnn"])
def test_states_are_the_cells_values_in_both_directions_of_every_layer(make):
    rng = np.random.default_rng(0)
    layer = make(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=1).eval()
    x = rng.standard_normal((1, 5, 3))
    with recording(layer) as calls:
        out, _, _ = layer.forward(x)
    found = states(layer, *calls[0])
    ref, _, _ = layer.forward(x, inference=True)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-14)
    inputs = x[0]
    for lyr in range(2):
        below = []
        for d, name in enumerate((f"l{lyr}", f"l{lyr}r")):
            s = "_reverse" if d else ""
            W, U = layer.params[f"weight_ih_l{lyr}{s}"], layer.params[f"weight_hh_l{lyr}{s}"]
            b, bh = layer.params[f"bias_ih_l{lyr}{s}"], layer.params[f"bias_hh_l{lyr}{s}"]
            h = found[f"{name} h"]
            steps = range(4, -1, -1) if d else range(5)
            hp, cp = np.zeros(4), np.zeros(4)
            for t in steps:  # the equations of SPEC §1 from the weights, step by step
                a, g = inputs[t] @ W.T + b, hp @ U.T + bh
                if make is LSTM:
                    i, f, gg, o = _sig(a[:4] + g[:4]), _sig(a[4:8] + g[4:8]), \
                        np.tanh(a[8:12] + g[8:12]), _sig(a[12:] + g[12:])
                    c = f * cp + i * gg
                    for k, v in zip("ifgo", (i, f, gg, o), strict=True):
                        np.testing.assert_allclose(found[f"{name} {k}"][t], v, atol=1e-13)
                    np.testing.assert_allclose(found[f"{name} c"][t], c, atol=1e-13)
                    hp, cp = o * np.tanh(c), c
                elif make is GRU:  # reset before the product (the notes' form)
                    r, z = _sig(a[:4] + g[:4]), _sig(a[4:8] + g[4:8])
                    n = np.tanh(a[8:] + (r * hp) @ U[8:].T + bh[8:])
                    for k, v in zip("rzn", (r, z, n), strict=True):
                        np.testing.assert_allclose(found[f"{name} {k}"][t], v, atol=1e-13)
                    hp = (1 - z) * n + z * hp
                else:
                    hp = np.tanh(a + g)
                np.testing.assert_allclose(h[t], hp, atol=1e-13)
            below.append(h)
        inputs = np.concatenate(below, axis=1)
    assert (make is not LSTM) or "l1r c" in found


@pytest.mark.parametrize("bits", [4, 8])
def test_quantised_codes_come_back_within_half_a_step(bits):
    v = np.random.default_rng(1).standard_normal((50, 7)) * [1, 2, 3, 4, 5, 6, 0]
    codes, lo, hi = quantise(v, bits)
    top = 2**bits - 1
    back = lo + codes * (hi - lo) / top
    assert codes.dtype == np.uint8 and codes.max() == top and codes.min() == 0
    assert np.all(np.abs(back - v) <= (hi - lo) / (2 * top) + 1e-12)


def test_features_and_the_units_that_follow_them():
    tokens = list('a (b "c" d)\ne')
    f = text_features(tokens, [True] + [False] * (len(tokens) - 1))
    assert f["bracket depth"].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert f["inside quotation"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0]
    assert f["position in line"].tolist()[-2:] == [0, 1] and f["whitespace"][1] == 1
    rng = np.random.default_rng(2)
    values = rng.standard_normal((13, 6))
    values[:, 4] = f["bracket depth"] * 2 + 0.01 * rng.standard_normal(13)
    values[:, 1] = -f["inside quotation"]
    found = correlations(values, f)
    assert found["bracket depth"][0][0] == 4 and found["bracket depth"][0][1] > 0.99
    assert found["inside quotation"][0] == (1, pytest.approx(-1.0))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    f = write_task_files(root, TEXT)
    small = dict(hidden=5, embedding_dim=4, epochs=1, progress=False)
    train("lm", f["lm"], root / "lm", layers=1, batch_size=2, bptt=16, **small)
    train("classify", f["classify"], root / "cls", layers=2, **small)
    train("tag", f["tag"], root / "tag", char_dim=3, char_hidden=2, **small)
    train("tag", f["tag"], root / "crf", crf=True, **small)
    train("translate", f["translate"], root / "mt", cell="gru", attention="dot", **small)
    return root


def test_the_gradient_through_time_is_torch_autograds(runs):
    torch = pytest.importorskip("torch")
    found = collect(runs / "lm", runs / "text.txt", max_tokens=40, window=16)
    task = Task.load(runs / "lm")
    # The run computes in float32, as trained, and the page keeps float32 norms: torch runs the
    # same weights in float64, so the two agree to float32's precision; a wrong step, window
    # or layer would differ by far more.
    P = {k: torch.tensor(v, dtype=torch.float64) for k, v in task.model.params.items()}
    ids = torch.tensor(task.vocab.encode(list(TEXT[:40])))
    cell = torch.nn.LSTMCell(4, 5).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(P[f"rnn.{name}_l0"])
    norms = np.frombuffer(__import__("base64").b64decode(found["gradient"]["norms"]), np.float32)
    g = found["gradient"]
    offsets = np.concatenate([[0], np.cumsum(g["lengths"])])
    for s in (0, 7, 15, 16, 30):  # the window's first step, its last, the next window's
        i = g["steps"].index(s)
        h = c = torch.zeros(1, 5, dtype=torch.float64)
        hs = []
        for k in range(g["first"][i], s + 1):  # each window starts from a zero state
            h, c = cell(P["embedding.weight"][ids[k]][None], (h, c))
            h.retain_grad()
            hs.append(h)
        logits = h[0] @ P["head.weight"].T + P["head.bias"]
        torch.nn.functional.cross_entropy(logits[None], ids[s + 1:s + 2]).backward()
        want = np.array([x.grad[0].norm().item() for x in hs])  # ∂L_s/∂h_k, all paths
        np.testing.assert_allclose(norms[offsets[i]:offsets[i + 1]], want, rtol=2e-4)


@pytest.mark.parametrize("run, data", [("lm", "text.txt"), ("cls", "cls.tsv"),
                                       ("tag", "tags.conll"), ("crf", "tags.conll"),
                                       ("mt", "pairs.txt")])
def test_every_task_gives_a_self_contained_page(runs, run, data, tmp_path):
    meta = write_page(runs / run, runs / data, tmp_path / "p.html", max_tokens=30)
    page = (tmp_path / "p.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched
    blob = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>',
                                page, re.S).group(1).replace("<\\/", "</"))
    T = len(blob["tokens"])
    assert meta["tokens"] == T and T >= 30 and len(blob["hover"]) == T
    assert sum(g["size"] for g in blob["groups"]) == blob["units"] == len(blob["lo"])
    names = {g["name"] for g in blob["groups"]}
    assert "l0 h" in names and ("l0 c" in names) == (run != "mt")
    if run in ("cls", "tag", "crf"):
        assert "l0r h" in names
    if run == "tag":
        assert "tag NOUN" in blob["correlations"] and blob["gold"][:3] == ["DET", "NOUN", "VERB"]
    has_gradient = run not in ("crf", "mt")
    assert bool(blob["gradient"]["steps"]) == has_gradient
    if run == "mt":
        assert blob["outputs"][0]["translation"] is not None and blob["hover"][0]


def test_cli_writes_the_page_and_refuses_bad_input_in_one_line(runs, tmp_path, capsys):
    assert main(["inspect", str(runs / "lm"), "--data", str(runs / "text.txt"),
                 "--out", str(tmp_path / "lm.html"), "--max-tokens", "50"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "50 tokens" in out and (tmp_path / "lm.html").is_file()
    for argv, message in ((["--data", str(tmp_path / "missing.txt")], "missing.txt"),
                          (["--data", str(runs / "text.txt"), "--max-tokens", "0"],
                           "--max-tokens")):
        with pytest.raises(SystemExit) as exc:
            main(["inspect", str(runs / "lm"), *argv, "--out", str(tmp_path / "x.html")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and "Traceback" not in err
    assert main(["inspect", str(runs / "lm"), "--data", str(runs / "text.txt"), "--values", "h",
                 "--max-tokens", "50",
                 "--out", str(tmp_path / "hc.html")]) == 0
    assert (tmp_path / "hc.html").stat().st_size < (tmp_path / "lm.html").stat().st_size
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(runs / "mt"), "--data", str(runs / "pairs.txt"), "--values", "c"])
    assert exc.value.code == 2 and "--values: unknown ['c']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tmp_path), "--data", str(runs / "text.txt")])
    assert exc.value.code == 2 and "no config.json" in capsys.readouterr().err


@pytest.mark.parametrize("opts", [dict(peepholes=True), dict(proj_size=3),
                                  dict(layer_norm=True)], ids=["peepholes", "proj", "ln"])
def test_lstm_variants_keep_the_memory_identity(opts):
    from rnnkit.options import RecurrentOptions, make_recurrent

    layer = make_recurrent("lstm", 3, 4, 2, RecurrentOptions(**opts), bidirectional=True,
                           dtype="float64", seed=1).eval()
    x = np.random.default_rng(0).standard_normal((1, 5, 3))
    with recording(layer) as calls:
        layer.forward(x)
    f = states(layer, *calls[0])
    ref, _, _ = layer.forward(x, inference=True)
    np.testing.assert_allclose(np.concatenate([f["l1 h"], f["l1r h"]], axis=1), ref[0],
                               atol=1e-14)
    for name in ("l0", "l0r", "l1", "l1r"):
        c = f[f"{name} c"]
        prev = np.vstack([c[1:], np.zeros((1, 4))]) if name.endswith("r") else \
            np.vstack([np.zeros((1, 4)), c[:-1]])
        np.testing.assert_allclose(c, f[f"{name} f"] * prev + f[f"{name} i"] * f[f"{name} g"],
                                   atol=1e-13)
        assert ((f[f"{name} i"] > 0) & (f[f"{name} i"] < 1)).all() and (f[f"{name} g"] < 0).any()
