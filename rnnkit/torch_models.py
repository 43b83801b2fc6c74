"""Whole rnnkit models as ``torch.nn.Module``s, and back: the same layers under the same names,
so the module's ``state_dict()`` keys are the model's ``params`` keys (``rnn.weight_ih_l0``…).

    module = rnnkit.to_torch(model)     # any task model, or one recurrent layer
    out = module(*inputs)               # == model(*inputs): the same inputs, the same outputs
    model = rnnkit.from_torch(module)   # back: the config it carries, weights copied by name

What each model is called with (rnnkit's ``model(...)`` and the module alike; ``lengths`` None
means every row is full length):
  SequenceClassifier  (ids (N, T), lengths (N,), bigrams (N, T, 2)) → logits (N, C)
  SequenceTagger      (ids, lengths, chars = (char ids (P, L), char lengths (P,)), bigrams)
                      → logits (N, T, K); with a CRF the module holds its transitions (decode
                      with rnnkit.crf.viterbi)
  LanguageModel       (ids (N, T), state) → (logits (N, T, V), state)
  Seq2Seq             (src (N, S), src lengths (N,), tgt_in (N, T) = <bos> y) → logits
                      (N, T, V), teacher-forced
  SequenceRegressor   (x (N, T, D)) → (N, O);  StepClassifier (ids (N, T)) → (N, T, C)

The recurrent stacks are torch.nn.RNN, LSTM and GRU (batch_first=True; padded batches run
packed, as rnnkit runs them). torch has no GRU that applies the reset gate before the recurrent
product — rnnkit's default ``--cell gru``, the notes' form n = tanh(W_n x + U_n (r ⊙ h) + b) —
so :class:`ResetBeforeGRU` computes it, with nn.GRU's parameter names and shapes. Dropout
modules are there for training in torch (plain dropout; rnnkit's variational dropout and weight
drop are training-only and not carried). Refused, because torch's modules would compute
something else: peepholes, learned or random initial states, layer normalisation, zoneout.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .interop import _op, check_torch_module
from .models import MODELS
from .recurrent import GRU, RecurrentLayer

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---------------------------------------------------------------------------------- layers
class ResetBeforeGRU(nn.Module):
    """GRU with the reset gate applied before the recurrent product (rnnkit's default GRU):
    r = σ(W_r x + U_r h + b_r), z = σ(W_z x + U_z h + b_z), n = tanh(W_n x + U_n (r ⊙ h) +
    b_in + b_hn), h' = (1 − z) ⊙ n + z ⊙ h. Parameters, shapes and the call are nn.GRU's:
    ``out, h_n = gru(x, h0)``; ``lengths`` (N,) marks right-padded rows (zeros out, state of
    the last valid step, the reverse direction starting at each row's own end)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = True, dropout: float = 0.0,
                 bidirectional: bool = False, dtype: torch.dtype | None = None):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        dirs = 2 if bidirectional else 1
        for k in range(num_layers):
            d_in = input_size if k == 0 else dirs * hidden_size
            for d in range(dirs):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                shapes = {"weight_ih": (3 * hidden_size, d_in),
                          "weight_hh": (3 * hidden_size, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(3 * hidden_size,), bias_hh=(3 * hidden_size,))
                for name, shape in shapes.items():
                    self.register_parameter(name + sfx, nn.Parameter(torch.empty(shape,
                                                                                 dtype=dtype)))
        bound = 1.0 / math.sqrt(hidden_size)  # nn.GRU's initialisation
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _direction(self, x, h, alive, sfx: str, reverse: bool):
        w, u = getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx)
        a = x @ w.T
        if self.bias:
            a = a + getattr(self, "bias_ih" + sfx) + getattr(self, "bias_hh" + sfx)
        u_rz, u_n = u[: 2 * self.hidden_size], u[2 * self.hidden_size:]
        outs = [None] * x.shape[1]
        for t in (range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])):
            a_rz, a_n = a[:, t, : 2 * self.hidden_size], a[:, t, 2 * self.hidden_size:]
            r, z = torch.sigmoid(a_rz + h @ u_rz.T).chunk(2, dim=1)
            n = torch.tanh(a_n + (r * h) @ u_n.T)
            new = (1 - z) * n + z * h
            keep = alive[:, t, None]
            h = torch.where(keep, new, h)
            outs[t] = torch.where(keep, new, torch.zeros_like(new))
        return torch.stack(outs, dim=1), h

    def forward(self, x, h0=None, lengths=None):
        """x (N, T, D) ((T, N, D) unless batch_first) → (out (N, T, dirs·H), h_n
        (layers·dirs, N, H))."""
        if not self.batch_first:
            x = x.transpose(0, 1)
        n, t = x.shape[:2]
        dirs = 2 if self.bidirectional else 1
        if h0 is None:
            h0 = x.new_zeros(self.num_layers * dirs, n, self.hidden_size)
        steps = torch.arange(t)[None, :]
        alive = (steps < (torch.as_tensor(lengths)[:, None] if lengths is not None else t))
        finals = []
        for k in range(self.num_layers):
            if k and self.dropout and self.training:
                x = nn.functional.dropout(x, self.dropout)
            outs = []
            for d in range(dirs):
                out, h = self._direction(x, h0[k * dirs + d], alive,
                                         f"_l{k}" + ("_reverse" if d else ""), bool(d))
                outs.append(out)
                finals.append(h)
            x = torch.cat(outs, dim=2)
        return (x if self.batch_first else x.transpose(0, 1)), torch.stack(finals)


