"""Translation scores as the field reports them: sacrebleu's corpus BLEU (Papineni et al.
2002) with the tokenisation the target language needs, and chrF (Popović 2015) beside it.

BLEU counts n-gram matches over tokens, so a language written without spaces between words
must be cut first: sacrebleu's ``zh`` tokeniser splits Chinese into characters (and the rest as
``13a``), ``ja-mecab`` cuts Japanese into words (it needs ``pip install "sacrebleu[ja]"``),
``13a`` (mteval-v13a) splits punctuation off space-separated text. :func:`bleu_tokenizer`
chooses from the reference text; chrF works on characters and needs no choice.
"""

from __future__ import annotations

import re
import warnings

#: What --bleu-tokenize accepts: "auto" (detected) or a sacrebleu tokeniser.
BLEU_TOKENIZERS = ("auto", "13a", "zh", "ja-mecab", "char", "intl", "none")

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")


def bleu_tokenizer(texts: list[str]) -> str:
    """The sacrebleu tokeniser for text in this language: ``ja-mecab`` (else ``char``, with a
    warning, when MeCab is not installed) where kana make up ≥ 5% of the non-space characters,
    ``zh`` where Chinese characters make up ≥ 30% (without kana), else ``13a``."""
    chars = sum(len(t) - t.count(" ") for t in texts) or 1
    kana = sum(len(_KANA.findall(t)) for t in texts) / chars
    han = sum(len(_HAN.findall(t)) for t in texts) / chars
    if kana >= 0.05:
        try:
            from sacrebleu.tokenizers.tokenizer_ja_mecab import TokenizerJaMecab

            TokenizerJaMecab()
            return "ja-mecab"
        except (ImportError, RuntimeError):
            warnings.warn("the references are Japanese, but sacrebleu's ja-mecab tokeniser is "
                          "not installed (pip install \"sacrebleu[ja]\"): BLEU is scored on "
                          "characters", stacklevel=2)
            return "char"
    return "zh" if han >= 0.3 else "13a"


def translation_scores(hypotheses: list[str], references: list[str],
                       tokenize: str = "auto") -> dict:
    """Corpus ``bleu`` and ``chrf`` (0–100) of detokenised hypotheses against one reference
    each, and the ``bleu_tokenize`` used (``auto``: :func:`bleu_tokenizer` of the
    references)."""
    from sacrebleu.metrics import BLEU, CHRF

    if tokenize not in BLEU_TOKENIZERS:
        raise ValueError(f"unknown BLEU tokeniser {tokenize!r}; expected one of "
                         f"{', '.join(BLEU_TOKENIZERS)}")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if tokenize == "auto":
        tokenize = bleu_tokenizer(references)
    refs = [references]
    return {"bleu": BLEU(tokenize=tokenize).corpus_score(hypotheses, refs).score,
            "chrf": CHRF().corpus_score(hypotheses, refs).score, "bleu_tokenize": tokenize}
