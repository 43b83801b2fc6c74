"""Pictures people would rather look at than read: an attention heat map and a confusion
matrix, as PNGs (matplotlib, no pyplot state). Training curves are drawn by
:func:`rnnkit.train.plot_history`, gradient flow by :func:`rnnkit.diagnostics.plot_gradient_flow`.
"""

from __future__ import annotations

import functools
import re
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from .data import JOINER

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
#: Font families that cover Chinese, Japanese and Korean, most common first.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC",
             "Source Han Sans CN", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Droid Sans "
             "Fallback", "AR PL UMing CN", "SimHei", "Microsoft YaHei", "PingFang SC",
             "Hiragino Sans GB", "Heiti SC", "Arial Unicode MS")
_warned = False


def _cjk_family() -> str | None:
    """The first of CJK_FONTS installed on this machine, or None."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in CJK_FONTS if n in names), None)


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _cjk_aware(draw):
    """Draw with a CJK font when any text argument holds CJK characters; without one on the
    machine, warn once (the characters would show as empty boxes)."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        global _warned
        texts = [t for a in (*args, *kwargs.values()) for t in _texts(a)]
        context = nullcontext()
        if any(_CJK.search(t) for t in texts):
            family = _cjk_family()
            if family is not None:
                import matplotlib

                context = matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif":
                                                 [family, *matplotlib.rcParams["font.sans-serif"]]})
            elif not _warned:
                _warned = True
                warnings.warn("no CJK font found (e.g. install fonts-noto-cjk): Chinese text in "
                              "the plot shows as empty boxes", stacklevel=2)
        with context, warnings.catch_warnings():
            # matplotlib's own warning comes once per missing glyph: ours said it once
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            return draw(*args, **kwargs)
    return wrapper


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


@_cjk_aware
def plot_attention(source: list[str], output: list[str], weights, path: str | Path,
                   title: str | None = None) -> Path:
    """Heat map of attention weights A (T_out, S): row t, the source positions the decoder
    read while emitting ``output[t]``; rows sum to 1."""
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(output), len(source)):
        raise ValueError(f"weights must be (len(output), len(source)) = "
                         f"({len(output)}, {len(source)}), got {w.shape}")
    fig = _figure(1.2 + 0.45 * len(source), 1.0 + 0.4 * len(output))
    ax = fig.add_subplot()
    im = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    # The joiner mark of glued word tokens (data.JOINER) is for detokenising, not for reading.
    ax.set_xticks(range(len(source)), [t.lstrip(JOINER) for t in source], rotation=60,
                  ha="right")
    ax.set_yticks(range(len(output)), [t.lstrip(JOINER) for t in output])
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return _save(fig, path)


@_cjk_aware
def plot_confusion(labels: list[str], matrix, path: str | Path, title: str | None = None,
                   top: int = 20) -> Path:
    """Row-normalised confusion matrix M (K, K) (gold i predicted as j), the ``top`` most
    frequent gold labels only; cells show the share of row i, the diagonal is recall."""
    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(labels), len(labels)):
        raise ValueError(f"matrix must be ({len(labels)}, {len(labels)}), got {m.shape}")
    keep = np.argsort(-m.sum(axis=1), kind="stable")[:top]
    keep = keep[m.sum(axis=1)[keep] > 0]
    sub = m[np.ix_(keep, keep)]
    share = sub / np.maximum(m[keep].sum(axis=1, keepdims=True), 1)
    names = [labels[k] for k in keep]
    size = 1.5 + 0.42 * len(names)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(names)):
        for j in range(len(names)):
            if share[i, j] >= 0.01:
                ax.text(j, i, f"{share[i, j]:.2f}".lstrip("0"), ha="center", va="center",
                        fontsize=6, color="white" if share[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return _save(fig, path)
