"""rnnkit/interop.py: PyTorch modules in and state dicts out; ONNX graphs out (checked by
onnxruntime on real text of mixed lengths) and back in."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.data import Vocab
from rnnkit.interop import export_layer_onnx, export_onnx, from_onnx, from_torch, onnx_feed
from rnnkit.models import (
    ClassifierConfig,
    LanguageModel,
    LMConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    SequenceTagger,
    TaggerConfig,
)

from .helpers import SHARED

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
DATA = SHARED / "data"
TOL = dict(rtol=1e-5, atol=1e-5)  # float32, as the issue asks


def close(got, ref, what=""):
    np.testing.assert_allclose(got, ref, err_msg=what, **TOL)


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------ PyTorch
TORCH_MODULES = [
    ("LSTM", {}), ("GRU", {}), ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu"}),
]


def torch_run(module, x, batch_first):
    xt = torch.from_numpy(x if batch_first else x.transpose(1, 0, 2).copy())
    with torch.no_grad():
        y, state = module(xt)
    y = y.numpy()
    return (y if batch_first else y.transpose(1, 0, 2)), state


@pytest.mark.parametrize("kind,kw", TORCH_MODULES)
@pytest.mark.parametrize("layers,bidir", [(1, False), (2, True), (3, False)])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_from_torch_equals_torch_float64(kind, kw, layers, bidir, batch_first, bias):
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(5, 4, layers, bias=bias, batch_first=batch_first,
                                     bidirectional=bidir, **kw).double()
    layer = from_torch(module)
    assert layer.dtype == np.float64 and layer.num_layers == layers
    assert layer.batch_first == batch_first  # x in the module's own layout
    x = np.random.default_rng(1).standard_normal((3, 7, 5))
    out, state = layer(x if batch_first else x.transpose(1, 0, 2))
    ref, ref_state = torch_run(module, x, batch_first)
    np.testing.assert_allclose(out if batch_first else out.transpose(1, 0, 2), ref, rtol=1e-12,
                               atol=1e-12)
    if kind == "LSTM":
        np.testing.assert_allclose(state[0], ref_state[0].numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state[1], ref_state[1].numpy(), rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(state, ref_state.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,kw", TORCH_MODULES)
def test_to_torch_state_dict_round_trip_float32(kind, kw):
    layer_cls = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN": rnnkit.RNN}[kind]
    extra = {"reset_after": True} if kind == "GRU" else dict(kw)
    layer = layer_cls(6, 5, 2, bidirectional=True, seed=3, **extra)
    module = getattr(torch.nn, kind)(6, 5, 2, batch_first=True, bidirectional=True, **kw)
    module.load_state_dict(rnnkit.to_torch_state_dict(layer))
    x = np.random.default_rng(2).standard_normal((4, 9, 6)).astype(np.float32)
    out, _, _ = layer.forward(x, inference=True)
    close(torch_run(module, x, True)[0], out, kind)
    back = from_torch(rnnkit.interop.to_torch(layer))
    for name, p in layer.params.items():
        np.testing.assert_array_equal(back.params[name], p, err_msg=name)


@pytest.mark.parametrize("cell", ["LSTMCell", "GRUCell", "RNNCell"])
def test_from_torch_cell_modules(cell):
    module = getattr(torch.nn, cell)(5, 4).double()
    layer = from_torch(module)
    x = np.random.default_rng(0).standard_normal((3, 5))
    out, _, _ = layer.forward(x[:, None, :], inference=True)
    with torch.no_grad():
        ref = module(torch.from_numpy(x))
    ref = ref[0] if isinstance(ref, tuple) else ref
    np.testing.assert_allclose(out[:, 0], ref.numpy(), rtol=1e-12, atol=1e-12)


def test_a_projected_lstm_goes_to_torch_and_back():
    """proj_size (h_t = W_hr (o ⊙ tanh(c_t))): imported by name, same outputs in float64,
    exported back to an equal module; ONNX's LSTM has no projection, so export refuses."""
    ref = torch.nn.LSTM(4, 6, 2, proj_size=3, bidirectional=True, batch_first=True,
                        dtype=torch.float64)
    layer = from_torch(ref)
    assert layer.proj_size == 3 and layer.params["weight_hr_l1_reverse"].shape == (3, 6)
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    out, (h, c), _ = layer.forward(x, inference=True)
    tout, (th, tc) = ref(torch.from_numpy(x))
    for ours, theirs in ((out, tout), (h, th), (c, tc)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-13)
    back = rnnkit.interop.to_torch(layer)
    assert back.proj_size == 3
    for name, p in ref.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name].numpy(), p.numpy())
    with pytest.raises(ValueError, match="proj_size=3 cannot be exported: ONNX"):
        export_layer_onnx(layer, "unused.onnx")


