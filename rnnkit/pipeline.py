"""Task pipelines behind ``rnnkit train {classify,tag,lm}``, ``eval``, ``predict`` and
``generate``: read files, build vocabularies, train, and use a trained run directory.

A run directory holds the trainer's checkpoints (``best``/``last``); the checkpoint's
config.json carries everything needed to use the model again: the task, vocabularies, label
names, tokenizer and data options.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import numpy as np

from . import blas, io, run_config, schemes
from . import data as D
from .columns import read_columns
from .distributed import world
from .models import (
    ClassifierConfig,
    LanguageModel,
    LMConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    SequenceTagger,
    TaggerConfig,
)
from .options import RecurrentOptions
from .schemes import detect_scheme
from .train import TrainConfig, Trainer, evaluate
from .vectors import load_into, read_vectors

TASKS = ("classify", "tag", "translate", "lm")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]+")
TAG_FORMATS = ("conllu", "slash", "columns", "conll", "iob2", "bio", "bioes", "tsv")
#: Names users give column files (all read by rnnkit.columns), and their file extensions.
COLUMN_FORMATS = ("columns", "conll", "iob2", "bio", "bioes", "tsv")
_COLUMN_SUFFIXES = (".conll", ".iob2", ".iob", ".bio", ".bioes", ".tsv", ".tab", ".col")


def chunk_scheme(labels: list[str]) -> str | None:
    """``"bio"`` / ``"bioes"`` for entity tags, ``"bmes"`` for B/M/E/S segmentation tags,
    else None (rnnkit.schemes.detect_scheme)."""
    return detect_scheme(labels)


def _sniff_tag_format(path, encoding: str) -> str:
    """conllu or a column format by extension; else "slash" when the first lines are
    ``word/TAG`` tokens, "columns" otherwise."""
    name = str(path).lower()
    if name.endswith(".conllu"):
        return "conllu"
    if name.endswith(_COLUMN_SUFFIXES):
        return "columns"
    slash = rows = 0
    for _, text in D._lines(path, encoding):
        fields = text.split()
        if not fields or text.startswith("#"):
            continue
        rows += 1
        slash += all("/" in f.strip("/") for f in fields)
        if rows == 20:
            break
    return "slash" if slash * 2 > rows else "columns"


def read_tag_file(path, fmt: str | None = None, encoding: str = "utf-8", tag: str = "upos",
                  token_column: int | None = None, tag_column: int | None = None):
    """[(tokens, tags)] of a tagging file and, for column files, the ColumnChoice made (else
    None). ``fmt`` None: by extension, then by content (:func:`_sniff_tag_format`)."""
    fmt = fmt or _sniff_tag_format(path, encoding)
    if fmt == "conllu":
        return D.read_conllu(path, encoding, tag=tag), None
    if fmt == "slash":
        return D.read_slash_tagged(path, encoding), None
    if fmt in COLUMN_FORMATS:
        return read_columns(path, encoding, token_column, tag_column)
    raise ValueError(f"unknown tagging format {fmt!r}; expected one of {', '.join(TAG_FORMATS)}")


def read_task_file(task: str, path, fmt: str | None = None, encoding: str = "utf-8",
                   text_column: int = 0, label_column: int = 1, tag: str = "upos",
                   token_column: int | None = None, tag_column: int | None = None):
    """The raw examples of a file: classify [(text, label)], tag [(tokens, tags)], lm str."""
    if task == "classify":
        delim = "," if (fmt == "csv" or (fmt is None and str(path).endswith(".csv"))) else "\t"
        return D.read_labelled(path, encoding, text_column, label_column, delimiter=delim)
    if task == "tag":
        return read_tag_file(path, fmt, encoding, tag, token_column, tag_column)[0]
    if task == "lm":
        return D.read_text(path, encoding)
    if task == "translate":
        return D.read_parallel(path, encoding)
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def checkpoint_dir(directory) -> Path:
    """The checkpoint a run directory stands for: its ``best``, else ``last`` (``run/…``: a
    demo family's folder), or the directory itself; a dangling link is an error, never a
    silent fall back to the other checkpoint."""
    directory = Path(directory)
    for sub in ("best", "last", "run/best", "run/last"):
        link = directory / sub
        if link.is_symlink() and not link.exists():
            raise ValueError(f"{link} points at {os.readlink(link)}, which is missing: "
                             "the run directory is damaged (load 'last' explicitly to "
                             "use it)")
    for sub in ("best", "last", "run/best", "run/last"):
        if (directory / sub / "config.json").is_file():
            return directory / sub
    return directory


class Task:
    """What a trained run knows: model, vocabularies, labels, tokenizer, data options."""

    def __init__(self, model, config: dict):
        self.model, self.config = model, config
        self.task = config["task"]
        self.vocab = D.Vocab.from_json(config["vocab"])
        self.labels = config.get("labels")
        self.tokenizer = D.Tokenizer.from_json(config["tokenizer"])
        # a translation's target side may be cut otherwise than its source
        self.tgt_tokenizer = D.Tokenizer.from_json(config["tgt_tokenizer"]) \
            if config.get("tgt_tokenizer") else self.tokenizer
        self.chars = D.Vocab.from_json(config["chars"]) if config.get("chars") else None
        self.bigrams = D.Vocab.from_json(config["bigrams"]) if config.get("bigrams") else None
        self.tgt_vocab = D.Vocab.from_json(config["tgt_vocab"]) if config.get("tgt_vocab") \
            else None
        self.options = config.get("data", {})
        self._warned_unsegmented = False
        self._packs: blas.FrozenPacks | None = None  # packed weights; made read-only by records

    @classmethod
    def load(cls, directory) -> Task:
        """From a run directory (its ``best``, else ``last`` checkpoint) or a checkpoint."""
        directory = checkpoint_dir(directory)
        model, config = io.load_model(directory)
        if config.get("task") not in TASKS:
            raise ValueError(f"{directory}: not a classify/tag/translate/lm run (task "
                             f"{config.get('task')!r})")
        run_config.check(config, model, f"{directory}/config.json")
        return cls(model, config)

    # -------------------------------------------------------------- encoding
    def encode(self, raw, unseen: str = "error") -> list:
        """Raw examples (as :func:`read_task_file` returns them) → model examples with this
        run's vocabularies and labels; a label not known to the run is an error, and so is a
        tag unless ``unseen="count"``: then it becomes −2 (an error in every metric)."""
        if self.task == "classify":
            index = {name: i for i, name in enumerate(self.labels)}
            out = []
            for text, label in raw:
                if label not in index:
                    raise ValueError(f"label {label!r} was not seen in training "
                                     f"(known: {self.labels[:10]})")
                out.append(self._text_example(text, index[label]))
            return out
        if self.task == "tag":
            index = {name: i for i, name in enumerate(self.labels)}
            out = []
            for tokens, tags in raw:
                words = [t.lower() if self.tokenizer.lower else t for t in tokens]
                unknown = [t for t in tags if t not in index]
                if unknown and unseen != "count":
                    raise ValueError(f"tag {unknown[0]!r} was not seen in training")
                ex = (self.vocab.encode(words), [index.get(t, -2) for t in tags])
                if self.chars is not None or self.bigrams is not None:
                    ex += ([self.chars.encode(list(w)) for w in tokens]
                           if self.chars is not None else None,)
                if self.bigrams is not None:
                    ex += ([self.bigrams.encode(pair) for pair in D.token_bigrams(words)],)
                out.append(ex)
            return out
        if self.task == "translate":
            return [(self._source_ids(a), self.tgt_vocab.encode(self.tgt_tokenizer(b)))
                    for a, b in raw]
        ids = self.vocab.encode(self.lm_tokens(raw))
        return LanguageModel.windows(ids, self.options["batch_size"], self.options["bptt"])

    def _source_ids(self, text: str) -> list[int]:
        """A translation source's token ids; an empty one is <unk>."""
        return self.vocab.encode(self.tokenizer(text)) or [self.vocab.stoi[D.UNK]]

    def _text_example(self, text: str, label: int) -> tuple:
        """A classifier example: (token ids, label[, bigram ids]); an empty text is <unk>."""
        tokens = self.tokenizer(text) or [D.UNK]
        ex = (self.vocab.encode(tokens), label)
        if self.bigrams is not None:
            ex += ([self.bigrams.encode(pair) for pair in D.token_bigrams(tokens)],)
        return ex

    # -------------------------------------------------------------- use
    def evaluate(self, raw, beam_size: int = 1, bleu_tokenize: str | None = None) -> dict:
        """Metrics on raw examples: loss always; classify accuracy and macro-F1; tag token
        accuracy; translate BLEU and chrF (:meth:`translation_scores`); lm perplexity, bits
        per token, and how many of the scored tokens the run never saw (``unknown``)."""
        lm = self.task == "lm"
        examples = self.encode(raw, unseen="count") if self.task == "tag" else self.encode(raw)
        if self.task == "tag":
            unseen = sorted({t for _, tags in raw for t in tags} - set(self.labels))
            if unseen:
                import warnings

                shown = ", ".join(map(repr, unseen[:10]))
                warnings.warn(f"{len(unseen)} tag(s) not seen in training, scored as errors: "
                              f"{shown}", stacklevel=2)
        metrics = evaluate(self.model, examples, 1 if lm else 64, in_order=lm)
        if self.task == "classify":
            metrics["macro_f1"] = self._macro_f1(examples)
        if self.task == "translate":
            metrics.update(self.translation_scores(raw, beam_size, bleu_tokenize))
        if lm:  # the tokens the run never saw are scored as <unk>: say how many
            metrics["tokens"] = sum(ex[0].size for ex in examples)
            metrics["unknown"] = sum(int((ex[1] == self.vocab.stoi[D.UNK]).sum())
                                     for ex in examples)
        scheme = chunk_scheme(self.labels) if self.task == "tag" else None
        if scheme is not None:
            metrics.update(self.chunk_scores(raw, examples, scheme))
        return metrics

    def chunk_scores(self, raw, examples, scheme: str) -> dict:
        """Chunk (entity; word for B/M/E/S) precision, recall and F1 over the gold tags as
        written in the file (unseen ones too), overall and per type (``per_type``: {type:
        {precision, recall, f1, support}}); conlleval's reading (rnnkit.schemes)."""
        totals: dict[str, list[int]] = {}
        for i in range(0, len(examples), 64):
            pred = self.model.predict(self.model.collate(examples[i:i + 64]))
            for (_, gold), row in zip(raw[i:i + 64], pred, strict=True):
                names = [self.labels[k] for k in row[:len(gold)]]
                for kind, c in schemes.chunk_counts(gold, names, scheme).items():
                    t = totals.setdefault(kind, [0, 0, 0])
                    totals[kind] = [a + b for a, b in zip(t, c, strict=True)]
        overall = [sum(c[k] for c in totals.values()) for k in range(3)]
        p, r, f = schemes.prf(*overall)
        per_type = {kind: dict(zip(("precision", "recall", "f1"), schemes.prf(*c),
                                   strict=True), support=c[2])
                    for kind, c in sorted(totals.items())}
        return {"chunk_precision": p, "chunk_recall": r, "chunk_f1": f, "per_type": per_type}

    def translation_scores(self, raw, beam_size: int = 1, bleu_tokenize: str | None = None) \
            -> dict:
        """Corpus BLEU and chrF of the translations of raw (source, reference) pairs, BLEU
        tokenised as ``bleu_tokenize`` says (None: as the run was trained, by default detected
        from the references: rnnkit.bleu)."""
        from .bleu import translation_scores

        hyps = self.translate([a for a, _ in raw], beam_size)
        return translation_scores(hyps, [b for _, b in raw], bleu_tokenize
                                  or self.options.get("bleu_tokenize", "auto"))

    def translate(self, lines: list[str], beam_size: int = 1, max_len: int | None = None,
                  batch_size: int = 64, length_penalty: float = 0.6) -> list[str]:
        """Greedy (beam_size 1) or beam-search translations, detokenised; a blank line's is
        blank."""
        return [n[0][0] if n else "" for n in self.n_best(lines, beam_size, 1, max_len,
                                                           batch_size, length_penalty)]

    def n_best(self, lines: list[str], beam_size: int = 5, n: int = 1,
               max_len: int | None = None, batch_size: int = 64,
               length_penalty: float = 0.6) -> list[list[tuple[str, float]]]:
        """The ``n`` best translations of each line, detokenised, with the beam's ranking
        score (log p / GNMT length penalty; greedy: None), best first; none for a blank
        line. Sources are decoded ``batch_size`` at a time, the beam over all of them at once
        (Seq2Seq.beam_search_batch)."""
        out: list[list[tuple[str, float]]] = [[] for _ in lines]
        live = [i for i, t in enumerate(lines) if t.strip()]
        srcs = [self._source_ids(lines[i]) for i in live]
        for i in range(0, len(srcs), batch_size):
            chunk = srcs[i:i + batch_size]
            limit = max_len or 2 * max(len(s) for s in chunk) + 10
            if beam_size == 1:
                found = [[(y, None)] for y in self.model.greedy(chunk, limit)]
            else:
                found = self.model.beam_search_batch(chunk, beam_size, limit, length_penalty,
                                                     n)
            for k, hyps in zip(live[i:i + batch_size], found, strict=True):
                out[k] = [(self.tgt_tokenizer.detokenize(self.tgt_vocab.decode(y)), score)
                          for y, score in hyps]
        return out

    def _macro_f1(self, examples) -> float:
        m = self._confusion(examples)
        tp = np.diag(m)
        seen = m.sum(axis=0) + m.sum(axis=1) > 0  # classes neither gold nor predicted: skipped
        f1 = 2 * tp / np.maximum(m.sum(axis=0) + m.sum(axis=1), 1)
        return float(f1[seen].mean()) if seen.any() else 0.0

    def confusion(self, raw) -> np.ndarray:
        """Counts M (K, K) of gold label i predicted as j, over sentences (classify) or tokens
        (tag); rows and columns follow ``self.labels``."""
        if self.task not in ("classify", "tag"):
            raise ValueError(f"a confusion matrix needs labels; this run is a {self.task} model")
        return self._confusion(self.encode(raw))

    def _confusion(self, examples) -> np.ndarray:
        K = len(self.labels)
        m = np.zeros((K, K), dtype=np.int64)
        for i in range(0, len(examples), 256):
            batch = self.model.collate(examples[i:i + 256])
            if self.task == "classify":
                gold, pred = batch[2], self.model.predict_logits(batch).argmax(axis=1)
            else:
                p, g = self.model.predict(batch), batch[2]
                gold, pred = g[g >= 0], p[g >= 0]
            np.add.at(m, (gold, pred), 1)
        return m

    def attention(self, line: str, max_len: int | None = None):
        """(source tokens, output tokens, weights (T_out, S)) of a greedy translation."""
        if self.task != "translate":
            raise ValueError(f"attention needs a translation model; this run is a {self.task} "
                             "model")
        src_tokens = self.tokenizer(line)
        src = self.vocab.encode(src_tokens) or [self.vocab.stoi[D.UNK]]
        ids, weights = self.model.attention_map(src, max_len or 2 * len(src) + 10)
        out = self.tgt_vocab.decode(ids, strip=False)
        return src_tokens or [D.UNK], out + [D.EOS] * (len(weights) - len(out)), weights

    def predict(self, lines: list[str], batch_size: int = 64,
                segmenter: Task | None = None, beam_size: int = 1) -> list[str]:
        """One output line per input line: a label, ``word/TAG`` tokens or a translation
        (the ``output`` of :meth:`records`)."""
        return [r["output"] for r in self.records(lines, batch_size, segmenter, beam_size)]

    def records(self, lines: list[str], batch_size: int = 64, segmenter: Task | None = None,
                beam_size: int = 1) -> list[dict]:
        """One record per input line: ``output``, the line ``rnnkit predict`` prints, and the
        fields it is made of — classify: ``label`` and ``probabilities`` {label: p};
        tag: ``tokens`` and ``tags``; translate: ``translation`` and ``score``, its log p(y | x)
        (natural log, <eos> included) under the model.

        A tagger reads each line as its training data was tokenised (characters for a
        character tagger, else whitespace-separated words; ``segmenter``, a B/M/E/S word
        segmentation run, first cuts unsegmented text into words); a blank line gives a blank
        line. With numba, a line's numbers do not depend on the lines batched with it
        (rnnkit.blas.batch_invariant; translations are batched by source length)."""
        if self.task == "lm":
            raise ValueError("a language model generates; use 'rnnkit generate'")
        out: list[dict] = []
        if self._packs is None and blas.batch_invariant_available():
            self._packs = blas.FrozenPacks(self.model.params.values())
        with blas.batch_invariant(self._packs):
            for i in range(0, len(lines), batch_size):
                chunk = lines[i:i + batch_size]
                if self.task == "classify":
                    out += self._classify_records(chunk)
                elif self.task == "translate":
                    out += self._translate_records(chunk, beam_size)
                else:
                    out += self._tag_records(chunk, segmenter)
        return out

    def _classify_records(self, lines: list[str]) -> list[dict]:
        ex = [self._text_example(t, 0) for t in lines]
        logits = self.model.predict_logits(self.model.collate(ex)).astype(np.float64)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return [{"output": self.labels[k], "label": self.labels[k],
                 "probabilities": dict(zip(self.labels, map(float, row), strict=True))}
                for k, row in zip(logits.argmax(axis=1), p, strict=True)]

    def _translate_records(self, lines: list[str], beam_size: int) -> list[dict]:
        srcs = [self._source_ids(t) for t in lines]
        by_length: dict[int, list[int]] = {}
        out: list[dict] = [{} for _ in lines]
        for i, s in enumerate(srcs):  # equal lengths: no padding, so no batch-dependent sums
            if lines[i].strip():
                by_length.setdefault(len(s), []).append(i)
            else:  # blank in, blank out
                out[i] = {"output": "", "translation": "", "score": None}
        for length, rows in by_length.items():
            group = [srcs[i] for i in rows]
            limit = 2 * length + 10
            ids = (self.model.greedy(group, limit) if beam_size == 1 else
                   [r[0][0] for r in self.model.beam_search_batch(group, beam_size, limit)])
            scores = self.model.log_likelihood(group, ids)
            for i, y, score in zip(rows, ids, scores, strict=True):
                text = self.tgt_tokenizer.detokenize(self.tgt_vocab.decode(y))
                out[i] = {"output": text, "translation": text, "score": float(score)}
        return out

    def tokens(self, line: str, segmenter: Task | None = None) -> list[str]:
        """A tagger's tokens of a raw line (see :meth:`predict`)."""
        if segmenter is not None:
            return segmenter.segment(line)
        if self.tokenizer.kind == "char":
            return [c for c in line if not c.isspace()]
        words = line.split()
        if not self._warned_unsegmented and any(
                len(run) > 6 for w in words for run in _CJK_RUN.findall(w)):
            import warnings

            self._warned_unsegmented = True
            warnings.warn("a line holds Chinese or Japanese text without spaces, which this "
                          "word-level tagger reads as one token; segment it first (rnnkit "
                          "predict RUN --segment-with SEG_RUN) or train on characters",
                          stacklevel=3)
        return words

    def segment(self, line: str) -> list[str]:
        """Words of a line by this run, a B/M/E/S segmentation tagger over characters."""
        if chunk_scheme(self.labels) != "bmes":
            raise ValueError("--segment-with needs a word segmentation run (B/M/E/S tags), "
                             f"this one tags {', '.join(self.labels[:6])}")
        chars = [c for c in line if not c.isspace()]
        if not chars:
            return []
        raw = [(chars, [self.labels[0]] * len(chars))]
        pred = self.model.predict(self.model.collate(self.encode(raw)))[0]
        words: list[str] = []
        for c, k in zip(chars, pred, strict=False):
            head = self.labels[k].partition("-")[0].lower()
            if head in ("b", "s") or not words:
                words.append(c)
            else:
                words[-1] += c
        return words

    def _tag_records(self, lines: list[str], segmenter: Task | None) -> list[dict]:
        toks = [self.tokens(t, segmenter) for t in lines]
        out = [{"output": "", "tokens": [], "tags": []} for _ in lines]
        live = [i for i, t in enumerate(toks) if t]
        if not live:
            return out
        raw = [(toks[i], [self.labels[0]] * len(toks[i])) for i in live]
        pred = self.model.predict(self.model.collate(self.encode(raw)))
        for i, row in zip(live, pred, strict=True):
            tags = [self.labels[k] for k in row[:len(toks[i])]]
            out[i] = {"output": " ".join(f"{w}/{t}" for w, t in zip(toks[i], tags, strict=True)),
                      "tokens": toks[i], "tags": tags}
        return out

    def generate(self, prompt: str, length: int = 200, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None, top_p: float | None = None,
                 stop_at_eos: bool = False) -> str:
        """``prompt`` and the text of at most ``length`` tokens sampled after it (see
        :meth:`sample`)."""
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        return prompt + "".join(islice(self.sample(prompt, temperature, top_k, seed, top_p,
                                                   stop_at_eos), length))

    def lm_tokens(self, text: str) -> list[str]:
        """A language model's tokens of a text: every character (spaces and line breaks
        included) at character level, else the run's tokenizer."""
        return list(text) if self.tokenizer.kind == "char" else self.tokenizer(text)

    def unseen(self, text: str) -> list[str]:
        """The distinct tokens of ``text`` (:meth:`lm_tokens`) the run never saw, in order."""
        return list(dict.fromkeys(t for t in self.lm_tokens(text) if t not in self.vocab))

    def sample(self, prompt: str, temperature: float = 1.0, top_k: int | None = None,
               seed: int | None = None, top_p: float | None = None,
               stop_at_eos: bool = False) -> Iterator[str]:
        """The text each sampled token adds after ``prompt``, one token at a time (what
        :meth:`generate` joins); never a special token: ``<pad> <unk> <bos>`` are not drawn,
        and ``<eos>`` neither, unless ``stop_at_eos``: then drawing it ends the text. A prompt
        token the run never saw is read as ``<unk>``, with a warning naming it. The arguments
        are checked at the call."""
        if self.task != "lm":
            raise ValueError(f"only a language model generates; this run is a {self.task} "
                             "model")
        unseen = self.unseen(prompt)
        if unseen:
            import warnings

            shown = ", ".join(map(repr, unseen[:10])) + (" …" if len(unseen) > 10 else "")
            warnings.warn(f"the prompt holds {len(unseen)} token(s) the model never saw in "
                          f"training, read as <unk>: {shown}", stacklevel=2)
        ids = self.vocab.encode(self.lm_tokens(prompt)) or [self.vocab.stoi[D.UNK]]
        eos = self.vocab.stoi[D.EOS]
        never = [self.vocab.stoi[t] for t in (D.PAD, D.UNK, D.BOS)] + ([] if stop_at_eos
                                                                       else [eos])
        tokens = self.model.sample(ids, temperature, top_k, seed, top_p, never,
                                   eos if stop_at_eos else None)

        def pieces() -> Iterator[str]:
            new: list[int] = []
            text = ""
            for token in tokens:
                new.append(token)
                longer = self.tokenizer.detokenize(self.vocab.decode(new, strip=False))
                yield longer[len(text):]  # a word tokenizer's spacing settles per token
                text = longer
        return pieces()


def _holding_run_lock(fn):
    """The run directory ``out`` is locked for the whole of ``fn`` (io.run_lock); under
    mpiexec by rank 0, whose success or refusal every rank hears."""
    @functools.wraps(fn)
    def wrapper(task, train_path, out, *args, **kwargs):
        w = world()
        with contextlib.ExitStack() as stack:
            problem = None
            if w.rank == 0:
                try:
                    stack.enter_context(io.run_lock(out))
                except ValueError as exc:
                    problem = str(exc)
            problem = w.bcast(problem)
            if problem is not None:
                raise ValueError(problem)
            return fn(task, train_path, out, *args, **kwargs)
    return wrapper


@_holding_run_lock
def resume(task: str, train_path, out, dev_path=None, test_path=None, progress: bool = True,
           beam_size: int = 1, **overrides) -> dict:
    """Continue the run in ``out`` from its ``last`` checkpoint on the same data files (checked
    by size and SHA-256), ending as an uninterrupted run would; ``overrides``: ``epochs``,
    ``max_minutes``, ``patience`` (the run's other settings are its own). Writes summary.json
    and test metrics like :func:`train`."""
    last = Path(out) / "last"
    if not (last / "config.json").is_file():
        raise ValueError(f"{out}: no checkpoint to resume from (no 'last'); train without "
                         "--resume")
    config = io.load_model(last)[1]
    if config.get("task") != task:
        raise ValueError(f"{out} is a {config.get('task')!r} run, not {task!r}")
    recorded = config.get("files", {})
    for name, path in (("train", train_path), ("dev", dev_path), ("test", test_path)):
        want = recorded.get(name)
        if (want is None) != (path is None):
            raise ValueError(f"the run was trained {'with' if want else 'without'} a {name} "
                             f"file; resume with the same files ({name}: "
                             f"{want['path'] if want else 'none'})")
        if want is not None:
            got = _fingerprint(path)
            if (got["size"], got["sha256"]) != (want["size"], want["sha256"]):
                raise ValueError(f"{path} differs from the {name} file the run was trained on "
                                 f"({want['path']}: {want['size']} bytes, sha256 "
                                 f"{want['sha256'][:12]}…); a resumed run needs the same data")
    task_obj = Task.load(last)
    o = task_obj.options
    read = dict(fmt=o.get("format"), encoding=o.get("encoding", "utf-8"),
                text_column=o.get("text_column", 0), label_column=o.get("label_column", 1),
                tag=o.get("tag", "upos"), token_column=o.get("token_column"),
                tag_column=o.get("tag_column"))
    raw_train = read_task_file(task, train_path, **read)
    raw_train, raw_dev, raw_test = _splits(task, raw_train, dev_path, test_path, read,
                                           o.get("split_seed", 0))
    train_ex, dev_ex = task_obj.encode(raw_train), task_obj.encode(raw_dev)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    trainer = Trainer.resume(out, train_ex, dev_ex, _dev_scores(task_obj.config, raw_dev),
                             progress=progress, **overrides)
    return _finish(task, trainer, out, raw_test, beam_size, len(train_ex),
                   len(task_obj.vocab))


def _one_character_tokens(raw, sample: int = 2000) -> bool:
    """Whether a tagging corpus's tokens are single characters (≥ 98% of a sample)."""
    sizes = [len(w) for tokens, _ in raw[:sample] for w in tokens]
    return bool(sizes) and sum(s == 1 for s in sizes) >= 0.98 * len(sizes)


def _bigram_vocab(token_lists) -> D.Vocab:
    """The token bigrams of the training texts. Bigrams seen once are mostly noise and would
    swell the table: keep those seen twice, at most 200,000."""
    return D.Vocab.build(([b for pair in D.token_bigrams(toks) for b in pair]
                          for toks in token_lists), min_freq=2, max_size=200_000)


#: Each task's default dropout, and the measurement behind it (dev accuracy after the CLI's
#: 10 epochs with its other defaults; docs/regularisation.md).
DEFAULT_DROPOUT = {
    "classify": (0.3, "of 0, 0.3 and 0.5 the best on the UCI sentences, dev 0.77, 0.78, 0.76 "
                 "(300 sentences: within noise), and on Chinese reviews 0.3 beat 0.5"),
    "tag": (0.3, "of 0, 0.3 and 0.5 the best on UD English-EWT (dev 0.927, 0.933, 0.925)"),
    "translate": (0.0, "not measured yet"),
    "lm": (0.0, "not measured yet"),
}


@_holding_run_lock
def train(task: str, train_path, out, dev_path=None, test_path=None, fmt: str | None = None,
          encoding: str = "utf-8", tokenizer: str | None = None, lower: bool = False,
          min_freq: int = 1, max_vocab: int | None = None, text_column: int = 0,
          label_column: int = 1, tag: str = "upos", token_column: int | None = None,
          tag_column: int | None = None, cell: str = "lstm", hidden: int = 128,
          layers: int = 1, embedding_dim: int = 100, bidirectional: bool = True,
          dropout: float | None = None, pooling: str = "last", char_features: bool = True,
          bigram_features: bool = False, word_dropout: float = 0.0, char_dim: int = 25,
          char_hidden: int = 25,
          crf: bool = False, constraints: bool = True, select_metric: str | None = None,
          embeddings: str | None = None, freeze_embeddings: bool = False,
          embeddings_extend: bool = False, init_from: str | None = None,
          attention: str = "dot", teacher_forcing: float = 1.0,
          bptt: int = 64, split_seed: int = 0, progress: bool = True, beam_size: int = 1,
          bleu_tokenize: str = "auto", src_tokenizer: str | None = None,
          tgt_tokenizer: str | None = None, src_vocab_size: int = 8000,
          tgt_vocab_size: int = 8000, bidirectional_encoder: bool = False,
          input_feed: bool = False, recurrent: dict | None = None,
          **train_options) -> dict:
    """Train a model for ``task`` on files; returns a summary (dev and test metrics).

    Without ``dev_path``/``test_path`` the training file is split 80/10/10 with
    ``numpy.random.default_rng(split_seed)`` (a language model's text: first 90% train, last
    10% dev). ``train_options`` are TrainConfig fields (epochs, batch_size, lr, …);
    ``beam_size`` is the beam a translation's test set is decoded with (1: greedy), and
    ``bleu_tokenize`` how its BLEU is tokenised (rnnkit.bleu; auto: from the references); a
    translation is selected on dev BLEU unless ``select_metric`` says chrf or loss, and cuts
    its source and target with ``src_tokenizer`` and ``tgt_tokenizer`` (each by default
    ``tokenizer``, else word; ``bpe``/``unigram``: subwords learnt from the training split,
    ``src_vocab_size``/``tgt_vocab_size`` pieces), with a ``bidirectional_encoder`` and
    ``input_feed`` as Seq2SeqConfig says;
    ``recurrent`` the recurrent stack's options (rnnkit.options.RecurrentOptions fields);
    a tagger with ``crf`` has a CRF output layer, and with ``constraints`` decodes only the
    sequences valid under the tag scheme its labels follow (BIO, BIOES, BMES; detected);
    ``dropout`` None takes the task's :data:`DEFAULT_DROPOUT`; ``init_from`` a run directory
    whose encoder (token vectors matched by token, recurrent weights of the same name and
    shape) the model starts from (:mod:`rnnkit.transfer`).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if init_from is not None and (task == "translate" or embeddings is not None):
        raise ValueError("--init-from starts a classifier, tagger or language model from "
                         "another run's encoder; it does not combine with "
                         + ("translate" if task == "translate" else "--embeddings"))
    if dropout is None:
        dropout = DEFAULT_DROPOUT[task][0]
    read = dict(fmt=fmt, encoding=encoding, text_column=text_column,
                label_column=label_column, tag=tag, token_column=token_column,
                tag_column=tag_column)
    if task == "tag":  # the columns chosen for the training file hold for the others too
        raw_train, choice = read_tag_file(train_path, fmt, encoding, tag, token_column,
                                          tag_column)
        if choice is not None:
            read.update(token_column=choice.token, tag_column=choice.tag)
    else:
        raw_train = read_task_file(task, train_path, **read)
    raw_train, raw_dev, raw_test = _splits(task, raw_train, dev_path, test_path, read,
                                           split_seed)
    kind = tokenizer or ("char" if task == "lm" else "word")
    if task == "tag" and tokenizer is None and _one_character_tokens(raw_train):
        kind = "char"  # a character tagger: raw text is read character by character
    # A translation is scored on its detokenised text: word tokens keep their spacing.
    tok = D.Tokenizer(kind, lower, joins=task == "translate" and kind == "word")
    cfg = TrainConfig(progress=progress, **train_options)
    rec = asdict(RecurrentOptions(**(recurrent or {})))  # unknown fields fail here
    extra = {"task": task, "tokenizer": tok.to_json(),
             "data": {"format": fmt, "encoding": encoding, "text_column": text_column,
                      "label_column": label_column, "tag": tag,
                      "token_column": read["token_column"], "tag_column": read["tag_column"],
                      "split_seed": split_seed, "bleu_tokenize": bleu_tokenize},
             "files": {name: _fingerprint(p) for name, p in
                       (("train", train_path), ("dev", dev_path), ("test", test_path)) if p}}
    if task == "classify":
        if kind == "word":
            _warn_unsegmented([t for t, _ in raw_train], "the text", "--tokenizer char")
        vocab = D.Vocab.build((tok(t) for t, _ in raw_train), min_freq, max_vocab)
        bigrams = _bigram_vocab(tok(t) for t, _ in raw_train) if bigram_features else None
        extra["bigrams"] = bigrams.to_json() if bigrams else None
        # Classes that only the dev/test files hold still get an output (never trained
        # toward): those examples then count as errors instead of failing the evaluation.
        labels = sorted({label for part in (raw_train, raw_dev, raw_test) if part
                         for _, label in part})
        model = SequenceClassifier(ClassifierConfig(
            vocab_size=len(vocab), num_classes=len(labels), embedding_dim=embedding_dim,
            hidden_size=hidden, num_layers=layers, cell=cell, bidirectional=bidirectional,
            dropout=dropout, pooling=pooling, word_dropout=word_dropout,
            bigram_vocab_size=len(bigrams) if bigrams else 0, seed=cfg.seed, **rec))
    elif task == "tag":
        words = [[w.lower() if lower else w for w in toks] for toks, _ in raw_train]
        vocab = D.Vocab.build(words, min_freq, max_vocab)
        found = None
        if embeddings is not None:  # pretrained vectors: their size is the embedding's
            others = {w.lower() if lower else w for part in (raw_dev, raw_test) if part
                      for toks, _ in part for w in toks} if embeddings_extend else set()
            found, embedding_dim = read_vectors(embeddings, set(vocab.itos) | others)
            new = sorted(w for w in others - set(vocab.itos)
                         if w in found or w.lower() in found)
            vocab = D.Vocab(vocab.itos + new)  # dev/test words the vectors know
        labels = sorted({t for part in (raw_train, raw_dev, raw_test) if part
                         for _, tags in part for t in tags})  # as for classify
        chars = D.Vocab.build(list(w) for toks, _ in raw_train for w in toks) \
            if char_features else None
        extra["chars"] = chars.to_json() if chars else None
        bigrams = _bigram_vocab(words) if bigram_features else None
        extra["bigrams"] = bigrams.to_json() if bigrams else None
        model = SequenceTagger(TaggerConfig(
            vocab_size=len(vocab), num_tags=len(labels), embedding_dim=embedding_dim,
            hidden_size=hidden, num_layers=layers, cell=cell, dropout=dropout,
            char_vocab_size=len(chars) if chars else 0, char_embedding_dim=char_dim,
            char_hidden_size=char_hidden,
            bigram_vocab_size=len(bigrams) if bigrams else 0, word_dropout=word_dropout,
            unk_idx=vocab.stoi[D.UNK], crf=crf, tag_names=labels,
            scheme=detect_scheme(labels), constrained=constraints,
            select_metric=select_metric, freeze_embeddings=freeze_embeddings,
            seed=cfg.seed, **rec))
        if found is not None:
            hits = load_into(model.layers["embedding"].params["weight"], vocab, found)
            extra["embeddings"] = {"file": str(embeddings), "dim": embedding_dim,
                                   "rows_found": hits, "vocab_size": len(vocab)}
    elif task == "translate":
        tok, vocab = _side(src_tokenizer or kind, [a for a, _ in raw_train], lower,
                           src_vocab_size, min_freq, max_vocab, "source")
        tgt_tok, tgt = _side(tgt_tokenizer or kind, [b for _, b in raw_train], lower,
                             tgt_vocab_size, min_freq, max_vocab, "target")
        labels = None
        extra.update(tokenizer=tok.to_json(), tgt_tokenizer=tgt_tok.to_json(),
                     tgt_vocab=tgt.to_json())
        model = Seq2Seq(Seq2SeqConfig(
            src_vocab_size=len(vocab), tgt_vocab_size=len(tgt), embedding_dim=embedding_dim,
            hidden_size=hidden, num_layers=layers, cell=cell, attention=attention,
            dropout=dropout, teacher_forcing=teacher_forcing,
            bidirectional_encoder=bidirectional_encoder, input_feed=input_feed,
            select_metric=select_metric or "bleu", seed=cfg.seed, **rec))
    else:
        vocab = D.Vocab.build([list(raw_train) if kind == "char" else tok(raw_train)],
                              min_freq, max_vocab)
        labels = None
        model = LanguageModel(LMConfig(vocab_size=len(vocab), embedding_dim=embedding_dim,
                                       hidden_size=hidden, num_layers=layers, cell=cell,
                                       dropout=dropout, level="char" if kind == "char" else
                                       "word", seed=cfg.seed, **rec))
        extra["data"].update(batch_size=cfg.batch_size, bptt=bptt)
        cfg = TrainConfig(**{**asdict(cfg), "batch_size": 1, "shuffle": False,
                             "bucket": False})
    if init_from is not None:
        extra["init_from"] = _init_from(model, vocab, tok, init_from)
    extra.update(vocab=vocab.to_json(), labels=labels)
    task_obj = Task(model, {**extra, "model": model.config_dict()})
    train_ex, dev_ex = task_obj.encode(raw_train), task_obj.encode(raw_dev)
    trainer = Trainer(model, train_ex, dev_ex, cfg, out, extra_config=extra,
                      dev_scores=_dev_scores(task_obj.config, raw_dev))
    return _finish(task, trainer, out, raw_test, beam_size, len(train_ex), len(vocab))


def _side(kind: str, texts: list[str], lower: bool, subwords: int, min_freq: int,
          max_vocab: int | None, side: str) -> tuple[D.Tokenizer, D.Vocab]:
    """One side of a translation: its tokenizer (subwords learnt from ``texts``) and
    vocabulary (a subword tokenizer's pieces, all of them; else the tokens of ``texts``)."""
    if kind in D.SUBWORD_KINDS:
        tok = D.Tokenizer.train(kind, texts, subwords, lower)
        return tok, D.Vocab(list(D.SPECIALS) + [p for p in tok.pieces() if p not in D.SPECIALS])
    if kind == "word":
        flag = {"source": "--src-tokenizer", "target": "--tgt-tokenizer"}[side]
        _warn_unsegmented(texts, f"the {side} text", f"{flag} char, bpe or unigram")
    tok = D.Tokenizer(kind, lower, joins=kind == "word")
    return tok, D.Vocab.build((tok(t) for t in texts), min_freq, max_vocab)


def _warn_unsegmented(texts: list[str], what: str, instead: str) -> None:
    """Warn when Chinese or Japanese without spaces would reach a word tokenizer, which reads
    whole clauses as single tokens."""
    sample = texts[:2000]
    runs = [r for t in sample for r in _CJK_RUN.findall(t) if len(r) > 6]
    if len(runs) > 0.05 * len(sample):
        import warnings

        warnings.warn(f"{what} holds Chinese or Japanese without spaces, which the word "
                      f"tokenizer reads as whole clauses (e.g. {runs[0]!r} is one token); use "
                      f"{instead}", stacklevel=4)


def _dev_scores(config: dict, raw_dev):
    """A translation's dev BLEU and chrF after each epoch (greedy), for the trainer; None for
    the other tasks."""
    if config["task"] != "translate":
        return None

    def scores(model) -> dict:
        got = Task(model, config).translation_scores(raw_dev)
        return {"bleu": got["bleu"], "chrf": got["chrf"]}
    return scores


def _init_from(model, vocab, tok, source) -> dict:
    """Start ``model`` from the encoder of the run at ``source``; warns of what stays fresh."""
    import warnings

    from .transfer import init_from

    report = init_from(model, vocab, tok.to_json(), source)
    if report["fresh"]:
        warnings.warn(f"--init-from: {len(report['fresh'])} recurrent tensor(s) start fresh "
                      f"({', '.join(list(report['fresh'])[:4])}"
                      f"{', …' if len(report['fresh']) > 4 else ''}): "
                      f"{next(iter(report['fresh'].values()))}", stacklevel=3)
    return report


def _splits(task, raw_train, dev_path, test_path, read: dict, split_seed: int):
    """(train, dev, test) raw examples: the files given, else cuts of the training file."""
    raw_dev = read_task_file(task, dev_path, **read) if dev_path else None
    raw_test = read_task_file(task, test_path, **read) if test_path else None
    if task == "lm":
        if raw_dev is None:
            cut = int(len(raw_train) * 0.9)
            raw_train, raw_dev = raw_train[:cut], raw_train[cut:]
    elif raw_dev is None:
        a, b, c = D.split(raw_train, seed=split_seed)
        raw_train, raw_dev = a, b
        raw_test = raw_test if raw_test is not None else c
    return raw_train, raw_dev, raw_test


def _fingerprint(path) -> dict:
    """Size and SHA-256 of a data file: what a resumed run checks it is given again."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "size": Path(path).stat().st_size, "sha256": h.hexdigest()}


def _finish(task: str, trainer: Trainer, out, raw_test, beam_size: int, train_examples: int,
            vocab_size: int) -> dict:
    """Fit, then evaluate the best checkpoint on the test set; writes summary.json."""
    history = trainer.fit()
    best = trainer.best_epoch or len(history)
    summary = {"task": task, "epochs": len(history), "best_epoch": best,
               "dev": history[best - 1] if history else None,
               "dev_last": history[-1] if history else None,
               "train_examples": train_examples, "vocab_size": vocab_size}
    if not trainer.writer:  # under mpiexec: rank 0 tests and writes
        return summary
    if raw_test is not None:
        summary["test"] = Task.load(out).evaluate(raw_test, beam_size=beam_size)
        if task == "translate":
            summary["test_beam_size"] = beam_size
    io.write_atomic(Path(out, "summary.json"), json.dumps(summary, indent=1).encode())
    return summary