def recurrent_module(layer: RecurrentLayer) -> nn.Module:
    """A torch module equal to the layer, holding its weights: nn.RNN, LSTM or GRU, or
    :class:`ResetBeforeGRU` for a GRU with ``reset_after=False``; the layer's batch_first."""
    check_torch_module(layer)
    dtype = getattr(torch, layer.dtype.name)
    kw = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
              dropout=layer.dropout, bidirectional=layer.bidirectional, dtype=dtype)
    op = _op(layer)
    if isinstance(layer, GRU) and not layer.reset_after:
        module = ResetBeforeGRU(layer.input_size, layer.hidden_size, **kw)
    elif op == "RNN":
        module = nn.RNN(layer.input_size, layer.hidden_size, nonlinearity=layer.nonlinearity,
                        **kw)
    else:
        if getattr(layer, "proj_size", 0):
            kw["proj_size"] = layer.proj_size
        module = getattr(nn, op)(layer.input_size, layer.hidden_size, **kw)
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.params.items()})
    return module


def run_recurrent(rnn: nn.Module, x, lengths=None, state=None):
    """Any of the stacks over batch-first x, padded rows packed: (out, final state)."""
    if isinstance(rnn, ResetBeforeGRU):
        return rnn(x, state, lengths)
    if lengths is None:
        return rnn(x, state)
    packed = pack_padded_sequence(x, torch.as_tensor(lengths).cpu(), batch_first=True,
                                  enforce_sorted=False)
    out, final = rnn(packed, state)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], final


class LuongAttention(nn.Module):
    """e = q kᵀ (dot) or q W kᵀ (general, ``weight`` (Hq, Hk)); a = softmax over the valid
    source positions; context a v. (query (N, Tq, Hq), keys (N, S, Hk), mask (N, S)) →
    (context, weights)."""

    def __init__(self, kind: str, query_size: int, key_size: int, dtype=None):
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.weight = nn.Parameter(torch.zeros(query_size, key_size, dtype=dtype))

    def forward(self, query, keys, mask):
        q = query @ self.weight if self.kind == "general" else query
        a = torch.softmax((q @ keys.transpose(1, 2)).masked_fill(~mask[:, None], -math.inf), -1)
        return a @ keys, a


