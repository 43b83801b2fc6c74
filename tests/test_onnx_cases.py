"""The ONNX backend node tests for LSTM, GRU and RNN (../shared/onnx-rnn-cases/): a peer's test
suite for our numerics. ONNX orders gates LSTM i,o,f,c and GRU z,r,h, lays X out as
(T, N, D) unless layout=1, and packs both biases into B = [Wb, Rb]."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit

from .helpers import SHARED

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

CASES_DIR = SHARED / "onnx-rnn-cases"
CASES = sorted(p.name for p in CASES_DIR.glob("test_*")) if CASES_DIR.is_dir() else []
# ONNX gate block -> rnnkit gate block
REORDER = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0], "P": [0, 2, 1]}


@pytest.fixture(autouse=True)
def _every_engine(layer_engine):
    """Each test here runs under every kernel engine (see conftest.py)."""



def _reorder(w: np.ndarray, op: str, H: int) -> np.ndarray:
    blocks = [w[k * H:(k + 1) * H] for k in REORDER[op]]
    return np.concatenate(blocks, axis=0)


def _load_case(name):
    case = CASES_DIR / name
    model = onnx.load(str(case / "model.onnx"))
    node = model.graph.node[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    data = case / "test_data_set_0"
    tensors = [numpy_helper.to_array(onnx.load_tensor(str(p)))
               for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem[6:]))]
    inputs = dict(zip(node.input, tensors, strict=False))
    outputs = [numpy_helper.to_array(onnx.load_tensor(str(p)))
               for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem[7:]))]
    produced = [o for o in node.output if o]
    return node.op_type, attrs, inputs, dict(zip(produced, outputs, strict=True))


def run_case(name, dtype):
    op, attrs, inp, expected = _load_case(name)
    H = attrs["hidden_size"]
    direction = attrs.get("direction", b"forward").decode()
    batch_first = attrs.get("layout", 0) == 1
    x = inp["X"] if batch_first else inp["X"].transpose(1, 0, 2)
    N, T, D = x.shape
    onnx_dirs = 2 if direction == "bidirectional" else 1
    # A reverse-only ONNX node is the reverse half of a bidirectional rnnkit layer.
    bidir = direction != "forward"
    kw = dict(bidirectional=bidir, dtype=dtype, seed=0)
    if op == "LSTM":
        layer = rnnkit.LSTM(D, H, peepholes="P" in inp, **kw)
    elif op == "GRU":
        layer = rnnkit.GRU(D, H, reset_after=bool(attrs.get("linear_before_reset", 0)), **kw)
    else:
        layer = rnnkit.RNN(D, H, **kw)
    G = layer.cell.gates
    ours_dirs = [0, 1] if direction == "bidirectional" else [1 if direction == "reverse" else 0]
    for k, d in enumerate(ours_dirs):
        s = "_l0" + ("_reverse" if d else "")
        layer.params[f"weight_ih{s}"][...] = _reorder(inp["W"][k], op, H)
        layer.params[f"weight_hh{s}"][...] = _reorder(inp["R"][k], op, H)
        b = inp.get("B", np.zeros((onnx_dirs, 2 * G * H), np.float32))[k]
        layer.params[f"bias_ih{s}"][...] = _reorder(b[: G * H], op, H)
        layer.params[f"bias_hh{s}"][...] = _reorder(b[G * H:], op, H)
        if "P" in inp:
            # ONNX P = [p_i, p_o, p_f]; rnnkit's is [p_i, p_f, p_o]
            layer.params[f"weight_peephole{s}"][...] = _reorder(inp["P"][k], "P", H)
    state = None
    if "initial_h" in inp:
        h0 = np.zeros((layer.num_directions, N, H))
        c0 = np.zeros_like(h0)
        for k, d in enumerate(ours_dirs):
            h0[d] = inp["initial_h"][k]
            if "initial_c" in inp:
                c0[d] = inp["initial_c"][k]
        state = (h0, c0) if op == "LSTM" else h0
    lengths = inp.get("sequence_lens")
    out, final, _ = layer.forward(x, state, lengths, inference=True)
    h_n = final[0] if op == "LSTM" else final
    got = {}
    y = out.reshape(N, T, layer.num_directions, H)[:, :, ours_dirs]  # (N, T, dirs, H)
    got["Y"] = y if batch_first else y.transpose(1, 2, 0, 3)
    got["Y_h"] = h_n[ours_dirs].transpose(1, 0, 2) if batch_first else h_n[ours_dirs]
    if op == "LSTM":
        c_n = final[1][ours_dirs]
        got["Y_c"] = c_n.transpose(1, 0, 2) if batch_first else c_n
    return expected, got


def test_all_eighteen_cases_present():
    if not CASES_DIR.is_dir():
        pytest.skip(f"{CASES_DIR} not present (the shared ONNX cases sit beside the checkout)")
    assert len(CASES) == 18, CASES


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_onnx_case(name, dtype):
    expected, got = run_case(name, dtype)
    assert expected, "case has no outputs"
    for key, ref in expected.items():
        assert got[key].shape == ref.shape, f"{key}: {got[key].shape} != {ref.shape}"
        np.testing.assert_allclose(got[key], ref, rtol=1e-5, atol=1e-6, err_msg=key)
