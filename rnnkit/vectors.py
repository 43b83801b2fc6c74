"""Pretrained word vectors: word2vec text and binary, GloVe, fastText ``.vec``, read as a stream
keeping only the rows a vocabulary needs.

    found, dim = read_vectors(path, wanted={"the", "Paris", ...})   # {word: vector}, size
    hits = load_into(embedding_weight, vocab, found)                 # rows set, lower-case too

Formats, told apart by their first bytes: a header line ``count dim`` (word2vec, fastText)
or none (GloVe); after a header, text rows ``word v1 … v_dim`` or, in word2vec's binary
format, ``word`` + space + dim little-endian float32 values (+ an optional newline). A file of
gigabytes is read line by line (text) or record by record (binary): memory holds the wanted
rows only. Rows whose width differs from the first row's are an error naming the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import DataError

Array = np.ndarray


def _header(first: bytes) -> tuple[int, int] | None:
    parts = first.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _is_binary(f, dim: int) -> bool:
    """After a header: a word, a space and dim·4 bytes that do not read as a text row."""
    pos = f.tell()
    line = f.readline()
    f.seek(pos)
    try:
        fields = line.decode("utf-8").split()
    except UnicodeDecodeError:
        return True
    if len(fields) != dim + 1:
        return True
    try:
        [float(x) for x in fields[1:]]
    except ValueError:
        return True
    return False


def read_vectors(path, wanted: set[str], lower: bool = True,
                 encoding: str = "utf-8") -> tuple[dict[str, Array], int]:
    """The vectors of the ``wanted`` words (and, with ``lower``, of their lower-case forms) as
    float32, and the file's dimension."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    keys = set(wanted) | ({w.lower() for w in wanted} if lower else set())
    found: dict[str, Array] = {}
    with open(path, "rb") as f:
        first = f.readline()
        header = _header(first)
        if header is not None and _is_binary(f, header[1]):
            return _read_binary(f, path, header, keys, encoding), header[1]
        dim = header[1] if header else None

        def rows():
            if header is None:  # GloVe: the first line is a vector
                yield 1, first
            yield from enumerate(f, 2)

        for k, raw in rows():
            try:
                text = raw.decode(encoding).rstrip("\r\n")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{k}: not valid {encoding}") from None
            word, _, rest = text.partition(" ")
            if not word:
                continue
            if dim is None:
                dim = len(rest.split())
            if word in keys and word not in found:
                values = rest.split()
                if len(values) != dim:
                    raise DataError(f"{path}:{k}: {len(values)} values, expected {dim}")
                try:
                    found[word] = np.array(values, dtype=np.float32)
                except ValueError:
                    raise DataError(f"{path}:{k}: not numbers after {word!r}") from None
    if dim is None:
        raise DataError(f"{path}: no vectors in the file")
    return found, dim


def _read_binary(f, path, header, keys, encoding) -> dict[str, Array]:
    count, dim = header
    found = {}
    size = 4 * dim
    for k in range(count):
        word = bytearray()
        while True:
            ch = f.read(1)
            if not ch:
                raise DataError(f"{path}: truncated after {k} of {count} vectors")
            if ch == b" ":
                break
            if ch != b"\n":  # the newline some writers put after each vector
                word += ch
        data = f.read(size)
        if len(data) != size:
            raise DataError(f"{path}: truncated in vector {k + 1} of {count}")
        try:
            w = word.decode(encoding)
        except UnicodeDecodeError:
            raise DataError(f"{path}: vector {k + 1}: a word that is not {encoding}") from None
        if w in keys and w not in found:
            found[w] = np.frombuffer(data, dtype="<f4").astype(np.float32)
    return found


def load_into(weight: Array, vocab, found: dict[str, Array], lower: bool = True) -> int:
    """Copy the vectors of ``vocab``'s words (or, failing that, of their lower-case forms)
    into the rows of ``weight`` (V, E); returns how many rows were set."""
    if found and weight.shape[1] != len(next(iter(found.values()))):
        raise ValueError(f"the vectors have {len(next(iter(found.values())))} values, the "
                         f"embedding {weight.shape[1]}: pass --embedding-dim "
                         f"{len(next(iter(found.values())))}")
    hits = 0
    for i, word in enumerate(vocab.itos):
        v = found.get(word)
        if v is None and lower:
            v = found.get(word.lower())
        if v is not None:
            weight[i] = v
            hits += 1
    return hits
