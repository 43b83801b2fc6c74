"""Data: vocabularies, tokenisers, seeded splits, and readers for the usual file formats.

Every reader streams its file once, line by line, and reports a malformed line as
``file:line: what was expected``; an empty file is an error. ``encoding`` is passed through
(Chinese files are often GBK).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)


class DataError(ValueError):
    """A file that cannot be read as the format says, with where and why."""


# ----------------------------------------------------------------------------- vocabulary
class Vocab:
    """Token ↔ id. Ids 0–3 are ``<pad> <unk> <bos> <eos>``; the rest by decreasing frequency
    (ties by first appearance), keeping tokens seen at least ``min_freq`` times, at most
    ``max_size`` in all. Unknown tokens encode to ``<unk>``."""

    def __init__(self, tokens: list[str]):
        if list(tokens[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("a vocabulary lists each token once")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_freq: int = 1,
              max_size: int | None = None, specials: bool = True) -> Vocab:
        """A vocabulary from token sequences: ``<pad> <unk> <bos> <eos>`` first, then tokens
        seen at least ``min_freq`` times by decreasing frequency (ties: first seen), at most
        ``max_size`` ids in all.
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter = Counter()
        for seq in sequences:
            counts.update(seq)
        ranked = [t for t, c in sorted(counts.items(), key=lambda kv: -kv[1])
                  if c >= min_freq and t not in SPECIALS]
        if max_size is not None:
            ranked = ranked[: max(max_size - len(SPECIALS), 0)]
        return cls(list(SPECIALS) + ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str], bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids, unknown tokens → ``<unk>``; optionally wrapped in ``<bos>`` … ``<eos>``."""
        unk = self.stoi[UNK]
        ids = [self.stoi.get(t, unk) for t in tokens]
        return ([self.stoi[BOS]] if bos else []) + ids + ([self.stoi[EOS]] if eos else [])

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Tokens of ``ids``; with ``strip``, ``<pad>``/``<bos>`` are dropped and ``<eos>`` ends."""
        out = []
        for i in ids:
            tok = self.itos[int(i)]
            if strip and tok in (PAD, BOS):
                continue
            if strip and tok == EOS:
                break
            out.append(tok)
        return out

    def to_json(self) -> list[str]:
        """The tokens in id order (what config.json stores)."""
        return list(self.itos)

    @classmethod
    def from_json(cls, tokens: list[str]) -> Vocab:
        """The vocabulary :meth:`to_json` wrote."""
        return cls(tokens)


# ----------------------------------------------------------------------------- tokenisers
JOINER = "\uffed"  # ￭, OpenNMT's mark for a token glued to the one before it


#: Tokenizer kinds: whole units, and subwords learnt from the training text (sentencepiece).
TOKENIZER_KINDS = ("char", "word", "space", "bpe", "unigram")
SUBWORD_KINDS = ("bpe", "unigram")


