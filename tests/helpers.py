"""Shared test helpers: finite differences, relative errors, where the shared data lies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def rel_error(a, b) -> float:
    """max|a − b| / max(max|a|, max|b|): the max-norm relative error of two arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max() / scale)


def misalign(monkeypatch, shift: int):
    """From here until ``monkeypatch.undo()``, np.empty and np.empty_like give float arrays
    that start ``shift`` elements past a 64-byte boundary (NumPy's own are 16-byte aligned, at
    an offset the heap's history decides); returns the patched np.empty."""
    real_empty, real_like = np.empty, np.empty_like

    def empty(shape, dtype=float, order="C", **kw):
        dt = np.dtype(dtype)
        if dt.kind != "f" or kw:
            return real_empty(shape, dtype, order, **kw)
        size = math.prod(shape) if isinstance(shape, tuple | list) else int(shape)
        per_line = 64 // dt.itemsize
        raw = real_empty(size + per_line + shift, dt)
        start = (-(raw.ctypes.data % 64) // dt.itemsize) % per_line + shift
        return raw[start:start + size].reshape(shape, order=order)

    def empty_like(a, dtype=None, order="K", subok=True, shape=None, **kw):
        if kw or order not in ("C", "K") or not a.flags.c_contiguous:
            return real_like(a, dtype, order, subok, shape, **kw)
        return empty(a.shape if shape is None else shape, dtype or a.dtype)

    monkeypatch.setattr(np, "empty", empty)
    monkeypatch.setattr(np, "empty_like", empty_like)
    return empty


def write_task_files(root: Path, text: str) -> dict:
    """Tiny files of every task in ``root`` (lm text, classify tsv, tag CoNLL, translate
    pairs), for tests that need trained runs; returns {task: path}."""
    rows = ["a fine small cat\tpos", "a bad dog\tneg", "the cat sat\tpos", "dog ran away\tneg"]
    sent = ["1\tThe\tDET", "2\tcat\tNOUN", "3\tsat\tVERB", ""]
    files = {"lm": (root / "text.txt", text), "classify": (root / "cls.tsv",
                                                           "\n".join(rows * 4) + "\n"),
             "tag": (root / "tags.conll", "\n".join(sent * 20)),
             "translate": (root / "pairs.txt", "the cat\tle chat\na dog\tun chien\n" * 10)}
    for path, content in files.values():
        path.write_text(content, encoding="utf-8")
    return {task: path for task, (path, _) in files.items()}
