"""Models: compositions of layers with one loss, a config dataclass saved as JSON beside the
weights, and flat ``params``/``grads`` dicts named ``layer.param`` (e.g. ``rnn.weight_ih_l0``).

Every model offers what :mod:`rnnkit.train` needs: ``collate(examples) -> batch``,
``example_length(example)``, ``forward_backward(batch) -> (loss_sum, count)`` (adds gradients)
and ``evaluate(batch) -> {"loss_sum", "count", ...}``; ``metrics(totals)`` turns summed
evaluation parts into the reported numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from itertools import islice

import numpy as np

from . import crf, schemes
from .layers import Dropout, Embedding, Linear, TokenDropout
from .losses import cross_entropy, log_softmax, mse_loss
from .options import RecurrentOptions, make_recurrent
from .recurrent import LSTM

MODELS: dict[str, type] = {}


def register(cls):
    """Class decorator: make the model loadable by name from a checkpoint (``MODELS``)."""
    MODELS[cls.__name__] = cls
    return cls


class Model:
    """Base class: owns ``self.layers`` (name → layer) and the shared bookkeeping."""

    config_class: type
    #: name of the metric that decides "best" and early stopping, and whether higher is better
    primary_metric: tuple[str, bool] = ("loss", False)

    def __init__(self, config):
        self.config = config
        self.layers: dict = {}
        #: Parameters the trainer leaves alone (e.g. frozen pretrained embeddings).
        self.frozen: set[str] = set()
        self.training = True

    def _finish(self) -> None:
        self.params = {f"{ln}.{pn}": p for ln, layer in self.layers.items()
                       for pn, p in layer.params.items()}
        self.grads = {f"{ln}.{pn}": g for ln, layer in self.layers.items()
                      for pn, g in layer.grads.items()}

    def zero_grad(self) -> None:
        """Set every layer's gradients to zero."""
        for layer in self.layers.values():
            layer.zero_grad()

    def train(self, mode: bool = True):
        """Training mode for every layer (dropout active); returns the model."""
        self.training = bool(mode)
        for layer in self.layers.values():
            layer.train(mode)
        return self

    def eval(self):
        """Evaluation mode for every layer; returns the model."""
        return self.train(False)

    @contextmanager
    def evaluating(self):
        """Eval mode (no dropout, no caches kept) inside the block, the previous mode after."""
        was = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was)

    def rng_states(self) -> dict:
        """The state of every random generator the model draws from (JSON-able)."""
        return {name: layer.rng.bit_generator.state for name, layer in self.layers.items()
                if getattr(layer, "rng", None) is not None}

    def set_rng_states(self, states: dict) -> None:
        """Restore what :meth:`rng_states` returned (exact resume)."""
        for name, state in states.items():
            self.layers[name].rng.bit_generator.state = state

    def config_dict(self) -> dict:
        """The config dataclass as a dict (what config.json stores)."""
        return asdict(self.config)

    @classmethod
    def from_config(cls, config: dict):
        """The model a config dict describes; unknown fields are an error."""
        known = {f.name for f in fields(cls.config_class)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} config field(s): {sorted(unknown)}")
        return cls(cls.config_class(**config))

    def metrics(self, totals: dict) -> dict:
        """Reported numbers from summed :meth:`evaluate` parts: here the mean loss."""
        return {"loss": totals["loss_sum"] / max(totals["count"], 1)}


def _full(ids, lengths):
    """``lengths`` as given, or every row full length."""
    ids = np.asarray(ids)
    if lengths is None:
        return np.full(ids.shape[0], ids.shape[1], dtype=np.int64)
    return np.asarray(lengths, dtype=np.int64)


def _bigram_embedding(c) -> Embedding:
    """The table of bigram vectors of a classifier's or tagger's config."""
    return Embedding(c.bigram_vocab_size, c.bigram_dim, c.padding_idx, dtype=c.dtype,
                     seed=c.seed + 6)


def _collate_bigrams(examples, k: int, shape: tuple[int, int], pad: int, form: str):
    """The bigram ids at position ``k`` of each example → (N, T, 2), ``pad`` past the end."""
    if any(len(e) <= k for e in examples):
        raise ValueError(f"this model uses bigram features: examples need {form}")
    bigrams = np.full((*shape, 2), pad, dtype=np.int64)
    for i, e in enumerate(examples):
        b = np.asarray(e[k], dtype=np.int64).reshape(-1, 2)
        if len(b) != len(e[0]):
            raise ValueError(f"example {i}: {len(e[0])} tokens but {len(b)} bigram pairs")
        bigrams[i, : len(b)] = b
    return bigrams


def _add_bigrams(layer, x, bigrams):
    """Token vectors x (N, T, E) → [x_t; e(left bigram); e(right bigram)] (N, T, E + 2B)."""
    b, bcache = layer.forward(bigrams)  # (N, T, 2, B)
    return np.concatenate([x, b.reshape(*bigrams.shape[:2], -1)], axis=2), bcache


def _add_bigrams_backward(layer, db, bcache) -> None:
    """db (N, T, 2B), the bigram part of ∂L/∂x, into the bigram embedding's gradient."""
    layer.backward(db.reshape(*bcache.shape, -1), bcache)


