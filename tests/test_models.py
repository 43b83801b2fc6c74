"""The sequence classifier end to end: gradient-checked in float64 through embedding,
recurrent stack (with lengths), pooling and head."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.diagnostics import numerical_gradient
from rnnkit.models import ClassifierConfig, SequenceClassifier

from .helpers import rel_error

EXAMPLES = [([3, 4, 5, 6, 2], 1), ([7, 2], 0), ([1, 1, 8, 3], 2)]


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("cell,bidir,bigrams", [("lstm", True, False), ("gru", False, False),
                                                ("rnn", True, False), ("lstm", True, True),
                                                ("gru", False, True), ("lstm-proj", True, False)])
def test_classifier_gradients(pooling, cell, bidir, bigrams):
    proj = 3 if cell == "lstm-proj" else 0  # h_t of 3 values from 5 units
    model = SequenceClassifier(ClassifierConfig(
        vocab_size=9, num_classes=3, embedding_dim=4, hidden_size=5, num_layers=2,
        cell=cell.removesuffix("-proj"), bidirectional=bidir, pooling=pooling,
        bigram_vocab_size=7 if bigrams else 0, bigram_dim=3, proj_size=proj, dtype="float64",
        seed=1))
    rng = np.random.default_rng(2)
    examples = [(ids, y, rng.integers(1, 7, (len(ids), 2)).tolist()) if bigrams else (ids, y)
                for ids, y in EXAMPLES]
    batch = model.collate(examples)
    assert (batch[3] is not None) == bigrams
    model.zero_grad()
    loss_sum, count = model.forward_backward(batch)
    assert count == 3

    def loss():
        return model.evaluate(batch)["loss_sum"] / 3

    assert abs(loss() - loss_sum / 3) < 1e-12
    # ε = 1e-5 with a projection: its layer-0 W_hh gradients are ~1e-4, where ε = 1e-6 leaves
    # round-off at the 1e-6 relative level (the error falls tenfold with each tenfold ε).
    eps = 1e-5 if proj else 1e-6
    for name, p in model.params.items():
        analytic = model.grads[name]
        numeric = numerical_gradient(loss, p, eps=eps)
        if name.endswith("embedding.weight"):
            numeric[0] = 0  # the padding rows never learn
        assert rel_error(analytic, numeric) < 1e-6, name


def test_collate_pads_and_rejects_bad_examples():
    model = SequenceClassifier(ClassifierConfig(vocab_size=9, num_classes=3))
    ids, lengths, labels, bigrams = model.collate(EXAMPLES)
    assert ids.shape == (3, 5) and list(lengths) == [5, 2, 4] and list(labels) == [1, 0, 2]
    assert np.all(ids[1, 2:] == 0) and bigrams is None
    with pytest.raises(ValueError, match="empty batch"):
        model.collate([])
    with pytest.raises(ValueError, match="at least one token"):
        model.collate([([], 0)])
    model = SequenceClassifier(ClassifierConfig(vocab_size=9, num_classes=3,
                                                bigram_vocab_size=5))
    with pytest.raises(ValueError, match=r"examples need \(ids, label, bigram ids\)"):
        model.collate(EXAMPLES)
    with pytest.raises(ValueError, match="example 1: 2 tokens but 1 bigram pairs"):
        model.collate([(ids, y, [[1, 2]] * len(ids)) for ids, y in EXAMPLES[:1]]
                      + [([7, 2], 0, [[1, 2]])])
    bigrams = model.collate([([7, 2], 0, [[1, 2], [3, 4]]), ([5], 1, [[2, 2]])])[3]
    assert bigrams.tolist() == [[[1, 2], [3, 4]], [[2, 2], [0, 0]]]


def test_bad_config():
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        SequenceClassifier(ClassifierConfig(vocab_size=9, num_classes=3, pooling="sum"))
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        SequenceClassifier(ClassifierConfig(vocab_size=9, num_classes=3, cell="transformer"))
    with pytest.raises(ValueError, match=r"unknown SequenceClassifier config field\(s\): "
                                         r"\['colour'\]"):
        SequenceClassifier.from_config({"vocab_size": 9, "num_classes": 3, "colour": "red"})


@pytest.mark.parametrize("cell", ["rnn", "irnn", "lstm", "gru-after"])
def test_long_range_models_gradients(cell):
    from rnnkit.models import (
        RegressorConfig,
        SequenceRegressor,
        StepClassifier,
        StepClassifierConfig,
    )

    rng = np.random.default_rng(0)
    reg = SequenceRegressor(RegressorConfig(input_size=2, hidden_size=5, num_layers=2, cell=cell,
                                            init="orthogonal" if cell == "rnn" else None,
                                            dtype="float64", seed=2))
    reg_batch = reg.collate([(rng.random((6, 2)), rng.random(1)) for _ in range(3)])
    clf = StepClassifier(StepClassifierConfig(num_symbols=10, num_classes=9, hidden_size=5,
                                              cell=cell, dtype="float64", seed=2))
    ids = rng.integers(0, 10, (3, 6))
    clf_batch = clf.collate(list(zip(ids, ids % 9, strict=True)))
    for model, batch in ((reg, reg_batch), (clf, clf_batch)):
        for p in model.params.values():  # move ReLU pre-activations away from the kink
            p += rng.normal(0, 0.3, p.shape)
        model.zero_grad()
        total, count = model.forward_backward(batch)

        def loss(model=model, batch=batch, count=count):
            return model.evaluate(batch)["loss_sum"] / count

        assert abs(loss() - total / count) < 1e-12
        for name, p in model.params.items():
            assert rel_error(model.grads[name], numerical_gradient(loss, p)) < 1e-6, name


def test_make_recurrent_rejects_unknown_cells():
    from rnnkit.options import make_recurrent

    with pytest.raises(ValueError, match="unknown cell 'elman'; expected one of rnn, rnn-relu"):
        make_recurrent("elman", 2, 3)


@pytest.mark.parametrize("chars,bigrams,use_crf", [
    (False, False, False), (True, False, False), (False, True, False), (True, True, False),
    (True, False, True), (False, True, True)])
def test_tagger_gradients(chars, bigrams, use_crf):
    """Through every feature, and through the CRF (with BIO constraints, which decoding
    applies)."""
    from rnnkit.models import SequenceTagger, TaggerConfig

    rng = np.random.default_rng(0)
    crf_options = dict(crf=True, scheme="bio", tag_names=["O", "B-X", "I-X", "B-Y"]) \
        if use_crf else {}
    model = SequenceTagger(TaggerConfig(vocab_size=9, num_tags=4, embedding_dim=3, hidden_size=4,
                                        char_vocab_size=7 if chars else 0, char_embedding_dim=3,
                                        char_hidden_size=2, bigram_vocab_size=6 if bigrams else 0,
                                        bigram_dim=2, dtype="float64", seed=1, **crf_options))
    examples = []
    for n in (4, 2, 3):
        words = rng.integers(1, 9, n).tolist()
        spell = [rng.integers(1, 7, rng.integers(1, 4)).tolist() for _ in range(n)]
        pairs = rng.integers(1, 6, (n, 2)).tolist()
        examples.append((words, rng.integers(0, 4, n).tolist(), spell, pairs))
    batch = model.collate(examples)
    for name, p in model.params.items():  # generic weights: gradients well above FD noise
        p += rng.normal(0, 0.5, p.shape) * (0 if name.endswith("embedding.weight") else 1)
    model.zero_grad()
    total, count = model.forward_backward(batch)
    assert count == 9

    def loss():
        return model.evaluate(batch)["loss_sum"] / count

    assert abs(loss() - total / count) < 1e-12
    for name, p in model.params.items():
        numeric = numerical_gradient(loss, p)
        if name.endswith("embedding.weight"):
            numeric[0] = 0  # the padding rows never learn
        assert rel_error(model.grads[name], numeric) < 1e-6, name
    pred = model.predict(batch)
    assert pred.shape == (3, 4) and np.all(pred[1, 2:] == -1)
    if use_crf:  # I-X (2) never follows O (0) or B-Y (3), nor starts a sentence
        for row, n in zip(pred, (4, 2, 3), strict=True):
            y = [0, *row[:n]]
            assert all(b != 2 or a in (1, 2) for a, b in zip(y[:-1], y[1:], strict=True))


def test_tagger_constrained_softmax_decoding_only_yields_valid_sequences():
    from rnnkit.models import SequenceTagger, TaggerConfig

    tags = ["O", "B-X", "I-X", "B-Y", "I-Y"]
    rng = np.random.default_rng(5)
    plain = SequenceTagger(TaggerConfig(vocab_size=9, num_tags=5, embedding_dim=3,
                                        hidden_size=4, seed=4))
    ruled = SequenceTagger(TaggerConfig(vocab_size=9, num_tags=5, embedding_dim=3,
                                        hidden_size=4, seed=4, scheme="bio", tag_names=tags))
    for p in plain.params.values():
        p += rng.normal(0, 2.0, p.shape).astype(p.dtype)
    for name, p in ruled.params.items():
        p[...] = plain.params[name]
    examples = [(rng.integers(1, 9, n).tolist(), [0] * n) for n in rng.integers(1, 9, 60)]
    batch = plain.collate(examples)
    free, fixed = plain.predict(batch), ruled.predict(batch)
    bad = 0
    for row_free, row, n in zip(free, fixed, batch[1], strict=True):
        pairs = lambda y: zip([0, *y[:-1]], y, strict=True)  # noqa: E731
        invalid = lambda a, b: b in (2, 4) and a != b - 1 and a != b  # noqa: E731
        bad += any(invalid(a, b) for a, b in pairs(list(row_free[:n])))
        assert not any(invalid(a, b) for a, b in pairs(list(row[:n])))
    assert bad > 0  # the unconstrained argmax does produce invalid sequences here
    with pytest.raises(ValueError, match="needs tag_names"):
        SequenceTagger(TaggerConfig(vocab_size=9, num_tags=5, scheme="bio"))


def test_tagger_word_dropout_trains_on_unk_and_leaves_evaluation_alone():
    """Word dropout: in training a word's id becomes <unk> with probability p (padding never),
    the gradient is that of the replaced ids, and evaluation sees the real words."""
    from rnnkit.models import SequenceTagger, TaggerConfig

    def make(p):
        return SequenceTagger(TaggerConfig(vocab_size=9, num_tags=3, embedding_dim=3,
                                           hidden_size=4, char_vocab_size=5, char_hidden_size=2,
                                           word_dropout=p, dtype="float64", seed=2))

    rng = np.random.default_rng(1)
    examples = [(rng.integers(2, 9, n).tolist(), rng.integers(0, 3, n).tolist(),
                 [[1 + k % 4] for k in range(n)]) for n in (5, 3, 4)]
    dropped, plain = make(0.5), make(0.0)
    batch = dropped.collate(examples)
    ids = batch[0]
    # The draw the model will make: the same generator, seeded the same way.
    drop = (np.random.default_rng(2 + 7).random(ids.shape) < 0.5) & (ids != 0)
    assert 0 < drop.sum() < (ids != 0).sum()
    dropped.zero_grad()
    plain.zero_grad()
    total, _ = dropped.forward_backward(batch)
    swapped = (np.where(drop, 1, ids),) + tuple(batch[1:])
    ref_total, _ = plain.forward_backward(swapped)
    assert total == ref_total
    for name, g in dropped.grads.items():
        np.testing.assert_array_equal(g, plain.grads[name], err_msg=name)
    assert np.any(dropped.grads["embedding.weight"][1])  # <unk> learns
    dropped.eval()
    plain.eval()
    np.testing.assert_array_equal(dropped.predict(batch), plain.predict(batch))
    with pytest.raises(ValueError, match="word_dropout must be a number in"):
        make(1.0)
    assert "word_dropout" in dropped.rng_states()  # a resumed run draws on from where it was


def test_classifier_word_dropout_trains_on_unk_and_leaves_evaluation_alone():
    def make(p):
        return SequenceClassifier(ClassifierConfig(vocab_size=9, num_classes=2, embedding_dim=3,
                                                   hidden_size=4, word_dropout=p, pooling="max",
                                                   dtype="float64", seed=3))

    rng = np.random.default_rng(2)
    examples = [(rng.integers(2, 9, n).tolist(), int(n % 2)) for n in (5, 3, 4, 6)]
    dropped, plain = make(0.4), make(0.0)
    batch = dropped.collate(examples)
    ids = batch[0]
    drop = (np.random.default_rng(3 + 4).random(ids.shape) < 0.4) & (ids != 0)
    assert 0 < drop.sum() < (ids != 0).sum()
    total, _ = dropped.forward_backward(batch)
    ref_total, _ = plain.forward_backward((np.where(drop, 1, ids),) + tuple(batch[1:]))
    assert total == ref_total
    for name, g in dropped.grads.items():
        np.testing.assert_array_equal(g, plain.grads[name], err_msg=name)
    dropped.eval()
    plain.eval()
    np.testing.assert_array_equal(dropped.predict_logits(batch), plain.predict_logits(batch))


def test_language_model_gradients_and_truncated_bptt():
    from rnnkit.models import LanguageModel, LMConfig

    rng = np.random.default_rng(0)
    model = LanguageModel(LMConfig(vocab_size=7, embedding_dim=3, hidden_size=4, num_layers=2,
                                   dtype="float64", seed=1))
    stream = rng.integers(0, 7, 61)
    wins = LanguageModel.windows(stream, batch=3, bptt=5)
    assert len(wins) == 4 and wins[0][0].shape == (3, 5) and wins[-1][0].shape == (3, 5)
    np.testing.assert_array_equal(wins[0][1][:, :4], wins[0][0][:, 1:])
    # A window's gradient, with the state carried in from the previous window held fixed.
    model.start_epoch()
    model.evaluate(wins[0])  # carry the state as training would (evaluate carries too)
    carried = model._state
    model.zero_grad()
    model._state = carried
    total, count = model.forward_backward(wins[1])

    def loss():
        model._state = carried
        return model.evaluate(wins[1])["loss_sum"] / count

    assert abs(loss() - total / count) < 1e-12
    for name, p in model.params.items():
        assert rel_error(model.grads[name], numerical_gradient(loss, p)) < 1e-6, name


def test_generate_is_seeded_and_respects_top_k():
    from rnnkit.models import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=11, embedding_dim=4, hidden_size=8, seed=2))
    a = model.generate([1, 2], 30, temperature=0.8, top_k=3, seed=5)
    assert a == model.generate([1, 2], 30, temperature=0.8, top_k=3, seed=5) and len(a) == 30
    assert model.generate([1, 2], 30, top_k=1, seed=1) == model.generate([1, 2], 30, top_k=1,
                                                                           seed=2)
    with pytest.raises(ValueError, match="temperature must be positive"):
        model.generate([1], 3, temperature=0)
    with pytest.raises(ValueError, match=r"top_k must be in \[1, 11\]"):
        model.generate([1], 3, top_k=12)
    with pytest.raises(ValueError, match="needs a prompt"):
        model.generate([], 3)


def test_sampling_never_draws_excluded_ids_and_ends_at_stop():
    from rnnkit.models import LanguageModel, LMConfig

    model = LanguageModel(LMConfig(vocab_size=7, embedding_dim=4, hidden_size=8, seed=2))
    free = model.generate([4], 3000, temperature=5.0, seed=0)
    assert set(free) == set(range(7))  # a hot random model draws every id
    masked = model.generate([4], 3000, temperature=5.0, seed=0, exclude=[0, 1, 2])
    assert set(masked) == {3, 4, 5, 6}
    model.params["head.bias"][5] = 50.0  # id 5 all but certain
    assert model.generate([4], 10, seed=0, stop=5) == []
    model.params["head.bias"][5] = 1.0
    out = model.generate([4], 3000, temperature=2.0, seed=0, stop=5)
    assert 0 < len(out) < 3000 and 5 not in out
    with pytest.raises(ValueError, match="every token is excluded"):
        model.generate([4], 3, exclude=range(7))
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        model.generate([4], 3, top_p=0.0)


def test_nucleus_keeps_the_smallest_set_that_reaches_p():
    from rnnkit.models import LanguageModel

    z = np.log(np.array([0.1, 0.5, 0.15, 0.25]))
    none = np.zeros(4, dtype=bool)
    dist = LanguageModel._distribution
    np.testing.assert_allclose(dist(z, 1.0, None, None, none), [0.1, 0.5, 0.15, 0.25])
    np.testing.assert_allclose(dist(z, 1.0, None, 0.6, none), [0, 0.5 / 0.75, 0, 0.25 / 0.75])
    np.testing.assert_allclose(dist(z, 1.0, None, 0.8, none), np.array([0, 0.5, 0.15, 0.25]) / 0.9)
    np.testing.assert_allclose(dist(z, 1.0, None, 0.3, none), [0, 1, 0, 0])
    np.testing.assert_allclose(dist(z, 1.0, 2, 0.99, none), [0, 0.5 / 0.75, 0, 0.25 / 0.75])
    banned = np.array([False, True, False, False])
    np.testing.assert_allclose(dist(z, 1.0, None, 0.7, banned), np.array([0, 0, 0.15, 0.25]) / 0.4)


def _s2s(attention, tf, cell="gru", **options):
    from rnnkit.models import Seq2Seq, Seq2SeqConfig

    return Seq2Seq(Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=7, embedding_dim=3,
                                 hidden_size=4, cell=cell, attention=attention,
                                 teacher_forcing=tf, dtype="float64", seed=1, **options))


S2S_EXAMPLES = [([4, 5, 6, 7], [4, 5]), ([5], [6, 4, 6]), ([7, 4], [5])]


@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
@pytest.mark.parametrize("tf,cell,proj", [(1.0, "gru", 0), (0.5, "lstm", 0), (1.0, "lstm", 3)])
def test_seq2seq_gradients(attention, tf, cell, proj):
    """proj: encoder and decoder LSTMs with projected states, attention over P values."""
    model = _s2s(attention, tf, cell, proj_size=proj)
    assert _check_s2s_gradients(model, np.random.default_rng(0)) == 9


def _check_s2s_gradients(model, rng) -> int:
    """Every parameter's gradient of a float64 Seq2Seq (weights moved off their start) against
    centred differences, the teacher-forcing draws replayed; → the batch's target tokens."""
    for name, p in model.params.items():
        p += rng.normal(0, 0.5, p.shape) * (0 if "embedding" in name else 1)
    batch = model.collate(S2S_EXAMPLES)
    state = model.rng.bit_generator.state
    model.zero_grad()
    total, count = model.forward_backward(batch)
    grads = {k: v.copy() for k, v in model.grads.items()}

    def loss():  # the same teacher-forcing draws every time
        model.rng.bit_generator.state = state
        return model.forward_backward(batch)[0] / count

    for name, p in model.params.items():
        # ε = 1e-5: some attention gradients are ~1e-4 against a loss of ~2, where ε = 1e-6
        # leaves round-off (~1e-10 absolute) at the 1e-6 relative level.
        numeric = numerical_gradient(loss, p, eps=1e-5)
        if name.endswith("embedding.weight"):
            numeric[0] = 0
        assert rel_error(grads[name], numeric) < 1e-6, name
    return count