class Tokenizer:
    """``char``: every character a token (the natural unit for Chinese); ``word``: tokens are
    the matches of ``pattern`` (default: runs of word characters, or single other non-space
    characters); ``space``: split at whitespace; ``bpe`` / ``unigram``: subwords (Sennrich et
    al. 2016; Kudo 2018) of a sentencepiece model learnt by :meth:`train` — text is cut with
    no normalisation and spaces kept as ``▁``, characters never seen in training as their
    UTF-8 bytes, so that :meth:`detokenize` gives back the text exactly. ``lower``
    lower-cases first. ``joins`` (word tokens) marks each token that follows the previous one
    without a space with a leading ``￭`` ("vas-tu ?" → vas ￭- ￭tu ?), so :meth:`detokenize`
    restores the text exactly — what a translation's BLEU is scored on."""

    def __init__(self, kind: str = "word", lower: bool = False, pattern: str | None = None,
                 joins: bool = False, model: bytes | None = None):
        if kind not in TOKENIZER_KINDS:
            raise ValueError(f"unknown tokenizer {kind!r}; expected one of "
                             f"{', '.join(TOKENIZER_KINDS)}")
        self.kind, self.lower, self.joins = kind, bool(lower), bool(joins)
        self.pattern = pattern or r"\w+|[^\w\s]"
        self._re = re.compile(self.pattern)
        self.model = model
        self._sp = None
        if kind in SUBWORD_KINDS:
            if model is None:
                raise ValueError(f"a {kind} tokenizer is learnt from text: Tokenizer.train")
            self._sp = _sentencepiece().SentencePieceProcessor(model_proto=model)

    @classmethod
    def train(cls, kind: str, texts: Iterable[str], vocab_size: int,
              lower: bool = False) -> Tokenizer:
        """A ``bpe`` or ``unigram`` tokenizer of (at most) ``vocab_size`` subwords learnt from
        ``texts`` (deterministic for the same texts)."""
        import io as _io

        if kind not in SUBWORD_KINDS:
            raise ValueError(f"only subword tokenizers are trained ({', '.join(SUBWORD_KINDS)}),"
                             f" not {kind!r}")
        if vocab_size < 300:  # the 256 byte pieces and a few subwords
            raise ValueError(f"a subword vocabulary needs at least 300 pieces, got {vocab_size}")
        spm = _sentencepiece()
        texts = [t.lower() if lower else t for t in texts if t]
        if not texts:
            raise ValueError("no text to learn subwords from")
        out = _io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=out, vocab_size=vocab_size,
            model_type=kind, normalization_rule_name="identity",
            remove_extra_whitespaces=False, character_coverage=1.0, byte_fallback=True,
            hard_vocab_limit=False, num_threads=1, minloglevel=2, unk_id=0, bos_id=-1,
            eos_id=-1, input_sentence_size=2_000_000, shuffle_input_sentence=False)
        return cls(kind, lower, model=out.getvalue())

    def pieces(self) -> list[str]:
        """A subword tokenizer's pieces (its own unknown piece left out): the vocabulary."""
        sp = self._sp
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]

    def __call__(self, text: str) -> list[str]:
        if self.lower:
            text = text.lower()
        if self._sp is not None:
            return self._sp.encode(text, out_type=str)
        if self.kind == "char":
            return [c for c in text if not c.isspace()]
        if self.kind == "space":
            return text.split()
        if not self.joins:
            return self._re.findall(text)
        tokens, end = [], None
        for m in self._re.finditer(text):
            tokens.append(JOINER + m.group() if m.start() == end else m.group())
            end = m.end()
        return tokens

    def detokenize(self, tokens: list[str]) -> str:
        """Characters joined; subwords decoded; marked word tokens glued, others joined by a
        space; unmarked word tokens joined by spaces, none before closing punctuation."""
        if self.kind == "char":
            return "".join(tokens)
        if self._sp is not None:
            return self._sp.decode_pieces(list(tokens))
        if self.joins:
            return "".join(t[1:] if t.startswith(JOINER) else (" " + t if k else t)
                           for k, t in enumerate(tokens)).strip()
        text = " ".join(tokens)
        text = re.sub(r" ([.,!?;:%)\]}»])", r"\1", text)
        return re.sub(r"([(\[{«¿¡]) ", r"\1", text)

    def to_json(self) -> dict:
        """The tokenizer's settings (what config.json stores; a subword model as base64)."""
        d = {"kind": self.kind, "lower": self.lower, "pattern": self.pattern,
             "joins": self.joins}
        if self.model is not None:
            d["model"] = base64.b64encode(self.model).decode("ascii")
        return d

    @classmethod
    def from_json(cls, d: dict) -> Tokenizer:
        """The tokenizer :meth:`to_json` described."""
        model = base64.b64decode(d["model"]) if d.get("model") is not None else None
        return cls(d["kind"], d["lower"], d["pattern"], d.get("joins", False), model)


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:
        raise ValueError("subword tokenizers (bpe, unigram) need sentencepiece: pip install "
                         "\"rnnkit[subword]\"") from None
    return sentencepiece


# ----------------------------------------------------------------------------- splits
def token_bigrams(tokens: list[str]) -> list[tuple[str, str]]:
    """Per token t: its left bigram (x_{t−1} x_t) and right bigram (x_t x_{t+1}), with ``<s>``
    and ``</s>`` past the ends; the two tokens joined by a space (tokens hold none)."""
    padded = ["<s>", *tokens, "</s>"]
    return [(f"{padded[k]} {padded[k + 1]}", f"{padded[k + 1]} {padded[k + 2]}")
            for k in range(len(tokens))]