@dataclass
class ClassifierConfig(RecurrentOptions):
    vocab_size: int  # number of token ids (embedding rows)
    num_classes: int  # number of labels
    embedding_dim: int = 64  # size of a token vector
    hidden_size: int = 128  # H of each recurrent direction
    num_layers: int = 1  # stacked recurrent layers
    cell: str = "lstm"  # rnn | rnn-relu | irnn | lstm | gru | gru-after (rnnkit.options)
    bidirectional: bool = True  # read the sentence both ways
    dropout: float = 0.0  # dropout on embeddings, between layers and before the output
    pooling: str = "last"  # last | mean | max: how the states become one sentence vector
    bigram_vocab_size: int = 0  # token-bigram ids; 0 turns the bigram features off
    bigram_dim: int = 50  # size of a bigram vector (two per token: left and right)
    word_dropout: float = 0.0  # training: a token becomes <unk> with this probability
    padding_idx: int = 0  # token id used for padding
    unk_idx: int = 1  # token id of <unk> (rnnkit.data.SPECIALS order)
    seed: int = 0  # initialisation and dropout seed
    dtype: str = "float32"  # float32 | float64 (float64 for gradient checks)


@register
class SequenceClassifier(Model):
    """Sequence → class (the notes' first mode): embedding → (bi)directional recurrent stack →
    pooling → linear → softmax.

    ids (N, T) → x (N, T, E) → states (N, T, dirs·H) → sentence vector s (N, dirs·H):
      ``last``: the final state of each direction (forward at the last valid token, reverse at
      the first); ``mean``: Σ_t h_t / length over valid steps; ``max``: element-wise max over
      valid steps → logits s Wᵀ + b (N, C). Loss: mean cross-entropy over sentences.
    With ``bigram_vocab_size``, x_t also holds the embeddings of the bigrams (x_{t−1} x_t) and
    (x_t x_{t+1}) (N, T, E + 2B): for character-level Chinese text, the words the characters
    form. Examples: (ids, label[, bigram ids (T, 2) per token: left, right]).
    """

    config_class = ClassifierConfig
    primary_metric = ("accuracy", True)

    def __init__(self, config: ClassifierConfig):
        super().__init__(config)
        c = config
        if c.pooling not in ("last", "mean", "max"):
            raise ValueError(f"unknown pooling {c.pooling!r}; expected last, mean or max")
        dirs = 2 if c.bidirectional else 1
        self.layers["word_dropout"] = TokenDropout(c.word_dropout, c.unk_idx, c.padding_idx,
                                                   seed=c.seed + 4)
        self.layers["embedding"] = Embedding(c.vocab_size, c.embedding_dim, c.padding_idx,
                                             dtype=c.dtype, seed=c.seed)
        feat = c.embedding_dim
        if c.bigram_vocab_size:
            self.layers["bigram_embedding"] = _bigram_embedding(c)
            feat += 2 * c.bigram_dim
        self.layers["rnn"] = make_recurrent(c.cell, feat, c.hidden_size, c.num_layers, c,
                                            bidirectional=c.bidirectional, dropout=c.dropout,
                                            dtype=c.dtype, seed=c.seed + 1)
        self.layers["dropout"] = Dropout(c.dropout, seed=c.seed + 2, variational=c.variational)
        self.layers["head"] = Linear(dirs * self.layers["rnn"].output_size, c.num_classes,
                                     dtype=c.dtype, seed=c.seed + 3)
        self._finish()

    def example_length(self, example) -> int:
        """The example's token count (for length bucketing)."""
        return len(example[0])

    def collate(self, examples):
        """[(ids, label[, bigrams])] → (ids (N, T) padded, lengths (N,), labels (N,),
        bigrams (N, T, 2) or None)."""
        if not examples:
            raise ValueError("empty batch")
        lengths = np.array([len(e[0]) for e in examples], dtype=np.int64)
        if lengths.min() < 1:
            raise ValueError("every example needs at least one token")
        ids = np.full((len(examples), lengths.max()), self.config.padding_idx, dtype=np.int64)
        for i, e in enumerate(examples):
            ids[i, : len(e[0])] = e[0]
        labels = np.array([e[1] for e in examples], dtype=np.int64)
        bigrams = None
        if self.config.bigram_vocab_size:
            bigrams = _collate_bigrams(examples, 2, ids.shape, self.config.padding_idx,
                                       "(ids, label, bigram ids)")
        return ids, lengths, labels, bigrams

    def _forward(self, ids, lengths, bigrams=None):
        L = self.layers
        x, ecache = L["embedding"].forward(L["word_dropout"].forward(ids))
        bcache = None
        if bigrams is not None:
            x, bcache = _add_bigrams(L["bigram_embedding"], x, bigrams)
        ecache = (ecache, bcache)
        x, dcache1 = L["dropout"].forward(x)
        out, state, rcache = L["rnn"].forward(x, lengths=lengths, inference=not self.training)
        h = state[0] if isinstance(state, tuple) else state
        pooled, pcache = self._pool(out, h, lengths)
        pooled, dcache2 = L["dropout"].forward(pooled)
        logits, hcache = L["head"].forward(pooled)
        return logits, (ecache, dcache1, rcache, pcache, dcache2, hcache, out.shape, h.shape)

    def _pool(self, out, h, lengths):
        pooling = self.config.pooling
        if pooling == "last":
            dirs = 2 if self.config.bidirectional else 1
            return np.concatenate(list(h[-dirs:]), axis=1), None
        mask = (np.arange(out.shape[1])[None, :] < lengths[:, None])[..., None]
        if pooling == "mean":
            return (out * mask).sum(axis=1) / lengths[:, None].astype(out.dtype), (mask, lengths)
        masked = np.where(mask, out, -np.inf)
        arg = masked.argmax(axis=1)
        return np.take_along_axis(out, arg[:, None, :], axis=1)[:, 0], arg

    def _pool_backward(self, dpooled, pcache, out_shape, h_shape):
        pooling = self.config.pooling
        H = self.layers["rnn"].output_size
        if pooling == "last":
            dirs = 2 if self.config.bidirectional else 1
            dh = np.zeros(h_shape, dtype=self.config.dtype)
            for k in range(dirs):
                dh[h_shape[0] - dirs + k] = dpooled[:, k * H:(k + 1) * H]
            return None, dh
        dout = np.zeros(out_shape, dtype=self.config.dtype)
        if pooling == "mean":
            mask, lengths = pcache
            dout += mask * (dpooled / lengths[:, None])[:, None, :]
        else:
            np.put_along_axis(dout, pcache[:, None, :], dpooled[:, None, :], axis=1)
        return dout, None

    def forward_backward(self, batch):
        """Mean cross-entropy of a batch (ids, lengths, labels); adds every gradient
        into ``grads``; returns (loss · N, N).
        """
        ids, lengths, labels, bigrams = batch
        logits, cache = self._forward(ids, lengths, bigrams)
        loss, dlogits = cross_entropy(logits, labels, reduction="mean")
        ecache, dcache1, rcache, pcache, dcache2, hcache, out_shape, h_shape = cache
        L = self.layers
        dpooled = L["dropout"].backward(L["head"].backward(dlogits, hcache), dcache2)
        dout, dh = self._pool_backward(dpooled, pcache, out_shape, h_shape)
        dstate = (dh, None) if dh is not None and isinstance(L["rnn"], LSTM) else dh
        dx, _ = L["rnn"].backward(dout, dstate, rcache)
        dx = L["dropout"].backward(dx, dcache1)
        E = self.config.embedding_dim
        L["embedding"].backward(dx[:, :, :E], ecache[0])
        if ecache[1] is not None:
            _add_bigrams_backward(L["bigram_embedding"], dx[:, :, E:], ecache[1])
        return loss * len(labels), len(labels)

    def __call__(self, ids, lengths=None, bigrams=None):
        """Inference as a function: ids (N, T), lengths (N,) (None: full rows), bigrams
        (N, T, 2) → logits (N, C), in eval mode, keeping no cache (what
        ``rnnkit.to_torch(model)`` is called with and returns)."""
        return self.predict_logits((ids, _full(ids, lengths), None, bigrams))

    def predict_logits(self, batch):
        """Class scores (N, C) of a collated batch, in eval mode."""
        with self.evaluating():
            logits, _ = self._forward(batch[0], batch[1], batch[3])
        return logits

    def evaluate(self, batch) -> dict:
        """Summed loss, count and correct predictions of a batch (no gradients)."""
        logits = self.predict_logits(batch)
        labels = batch[2]
        loss, _ = cross_entropy(logits, labels, reduction="sum")
        return {"loss_sum": loss, "count": len(labels),
                "correct": int((logits.argmax(axis=1) == labels).sum())}

    def metrics(self, totals):
        """Mean loss and accuracy from summed :meth:`evaluate` parts."""
        n = max(totals["count"], 1)
        return {"loss": totals["loss_sum"] / n, "accuracy": totals["correct"] / n}