@pytest.mark.parametrize("attention,cell,layers,tf", [
    ("dot", "gru", 1, 1.0), ("general", "lstm", 2, 1.0), ("additive", "lstm", 1, 0.5),
    ("dot", "gru-after", 2, 0.5)])
def test_seq2seq_bidirectional_encoder_and_input_feeding_gradients(attention, cell, layers, tf):
    """Every parameter of an encoder read both ways (its final states bridged to the decoder)
    and a decoder fed its attentional state h̃_{t−1}, by centred differences in float64."""
    from rnnkit.models import Seq2Seq, Seq2SeqConfig

    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=7, embedding_dim=3,
                                  hidden_size=6, num_layers=layers, cell=cell,
                                  attention=attention, teacher_forcing=tf,
                                  bidirectional_encoder=True, input_feed=True,
                                  dtype="float64", seed=2))
    assert model.layers["decoder"].input_size == 3 + 6  # [e(y); h̃]
    _check_s2s_gradients(model, np.random.default_rng(1))


def test_the_bidirectional_encoder_hands_each_layer_forward_and_backward_states():
    from rnnkit.models import Seq2Seq, Seq2SeqConfig

    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=7, embedding_dim=3,
                                  hidden_size=6, num_layers=2, cell="lstm", dropout=0.3,
                                  bidirectional_encoder=True, dtype="float64", seed=2))
    enc = model.layers["encoder"]
    assert (enc.hidden_size, enc.bidirectional, enc.dropout) == (3, True, 0.3)
    assert model.layers["decoder"].dropout == 0.3  # dropout inside the stacks
    src, slen, _, _ = model.collate(S2S_EXAMPLES)
    with model.evaluating():
        out, (h, c), _, _ = model._encode(src, slen)
        e, _ = model.layers["src_embedding"].forward(src)
        _, (h_raw, c_raw), _ = enc.forward(e, lengths=slen, inference=True)
    assert h.shape == c.shape == (2, 3, 6) and out.shape == (3, 4, 6)
    for layer in range(2):
        np.testing.assert_array_equal(h[layer], np.hstack([h_raw[2 * layer],
                                                           h_raw[2 * layer + 1]]))
        np.testing.assert_array_equal(c[layer], np.hstack([c_raw[2 * layer],
                                                           c_raw[2 * layer + 1]]))
    with pytest.raises(ValueError, match="hidden_size must be even"):
        Seq2Seq(Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=7, hidden_size=5,
                              bidirectional_encoder=True))
    with pytest.raises(ValueError, match="input_feed feeds the attentional state"):
        Seq2Seq(Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=7, attention="none",
                              input_feed=True))


