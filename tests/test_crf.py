"""The linear-chain CRF (rnnkit.crf): log Z and Viterbi against brute force over every path,
float64 centred finite differences of the negative log-likelihood over emissions, transitions,
start and end scores with variable lengths, and the tag-scheme constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rnnkit import crf, schemes
from rnnkit.diagnostics import numerical_gradient

from .helpers import rel_error

N, T, K = 3, 5, 4
LENGTHS = np.array([5, 2, 3])


def _random(seed=0, k=K):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, T, k)), rng.standard_normal((k, k)),
            rng.standard_normal(k), rng.standard_normal(k), rng.integers(0, k, (N, T)))


def _brute(E, n, A, s, e):
    """(log Z, best path) of one sentence by enumerating all K^n paths."""
    scores = {}
    for y in itertools.product(range(E.shape[1]), repeat=n):
        scores[y] = s[y[0]] + e[y[-1]] + sum(E[t, y[t]] for t in range(n)) + sum(
            A[y[t - 1], y[t]] for t in range(1, n))
    v = np.array(list(scores.values()))
    return np.log(np.exp(v - v.max()).sum()) + v.max(), max(scores, key=scores.get)


def test_log_partition_and_viterbi_equal_brute_force():
    E, A, s, e, tags = _random(1)
    log_z, _ = crf.forward_algorithm(E, LENGTHS, A, s, e)
    best = crf.viterbi(E, LENGTHS, A, s, e)
    for i, n in enumerate(LENGTHS):
        ref_z, ref_best = _brute(E[i], n, A, s, e)
        assert abs(log_z[i] - ref_z) < 1e-12
        assert tuple(best[i, :n]) == ref_best and np.all(best[i, n:] == -1)
    score = crf.path_score(E, LENGTHS, tags, A, s, e)
    for i, n in enumerate(LENGTHS):
        y = tags[i, :n]
        ref = s[y[0]] + e[y[-1]] + E[i, np.arange(n), y].sum() + A[y[:-1], y[1:]].sum()
        assert abs(score[i] - ref) < 1e-12


def test_nll_gradients_match_finite_differences():
    E, A, s, e, tags = _random(2)
    tags[1, 2:] = 99  # past the end: never read

    def loss():
        return float(crf.nll(E, LENGTHS, tags, A, s, e)[0].sum())

    _, dE, dA, ds, de = crf.nll(E, LENGTHS, tags, A, s, e)
    for name, arr, analytic in (("E", E, dE), ("A", A, dA), ("s", s, ds), ("e", e, de)):
        err = rel_error(analytic, numerical_gradient(loss, arr))
        assert err < 1e-6, f"{name}: {err:.2e}"
    assert np.all(dE[1, 2:] == 0)


def test_marginals_sum_to_one_and_gradient_is_marginal_minus_gold():
    E, A, s, e, tags = _random(3)
    _, dE, *_ = crf.nll(E, LENGTHS, tags, A, s, e)
    for i, n in enumerate(LENGTHS):
        np.testing.assert_allclose(dE[i, :n].sum(axis=1), 0.0, atol=1e-12)


@pytest.mark.parametrize("tags, scheme", [
    (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "bio"),
    (["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-ORG", "I-ORG", "E-ORG", "S-ORG"], "bioes"),
    (["b", "m", "e", "s"], "bmes"),
    (["B", "M", "E", "S"], "bmes"),
])
def test_schemes_are_detected_and_constrained_decoding_only_yields_valid_sequences(tags,
                                                                                    scheme):
    assert schemes.detect_scheme(tags) == scheme
    allowed, start, end = schemes.scheme_constraints(tags, scheme)
    A, s, e = crf.constraint_scores(allowed, start, end)
    rng = np.random.default_rng(4)
    k = len(tags)
    E = rng.standard_normal((40, 7, k)) * 3
    lengths = rng.integers(1, 8, 40)
    best = crf.viterbi(E, lengths, A, s, e)
    for row, n in zip(best, lengths, strict=True):
        y = row[:n]
        assert start[y[0]] and end[y[-1]]
        assert all(allowed[a, b] for a, b in zip(y[:-1], y[1:], strict=True))
    # ... and the best valid sequence: brute force over valid paths of the first sentences.
    for i in range(3):
        n = lengths[i]
        valid = [y for y in itertools.product(range(k), repeat=n) if start[y[0]] and end[y[-1]]
                 and all(allowed[a, b] for a, b in zip(y[:-1], y[1:], strict=True))]
        ref = max(valid, key=lambda y: E[i, np.arange(n), list(y)].sum())
        assert tuple(best[i, :n]) == ref


def test_bio_rules():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed, start, _ = schemes.scheme_constraints(tags, "bio")
    ix = {t: i for i, t in enumerate(tags)}
    assert not allowed[ix["O"], ix["I-PER"]] and not allowed[ix["B-LOC"], ix["I-PER"]]
    assert allowed[ix["B-PER"], ix["I-PER"]] and allowed[ix["I-PER"], ix["I-PER"]]
    assert allowed[ix["I-PER"], ix["B-LOC"]] and not start[ix["I-LOC"]]
    assert schemes.detect_scheme(["NN", "VB", "DT"]) is None


def test_layer_trains_unconstrained_and_decodes_constrained():
    """An invalid gold sequence (I- after O) keeps a finite loss; decoding never yields one."""
    tags = ["O", "B-PER", "I-PER"]
    layer = crf.CRF(3, schemes.scheme_constraints(tags, "bio"), dtype="float64")
    E = np.zeros((1, 3, 3))
    E[0, :, 2] = 5.0  # the emissions favour I-PER everywhere
    loss, cache = layer.forward(E, np.array([3]), np.array([[0, 2, 2]]))
    assert np.isfinite(loss)
    dE = layer.backward(1.0, cache)
    assert dE.shape == E.shape and np.all(np.isfinite(layer.grads["transitions"]))
    assert list(layer.decode(E, np.array([3]))[0]) == [1, 2, 2]


def test_bio_chunk_counts_equal_seqeval_on_random_sequences():
    """Entity F1 from rnnkit.schemes.chunks against seqeval's (conlleval's reading), on random,
    and so often invalid, BIO sequences."""
    seqeval = pytest.importorskip("seqeval.metrics")
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    rng = np.random.default_rng(7)
    gold = [[tags[k] for k in rng.integers(0, 5, rng.integers(1, 12))] for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else tags[rng.integers(0, 5)] for t in g] for g in gold]
    assert abs(_f1(gold, pred, "bio") - seqeval.f1_score(gold, pred)) < 1e-12


def test_bioes_chunk_counts_equal_seqeval_strict_on_valid_sequences():
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOBES

    rng = np.random.default_rng(8)

    def valid(n):
        out = []
        while len(out) < n:
            size, kind = int(rng.integers(1, 4)), ["PER", "LOC"][rng.integers(0, 2)]
            if rng.random() < 0.4 or len(out) + size > n:
                out.append("O")
            elif size == 1:
                out.append(f"S-{kind}")
            else:
                out += [f"B-{kind}"] + [f"I-{kind}"] * (size - 2) + [f"E-{kind}"]
        return out

    gold = [valid(int(rng.integers(1, 12))) for _ in range(300)]
    pred = [g if rng.random() < 0.5 else valid(len(g)) for g in gold]
    ref = seqeval.f1_score(gold, pred, mode="strict", scheme=IOBES)
    assert abs(_f1(gold, pred, "bioes") - ref) < 1e-12


def _f1(gold, pred, scheme):
    totals = [0, 0, 0]
    for g, p in zip(gold, pred, strict=True):
        for c in schemes.chunk_counts(g, p, scheme).values():
            totals = [a + b for a, b in zip(totals, c, strict=True)]
    return schemes.prf(*totals)[2]