@dataclass
class RegressorConfig(RecurrentOptions):
    input_size: int  # features per step
    output_size: int = 1  # regression targets
    hidden_size: int = 128  # H
    num_layers: int = 1  # stacked recurrent layers
    cell: str = "lstm"  # rnn | rnn-relu | irnn | lstm | gru | gru-after
    seed: int = 0  # initialisation seed
    dtype: str = "float32"  # float32 | float64


@register
class SequenceRegressor(Model):
    """Sequence → numbers: x (N, T, D) → recurrent stack → last state h_T → ŷ = h_T Wᵀ + b
    (N, out); loss: mean squared error. The model of the adding problem."""

    config_class = RegressorConfig

    def __init__(self, config: RegressorConfig):
        super().__init__(config)
        c = config
        self.layers["rnn"] = make_recurrent(c.cell, c.input_size, c.hidden_size, c.num_layers,
                                            c, dtype=c.dtype, seed=c.seed)
        self.layers["head"] = Linear(self.layers["rnn"].output_size, c.output_size, dtype=c.dtype,
                                     seed=c.seed + 1)
        self._finish()

    def example_length(self, example) -> int:
        """The sequence's length T."""
        return len(example[0])

    def collate(self, examples):
        """[(x (T, D), y (O,))] of one length → (x (N, T, D), y (N, O))."""
        if not examples:
            raise ValueError("empty batch")
        return (np.stack([x for x, _ in examples]).astype(self.config.dtype),
                np.stack([y for _, y in examples]).astype(self.config.dtype))

    def __call__(self, x):
        """Inference as a function: x (N, T, D) → predictions (N, O), in eval mode."""
        with self.evaluating():
            return self._predict(x)[0]

    def _predict(self, x):
        out, _, cache = self.layers["rnn"].forward(x, inference=not self.training)
        y, hcache = self.layers["head"].forward(out[:, -1])
        return y, (cache, hcache, out.shape)

    def forward_backward(self, batch):
        """Mean squared error of the last step's prediction; adds gradients; returns
        (loss · N, N).
        """
        x, y = batch
        pred, (cache, hcache, shape) = self._predict(x)
        loss, dpred = mse_loss(pred, y)
        dout = np.zeros(shape, dtype=self.config.dtype)
        dout[:, -1] = self.layers["head"].backward(dpred, hcache)
        self.layers["rnn"].backward(dout, None, cache)
        return loss * len(y), len(y)

    def evaluate(self, batch):
        """Summed squared error and count of a batch (no gradients)."""
        with self.evaluating():
            pred, _ = self._predict(batch[0])
        loss, _ = mse_loss(pred, batch[1])
        return {"loss_sum": loss * len(pred), "count": len(pred)}