@pytest.mark.parametrize("feed", [False, True])
def test_batched_beam_search_is_each_sentence_alone_with_scores_that_add_up(feed):
    from rnnkit import blas
    from rnnkit.seq2seq import gnmt_penalty

    model = _s2s("general", 1.0, "lstm", bidirectional_encoder=feed, input_feed=feed)
    rng = np.random.default_rng(3)
    for p in model.params.values():
        p += rng.normal(0, 1.0, p.shape)
    srcs = [[4, 5, 6], [7], [5, 5, 4, 6], [6, 6], [4]]
    with blas.batch_invariant():  # the same numbers alone and in a batch, where numba runs
        together = model.beam_search_batch(srcs, beam_size=3, max_len=9, n_best=3)
        alone = [model.beam_search_batch([s], beam_size=3, max_len=9, n_best=3)[0]
                 for s in srcs]
    assert [[h for h, _ in r] for r in together] == [[h for h, _ in r] for r in alone]
    np.testing.assert_allclose([s for r in together for _, s in r],
                               [s for r in alone for _, s in r], rtol=1e-12)
    for src, nbest in zip(srcs, together, strict=True):
        assert [s for _, s in nbest] == sorted((s for _, s in nbest), reverse=True)
        assert nbest[0][0] == model.beam_search(src, 3, 9)
        for hyp, score in nbest:  # a finished hypothesis: log p(y|x) (teacher-forced) / lp
            if len(hyp) < 9:
                lp = gnmt_penalty(len(hyp) + 1, 0.6)
                assert score * lp == pytest.approx(model.log_likelihood([src], [hyp])[0],
                                                   rel=1e-9)
    assert gnmt_penalty(7, 0.6) == pytest.approx(2.0 ** 0.6) and gnmt_penalty(3, 0) == 1.0
    with pytest.raises(ValueError, match=r"n_best must be in \[1, beam_size=2\]"):
        model.beam_search_batch(srcs, beam_size=2, n_best=3)


