"""What a trained run computes on a text, step by step: the numbers behind ``rnnkit inspect``.

For the recurrent stack of a run (``rnn``; a translation's ``encoder``), on each token t of the
data as the run reads it, every unit of every layer ℓ and direction d:
    h_t (the state), c_t (the LSTM's memory), and each gate — LSTM i, f, g, o; GRU r, z, n —
read from the engine's own forward cache (no equation is re-evaluated here). Then:

* **Features** (Karpathy, Johnson & Fei-Fei 2015): simple functions of the text — inside a
  quotation, bracket depth, position in the line, whitespace, digit, upper case, punctuation,
  each gold tag — and, per feature, the units whose activation correlates best with it
  (Pearson r over the tokens shown).
* **Gate saturation**: per gate unit, the fraction of steps with a sigmoid gate < 0.1 (left)
  and > 0.9 (right).
* **Gradient through time**: for an output step s (lm: the next token at s; tag: the tag of
  token s; classify: the decision), ‖∂L_s/∂h_k‖ of the bottom layer (both directions) for
  every step k, from the engine's backward pass with its gradient probe — L_s the
  cross-entropy of the model's own choice at s (the gold next token for a language model).
  A language model's stream is cut into windows of ``window`` steps, each from a zero state.

Shapes: T tokens in all, U units; activations are kept as 4-bit codes with a per-unit
offset and scale (value ≈ lo + code · (hi − lo) / 15).
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np

from .losses import log_softmax

GATES = {"lstm": "ifgo", "gru": "rzn", "rnn": ""}
SIGMOID = {"i", "f", "o", "r", "z"}
OPEN, CLOSE = "([{", ")]}"


def _cell_kind(layer) -> str:
    name = type(layer.cell).__name__
    return "lstm" if name.startswith("LSTM") else "gru" if name.startswith("GRU") else "rnn"


@contextmanager
def recording(layer, others=()):
    """Inside the block ``layer`` keeps its forward caches (also in eval mode) on the NumPy
    time-major path (the gradient probe's), and ``seen`` lists ``(out, cache)`` of each call;
    the ``others`` (a model's other recurrent layers) keep their caches too, so that a
    backward pass can run through them."""
    seen: list = []
    kept = [layer, *others]

    def keeping(target, record):
        forward = target.forward

        def keep(x, state=None, lengths=None, inference=False):
            out, final, cache = forward(x, state, lengths, inference=False)
            if record:
                seen.append((out, cache))
            return out, final, cache
        target.forward = keep

    for target in kept:
        keeping(target, target is layer)
    layer.probe = []
    try:
        yield seen
    finally:
        for target in kept:
            del target.forward
        layer.probe = None


def _others(model, layer) -> list:
    """The model's recurrent layers besides ``layer``."""
    return [x for x in model.layers.values() if x is not layer and hasattr(x, "probe")]


def states(layer, out, cache) -> dict[str, np.ndarray]:
    """One sequence (N = 1) → {"l0 h": (T, H), "l0 c", "l0 i", …, "l0r h" (reverse), …}."""
    if cache.plan.layout == "batch-major" or cache.n != 1:
        raise ValueError("states() reads the time-major cache of one sequence")
    kind, T = _cell_kind(layer), out.shape[1]
    H, G = layer.output_size, layer.cell.hidden_size
    found = {}
    for lyr in range(layer.num_layers):
        above = cache.inputs[lyr + 1].reshape(T, -1) if lyr + 1 < layer.num_layers \
            else out[0]  # a layer's h is what the next one reads (eval: no dropout between)
        for d in range(layer.num_directions):
            buf = cache.dirs[lyr][d]
            name = f"l{lyr}{'r' if d else ''}"
            found[f"{name} h"] = above[:, d * H:(d + 1) * H]
            if buf.Cx is not None:
                found[f"{name} c"] = (buf.Cx[:-1] if buf.reverse else buf.Cx[1:])[:T, 0]
            gates = buf.A[:T].reshape(T, -1, G)
            for k, gate in enumerate(GATES[kind]):
                found[f"{name} {gate}"] = gates[:, k]
    return found


def quantise(values: np.ndarray, bits: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, U) floats → codes (T, U) in [0, 2^bits − 1] (uint8), lo (U,), hi (U,): value ≈
    lo + code · (hi − lo) / (2^bits − 1). Four bits are 16 shades of a colour, and keep a
    page of 5,000 tokens of a two-layer LSTM of 256 within a few MB."""
    top = (1 << bits) - 1
    v = values.astype(np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    return np.round((v - lo) / scale * top).astype(np.uint8), lo, hi


def text_features(tokens: list[str], sentence_start: list[bool]) -> dict[str, np.ndarray]:
    """Per token: inside a quotation, bracket depth, position in the line (or sentence),
    whitespace, digit, upper case, punctuation — each (T,) float."""
    quote = depth = pos = 0
    f = {k: np.zeros(len(tokens)) for k in ("inside quotation", "bracket depth",
                                            "position in line", "whitespace", "digit",
                                            "upper case", "punctuation")}
    for t, tok in enumerate(tokens):
        if sentence_start[t] or tok == "\n":
            pos = 0
        if '"' in tok or tok in ("“", "”", "「", "」"):
            quote = 0 if quote or tok in ("”", "」") else 1
        depth += sum(tok.count(c) for c in OPEN)
        f["inside quotation"][t] = quote
        f["bracket depth"][t] = depth
        depth = max(depth - sum(tok.count(c) for c in CLOSE), 0)
        f["position in line"][t] = pos
        f["whitespace"][t] = tok.isspace()
        f["digit"][t] = any(ch.isdigit() for ch in tok)
        f["upper case"][t] = any(ch.isupper() for ch in tok)
        f["punctuation"][t] = bool(re.fullmatch(r"[^\w\s]+", tok))
        pos += 1
    return f


def correlations(values: np.ndarray, features: dict[str, np.ndarray], top: int = 5) -> dict:
    """{feature: [(unit index, r), …]} — the ``top`` units by |Pearson r| (constant features
    and units are left out)."""
    v = values.astype(np.float64)
    v = v - v.mean(axis=0)
    vn = np.sqrt((v * v).sum(axis=0))
    out = {}
    for name, f in features.items():
        f = f - f.mean()
        fn = np.sqrt((f * f).sum())
        if fn == 0:
            continue
        r = (f @ v) / np.where(vn > 0, vn * fn, np.inf)
        best = np.argsort(-np.abs(r))[:top]
        out[name] = [(int(u), float(r[u])) for u in best if vn[u] > 0]
    return out


def saturation(values: dict[str, np.ndarray]) -> dict[str, dict]:
    """{"l0 i": {"left": [...], "right": [...]}, …} for the sigmoid gates."""
    return {name: {"left": (v < 0.1).mean(axis=0).round(4).tolist(),
                   "right": (v > 0.9).mean(axis=0).round(4).tolist()}
            for name, v in values.items() if name.split()[1] in SIGMOID}


def probe_norms(layer) -> np.ndarray:
    """‖∂L/∂h_k‖ (T, N) of the bottom layer, both directions together, from the probe."""
    total = None
    for lyr, _direction, norms in layer.probe:
        if lyr == 0:
            total = norms**2 if total is None else total + norms**2
    return np.sqrt(total)


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Probabilities of (…, V) scores."""
    return np.exp(log_softmax(logits.astype(np.float64)))


# ------------------------------------------------------------------------- per task
class Seen:
    """What a run computed on the data: tokens, unit values and what hovering shows."""

    def __init__(self):
        self.tokens: list[str] = []
        self.starts: list[bool] = []  # a token begins a sequence (line, sentence, example)
        self.values: list[dict] = []  # per sequence: {group: (T, H)}
        self.hover: list = []  # per token: [[label, probability], …] or attention pairs
        self.gold: list = []  # per token: its gold tag (taggers) or None
        self.gradient: dict[int, tuple[int, np.ndarray]] = {}  # step → (first k, norms)
        self.outputs: list[dict] = []  # per sequence: the model's output (class, translation)

    def add(self, tokens, values, hover, gold=None) -> int:
        """Append one sequence; returns the index of its first token."""
        first = len(self.tokens)
        self.tokens += tokens
        self.starts += [True] + [False] * (len(tokens) - 1)
        self.values.append(values)
        self.hover += hover
        self.gold += gold or [None] * len(tokens)
        return first


def _top(probs: np.ndarray, names, k: int) -> list:
    best = np.argsort(-probs)[:k]
    return [[names[i], round(float(probs[i]), 4)] for i in best]


def lm(task, text: str, max_tokens: int, window: int, seen: Seen) -> None:
    """A language model over the text as one stream (its first ``max_tokens`` tokens)."""
    model, rnn = task.model, task.model.layers["rnn"]
    tokens = (list(text) if task.tokenizer.kind == "char" else task.tokenizer(text))
    tokens = tokens[:max_tokens]
    if not tokens:
        raise ValueError("the data holds no text")
    ids = np.array(task.vocab.encode(tokens), dtype=np.int64)
    model.eval()
    model.start_epoch()
    with recording(rnn) as calls:
        logits, _, _ = model._logits(ids[None], None)
    probs = softmax_rows(logits[0])
    seen.add(tokens, states(rnn, *calls[-1]), [_top(p, task.vocab.itos, 5) for p in probs])
    for s in range(0, len(ids) - 1, window):  # ∂L_s/∂h_k: row r of a batch keeps step r's loss
        x, y = ids[s:s + window], ids[s + 1:s + window + 1]
        w = len(y)
        target = np.full((w, w), -1, dtype=np.int64)
        target[np.arange(w), np.arange(w)] = y
        model.start_epoch()
        with recording(rnn):
            model.forward_backward((np.tile(x[:w], (w, 1)), target))
            norms = probe_norms(rnn) * w  # the mean over w rows divided each by w
        model.zero_grad()
        for r in range(w):
            seen.gradient[s + r] = (s, norms[:r + 1, r])
    model.start_epoch()


def _texts(lines: list[str], seen: Seen, max_tokens: int):
    """The first tab-separated column of each non-blank line, until ``max_tokens`` are seen."""
    for line in lines:
        if len(seen.tokens) >= max_tokens:
            return
        text = line.split("\t")[0]
        if text.strip():
            yield text


def classify(task, lines: list[str], max_tokens: int, seen: Seen) -> None:
    """Each line's text (the first tab-separated column) as one example."""
    model, rnn = task.model, task.model.layers["rnn"]
    model.eval()
    for text in _texts(lines, seen, max_tokens):
        tokens = task.tokenizer(text) or ["<unk>"]
        batch = model.collate([task._text_example(text, 0)])
        with recording(rnn) as calls:
            logits, _ = model._forward(batch[0], batch[1], batch[3])
        probs = softmax_rows(logits[0])
        pred = int(probs.argmax())
        first = seen.add(tokens, states(rnn, *calls[-1]),
                         [_top(probs, task.labels, 3)] * len(tokens))
        seen.outputs.append({"first": first, "label": task.labels[pred],
                             "probability": round(float(probs[pred]), 4)})
        with recording(rnn):  # the decision's loss: −log p(predicted class)
            model.forward_backward((batch[0], batch[1], np.array([pred]), batch[3]))
            seen.gradient[first + len(tokens) - 1] = (first, probe_norms(rnn)[:, 0])
        model.zero_grad()


def tag(task, sentences: list[tuple[list[str], list[str] | None]], max_tokens: int,
        seen: Seen) -> None:
    """Each sentence (tokens, gold tags or None) as one example."""
    model, rnn = task.model, task.model.layers["rnn"]
    model.eval()
    for tokens, gold in sentences:
        if len(seen.tokens) >= max_tokens:
            break
        if not tokens:
            continue
        ex = task.encode([(tokens, gold or ["?"] * len(tokens))], unseen="count")[0]
        batch = model.collate([ex])
        with recording(rnn, _others(model, rnn)) as calls:
            logits, _ = model._logits(batch)
        probs = softmax_rows(logits[0])
        pred = model._decode(logits, batch[1])[0]
        first = seen.add(list(tokens), states(rnn, *calls[-1]),
                         [_top(p, task.labels, 3) for p in probs], gold)
        if model.config.crf:
            continue  # a CRF's loss is the sentence's: no one token's gradient to show
        T = len(tokens)
        target = np.full((T, T), -1, dtype=np.int64)
        target[np.arange(T), np.arange(T)] = pred[:T]
        rows = model.collate([ex] * T)
        with recording(rnn, _others(model, rnn)):
            model.forward_backward((rows[0], rows[1], target, *rows[3:]))
            norms = probe_norms(rnn) * T
        model.zero_grad()
        for r in range(T):
            seen.gradient[first + r] = (first, norms[:, r])


def translate(task, lines: list[str], max_tokens: int, seen: Seen) -> None:
    """Each line's source (before a tab): the encoder's units; hovering a source token shows
    the output tokens that attended to it (greedy decoding)."""
    model, enc = task.model, task.model.layers["encoder"]
    model.eval()
    for src in _texts(lines, seen, max_tokens):
        tokens = task.tokenizer(src) or ["<unk>"]
        ids = task.vocab.encode(tokens)
        with recording(enc) as calls:
            if "attention" in model.layers:
                out, weights = model.attention_map(ids, 2 * len(ids) + 10)
            else:
                out, weights = model.greedy([ids], 2 * len(ids) + 10)[0], None
        words = task.tgt_vocab.decode(out)
        hover = [[[w, round(float(weights[i, j]), 4)] for i, w in enumerate(words)]
                 if weights is not None else [] for j in range(len(tokens))]
        first = seen.add(tokens, states(enc, *calls[0]), hover)
        seen.outputs.append({"first": first, "translation": task.tgt_tokenizer.detokenize(words)})