@dataclass
class StepClassifierConfig(RecurrentOptions):
    num_symbols: int  # input alphabet (one-hot inputs)
    num_classes: int  # output classes per step
    hidden_size: int = 128  # H
    num_layers: int = 1  # stacked recurrent layers
    cell: str = "lstm"  # rnn | rnn-relu | irnn | lstm | gru | gru-after
    seed: int = 0  # initialisation seed
    dtype: str = "float32"  # float32 | float64


@register
class StepClassifier(Model):
    """Symbols → a class at every step: ids (N, T) → one-hot (N, T, V) → recurrent stack →
    logits h_t Wᵀ + b (N, T, C); loss: cross-entropy averaged over all steps. The model of the
    copy-memory task."""

    config_class = StepClassifierConfig

    def __init__(self, config: StepClassifierConfig):
        super().__init__(config)
        c = config
        self.layers["rnn"] = make_recurrent(c.cell, c.num_symbols, c.hidden_size, c.num_layers,
                                            c, dtype=c.dtype, seed=c.seed)
        self.layers["head"] = Linear(self.layers["rnn"].output_size, c.num_classes, dtype=c.dtype,
                                     seed=c.seed + 1)
        self._eye = np.eye(c.num_symbols, dtype=c.dtype)
        self._finish()

    def example_length(self, example) -> int:
        """The sequence's length T."""
        return len(example[0])

    def collate(self, examples):
        """[(ids (T,), targets (T,))] of one length → (ids (N, T), targets (N, T))."""
        if not examples:
            raise ValueError("empty batch")
        return np.stack([x for x, _ in examples]), np.stack([y for _, y in examples])

    def __call__(self, ids):
        """Inference as a function: ids (N, T) → logits (N, T, C), in eval mode."""
        with self.evaluating():
            return self._logits(ids)[0]

    def _logits(self, ids):
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.num_symbols):
            raise ValueError(f"input symbol out of range [0, {self.config.num_symbols})")
        out, _, cache = self.layers["rnn"].forward(self._eye[ids], inference=not self.training)
        logits, hcache = self.layers["head"].forward(out)
        return logits, (cache, hcache)

    def forward_backward(self, batch):
        """Mean cross-entropy over every step; adds gradients; returns (loss · N·T, N·T)."""
        ids, y = batch
        logits, (cache, hcache) = self._logits(ids)
        loss, dlogits = cross_entropy(logits, y, reduction="mean")
        self.layers["rnn"].backward(self.layers["head"].backward(dlogits, hcache), None, cache)
        return loss * y.size, y.size

    def evaluate(self, batch):
        """Summed loss and count of a batch (no gradients)."""
        with self.evaluating():
            logits, _ = self._logits(batch[0])
        loss, _ = cross_entropy(logits, batch[1], reduction="sum")
        return {"loss_sum": loss, "count": batch[1].size}


@dataclass
class TaggerConfig(RecurrentOptions):
    vocab_size: int  # word ids (embedding rows)
    num_tags: int  # labels
    embedding_dim: int = 100  # size of a word vector
    hidden_size: int = 128  # H of each direction
    num_layers: int = 1  # stacked recurrent layers
    cell: str = "lstm"  # rnn | rnn-relu | irnn | lstm | gru | gru-after (rnnkit.options)
    dropout: float = 0.0  # on the token features, between layers and before the output
    char_vocab_size: int = 0  # character ids; 0 turns the character features off
    char_embedding_dim: int = 25  # size of a character vector
    char_hidden_size: int = 25  # H of each direction of the character BiLSTM
    bigram_vocab_size: int = 0  # token-bigram ids; 0 turns the bigram features off
    bigram_dim: int = 50  # size of a bigram vector (two per token: left and right)
    word_dropout: float = 0.0  # training: a word becomes <unk> with this probability
    freeze_embeddings: bool = False  # keep the word vectors as loaded (pretrained)
    crf: bool = False  # a linear-chain CRF over the logits instead of per-token softmax
    scheme: str | None = None  # bio | bioes | bmes: the tags' chunk scheme (None: plain tags)
    constrained: bool = True  # with a scheme: decoding rules out invalid tag sequences
    tag_names: list | None = None  # the tags in id order (what the scheme's rules read)
    select_metric: str | None = None  # f1 | accuracy | loss on dev (None: f1 with a scheme)
    padding_idx: int = 0  # word and character id used for padding
    unk_idx: int = 1  # word id of <unk> (rnnkit.data.SPECIALS order)
    seed: int = 0  # initialisation and dropout seed
    dtype: str = "float32"  # float32 | float64