def split(items: list, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> tuple[list, list, list]:
    """Shuffle with ``numpy.random.default_rng(seed)`` and cut into train/dev/test by
    ``fractions``: the same seed and data give the same split on any machine."""
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    if not items:
        raise ValueError("cannot split an empty data set")
    perm = np.random.default_rng(seed).permutation(len(items))
    n_train = int(round(fractions[0] * len(items)))
    n_dev = int(round(fractions[1] * len(items)))
    pick = [items[i] for i in perm]
    return pick[:n_train], pick[n_train:n_train + n_dev], pick[n_train + n_dev:]


# ----------------------------------------------------------------------------- readers
def _lines(path: str | Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number, text without its line ending), streaming; lines end at ``\n``, ``\r\n``
    or a lone ``\r`` (old Mac files), split after decoding; decoding errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        ascii_compatible = "\n".encode(encoding) == b"\n"
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None
    number = 0
    limit = max_line_chars()
    source = _byte_lines(path, encoding) if ascii_compatible else _text_lines(path, encoding)
    for text in source:
        if len(text) > limit:
            raise DataError(f"{path}:{number + 1}: a line of {len(text):,} characters, more "
                            f"than the limit of {limit:,} (a file without line breaks? raise "
                            "it with RNNKIT_MAX_LINE_CHARS)")
        if number == 0 and text.startswith("\ufeff"):
            text = text[1:]
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        for part in text.split("\r"):
            number += 1
            if "\x00" in part:
                raise DataError(f"{path}:{number}: a NUL character — a binary file, or a "
                                f"UTF-16 text read as {encoding}? (try --encoding utf-16)")
            yield number, part
    if number == 0:
        raise DataError(f"{path}: the file is empty")


def max_line_chars() -> int:
    """The longest line the line readers take (``RNNKIT_MAX_LINE_CHARS``, default 2,000,000):
    one 100 MB line once grew training to 5.8 GB with no message."""
    value = os.environ.get("RNNKIT_MAX_LINE_CHARS", "2000000")
    try:
        return max(1, int(value))
    except ValueError:
        raise DataError(f"RNNKIT_MAX_LINE_CHARS must be a positive integer, got {value!r}") \
            from None


def _byte_lines(path: Path, encoding: str) -> Iterator[str]:
    """Decoded lines of a file in an ASCII-compatible encoding (UTF-8, GBK, Latin-1 …), cut
    at b"\\n" before decoding, so that an error names its line."""
    with open(path, "rb") as f:
        number = 0
        for raw in f:
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                line = number + 1 + raw[:exc.start].count(b"\r")
                raise DataError(f"{path}:{line}: not valid {encoding} ({exc.reason} at byte "
                                f"{exc.start}); try --encoding") from None
            number += 1 + text.rstrip("\r\n").count("\r")
            yield text


def _text_lines(path: Path, encoding: str) -> Iterator[str]:
    """Decoded lines of a UTF-16 or UTF-32 file (not ASCII-compatible: decoded as a stream)."""
    with open(path, encoding=encoding, newline="") as f:
        number = 0
        while True:
            try:
                text = f.readline()
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number + 1}: not valid {encoding} ({exc.reason})") \
                    from None
            if not text:
                return
            number += 1
            yield text


def _nonempty(examples: list, path) -> list:
    if not examples:
        raise DataError(f"{path}: no examples in the file")
    return examples


def read_text(path, encoding: str = "utf-8", chunk_size: int = 1 << 20) -> str:
    """A plain-text corpus with newlines normalised to ``\\n`` (no BOM). Decoded in chunks and
    joined once: the peak is twice the text (a list of lines would be four times); a decoding
    error still names its line."""
    import codecs

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}") from None
    parts: list[str] = []
    line = 1  # of the chunk's first byte
    with open(path, "rb") as f:
        while True:
            raw = f.read(chunk_size)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                at = line + exc.object[:exc.start].count(b"\n")
                raise DataError(f"{path}:{at}: not valid {encoding} ({exc.reason}); try "
                                "--encoding") from None
            if "\x00" in text:
                at = line + text[:text.index("\x00")].count("\n")
                raise DataError(f"{path}:{at}: a NUL character — a binary file, or a UTF-16 "
                                f"text read as {encoding}? (try --encoding utf-16)")
            if text:
                parts.append(text)
            line += raw.count(b"\n")
            if not raw:
                break
    text = "".join(parts)
    del parts
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text:
        raise DataError(f"{path}: the file is empty")
    return text.removesuffix("\n")


def read_labelled(path, encoding: str = "utf-8", text_column: int = 0, label_column: int = 1,
                  delimiter: str = "\t", skip_header: bool = False) -> list[tuple[str, str]]:
    """``text<TAB>label`` lines (or any delimiter / columns): [(text, label)]. Blank lines are
    skipped."""
    out = []
    need = max(text_column, label_column) + 1
    width = first = None
    for number, cols in _rows(path, encoding, delimiter):
        if skip_header and number == 1:
            continue
        if not any(c.strip() for c in cols):
            continue
        if len(cols) < need:
            raise DataError(f"{path}:{number}: expected at least {need} {delimiter!r}-separated "
                            f"columns (text in {text_column}, label in {label_column}), got "
                            f"{len(cols)}")
        if width is None:
            width, first = len(cols), number
        elif len(cols) != width:
            raise DataError(_ragged(path, number, len(cols), first, width, delimiter))
        text, label = cols[text_column].strip(), cols[label_column].strip()
        if not label:
            raise DataError(f"{path}:{number}: empty label in column {label_column}")
        out.append((text, label))
    return _nonempty(out, path)


