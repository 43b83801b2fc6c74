"""rnnkit.to_torch on whole models: the torch twin of every task model, called with the model's
own inputs, equals ``model(...)`` in float64 to 1e-10; from_torch brings the weights back."""

from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.models import (
    ClassifierConfig,
    LanguageModel,
    LMConfig,
    RegressorConfig,
    SequenceClassifier,
    SequenceRegressor,
    SequenceTagger,
    StepClassifier,
    StepClassifierConfig,
    TaggerConfig,
)
from rnnkit.seq2seq import Seq2Seq, Seq2SeqConfig

torch = pytest.importorskip("torch")

TOL = 1e-10
N, T, V = 3, 5, 11
LENGTHS = np.array([2, 5, 3])


def _close(ours, theirs, what="output"):
    """One reference comparison: arrays (or tuples of them) equal to 1e-10."""
    if isinstance(ours, tuple):
        for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _close(a, b, f"{what}[{k}]")
        return
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} != torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=TOL, atol=TOL, err_msg=what)


def _generic(model, seed=0):
    """Every parameter random (CRF, attention and biases start at zero)."""
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    return model


def _twin(model, *inputs):
    """to_torch(model)(*inputs) == model(*inputs); the round trip gives the weights back."""
    module = rnnkit.to_torch(model)
    assert isinstance(module, torch.nn.Module)
    assert set(module.state_dict()) == set(model.params)
    with torch.no_grad():
        _close(model(*inputs), module(*inputs))
    back = rnnkit.from_torch(module)
    assert type(back) is type(model) and back.config == model.config
    for name, p in model.params.items():
        np.testing.assert_array_equal(back.params[name], p, err_msg=name)
    return module


def _ids(rng, vocab=V, n=N, t=T, lengths=LENGTHS):
    ids = rng.integers(4, vocab, (n, t))
    if lengths is not None:
        ids[np.arange(t)[None, :] >= lengths[:, None]] = 0
    return ids


