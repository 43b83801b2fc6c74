"""``rnnkit inspect``: one self-contained HTML page of what a run computes on a text.

The numbers come from :mod:`rnnkit.inspector`; this module reads the data as the run's task
reads it, packs the numbers (unit values as deflated 4-bit codes, two steps a byte,
unit-major, so that choosing a unit reads one contiguous row; gradients as float32), and
writes them into the page template ``inspect_page.html`` — its script and style inline,
nothing fetched.
"""

from __future__ import annotations

import base64
import json
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from . import data as D
from . import inspector as I
from . import io


def _b64(a: np.ndarray, deflate: bool = False) -> str:
    raw = np.ascontiguousarray(a).tobytes()
    return base64.b64encode(zlib.compress(raw, 6) if deflate else raw).decode("ascii")


def _pack4(codes: np.ndarray) -> np.ndarray:
    """(U, T) codes < 16 → (U, ⌈T/2⌉) bytes: step 2j in the high nibble, 2j + 1 in the low."""
    if codes.shape[1] % 2:
        codes = np.concatenate([codes, np.zeros((codes.shape[0], 1), np.uint8)], axis=1)
    return (codes[:, 0::2] << 4) | codes[:, 1::2]


def _sentences(task, path, encoding: str) -> list:
    """A tagger's data: its gold (tokens, tags) when the file is a tagging file the run can
    read, else each line's tokens (characters for a character tagger), untagged."""
    from .pipeline import read_tag_file

    opts = task.options
    try:
        rows, _ = read_tag_file(path, opts.get("format"), encoding, opts.get("tag", "upos"),
                                opts.get("token_column"), opts.get("tag_column"))
        return [(toks, tags) for toks, tags in rows]
    except ValueError:
        lines = D.read_text(path, encoding).split("\n")
        char = task.tokenizer.kind == "char"
        return [(list(x.strip()) if char else x.split(), None) for x in lines if x.strip()]


def collect(run, data_path, max_tokens: int = 5000, window: int = 64,
            encoding: str = "utf-8", kinds: str | None = None) -> dict:
    """Everything the page shows, JSON-able; ``kinds`` (e.g. "h,c") keeps only those values
    for colouring and correlations (gate saturation is always over every gate)."""
    from .pipeline import Task

    if max_tokens < 1:
        raise ValueError(f"--max-tokens must be >= 1, got {max_tokens}")
    task = Task.load(run)
    seen = I.Seen()
    if task.task == "lm":
        I.lm(task, D.read_text(data_path, encoding), max_tokens, window, seen)
    elif task.task == "tag":
        I.tag(task, _sentences(task, data_path, encoding), max_tokens, seen)
    else:
        lines = D.read_text(data_path, encoding).split("\n")
        (I.classify if task.task == "classify" else I.translate)(task, lines, max_tokens, seen)
    if not seen.tokens:
        raise ValueError(f"{data_path}: no text to show")
    blocks = {n: np.concatenate([v[n] for v in seen.values]) for n in seen.values[0]}
    wanted = None if kinds is None else {k.strip() for k in kinds.split(",") if k.strip()}
    known = {n.split()[1] for n in blocks}
    if wanted is not None and not wanted <= known:
        raise ValueError(f"--values: unknown {sorted(wanted - known)} for this "
                         f"{task.model.config.cell} run; it has {', '.join(sorted(known))}")
    names = [n for n in blocks if wanted is None or n.split()[1] in wanted]
    values = np.concatenate([blocks[n] for n in names], axis=1)  # (T, U)
    codes, lo, hi = I.quantise(values)
    groups, offset = [], 0
    for n in names:
        groups.append({"name": n, "offset": offset, "size": blocks[n].shape[1],
                       "sigmoid": n.split()[1] in I.SIGMOID})
        offset += blocks[n].shape[1]
    features = I.text_features(seen.tokens, seen.starts)
    for t in sorted({g for g in seen.gold if g is not None}):
        features[f"tag {t}"] = np.array([g == t for g in seen.gold], dtype=float)
    steps = sorted(seen.gradient)
    grad = [seen.gradient[s][1].astype(np.float32) for s in steps]
    rnn = task.model.layers["encoder" if task.task == "translate" else "rnn"]
    cfg = task.model.config
    return {
        "meta": {"run": str(run), "data": str(data_path), "task": task.task,
                 "model": type(task.model).__name__, "cell": cfg.cell,
                 "layers": rnn.num_layers, "directions": rnn.num_directions,
                 "hidden": rnn.output_size, "tokens": len(seen.tokens),
                 "cut": len(seen.tokens) >= max_tokens, "window": window,
                 "crf": bool(getattr(cfg, "crf", False))},
        "tokens": seen.tokens, "starts": [i for i, s in enumerate(seen.starts) if s],
        "groups": groups, "units": int(values.shape[1]),
        "codes": _b64(_pack4(codes.T), deflate=True), "lo": lo.round(6).tolist(),
        "hi": hi.round(6).tolist(), "hover": seen.hover, "outputs": seen.outputs,
        "gold": seen.gold if any(g is not None for g in seen.gold) else None,
        "correlations": I.correlations(values, features),
        "saturation": I.saturation(blocks),
        "gradient": {"steps": steps, "first": [seen.gradient[s][0] for s in steps],
                     "lengths": [len(g) for g in grad],
                     "norms": _b64(np.concatenate(grad) if grad else np.zeros(0, np.float32))},
    }


def write_page(run, data_path, out, max_tokens: int = 5000, window: int = 64,
               encoding: str = "utf-8", kinds: str | None = None) -> dict:
    """Write the page; returns its meta (with ``bytes``) and the correlations found."""
    found = collect(run, data_path, max_tokens, window, encoding, kinds)
    template = resources.files("rnnkit").joinpath("inspect_page.html").read_text("utf-8")
    blob = json.dumps(found, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    page = template.replace("/*DATA*/null", blob, 1).encode("utf-8")
    io.write_atomic(Path(out), page)
    names = [f"{g['name']} #{k}" for g in found["groups"] for k in range(g["size"])]
    return {**found["meta"], "bytes": len(page), "correlations": found["correlations"],
            "unit_names": names}
