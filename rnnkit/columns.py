"""Column files for sequence labelling: CoNLL-2003, IOB2 / BIO / BIOES, Universal NER, any
tab- or space-separated ``token … TAG`` table with blank lines between sentences.

    sentences, choice = read_columns(path)                  # columns detected
    sentences, choice = read_columns(path, token_column=1, tag_column=2)

Lines that start with ``#`` are comments when they are ``# key = value`` lines (CoNLL-U and UNER
metadata) or do not have the data's column count; ``-DOCSTART-`` lines are skipped. Fields are
separated by tabs when the data lines hold any, otherwise by runs of spaces.

Column detection (when not given): a column of small integers that count 1, 2, 3 … within each
sentence is an id, not a token; the token is the first other column; the tag is the last column
whose values follow a chunk scheme (B-X, I-X, O …), or else the last column that is not a
placeholder (``_`` or ``-``) and not the token. Whatever the choice, the columns must look like
tokens and tags — at most :data:`MAX_TAGS` distinct tags, no tag with CJK characters — or the
file is refused with its path, a line and the reason, instead of training on garbage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .data import DataError, _lines

#: More distinct values than this in the tag column: those are not tags.
MAX_TAGS = 500
_CHUNK = re.compile(r"^(O|[BIES]-\S+)$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_META = re.compile(r"^#\s*[\w.-]+\s*=")  # "# sent_id = …", "# text = …"
_PLACEHOLDER = {"_", "-"}


@dataclass(frozen=True)
class ColumnChoice:
    """Which fields hold the token and the tag (0-based), and how they were chosen."""

    token: int
    tag: int
    width: int
    detected: bool

    def describe(self) -> str:
        """The choice in words, for messages."""
        how = "detected" if self.detected else "given"
        return f"token column {self.token}, tag column {self.tag} of {self.width} ({how})"


def _split(line: str, tabs: bool) -> list[str]:
    return [f.strip() for f in line.split("\t")] if tabs else line.split()


#: The column names of CoNLL-U (10 columns), used for named columns without a header.
CONLLU_NAMES = ("ID", "FORM", "LEMMA", "UPOS", "XPOS", "FEATS", "HEAD", "DEPREL", "DEPS", "MISC")
_GLOBAL = re.compile(r"^#\s*global\.columns\s*=\s*(.+)$")


def _column_names(path, encoding: str) -> list[str] | None:
    """The names a CoNLL-U Plus header (``# global.columns = ID FORM NER``) gives, if any."""
    for _, text in _lines(path, encoding):
        m = _GLOBAL.match(text)
        if m:
            return m.group(1).split()
        if text.strip() and not text.startswith("#"):
            return None
    return None


def _resolve(column, names: list[str] | None, width: int, path) -> int:
    """A column given by 0-based index or by name (header names, else CoNLL-U's for 10)."""
    if column is None or isinstance(column, int):
        return column
    text = str(column).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    known = names or (list(CONLLU_NAMES) if width == 10 else None)
    if known is None:
        raise DataError(f"{path}: column {text!r} named, but the file has no '# global.columns "
                        "= …' header (give a 0-based index)")
    upper = [n.upper() for n in known]
    if text.upper() not in upper:
        raise DataError(f"{path}: no column named {text!r} (the columns: {' '.join(known)})")
    return upper.index(text.upper())


def _read_rows(path, encoding: str):
    """[(line number, fields)] per sentence, comments and -DOCSTART- dropped, and the width."""
    lines = list(_lines(path, encoding))
    tabs = any("\t" in text for _, text in lines if text.strip() and not text.startswith("#"))
    widths: dict[int, int] = {}
    for _, text in lines:
        if text.strip() and not text.startswith("#"):
            n = len(_split(text, tabs))
            widths[n] = widths.get(n, 0) + 1
    if not widths:
        raise DataError(f"{path}: no data lines (only blank lines and comments)")
    width = max(widths, key=widths.get)
    if width < 2:
        first = next(n for n, text in lines if text.strip() and not text.startswith("#"))
        raise DataError(f"{path}:{first}: one column per line; expected 'token TAG' columns "
                        "(a token and a tag, blank lines between sentences)")
    sentences, current = [], []
    for number, text in lines:
        if not text.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        fields = _split(text, tabs)
        if text.startswith("#") and (_META.match(text) or len(fields) != width):
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) != width:
            raise DataError(f"{path}:{number}: {len(fields)} columns, the file's lines have "
                            f"{width}: {text[:80]!r}")
        current.append((number, fields))
    if current:
        sentences.append(current)
    return sentences, width