@register
class SequenceTagger(Model):
    """Synchronous sequence → sequence (the notes' second mode): a label per token.

    Token features: a word embedding; optionally the final states of a character-level
    BiLSTM run over the word's characters (so an unseen word still gets a vector from its
    spelling); optionally the embeddings of the bigrams (x_{t−1} x_t) and (x_t x_{t+1}) — for
    character tagging such as word segmentation, the classic strong feature → bidirectional
    recurrent stack → logits h_t Wᵀ + b (N, T, K) per token; loss: cross-entropy averaged over
    real tokens. With ``word_dropout`` p, training replaces each word id by ``<unk>`` with
    probability p (its spelling stays), so the model learns what unseen words look like.
    Examples: (word ids, tag ids[, char ids per word or None[, bigram ids (T, 2) per token:
    left, right]]).
    """

    config_class = TaggerConfig

    @property
    def primary_metric(self) -> tuple[str, bool]:
        """What model selection and early stopping read: chunk F1 where the tags follow a
        scheme, token accuracy otherwise, unless ``select_metric`` says."""
        name = self.config.select_metric or ("f1" if self.config.scheme else "accuracy")
        return {"f1": "chunk_f1"}.get(name, name), name != "loss"

    def __init__(self, config: TaggerConfig):
        super().__init__(config)
        c = config
        # seed + 6: the bigram table
        self.layers["word_dropout"] = TokenDropout(c.word_dropout, c.unk_idx, c.padding_idx,
                                                   seed=c.seed + 7)
        feat = c.embedding_dim
        self.layers["embedding"] = Embedding(c.vocab_size, c.embedding_dim, c.padding_idx,
                                             dtype=c.dtype, seed=c.seed)
        if c.char_vocab_size:
            self.layers["char_embedding"] = Embedding(c.char_vocab_size, c.char_embedding_dim,
                                                      c.padding_idx, dtype=c.dtype,
                                                      seed=c.seed + 4)
            self.layers["char_rnn"] = LSTM(c.char_embedding_dim, c.char_hidden_size,
                                           bidirectional=True, dtype=c.dtype, seed=c.seed + 5)
            feat += 2 * c.char_hidden_size
        if c.bigram_vocab_size:
            self.layers["bigram_embedding"] = _bigram_embedding(c)
            feat += 2 * c.bigram_dim
        self.layers["rnn"] = make_recurrent(c.cell, feat, c.hidden_size, c.num_layers, c,
                                            bidirectional=True, dropout=c.dropout,
                                            dtype=c.dtype, seed=c.seed + 1)
        self.layers["dropout"] = Dropout(c.dropout, seed=c.seed + 2, variational=c.variational)
        self.layers["head"] = Linear(2 * self.layers["rnn"].output_size, c.num_tags, dtype=c.dtype,
                                     seed=c.seed + 3)
        if c.select_metric not in (None, "f1", "accuracy", "loss"):
            raise ValueError(f"unknown select_metric {c.select_metric!r}; expected f1, "
                             "accuracy or loss")
        if c.select_metric == "f1" and c.scheme is None:
            raise ValueError("select_metric 'f1' needs chunk tags (a BIO, BIOES or BMES scheme)")
        constraints = None
        if c.scheme is not None:
            if not c.tag_names or len(c.tag_names) != c.num_tags:
                raise ValueError(f"scheme {c.scheme!r} needs tag_names, one per tag "
                                 f"({c.num_tags}), got {c.tag_names!r}")
            if c.constrained:
                constraints = schemes.scheme_constraints(list(c.tag_names), c.scheme)
        self.constraints = None if constraints is None else crf.constraint_scores(*constraints)
        if c.crf:
            self.layers["crf"] = crf.CRF(c.num_tags, constraints, dtype=c.dtype)
        self._finish()
        if c.freeze_embeddings:
            self.frozen = {"embedding.weight"}

    def example_length(self, example) -> int:
        """The sentence's token count."""
        return len(example[0])

    def collate(self, examples):
        """→ (ids (N, T), lengths (N,), tags (N, T) with −1 at padding, chars or None,
        bigrams (N, T, 2) or None) where chars = (char ids (P, L), char lengths (P,)) for the P
        real words in time-major order."""
        if not examples:
            raise ValueError("empty batch")
        pad = self.config.padding_idx
        lengths = np.array([len(e[0]) for e in examples], dtype=np.int64)
        if lengths.min() < 1:
            raise ValueError("every sentence needs at least one token")
        n, t = len(examples), int(lengths.max())
        ids = np.full((n, t), pad, dtype=np.int64)
        tags = np.full((n, t), -1, dtype=np.int64)
        for i, e in enumerate(examples):
            if len(e[1]) != len(e[0]):
                raise ValueError(f"example {i}: {len(e[0])} tokens but {len(e[1])} tags")
            ids[i, : len(e[0])] = e[0]
            tags[i, : len(e[1])] = e[1]
        chars = None
        if self.config.char_vocab_size:
            if any(len(e) < 3 for e in examples):
                raise ValueError("this tagger uses character features: examples need "
                                 "(word ids, tag ids, char ids per word)")
            words = [(ti, i) for ti in range(t) for i in range(n) if ti < lengths[i]]
            spell = [examples[i][2][ti] or [pad] for ti, i in words]
            clen = np.array([len(s) for s in spell], dtype=np.int64)
            cids = np.full((len(spell), int(clen.max())), pad, dtype=np.int64)
            for k, s in enumerate(spell):
                cids[k, : len(s)] = s
            chars = (cids, clen)
        bigrams = None
        if self.config.bigram_vocab_size:
            bigrams = _collate_bigrams(examples, 3, (n, t), pad,
                                       "(word ids, tag ids, char ids or None, bigram ids)")
        return ids, lengths, tags, chars, bigrams

    def _features(self, ids, lengths, chars, bigrams):
        L = self.layers
        x, ecache = L["embedding"].forward(L["word_dropout"].forward(ids))
        bcache = None
        if bigrams is not None:
            x, bcache = _add_bigrams(L["bigram_embedding"], x, bigrams)
        ccache = None
        if chars is not None:
            cids, clen = chars
            ce, cecache = L["char_embedding"].forward(cids)
            _, (h, _), crcache = L["char_rnn"].forward(ce, lengths=clen,
                                                       inference=not self.training)
            word_vec = np.concatenate([h[0], h[1]], axis=1)  # (P, 2Hc), time-major words
            mask = np.arange(ids.shape[1])[:, None] < lengths[None, :]  # (T, N)
            feats = np.zeros((ids.shape[1], ids.shape[0], word_vec.shape[1]), dtype=x.dtype)
            feats[mask] = word_vec
            x = np.concatenate([x, feats.transpose(1, 0, 2)], axis=2)
            ccache = (cecache, crcache, mask)
        return x, (ecache, ccache, bcache)

    def _logits(self, batch):
        ids, lengths, _, chars, bigrams = batch
        L = self.layers
        x, fcache = self._features(ids, lengths, chars, bigrams)
        x, d1 = L["dropout"].forward(x)
        out, _, rcache = L["rnn"].forward(x, lengths=lengths, inference=not self.training)
        out, d2 = L["dropout"].forward(out)
        logits, hcache = L["head"].forward(out)
        return logits, (fcache, d1, rcache, d2, hcache)

    def forward_backward(self, batch):
        """Mean cross-entropy over the real tokens of a batch; adds gradients (character
        BiLSTM included); returns (loss · tokens, tokens).
        """
        tags = batch[2]
        mask = tags >= 0
        logits, (fcache, d1, rcache, d2, hcache) = self._logits(batch)
        L = self.layers
        if self.config.crf:  # Σ_sentences −log p(y), reported per token
            n = int(mask.sum())
            total, ccache = L["crf"].forward(logits, batch[1], tags)
            loss, dlogits = total / n, L["crf"].backward(1.0 / n, ccache)
        else:
            loss, dlogits = cross_entropy(logits, tags, mask, reduction="mean")
        dout = L["dropout"].backward(L["head"].backward(dlogits, hcache), d2)
        dx, _ = L["rnn"].backward(dout, None, rcache)
        dx = L["dropout"].backward(dx, d1)
        ecache, ccache, bcache = fcache
        E = self.config.embedding_dim
        L["embedding"].backward(dx[:, :, :E], ecache)
        if bcache is not None:
            B2 = 2 * self.config.bigram_dim
            _add_bigrams_backward(L["bigram_embedding"], dx[:, :, E:E + B2], bcache)
            E += B2
        if ccache is not None:
            cecache, crcache, wmask = ccache
            dword = dx[:, :, E:].transpose(1, 0, 2)[wmask]  # (P, 2Hc)
            Hc = self.config.char_hidden_size
            dh = np.stack([dword[:, :Hc], dword[:, Hc:]])
            dce, _ = L["char_rnn"].backward(None, (dh, None), crcache)
            L["char_embedding"].backward(dce, cecache)
        n = int(mask.sum())
        return loss * n, n

    def __call__(self, ids, lengths=None, chars=None, bigrams=None):
        """Inference as a function: ids (N, T), lengths (N,) (None: full rows), chars (char
        ids (P, L), char lengths (P,)) of the P real words in time-major order, bigrams
        (N, T, 2) → logits (N, T, K), in eval mode, keeping no cache."""
        with self.evaluating():
            return self._logits((ids, _full(ids, lengths), None, chars, bigrams))[0]

    def predict(self, batch) -> np.ndarray:
        """Tag ids (N, T), −1 at padding: the CRF's Viterbi path, or with a tag scheme the
        best valid sequence under the per-token softmax, else each token's argmax."""
        with self.evaluating():
            logits, _ = self._logits(batch)
        return self._decode(logits, batch[1])

    def _decode(self, logits, lengths) -> np.ndarray:
        if self.config.crf:
            return self.layers["crf"].decode(logits, lengths)
        if self.constraints is not None:
            return crf.viterbi(log_softmax(logits.astype(np.float64)), lengths,
                               *self.constraints)
        pred = logits.argmax(axis=2)
        pred[np.arange(pred.shape[1])[None, :] >= lengths[:, None]] = -1
        return pred

    def evaluate(self, batch) -> dict:
        """Summed loss, token count and correct tags of a batch (no gradients)."""
        with self.evaluating():
            logits, _ = self._logits(batch)
        tags = batch[2]
        # −2: a tag this run never saw (Task.encode with unseen="count"): an error in the
        # accuracy, left out of the softmax's loss, read as tag 0 by the CRF's.
        mask = tags >= 0
        if self.config.crf:
            loss, _ = self.layers["crf"].forward(logits, batch[1], np.where(tags == -2, 0, tags))
        else:
            loss, _ = cross_entropy(logits, tags, mask, reduction="sum")
        pred = self._decode(logits, batch[1])
        part = {"loss_sum": loss, "count": int((tags != -1).sum()),
                "correct": int(((pred == tags) & mask).sum())}
        if self.config.scheme is not None:  # entity (chunk) counts: correct, predicted, gold
            names, totals = self.config.tag_names, [0, 0, 0]
            for g, p, n in zip(tags, pred, batch[1], strict=True):
                # (a tag the run never saw, −2, reads as O here; Task.evaluate names it)
                counts = schemes.chunk_counts([names[k] if k >= 0 else "O" for k in g[:n]],
                                              [names[k] for k in p[:n]], self.config.scheme)
                for c in counts.values():
                    totals = [a + b for a, b in zip(totals, c, strict=True)]
            part.update(chunks_correct=totals[0], chunks_predicted=totals[1],
                        chunks_gold=totals[2])
        return part

    def metrics(self, totals):
        """Mean loss and token accuracy from summed :meth:`evaluate` parts; with a tag
        scheme, chunk precision, recall and F1 too."""
        n = max(totals["count"], 1)
        out = {"loss": totals["loss_sum"] / n, "accuracy": totals["correct"] / n}
        if "chunks_gold" in totals:
            out["chunk_precision"], out["chunk_recall"], out["chunk_f1"] = schemes.prf(
                totals["chunks_correct"], totals["chunks_predicted"], totals["chunks_gold"])
        return out