CELLS = ["lstm", "gru", "gru-after", "rnn", "rnn-relu"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_classifier(cell, pooling):
    rng = np.random.default_rng(1)
    model = _generic(SequenceClassifier(ClassifierConfig(
        vocab_size=V, num_classes=3, embedding_dim=5, hidden_size=4, num_layers=2, cell=cell,
        pooling=pooling, bigram_vocab_size=7, bigram_dim=3, dtype="float64")))
    bigrams = rng.integers(0, 7, (N, T, 2))
    _twin(model, _ids(rng), LENGTHS, bigrams)
    _twin(model, _ids(rng, lengths=None), None, bigrams)  # full rows, no lengths given


def test_classifier_unidirectional_projected_lstm():
    rng = np.random.default_rng(2)
    model = _generic(SequenceClassifier(ClassifierConfig(
        vocab_size=V, num_classes=2, embedding_dim=3, hidden_size=5, proj_size=3,
        bidirectional=False, dtype="float64")))
    _twin(model, _ids(rng), LENGTHS)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("crf", [False, True])
def test_tagger_with_characters_and_bigrams(cell, crf):
    rng = np.random.default_rng(3)
    model = _generic(SequenceTagger(TaggerConfig(
        vocab_size=V, num_tags=4, embedding_dim=5, hidden_size=3, num_layers=2, cell=cell,
        char_vocab_size=9, char_embedding_dim=3, char_hidden_size=2, bigram_vocab_size=6,
        bigram_dim=2, crf=crf, dtype="float64")))
    ids = _ids(rng)
    words = int(LENGTHS.sum())
    clen = rng.integers(1, 5, words)
    cids = _ids(rng, 9, words, int(clen.max()), clen)
    _twin(model, ids, LENGTHS, (cids, clen), rng.integers(0, 6, (N, T, 2)))


@pytest.mark.parametrize("cell", ["lstm", "gru", "gru-after"])
def test_language_model_carries_state(cell):
    rng = np.random.default_rng(4)
    model = _generic(LanguageModel(LMConfig(vocab_size=V, embedding_dim=4, hidden_size=5,
                                            cell=cell, dtype="float64")))
    module = _twin(model, _ids(rng, lengths=None))
    first = _ids(rng, lengths=None)
    _, state = model(first)
    with torch.no_grad():
        _, theirs = module(first)
        second = _ids(rng, lengths=None)
        _close(model(second, state), module(second, theirs))


@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seq2seq(attention, cell):
    rng = np.random.default_rng(5)
    model = _generic(Seq2Seq(Seq2SeqConfig(src_vocab_size=V, tgt_vocab_size=7, embedding_dim=3,
                                           hidden_size=4, num_layers=2, cell=cell,
                                           attention=attention, dtype="float64")))
    _twin(model, _ids(rng), LENGTHS, _ids(rng, 7, t=6, lengths=None))


@pytest.mark.parametrize("cell", ["gru", "lstm", "gru-after"])
def test_seq2seq_bidirectional_encoder_with_input_feeding(cell):
    rng = np.random.default_rng(6)
    model = _generic(Seq2Seq(Seq2SeqConfig(src_vocab_size=V, tgt_vocab_size=7, embedding_dim=3,
                                           hidden_size=4, num_layers=2, cell=cell,
                                           attention="general", bidirectional_encoder=True,
                                           input_feed=True, dtype="float64")))
    _twin(model, _ids(rng), LENGTHS, _ids(rng, 7, t=4, lengths=None))


def test_regressor_and_step_classifier():
    rng = np.random.default_rng(7)
    reg = _generic(SequenceRegressor(RegressorConfig(input_size=3, output_size=2, hidden_size=4,
                                                     cell="gru", dtype="float64")))
    _twin(reg, rng.standard_normal((N, T, 3)))
    step = _generic(StepClassifier(StepClassifierConfig(num_symbols=5, num_classes=3,
                                                        hidden_size=4, dtype="float64")))
    _twin(step, rng.integers(0, 5, (N, T)))


def test_a_model_trained_on_the_cli_goes_to_torch(tmp_path):
    """The CLI's default GRU is the reset-before form: its model converts whole."""
    from .helpers import write_task_files

    files = write_task_files(tmp_path, "")
    from rnnkit.pipeline import train

    run = tmp_path / "run"
    train("classify", files["classify"], run, epochs=1, cell="gru", hidden=4, embedding_dim=3,
          progress=False)
    model, _ = rnnkit.io.load_model(run / "best")
    module = rnnkit.to_torch(run / "best")
    assert isinstance(module.rnn, rnnkit.torch_models.ResetBeforeGRU)
    ids = _ids(np.random.default_rng(8), model.config.vocab_size)
    with torch.no_grad():
        np.testing.assert_allclose(model(ids, LENGTHS), module(ids, LENGTHS).numpy(),
                                   rtol=1e-5, atol=1e-6)  # float32, the run's dtype


@pytest.mark.parametrize("options,message", [
    (dict(peepholes=True), "peephole"),
    (dict(init_state="learned"), "init_state='learned'"),
    (dict(layer_norm=True), "layer-normalised"),
])
def test_refuses_what_torch_would_compute_differently(options, message):
    model = SequenceClassifier(ClassifierConfig(vocab_size=V, num_classes=2, hidden_size=4,
                                                dtype="float64", **options))
    with pytest.raises(ValueError, match=message):
        rnnkit.to_torch(model)


def test_to_torch_names_what_it_cannot_convert():
    with pytest.raises(TypeError, match="got dict"):
        rnnkit.to_torch({})


# ------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("batch_first", [True, False])
def test_reset_before_gru_layer_outputs_and_gradients(batch_first):
    """torch has no GRU of the notes' form: ResetBeforeGRU computes it — outputs, final state
    and every gradient (x, h0, each weight) equal rnnkit's; padded rows as rnnkit pads them."""
    rng = np.random.default_rng(9)
    layer = rnnkit.GRU(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=1,
                       batch_first=batch_first)
    module = rnnkit.to_torch(layer)
    assert isinstance(module, rnnkit.torch_models.ResetBeforeGRU)
    x = rng.standard_normal((N, T, 3) if batch_first else (T, N, 3))
    h0 = rng.standard_normal((4, N, 4))
    gout, gh = rng.standard_normal((*x.shape[:2], 8)), rng.standard_normal((4, N, 4))
    out, hn, cache = layer.forward(x, h0, LENGTHS)
    dx, dh0 = layer.backward(gout, gh, cache)
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    out_t, hn_t = module(xt, h0t, torch.tensor(LENGTHS))
    ((out_t * torch.tensor(gout)).sum() + (hn_t * torch.tensor(gh)).sum()).backward()
    _close((out, hn, dx, dh0), (out_t, hn_t, xt.grad, h0t.grad), "out, h_n, dx, dh0")
    for name, p in module.named_parameters():
        _close(layer.grads[name], p.grad, name)
    back = rnnkit.from_torch(module)
    assert isinstance(back, rnnkit.GRU) and not back.reset_after
    assert back.batch_first == batch_first and back.bidirectional and back.num_layers == 2


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_layer_called_like_a_function_keeps_no_cache(cell, monkeypatch):
    layer = (rnnkit.LSTM if cell == "lstm" else rnnkit.GRU)(3, 4, dtype="float64", seed=2)
    x = np.random.default_rng(10).standard_normal((N, T, 3))
    seen = []
    forward = layer.forward
    monkeypatch.setattr(layer, "forward", lambda *a, **k: seen.append(k) or forward(*a, **k))
    out, state = layer(x, lengths=LENGTHS)
    assert seen == [{"inference": True}]
    ref, ref_state, _ = forward(x, None, LENGTHS)  # the training path: another loop
    np.testing.assert_allclose(out, ref, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(state[0] if cell == "lstm" else state,
                               ref_state[0] if cell == "lstm" else ref_state, rtol=TOL, atol=TOL)