def _is_id_column(sentences, k: int) -> bool:
    for sentence in sentences[:200]:
        values = [f[k] for _, f in sentence]
        if not all(v.isdigit() for v in values) or [int(v) for v in values] != list(
                range(int(values[0]), int(values[0]) + len(values))) or int(values[0]) > 1:
            return False
    return True


def _detect(sentences, width: int) -> tuple[int, int]:
    ids = {k for k in range(width) if _is_id_column(sentences, k)}
    token = next((k for k in range(width) if k not in ids), None)
    sample = [f for s in sentences[:500] for _, f in s]
    chunked = [k for k in range(width) if k not in ids and k != token
               and all(_CHUNK.match(f[k]) for f in sample)
               and any(f[k] != "O" for f in sample)]
    if chunked:
        return token, chunked[-1]
    tags = [k for k in range(width) if k not in ids and k != token
            and not all(f[k] in _PLACEHOLDER for f in sample)]
    if token is None or not tags:
        raise DataError("no token and tag columns found")
    return token, tags[-1]


def read_columns(path, encoding: str = "utf-8", token_column: int | str | None = None,
                 tag_column: int | str | None = None
                 ) -> tuple[list[tuple[list, list]], ColumnChoice]:
    """[(tokens, tags)] per sentence and the :class:`ColumnChoice` made; see the module
    docstring. Columns are 0-based indices or names (a ``# global.columns`` header's, or
    CoNLL-U's for a 10-column file)."""
    sentences, width = _read_rows(path, encoding)
    if isinstance(token_column, str) or isinstance(tag_column, str):
        names = _column_names(path, encoding)
        token_column = _resolve(token_column, names, width, path)
        tag_column = _resolve(tag_column, names, width, path)
    detected = token_column is None or tag_column is None
    if detected:
        try:
            token, tag = _detect(sentences, width)
        except DataError as e:
            raise DataError(f"{path}: {e}; name them with --token-column and --tag-column") \
                from None
        token = token if token_column is None else token_column
        tag = tag if tag_column is None else tag_column
    else:
        token, tag = token_column, tag_column
    for name, k in (("token", token), ("tag", tag)):
        if not -width <= k < width:
            raise DataError(f"{path}: {name} column {k} does not exist (lines have {width} "
                            f"columns)")
    token, tag = token % width, tag % width
    choice = ColumnChoice(token, tag, width, detected)
    out, seen = [], {}
    for sentence in sentences:
        for number, f in sentence:
            value = f[tag]
            if value not in seen:
                seen[value] = number
            if _CJK.search(value) or " " in value:
                raise DataError(f"{path}:{number}: tag {value!r} contains text, not a tag "
                                f"({choice.describe()}); choose the columns with "
                                "--token-column and --tag-column")
        out.append(([f[token] for _, f in sentence], [f[tag] for _, f in sentence]))
    if len(seen) > MAX_TAGS:
        raise DataError(f"{path}: {len(seen)} distinct values in the tag column "
                        f"({choice.describe()}; e.g. line {list(seen.values())[MAX_TAGS]}): "
                        f"these are not tags; choose the columns with --token-column and "
                        "--tag-column")
    if not out:
        raise DataError(f"{path}: no sentences in the file")
    return out, choice