class AdditiveAttention(nn.Module):
    """Bahdanau: e_ts = vᵀ tanh(W_q q_t + W_k k_s + b); parameters ``query_weight``,
    ``key_weight``, ``bias``, ``v`` as rnnkit's."""

    def __init__(self, query_size: int, key_size: int, attention_size: int, dtype=None):
        super().__init__()
        self.query_weight = nn.Parameter(torch.zeros(attention_size, query_size, dtype=dtype))
        self.key_weight = nn.Parameter(torch.zeros(attention_size, key_size, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(attention_size, dtype=dtype))
        self.v = nn.Parameter(torch.zeros(attention_size, dtype=dtype))

    def forward(self, query, keys, mask):
        pq = query @ self.query_weight.T
        pk = keys @ self.key_weight.T + self.bias
        e = torch.tanh(pq[:, :, None] + pk[:, None]) @ self.v
        a = torch.softmax(e.masked_fill(~mask[:, None], -math.inf), -1)
        return a @ keys, a


class CRF(nn.Module):
    """The tagger's CRF parameters: ``transitions`` (K, K), ``start`` (K,), ``end`` (K,)."""

    def __init__(self, k: int, dtype=None):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(k, k, dtype=dtype))
        self.start = nn.Parameter(torch.zeros(k, dtype=dtype))
        self.end = nn.Parameter(torch.zeros(k, dtype=dtype))


# ---------------------------------------------------------------------------------- models
def _lengths(ids, lengths):
    if lengths is None:
        return torch.full((ids.shape[0],), ids.shape[1], dtype=torch.int64)
    return torch.as_tensor(lengths)


def _valid(lengths, t: int):
    return torch.arange(t)[None, :] < lengths[:, None]


class TorchModel(nn.Module):
    """Base of the twins: the rnnkit model's type and config travel with the module
    (``rnnkit_type``, ``rnnkit_config``), so :func:`from_torch` can rebuild it."""

    def __init__(self, model):
        super().__init__()
        self.rnnkit_type = type(model).__name__
        self.rnnkit_config = model.config_dict()
        self.dtype = _DTYPES[model.config.dtype]

    def _embedding(self, layer) -> nn.Embedding:
        return nn.Embedding(layer.num_embeddings, layer.embedding_dim,
                            padding_idx=layer.padding_idx, dtype=self.dtype)

    def _linear(self, layer) -> nn.Linear:
        return nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params,
                         dtype=self.dtype)

    def _load(self, model) -> TorchModel:
        """Copy every rnnkit parameter by name; a name on one side only is an error."""
        state = {k: torch.from_numpy(np.array(v)) for k, v in model.params.items()}
        self.load_state_dict(state, strict=True)
        return self.eval()


def _add_bigrams(module, x, bigrams):
    if bigrams is None:
        return x
    b = module.bigram_embedding(torch.as_tensor(bigrams))
    return torch.cat([x, b.reshape(*b.shape[:2], -1)], dim=2)


class Classifier(TorchModel):
    """Twin of :class:`rnnkit.models.SequenceClassifier`."""

    def __init__(self, model):
        super().__init__(model)
        c, L = model.config, model.layers
        self.pooling, self.dirs = c.pooling, 2 if c.bidirectional else 1
        self.embedding = self._embedding(L["embedding"])
        if "bigram_embedding" in L:
            self.bigram_embedding = self._embedding(L["bigram_embedding"])
        self.rnn = recurrent_module(L["rnn"])
        self.dropout = nn.Dropout(c.dropout)
        self.head = self._linear(L["head"])
        self._load(model)

    def forward(self, ids, lengths=None, bigrams=None):
        """(ids (N, T), lengths (N,), bigrams (N, T, 2)) → logits (N, C)."""
        ids = torch.as_tensor(ids)
        lengths = _lengths(ids, lengths)
        x = self.dropout(_add_bigrams(self, self.embedding(ids), bigrams))
        out, state = run_recurrent(self.rnn, x, lengths)
        if self.pooling == "last":
            h = state[0] if isinstance(state, tuple) else state
            pooled = torch.cat(list(h[-self.dirs:]), dim=1)
        else:
            mask = _valid(lengths, ids.shape[1])[..., None]
            if self.pooling == "mean":
                pooled = (out * mask).sum(dim=1) / lengths[:, None].to(out.dtype)
            else:
                pooled = out.masked_fill(~mask, -math.inf).max(dim=1).values
        return self.head(self.dropout(pooled))


