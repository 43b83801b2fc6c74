"""rnnkit.bleu: the BLEU tokeniser the target language needs, chrF beside it."""

import warnings

import pytest

from rnnkit.bleu import bleu_tokenizer, translation_scores


def test_the_tokeniser_follows_the_reference_language():
    assert bleu_tokenizer(["Où est la gare ?", "Je suis content."]) == "13a"
    assert bleu_tokenizer(["火车站在哪里？", "我有东西想给你看看。"]) == "zh"
    assert bleu_tokenizer(["I saw 北京 today, and then we went home."]) == "13a"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ja = bleu_tokenizer(["駅はどこですか。", "これはペンです。"])
    assert ja in ("ja-mecab", "char")
    assert (ja == "char") == any("ja-mecab" in str(w.message) for w in caught)


def test_chinese_is_scored_on_characters_not_as_one_word():
    # the case: a sensible translation scored 0 when Chinese was read as space-separated
    hyp, ref = ["火车站在哪里？"], ["火车站在哪儿？"]
    assert translation_scores(hyp, ref, "13a")["bleu"] == 0.0
    auto = translation_scores(hyp, ref)
    assert auto["bleu_tokenize"] == "zh" and auto["bleu"] == pytest.approx(64.35, abs=0.01)
    assert auto == {**translation_scores(hyp, ref, "zh"), "bleu_tokenize": "zh"}
    assert auto["chrf"] > 40


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown BLEU tokeniser 'xx'"):
        translation_scores(["a"], ["a"], "xx")
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        translation_scores(["a", "b"], ["a"])