@pytest.mark.parametrize("make,message", [
    (lambda: torch.nn.Linear(4, 3), "got Linear \\(torch.nn.modules.linear\\)"),
    (lambda: torch.nn.LSTM(4, 3).half(), "float16"),
])
def test_from_torch_refuses_what_it_cannot_convert(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        from_torch(make())


@pytest.mark.parametrize("layer,message", [
    (lambda: rnnkit.GRU(3, 4), "reset_after=False .* no torch.nn.GRU twin"),
    (lambda: rnnkit.LSTM(3, 4, peepholes=True), "peephole"),
    (lambda: rnnkit.LSTM(3, 4, init_state="learned"), "init_state='learned'"),
])
def test_to_torch_refuses_layers_without_a_twin(layer, message):
    with pytest.raises(ValueError, match=message):
        rnnkit.to_torch_state_dict(layer())


# ------------------------------------------------------------------------------ ONNX layers
def _learned(layer):
    """A layer whose learned initial state has been trained away from zero."""
    rng = np.random.default_rng(8)
    for name in ("h0", "c0"):
        if name in layer.params:
            layer.params[name][...] = rng.uniform(-0.5, 0.5, layer.params[name].shape)
    return layer


LAYERS = [
    lambda: rnnkit.LSTM(5, 4, 2, bidirectional=True, seed=1),
    lambda: _learned(rnnkit.LSTM(5, 4, 2, bidirectional=True, init_state="learned", seed=7)),
    lambda: rnnkit.GRU(5, 4, init_state="random", reset_after=True, seed=8),
    lambda: rnnkit.LSTM(5, 4, peepholes=True, bidirectional=True, seed=2),
    lambda: rnnkit.GRU(5, 4, 2, bidirectional=True, seed=3),
    lambda: rnnkit.GRU(5, 4, reset_after=True, seed=4),
    lambda: rnnkit.RNN(5, 4, 2, nonlinearity="relu", bidirectional=True, seed=5),
    lambda: rnnkit.RNN(5, 4, bias=False, seed=6),
]


@pytest.mark.parametrize("make", LAYERS)
def test_layer_onnx_runs_in_onnxruntime_and_reads_back(make, tmp_path):
    layer = make()
    path = export_layer_onnx(layer, tmp_path / "layer.onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    x = np.random.default_rng(0).standard_normal((4, 7, 5)).astype(np.float32)
    lengths = np.array([7, 2, 5, 1])
    got = session(path).run(None, {"x": x, "lengths": lengths})
    out, state, _ = layer.forward(x, lengths=lengths, inference=True)
    states = state if isinstance(state, tuple) else (state,)
    mask = (np.arange(7)[None, :] < lengths[:, None])[..., None]
    close(got[0] * mask, out * mask, "y")
    for g, s in zip(got[1:], states, strict=True):
        close(g, s, "state")
    names = [f"rnn_l{k}" for k in range(layer.num_layers)]
    back = from_onnx(path, node=names if len(names) > 1 else None)
    assert type(back) is type(layer) and back.num_layers == layer.num_layers
    for name, p in layer.params.items():
        if name not in ("h0", "c0"):  # a node's weights; its initial state is an input
            np.testing.assert_array_equal(back.params[name], p, err_msg=name)


@pytest.mark.parametrize("make", LAYERS)
def test_layer_onnx_time_major_without_lengths(make, tmp_path):
    """The operators' own layout, as a benchmark gives onnxruntime: x (T, N, D) → y (T, N, ·)."""
    layer = make()
    path = export_layer_onnx(layer, tmp_path / "layer.onnx", time_major=True, lengths=False)
    x = np.random.default_rng(1).standard_normal((4, 7, 5)).astype(np.float32)
    got = session(path).run(None, {"x": x.transpose(1, 0, 2).copy()})
    out, state, _ = layer.forward(x, inference=True)
    close(got[0], out.transpose(1, 0, 2), "y")
    for g, s in zip(got[1:], state if isinstance(state, tuple) else (state,), strict=True):
        close(g, s, "state")


def test_from_onnx_reads_the_onnx_peephole_case():
    case = SHARED / "onnx-rnn-cases" / "test_lstm_with_peepholes"
    if not case.is_dir():
        pytest.skip("ONNX cases not present")
    from onnx import numpy_helper

    model = onnx.load(str(case / "model.onnx"))
    node = model.graph.node[0]
    data = sorted((case / "test_data_set_0").glob("input_*.pb"), key=lambda p: int(p.stem[6:]))
    feeds = {n: numpy_helper.to_array(onnx.load_tensor(str(p)))
             for n, p in zip(node.input, data, strict=False)}
    for name in ("W", "R", "B", "P"):  # the case feeds weights as inputs: store them
        model.graph.initializer.append(numpy_helper.from_array(feeds[name], name))
    layer = from_onnx(model)
    assert list(node.output) == ["", "Y_h"]
    y_h = numpy_helper.to_array(onnx.load_tensor(str(case / "test_data_set_0" /
                                                     "output_0.pb")))
    # P is constant in this case, so its order is checked by the peephole layer test above.
    _, (h, _), _ = layer.forward(feeds["X"].transpose(1, 0, 2),
                                 lengths=feeds["sequence_lens"], inference=True)
    close(h, y_h)


def test_from_onnx_errors(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                                [x], [y]))
    with pytest.raises(ValueError, match="no LSTM, GRU or RNN node .*Relu"):
        from_onnx(plain)
    path = export_layer_onnx(rnnkit.GRU(3, 4, 2, seed=0), tmp_path / "gru.onnx")
    with pytest.raises(ValueError, match="2 recurrent nodes \\(rnn_l0, rnn_l1\\)"):
        from_onnx(path)
    with pytest.raises(ValueError, match="no recurrent node named 'rnn_l7'"):
        from_onnx(path, node="rnn_l7")
    assert from_onnx(path, node=["rnn_l1", "rnn_l1"]).input_size == 4  # sizes chain
    with pytest.raises(ValueError, match="takes inputs of size 3, but the layer below gives 4"):
        from_onnx(path, node=["rnn_l1", "rnn_l0"])
    model = onnx.load(str(path))
    r = next(t for t in model.graph.initializer if t.name == "rnn_l0_R")
    r.CopyFrom(numpy_helper.from_array(np.zeros((1, 12, 5), np.float32), "rnn_l0_R"))
    with pytest.raises(ValueError, match="R has shape \\(1, 12, 5\\), expected \\(1, 12, 4\\)"):
        from_onnx(model, node=0)
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x00\xffnot a protobuf" * 10)
    with pytest.raises(ValueError, match="garbage.onnx: not a readable ONNX model"):
        from_onnx(bad)


def test_from_onnx_refuses_unsupported_attributes():
    from onnx import TensorProto, helper, numpy_helper

    def model(dtype=np.float32, twice=False, **attrs):
        inits = [numpy_helper.from_array(np.zeros((1, 12, 2), dtype), "W"),
                 numpy_helper.from_array(np.zeros((1, 12, 3), np.float32), "R")]
        if twice:
            inits.append(numpy_helper.from_array(np.ones((1, 12, 3), np.float32), "R"))
        node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], hidden_size=3, **attrs)
        x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 1, 2])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
        return helper.make_model(helper.make_graph([node], "g", [x], [y], inits))

    assert from_onnx(model()).hidden_size == 3
    for attrs, message in ((dict(clip=1.0), "'clip'"), (dict(input_forget=1), "input_forget"),
                           (dict(direction="reverse"), "reverse-only"),
                           (dict(activations=["Relu", "Tanh", "Tanh"]), "activations"),
                           (dict(direction="sideways"), "unknown direction 'sideways'"),
                           (dict(twice=True), "two initializers are named 'R'"),
                           (dict(dtype=np.int32), "W holds int32 values")):
        with pytest.raises(ValueError, match=message):
            from_onnx(model(**attrs))