@dataclass
class LMConfig(RecurrentOptions):
    vocab_size: int  # token ids (characters or words)
    embedding_dim: int = 128  # size of a token vector
    hidden_size: int = 256  # H
    num_layers: int = 2  # stacked recurrent layers
    cell: str = "lstm"  # rnn | rnn-relu | irnn | lstm | gru | gru-after (rnnkit.options)
    dropout: float = 0.0  # on embeddings, between layers and before the output
    level: str = "char"  # char | word: what a token is (bits per character need char)
    seed: int = 0  # initialisation and dropout seed
    dtype: str = "float32"  # float32 | float64


@register
class LanguageModel(Model):
    """Next-token prediction over a stream: ŷ_t = softmax(V h_t + b) with h_t the state after
    tokens ≤ t; L = Σ_t −log ŷ_t[x_{t+1}] (SPEC §1), averaged per token.

    Trained by truncated BPTT: the stream is cut into ``batch`` parallel rows and windows of
    ``bptt`` steps (:meth:`windows`), seen in order; each window starts from the state the
    previous one ended in, and no gradient crosses a window's start. Loss, perplexity e^loss and
    bits per token loss / ln 2 (bits per character at character level).
    """

    config_class = LMConfig

    def __init__(self, config: LMConfig):
        super().__init__(config)
        c = config
        if c.level not in ("char", "word"):
            raise ValueError(f"level must be 'char' or 'word', got {c.level!r}")
        self.layers["embedding"] = Embedding(c.vocab_size, c.embedding_dim, dtype=c.dtype,
                                             seed=c.seed)
        self.layers["rnn"] = make_recurrent(c.cell, c.embedding_dim, c.hidden_size,
                                            c.num_layers, c, dropout=c.dropout, dtype=c.dtype,
                                            seed=c.seed + 1)
        self.layers["dropout"] = Dropout(c.dropout, seed=c.seed + 2, variational=c.variational)
        self.layers["head"] = Linear(self.layers["rnn"].output_size, c.vocab_size, dtype=c.dtype,
                                     seed=c.seed + 3)
        self._finish()
        self._state = None

    @staticmethod
    def windows(ids, batch: int, bptt: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Cut a 1-D id stream into ``batch`` rows and consecutive (x, y) windows of ≤ bptt
        steps, y being x shifted by one token."""
        ids = np.asarray(ids, dtype=np.int64)
        if batch < 1 or bptt < 1:
            raise ValueError(f"batch and bptt must be >= 1, got {batch} and {bptt}")
        per_row = (len(ids) - 1) // batch
        if per_row < 1:
            raise ValueError(f"a stream of {len(ids)} tokens is too short for {batch} rows")
        x_all = ids[: per_row * batch].reshape(batch, per_row)
        y_all = ids[1: per_row * batch + 1].reshape(batch, per_row)
        return [(x_all[:, j:j + bptt], y_all[:, j:j + bptt]) for j in range(0, per_row, bptt)]

    def example_length(self, example) -> int:
        """The window's length (its steps)."""
        return example[0].shape[1]

    def example_tokens(self, example) -> int:
        """A window holds batch × bptt tokens (for tokens/s)."""
        return example[0].size

    def collate(self, examples):
        """A batch is one window (x, y) from :meth:`windows`: train with batch_size=1."""
        if len(examples) != 1:
            raise ValueError("a language-model batch is one window (train with batch_size=1)")
        return examples[0]

    @staticmethod
    def shard_rows(batch, rank: int, size: int):
        """A rank's rows r, r + K, … of a window (data-parallel under mpiexec: each rank
        carries the state of its own rows from window to window); None when it has none."""
        x, y = batch
        return (x[rank::size], y[rank::size]) if rank < len(x) else None

    def start_epoch(self):
        """Forget the carried state: the stream starts again."""
        self._state = None

    start_eval = start_epoch

    def _carry(self, n):
        s = self._state
        if s is None:
            return None
        h = s[0] if isinstance(s, tuple) else s
        return s if h.shape[1] == n else None

    def __call__(self, ids, state=None):
        """Inference as a function: ids (N, T) from ``state`` → (logits (N, T, V), final
        state), in eval mode; the training stream's carried state is left alone."""
        with self.evaluating():
            logits, state, _ = self._logits(ids, state)
        return logits, state

    def _logits(self, x, state):
        L = self.layers
        e, ecache = L["embedding"].forward(x)
        e, d1 = L["dropout"].forward(e)
        out, final, rcache = L["rnn"].forward(e, state, inference=not self.training)
        out, d2 = L["dropout"].forward(out)
        logits, hcache = L["head"].forward(out)
        return logits, final, (ecache, d1, rcache, d2, hcache)

    def forward_backward(self, batch):
        """Mean next-token cross-entropy of a window, starting from the state the previous
        window ended in (no gradient crosses it); targets < 0 are left out; returns
        (loss · tokens, tokens).
        """
        x, y = batch
        logits, final, (ecache, d1, rcache, d2, hcache) = self._logits(x, self._carry(len(x)))
        self._state = final  # carried into the next window, without its gradient
        mask = y >= 0  # a negative target is left out (rnnkit.inspector: one step's loss)
        loss, dlogits = cross_entropy(logits, y, mask, reduction="mean")
        L = self.layers
        dout = L["dropout"].backward(L["head"].backward(dlogits, hcache), d2)
        dx, _ = L["rnn"].backward(dout, None, rcache)
        L["embedding"].backward(L["dropout"].backward(dx, d1), ecache)
        n = int(mask.sum())
        return loss * n, n

    def evaluate(self, batch):
        """Summed loss and count of a window, carrying the state (no gradients)."""
        x, y = batch
        with self.evaluating():
            logits, self._state, _ = self._logits(x, self._carry(len(x)))
        loss, _ = cross_entropy(logits, y, reduction="sum")
        return {"loss_sum": loss, "count": y.size}

    def metrics(self, totals):
        """Loss, perplexity e^loss and bits per character (or token) loss / ln 2."""
        loss = totals["loss_sum"] / max(totals["count"], 1)
        bits = "bits_per_char" if self.config.level == "char" else "bits_per_token"
        return {"loss": loss, "perplexity": float(np.exp(min(loss, 700))),
                bits: loss / np.log(2)}

    def generate(self, prompt: list[int], length: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None, top_p: float | None = None,
                 exclude: Sequence[int] = (), stop: int | None = None) -> list[int]:
        """At most ``length`` tokens sampled after ``prompt`` (ids): the first ``length`` of
        :meth:`sample`. Seeded and repeatable."""
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        return list(islice(self.sample(prompt, temperature, top_k, seed, top_p, exclude, stop),
                           length))

    def sample(self, prompt: list[int], temperature: float = 1.0, top_k: int | None = None,
               seed: int | None = None, top_p: float | None = None,
               exclude: Sequence[int] = (), stop: int | None = None) -> Iterator[int]:
        """Tokens after ``prompt`` (ids), one at a time: each drawn from softmax(z / T) over
        the logits z, ``exclude``'d ids never drawn (a run's ``<pad> <unk> <bos>``), restricted
        to the ``top_k`` most likely, then to the smallest set of most likely tokens whose
        probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020). Without end,
        unless ``stop`` is drawn: it ends the tokens, itself not yielded. The arguments are
        checked at the call, before the first token."""
        V = self.config.vocab_size
        if not prompt:
            raise ValueError("generate needs a prompt of at least one token")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and not 1 <= top_k <= V:
            raise ValueError(f"top_k must be in [1, {V}], got {top_k}")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        banned = np.zeros(V, dtype=bool)
        banned[list(exclude)] = True
        if stop is not None:
            banned[stop] = False
        if banned.all():
            raise ValueError("every token is excluded: nothing can be sampled")
        return self._sampling(prompt, temperature, top_k, top_p, banned, stop,
                              np.random.default_rng(seed))

    @staticmethod
    def _distribution(z, temperature, top_k, top_p, banned) -> np.ndarray:
        """The probabilities a token is drawn from, float64 (V,)."""
        z = np.where(banned, -np.inf, z.astype(np.float64) / temperature)
        if top_k is not None and top_k < len(z):
            cut = np.partition(z, -top_k)[-top_k]
            z = np.where(z >= cut, z, -np.inf)
        p = np.exp(z - z.max())
        p /= p.sum()
        if top_p is not None and top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            # keep every token until the mass reaches top_p, the one that reaches it included
            keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        return p

    def _sampling(self, prompt, temperature, top_k, top_p, banned, stop, rng) -> Iterator[int]:
        # eval mode per step, never held across a yield: two samplers interleaved (two
        # streams of a server) would otherwise restore each other's mode mid-sequence
        with self.evaluating():
            logits, state, _ = self._logits(np.array([prompt], dtype=np.int64), None)
        while True:
            p = self._distribution(logits[0, -1], temperature, top_k, top_p, banned)
            token = int(rng.choice(len(p), p=p))
            if token == stop:
                return
            yield token
            with self.evaluating():
                logits, state, _ = self._logits(np.array([[token]], dtype=np.int64), state)


# The encoder–decoder lives in its own file; imported here so that rnnkit.models names every
# model (and registers it for checkpoints).
from .seq2seq import Seq2Seq, Seq2SeqConfig  # noqa: E402, F401
