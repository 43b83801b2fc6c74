"""Tag schemes of chunk labelling — BIO (IOB2), BIOES and BMES word segmentation: detection
from a tag set, which steps each allows (what rnnkit.crf's constrained decoding rules out), and
the chunks a tag sequence holds (what entity precision, recall and F1 count).

Chunks follow conlleval's reading, as seqeval's default mode does: in BIO an I-X that follows
O or another type opens a chunk of type X; in BIOES and BMES a chunk runs from B to E (or is
one S), and a sequence that breaks the scheme closes the open chunk where it breaks.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray

def detect_scheme(tags: list[str]) -> str | None:
    """"bioes", "bio" or "bmes" from a tag set (prefixes before '-', or bare letters for
    BMES word segmentation); None when the tags follow none of them."""
    prefixes = {t.split("-", 1)[0] if "-" in t else t for t in tags}
    typed = all("-" in t for t in tags if t != "O")
    if typed and prefixes <= {"B", "I", "O", "E", "S"} and "B" in prefixes:
        return "bioes" if prefixes & {"E", "S"} else "bio"
    lower = {p.lower() for p in prefixes}
    if lower <= {"b", "m", "e", "s"} and {"b", "e"} <= lower:
        return "bmes"
    return None


def _parts(tag: str, scheme: str) -> tuple[str, str]:
    if scheme == "bmes":
        head, _, kind = tag.partition("-")
        return head.lower(), kind
    if tag == "O":
        return "o", ""
    head, _, kind = tag.partition("-")
    return head.lower(), kind


def scheme_constraints(tags: list[str], scheme: str) -> tuple[Array, Array, Array]:
    """Allowed (K, K) transitions, starts (K,) and ends (K,) of a scheme, as booleans.

    BIO: I-X only after B-X or I-X (not first). BIOES: B-X and I-X continue with I-X or E-X
    of the same type; E-X, S-X, O end a chunk; I-X, E-X only inside one. BMES: B and M
    continue with M or E (same type when typed); E and S end a word.
    """
    k = len(tags)
    parts = [_parts(t, scheme) for t in tags]
    if scheme == "bio":
        def can_follow(a, b):
            (ha, ka), (hb, kb) = a, b
            return hb != "i" or (ha in ("b", "i") and ka == kb)
        opens = {"b", "o"}
        closes = {"b", "i", "o"}
    elif scheme in ("bioes", "bmes"):
        inside = {"bioes": ("i", "e"), "bmes": ("m", "e")}[scheme]
        ends = {"bioes": ("e", "s", "o"), "bmes": ("e", "s")}[scheme]

        def can_follow(a, b):
            (ha, ka), (hb, kb) = a, b
            if ha in ends:
                return hb not in inside
            return hb in inside and ka == kb  # a chunk is open: continue it
        opens = {"b", "s", "o"}
        closes = set(ends)
    else:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected bio, bioes or bmes")
    allowed = np.array([[can_follow(parts[i], parts[j]) for j in range(k)] for i in range(k)])
    start = np.array([p[0] in opens for p in parts])
    end = np.array([p[0] in closes for p in parts])
    return allowed, start, end


def chunks(tags: list[str], scheme: str) -> set[tuple[str, int, int]]:
    """The chunks (type, start, end exclusive) of one tag sequence under ``scheme``."""
    out: set[tuple[str, int, int]] = set()
    start, kind = None, None
    for t, tag in enumerate(list(tags) + ["O"]):
        head, typ = _parts(tag, scheme) if t < len(tags) else ("o", "")
        if scheme == "bio":
            opens = head == "b" or (head == "i" and (start is None or typ != kind))
            closes = start is not None and (head in ("b", "o") or opens)
        else:
            opens = head in ("b", "s") or (head in ("i", "m", "e") and (start is None
                                                                       or typ != kind))
            closes = start is not None and (opens or head == "o")
        if closes:
            out.add((kind, start, t))
            start, kind = None, None
        if opens:
            start, kind = t, typ
        if scheme != "bio" and start is not None and head in ("e", "s"):
            out.add((kind, start, t + 1))
            start, kind = None, None
    return out


def chunk_counts(gold: list[str], pred: list[str], scheme: str) -> dict[str, list[int]]:
    """Per chunk type [correct, predicted, gold] counts of one sentence."""
    g, p = chunks(gold, scheme), chunks(pred, scheme)
    counts: dict[str, list[int]] = {}
    for kinds, k in ((g & p, 0), (p, 1), (g, 2)):
        for c in kinds:
            counts.setdefault(c[0], [0, 0, 0])[k] += 1
    return counts


def prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (0 where undefined)."""
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)