# ------------------------------------------------------------------------------ ONNX models
def real_sentences(n=24):
    path = DATA / "ud_english_ewt" / "en_ewt-ud-dev.conllu"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    from rnnkit.data import read_conllu

    return [toks for toks, _ in read_conllu(path)[:n]]


def word_ids(sentences):
    from rnnkit.data import Vocab

    vocab = Vocab.build(sentences)
    chars = Vocab.build(list(w) for s in sentences for w in s)
    return vocab, chars, [vocab.encode(s) for s in sentences]


CELLS = ["lstm", "gru", "rnn"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bigram_features", [False, True])
def test_classifier_onnx_equals_rnnkit(cell, pooling, bigram_features, tmp_path):
    from rnnkit.data import token_bigrams

    sentences = real_sentences()
    vocab, _, ids = word_ids(sentences)
    bigrams = Vocab.build([b for pair in token_bigrams(s) for b in pair] for s in sentences)
    m = SequenceClassifier(ClassifierConfig(
        len(vocab), 3, 8, 6, 2, cell, pooling=pooling,
        bigram_vocab_size=len(bigrams) if bigram_features else 0, bigram_dim=3))
    batch = m.collate([(w, 0, [bigrams.encode(p) for p in token_bigrams(s)])
                       for w, s in zip(ids, sentences, strict=True)])
    assert len(set(batch[1].tolist())) > 5  # mixed lengths
    (path,) = export_onnx(m, tmp_path / "clf.onnx")
    got = session(path).run(None, onnx_feed(m, batch)[0])[0]
    close(got, m.predict_logits(batch))


def test_recurrent_options_survive_onnx_export(tmp_path):
    """A GRU in PyTorch's form from a random initial state with chrono biases, trained with
    weight drop and variational dropout: the exported graph computes what eval mode does."""
    sentences = real_sentences()
    vocab, _, ids = word_ids(sentences)
    m = SequenceClassifier(ClassifierConfig(
        len(vocab), 3, 8, 6, 2, "gru-after", init_state="random", chrono=12, weight_drop=0.3,
        variational=True, dropout=0.2, seed=3))
    batch = m.collate([(w, 0) for w in ids])
    (path,) = export_onnx(m, tmp_path / "clf.onnx")
    got = session(path).run(None, onnx_feed(m, batch)[0])[0]
    close(got, m.predict_logits(batch))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("char_features,bigram_features", [(True, False), (False, False),
                                                           (True, True), (False, True)])
def test_tagger_onnx_equals_rnnkit(cell, char_features, bigram_features, tmp_path):
    from rnnkit.data import token_bigrams

    sentences = real_sentences()
    vocab, chars, ids = word_ids(sentences)
    bigrams = Vocab.build([b for pair in token_bigrams(s) for b in pair] for s in sentences)
    m = SequenceTagger(TaggerConfig(len(vocab), 5, 8, 6, 2, cell,
                                    char_vocab_size=len(chars) if char_features else 0,
                                    bigram_vocab_size=len(bigrams) if bigram_features else 0,
                                    bigram_dim=3))
    examples = [(w, [0] * len(w), [chars.encode(list(t)) for t in s],
                 [bigrams.encode(p) for p in token_bigrams(s)])
                for w, s in zip(ids, sentences, strict=True)]
    batch = m.collate(examples)
    (path,) = export_onnx(m, tmp_path / "tag.onnx")
    got = session(path).run(None, onnx_feed(m, batch)[0])[0]
    with m.evaluating():
        ref, _ = m._logits(batch)
    valid = np.arange(batch[0].shape[1])[None, :] < batch[1][:, None]
    close(got[valid], ref[valid])


@pytest.mark.parametrize("cell", CELLS)
def test_language_model_onnx_sequence_and_steps(cell, tmp_path):
    text = (DATA / "tinyshakespeare" / "input.txt")
    if not text.is_file():
        pytest.skip("tinyshakespeare not present")
    chars = sorted(set(text.read_text()[:4000]))
    stream = np.array([chars.index(ch) for ch in text.read_text()[:4000]])
    m = LanguageModel(LMConfig(len(chars), 8, 6, 2, cell))
    x = stream[:3 * 40].reshape(3, 40)
    (path,) = export_onnx(m, tmp_path / "lm.onnx")
    s = session(path)
    feed = onnx_feed(m, (x,))[0]
    whole = s.run(None, feed)
    with m.evaluating():
        ref, state, _ = m._logits(x, None)
    close(whole[0], ref, "whole sequence")
    states = state if isinstance(state, tuple) else (state,)
    for g, r in zip(whole[1:], states, strict=True):
        close(g, r, "final state")
    steps = []
    for t in range(x.shape[1]):  # one step at a time, the state carried in and out
        feed["ids"] = x[:, t:t + 1]
        out = s.run(None, feed)
        steps.append(out[0])
        feed["h"] = out[1]
        if cell == "lstm":
            feed["c"] = out[2]
    close(np.concatenate(steps, axis=1), ref, "step by step")


def onnx_greedy(enc, dec, m, batch, max_len):
    """Greedy decoding with the exported encoder and decoder step (what a deployment does)."""
    e = session(enc).run(None, onnx_feed(m, batch)[0])
    s = session(dec)
    n = len(batch[0])
    feed = {"token": np.full(n, m.BOS, np.int64), "h": e[1], "enc_out": e[0],
            "src_lengths": batch[1]}
    if m.config.cell == "lstm":
        feed["c"] = e[2]
    out, done = [[] for _ in range(n)], np.zeros(n, bool)
    first_logits = None
    for _ in range(max_len):
        o = s.run(None, feed)
        first_logits = o[0] if first_logits is None else first_logits
        logits = o[0].copy()
        logits[:, [m.PAD, m.BOS]] = -np.inf  # rnnkit's decoding rule: never emit these
        token = logits.argmax(axis=1)
        for i in np.flatnonzero(~done):
            if token[i] == m.EOS:
                done[i] = True
            else:
                out[i].append(int(token[i]))
        if done.all():
            break
        feed.update(token=token, h=o[1])
        if m.config.cell == "lstm":
            feed["c"] = o[2]
    return out, e, first_logits


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
def test_seq2seq_onnx_encoder_and_decoder_step(cell, attention, tmp_path):
    path = DATA / "tatoeba_fra_eng" / "fra.txt"
    if not path.is_file():
        pytest.skip("tatoeba not present")
    from rnnkit.data import Vocab

    lines = path.read_text(encoding="utf-8").splitlines()[::5000][:16]  # sorted by length
    pairs = [(a.split(), b.split()) for a, b, *_ in (ln.split("\t") for ln in lines)]
    src, tgt = Vocab.build(a for a, _ in pairs), Vocab.build(b for _, b in pairs)
    m = Seq2Seq(Seq2SeqConfig(len(src), len(tgt), 8, 6, 2, cell, attention))
    src_ids = [src.encode(a) for a, _ in pairs]
    batch = m.collate([(s, []) for s in src_ids])
    assert len(set(batch[1].tolist())) > 2
    enc, dec = export_onnx(m, tmp_path / "s2s.onnx")
    assert (enc.name, dec.name) == ("s2s.encoder.onnx", "s2s.decoder.onnx")
    ours, e, first = onnx_greedy(enc, dec, m, batch, 12)
    with m.evaluating():
        enc_out, state, smask, _ = m._encode(batch[0], batch[1])
        ref_first = m._step(np.full(len(src_ids), m.BOS), (state, None), enc_out, smask)[0][:, 0]
    close(e[0] * smask[..., None], enc_out * smask[..., None], "encoder states")
    close(first, ref_first, "first decoder step")
    assert ours == m.greedy(src_ids, 12)


def test_export_refuses_other_models(tmp_path):
    from rnnkit.models import Seq2Seq, Seq2SeqConfig, SequenceRegressor

    with pytest.raises(ValueError, match="ONNX export supports .* got SequenceRegressor"):
        export_onnx(SequenceRegressor.__new__(SequenceRegressor), tmp_path / "x.onnx")
    fed = Seq2Seq(Seq2SeqConfig(src_vocab_size=6, tgt_vocab_size=6, hidden_size=4,
                                input_feed=True))
    with pytest.raises(ValueError, match="not implemented for bidirectional_encoder or "
                       "input_feed"):
        export_onnx(fed, tmp_path / "x.onnx")


def test_cli_export_a_trained_classifier(tmp_path, capsys):
    from rnnkit.cli import main
    from rnnkit.pipeline import Task

    data = DATA / "sms_spam_collection" / "SMSSpamCollection"
    if not data.is_file():
        pytest.skip("SMS spam not present")
    rows = [ln.split("\t") for ln in data.read_text(encoding="utf-8").splitlines()[:300]]
    train = tmp_path / "sms.tsv"
    train.write_text("".join(f"{t}\t{lab}\n" for lab, t in rows), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "classify", "--train", str(train), "--out", str(run), "--epochs", "1",
                 "--hidden", "8", "--embedding-dim", "8", "--tokenizer", "char",
                 "--pooling", "max", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--onnx", str(tmp_path / "sms.onnx")]) == 0
    assert "sms.onnx" in capsys.readouterr().out
    task = Task.load(run)
    examples = task.encode([(t, lab) for lab, t in rows[:40]])
    batch = task.model.collate(examples)
    got = session(tmp_path / "sms.onnx").run(None, onnx_feed(task.model, batch)[0])[0]
    close(got, task.model.predict_logits(batch))


def test_cli_export_a_trained_translator(tmp_path, capsys):
    from rnnkit.cli import main
    from rnnkit.pipeline import Task

    fra = DATA / "tatoeba_fra_eng" / "fra.txt"
    if not fra.is_file():
        pytest.skip("tatoeba not present")
    lines = fra.read_text(encoding="utf-8").splitlines()[::400][:400]
    small = tmp_path / "fra.txt"
    small.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
    run = tmp_path / "tr"
    assert main(["train", "translate", "--train", str(small), "--out", str(run), "--epochs",
                 "1", "--hidden", "16", "--embedding-dim", "8", "--cell", "lstm",
                 "--attention", "general", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", str(run), "--onnx", str(tmp_path / "tr.onnx")]) == 0
    assert capsys.readouterr().out.split() == ["wrote", str(tmp_path / "tr.encoder.onnx"),
                                               "wrote", str(tmp_path / "tr.decoder.onnx")]
    task = Task.load(run)
    src = [task.vocab.encode(task.tokenizer(ln.split("\t")[0])) for ln in lines[:30]]
    batch = task.model.collate([(s, []) for s in src])
    ours, _, _ = onnx_greedy(tmp_path / "tr.encoder.onnx", tmp_path / "tr.decoder.onnx",
                             task.model, batch, 20)
    assert ours == task.model.greedy(src, 20)


def test_cli_export_errors(tmp_path, capsys):
    from rnnkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["export", str(tmp_path), "--onnx", str(tmp_path / "x.onnx")])
    assert exc.value.code == 2 and "not an rnnkit checkpoint" in capsys.readouterr().err