class Tagger(TorchModel):
    """Twin of :class:`rnnkit.models.SequenceTagger` (its logits; CRF parameters held)."""

    def __init__(self, model):
        super().__init__(model)
        c, L = model.config, model.layers
        self.embedding = self._embedding(L["embedding"])
        if "char_embedding" in L:
            self.char_embedding = self._embedding(L["char_embedding"])
            self.char_rnn = recurrent_module(L["char_rnn"])
        if "bigram_embedding" in L:
            self.bigram_embedding = self._embedding(L["bigram_embedding"])
        self.rnn = recurrent_module(L["rnn"])
        self.dropout = nn.Dropout(c.dropout)
        self.head = self._linear(L["head"])
        if "crf" in L:
            self.crf = CRF(c.num_tags, self.dtype)
        self._load(model)

    def forward(self, ids, lengths=None, chars=None, bigrams=None):
        """(ids (N, T), lengths (N,), chars (char ids (P, L), lengths (P,)) for the P real
        words in time-major order, bigrams (N, T, 2)) → logits (N, T, K)."""
        ids = torch.as_tensor(ids)
        lengths = _lengths(ids, lengths)
        x = _add_bigrams(self, self.embedding(ids), bigrams)
        if chars is not None:
            ce = self.char_embedding(torch.as_tensor(chars[0]))
            _, (h, _) = run_recurrent(self.char_rnn, ce, chars[1])
            words = torch.cat([h[0], h[1]], dim=1)  # (P, 2Hc)
            mask = _valid(lengths, ids.shape[1]).T  # (T, N): the words' time-major order
            feats = x.new_zeros(*mask.shape, words.shape[1])
            feats[mask] = words
            x = torch.cat([x, feats.transpose(0, 1)], dim=2)
        out, _ = run_recurrent(self.rnn, self.dropout(x), lengths)
        return self.head(self.dropout(out))


class LanguageModel(TorchModel):
    """Twin of :class:`rnnkit.models.LanguageModel`."""

    def __init__(self, model):
        super().__init__(model)
        L = model.layers
        self.embedding = self._embedding(L["embedding"])
        self.rnn = recurrent_module(L["rnn"])
        self.dropout = nn.Dropout(model.config.dropout)
        self.head = self._linear(L["head"])
        self._load(model)

    def forward(self, ids, state=None):
        """(ids (N, T), state) → (logits (N, T, V), state)."""
        out, state = run_recurrent(self.rnn, self.dropout(self.embedding(torch.as_tensor(ids))),
                                   None, state)
        return self.head(self.dropout(out)), state


class Seq2Seq(TorchModel):
    """Twin of :class:`rnnkit.seq2seq.Seq2Seq`: teacher-forced logits."""

    def __init__(self, model):
        super().__init__(model)
        c, L = model.config, model.layers
        self.bidirectional_encoder, self.input_feed = c.bidirectional_encoder, c.input_feed
        self.src_embedding = self._embedding(L["src_embedding"])
        self.tgt_embedding = self._embedding(L["tgt_embedding"])
        self.encoder = recurrent_module(L["encoder"])
        self.decoder = recurrent_module(L["decoder"])
        a = L.get("attention")
        if c.attention in ("dot", "general"):
            self.attention = LuongAttention(c.attention, a.query_size, a.key_size, self.dtype)
        elif c.attention == "additive":
            self.attention = AdditiveAttention(a.query_size, a.key_size, a.attention_size,
                                               self.dtype)
        if "combine" in L:
            self.combine = self._linear(L["combine"])
        self.dropout = nn.Dropout(c.dropout)
        self.head = self._linear(L["head"])
        self._load(model)

    def _bridge(self, h):
        return torch.cat([h[0::2], h[1::2]], dim=2) if self.bidirectional_encoder else h

    def _project(self, dec_out, enc_out, mask):
        feat = dec_out
        if hasattr(self, "attention"):
            feat = torch.cat([dec_out, self.attention(dec_out, enc_out, mask)[0]], dim=2)
        ht = None
        if hasattr(self, "combine"):
            feat = ht = torch.tanh(self.combine(feat))
        return self.head(self.dropout(feat)), ht

    def forward(self, src, src_lengths, tgt_in):
        """(src (N, S), src lengths (N,), tgt_in (N, T)) → logits (N, T, V)."""
        src, tgt_in = torch.as_tensor(src), torch.as_tensor(tgt_in)
        src_lengths = torch.as_tensor(src_lengths)
        e = self.dropout(self.src_embedding(src))
        enc_out, state = run_recurrent(self.encoder, e, src_lengths)
        state = tuple(map(self._bridge, state)) if isinstance(state, tuple) else \
            self._bridge(state)
        mask = _valid(src_lengths, src.shape[1])
        if not self.input_feed:
            dec_out, _ = run_recurrent(self.decoder, self.tgt_embedding(tgt_in), None, state)
            return self._project(dec_out, enc_out, mask)[0]
        feed = enc_out.new_zeros(src.shape[0], 1, enc_out.shape[2])
        logits = []
        for t in range(tgt_in.shape[1]):
            x = torch.cat([self.tgt_embedding(tgt_in[:, t:t + 1]), feed], dim=2)
            out, state = run_recurrent(self.decoder, x, None, state)
            step, feed = self._project(out, enc_out, mask)
            logits.append(step)
        return torch.cat(logits, dim=1)