def test_beam_search_and_greedy():
    model = _s2s("dot", 1.0)
    rng = np.random.default_rng(3)
    for p in model.params.values():
        p += rng.normal(0, 1.0, p.shape)
    srcs = [[4, 5, 6], [7], [5, 5, 4, 6]]
    greedy = model.greedy(srcs, max_len=8)
    assert len(greedy) == 3
    for src, g in zip(srcs, greedy, strict=True):
        assert model.beam_search(src, beam_size=1, max_len=8, length_penalty=0) == g
        best = model.beam_search(src, beam_size=4, max_len=8, length_penalty=0)

        def logp(hyp, src=src):
            ev = model.evaluate(model.collate([(src, hyp)]))
            return -ev["loss_sum"]

        if len(g) < 8:  # greedy finished: beam search can only match or beat its score
            assert logp(best) >= logp(g) - 1e-9
    with pytest.raises(ValueError, match="beam_size and max_len must be >= 1"):
        model.beam_search([4], beam_size=0)


def test_seq2seq_bad_config():
    from rnnkit.models import Seq2Seq, Seq2SeqConfig

    with pytest.raises(ValueError, match="unknown attention 'cosine'"):
        Seq2Seq(Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=5, attention="cosine"))
    with pytest.raises(ValueError, match=r"teacher_forcing must be in \[0, 1\]"):
        Seq2Seq(Seq2SeqConfig(src_vocab_size=5, tgt_vocab_size=5, teacher_forcing=1.5))