def read_parallel(path, encoding: str = "utf-8") -> list[tuple[str, str]]:
    """``source<TAB>target`` lines (extra columns ignored, but every line must have as many
    as the first): [(source, target)]."""
    out = []
    width = first = None
    for number, line in _lines(path, encoding):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0].strip() or not cols[1].strip():
            raise DataError(f"{path}:{number}: expected 'source<TAB>target'")
        if width is None:
            width, first = len(cols), number
        elif len(cols) != width:
            raise DataError(_ragged(path, number, len(cols), first, width, "\t"))
        out.append((cols[0].strip(), cols[1].strip()))
    return _nonempty(out, path)


def _ragged(path, number: int, got: int, first: int, width: int, delimiter: str) -> str:
    name = {"\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))
    hint = "quote the field" if delimiter == "," else "a TSV field cannot hold a tab"
    return (f"{path}:{number}: {got} {name}-separated columns, but line {first} has {width} — "
            f"a {name} inside a field? ({hint})")


def _rows(path, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, columns): CSV is parsed by Python's csv module (quoted fields may hold
    the delimiter, quotes and newlines); TSV splits on tabs, quotes being ordinary text."""
    if delimiter != ",":
        for number, line in _lines(path, encoding):
            yield number, line.split(delimiter)
        return
    import csv

    where = [0]

    def feed():
        for number, line in _lines(path, encoding):
            where[0] = number
            yield line + "\n"

    reader = csv.reader(feed(), delimiter=",", strict=True)
    start = 1
    try:
        for cols in reader:
            yield start, cols
            start = where[0] + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{where[0]}: malformed CSV ({exc})") from None


def read_slash_tagged(path, encoding: str = "utf-8", sep: str = "/") -> list[tuple[list, list]]:
    """``word/TAG word/TAG …`` lines (People's Daily), or ``char/tag`` lines: [(tokens, tags)].
    The tag is what follows the last separator, so a token may itself contain one."""
    out = []
    for number, line in _lines(path, encoding):
        items = line.split()
        if not items:
            continue
        tokens, tags = [], []
        for item in items:
            token, s, tag = item.rpartition(sep)
            if not s or not token or not tag:
                raise DataError(f"{path}:{number}: expected 'token{sep}TAG', got {item!r}")
            tokens.append(token)
            tags.append(tag)
        out.append((tokens, tags))
    return _nonempty(out, path)


def read_conllu(path, encoding: str = "utf-8", tag: str = "upos") -> list[tuple[list, list]]:
    """CoNLL-U (parsed with the ``conllu`` library): [(words, tags)] with ``tag`` = upos or
    xpos. Multi-word tokens (ids like ``3-4``) and empty nodes (``3.1``) are skipped: the
    syntactic words that follow carry the tags."""
    if tag not in ("upos", "xpos"):
        raise ValueError(f"tag must be 'upos' or 'xpos', got {tag!r}")
    import conllu

    out = []
    block: list[str] = []
    start = 1

    def flush():
        if not block:
            return
        try:
            sentences = conllu.parse("\n".join(block) + "\n\n")
        except Exception as exc:  # conllu raises its own ParseException
            raise DataError(f"{path}:{start}: malformed CoNLL-U sentence ({exc})") from None
        for sent in sentences:
            words = [t for t in sent if isinstance(t["id"], int)]
            if words:
                tags = [w[tag] if w[tag] is not None else "_" for w in words]
                out.append(([w["form"] for w in words], tags))

    for number, line in _lines(path, encoding):
        if not line.strip():
            flush()
            block, start = [], number + 1
            continue
        if not line.startswith("#") and line.count("\t") != 9:
            raise DataError(f"{path}:{number}: expected 10 tab-separated CoNLL-U columns, got "
                            f"{line.count(chr(9)) + 1}")
        block.append(line)
    flush()
    return _nonempty(out, path)


def save_json(path: str | Path, obj) -> None:
    """Write ``obj`` as indented UTF-8 JSON (non-ASCII kept readable)."""
    Path(path).write_text(json.dumps(obj, ensure_ascii=False, indent=1))