class Regressor(TorchModel):
    """Twin of :class:`rnnkit.models.SequenceRegressor`."""

    def __init__(self, model):
        super().__init__(model)
        self.rnn = recurrent_module(model.layers["rnn"])
        self.head = self._linear(model.layers["head"])
        self._load(model)

    def forward(self, x):
        """x (N, T, D) → (N, O) from the last step."""
        return self.head(run_recurrent(self.rnn, torch.as_tensor(x))[0][:, -1])


class StepClassifier(TorchModel):
    """Twin of :class:`rnnkit.models.StepClassifier`."""

    def __init__(self, model):
        super().__init__(model)
        self.num_symbols = model.config.num_symbols
        self.rnn = recurrent_module(model.layers["rnn"])
        self.head = self._linear(model.layers["head"])
        self._load(model)

    def forward(self, ids):
        """ids (N, T) → logits (N, T, C) from one-hot inputs."""
        x = nn.functional.one_hot(torch.as_tensor(ids), self.num_symbols).to(self.dtype)
        return self.head(run_recurrent(self.rnn, x)[0])


TWINS = {"SequenceClassifier": Classifier, "SequenceTagger": Tagger,
         "LanguageModel": LanguageModel, "Seq2Seq": Seq2Seq, "SequenceRegressor": Regressor,
         "StepClassifier": StepClassifier}


def model_to_torch(model) -> TorchModel:
    """The torch twin of an rnnkit task model (see the module docstring), in eval mode."""
    twin = TWINS.get(type(model).__name__)
    if twin is None:
        raise TypeError(f"to_torch converts rnnkit models ({', '.join(TWINS)}) and recurrent "
                        f"layers; got {type(model).__name__}")
    return twin(model)


def model_from_torch(module: TorchModel):
    """The rnnkit model a twin describes, its weights copied by name."""
    model = MODELS[module.rnnkit_type].from_config(dict(module.rnnkit_config))
    state = module.state_dict()
    missing = sorted(set(model.params) - set(state))
    extra = sorted(set(state) - set(model.params))
    if missing or extra:
        raise ValueError(f"the module's parameters do not match a {module.rnnkit_type}: "
                         f"missing {missing}, unexpected {extra}")
    for name, value in state.items():
        target = model.params[name]
        if tuple(value.shape) != target.shape:
            raise ValueError(f"{name}: shape {tuple(value.shape)}, expected {target.shape}")
        target[...] = value.detach().cpu().numpy()
    return model


def layer_from_reset_before(module: ResetBeforeGRU, dtype: str) -> GRU:
    """The rnnkit GRU (reset_after=False) equal to a :class:`ResetBeforeGRU`."""
    layer = GRU(module.input_size, module.hidden_size, module.num_layers, bias=module.bias,
                bidirectional=module.bidirectional, dropout=module.dropout, dtype=dtype,
                batch_first=module.batch_first)
    for name, value in module.state_dict().items():
        layer.params[name][...] = value.detach().cpu().numpy()
    return layer
