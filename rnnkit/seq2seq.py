"""Encoder–decoder sequence → sequence (the notes' third mode), as OpenNMT-py users build it.

    encoder   (→h_s; ←h_s) over the source embeddings, (N, S, H) — H/2 each way when
              bidirectional, H otherwise; its final states per layer [→h; ←h] (and c) start
              the decoder (N, L, H)
    decoder   h_t = cell(x_t, h_{t−1}), x_t = e(y_{t−1}), or [e(y_{t−1}); h̃_{t−1}] with
              input feeding (Luong et al. 2015 §3.3), h̃_0 = 0
    attention c_t = Σ_s a_ts h_s, a_t = softmax over valid s of score(h_t, h_s)
    output    logits_t = W [h_t; c_t] + b, or with input feeding h̃_t = tanh(W_c [h_t; c_t] + b_c)
              and logits_t = W h̃_t + b; without attention logits_t = W h_t + b

Loss: cross-entropy averaged over the target tokens (N, T, V). Decoding: :meth:`Seq2Seq.greedy`
and :meth:`Seq2Seq.beam_search` (batched; GNMT's length penalty; n-best lists).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .layers import AdditiveAttention, DotAttention, Dropout, Embedding, Linear
from .losses import cross_entropy, log_softmax
from .models import Model, register
from .options import RecurrentOptions, make_recurrent


@dataclass
class Seq2SeqConfig(RecurrentOptions):
    src_vocab_size: int  # source token ids
    tgt_vocab_size: int  # target token ids (with <pad> 0, <bos> 2, <eos> 3)
    embedding_dim: int = 128  # size of a token vector (both sides)
    hidden_size: int = 256  # H of encoder and decoder
    num_layers: int = 1  # stacked layers, encoder and decoder alike
    cell: str = "gru"  # rnn | rnn-relu | irnn | lstm | gru | gru-after (rnnkit.options)
    attention: str = "dot"  # none | dot | general | additive
    dropout: float = 0.0  # on embeddings, between stacked layers and before the output
    teacher_forcing: float = 1.0  # probability of feeding the gold previous token in training
    bidirectional_encoder: bool = False  # encoder reads both ways, hidden_size/2 each; its
    #                                      final states, [forward; backward], start the decoder
    input_feed: bool = False  # Luong's input feeding: the decoder reads [y_{t−1}; h̃_{t−1}]
    select_metric: str = "loss"  # loss | bleu | chrf on dev: the best epoch (bleu, chrf: the
    #                              trainer's dev_scores give them)
    seed: int = 0  # initialisation, dropout and teacher-forcing seed
    dtype: str = "float32"  # float32 | float64


def gnmt_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty lp = ((5 + |Y|) / 6)^α (Wu et al. 2016); a finished hypothesis is
    ranked by log p(Y | X) / lp. α = 0: plain log-probability."""
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


@register
class Seq2Seq(Model):
    """Asynchronous sequence → sequence: see the module docstring for the equations. Teacher
    forcing feeds the gold previous token with probability ``teacher_forcing`` (1: always;
    without input feeding the decoder then runs as one sequence), else the model's own
    previous prediction (no gradient through that choice). Examples: (source ids, target ids)
    without <bos>/<eos>.
    """

    config_class = Seq2SeqConfig
    PAD, BOS, EOS = 0, 2, 3

    def __init__(self, config: Seq2SeqConfig):
        super().__init__(config)
        c = config
        if c.attention not in ("none", "dot", "general", "additive"):
            raise ValueError(f"unknown attention {c.attention!r}; expected none, dot, general "
                             "or additive")
        if not 0.0 <= c.teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing must be in [0, 1], got {c.teacher_forcing}")
        if c.select_metric not in ("loss", "bleu", "chrf"):
            raise ValueError(f"unknown select_metric {c.select_metric!r}; expected loss, bleu "
                             "or chrf")
        stepwise = c.teacher_forcing < 1 or c.input_feed
        for name in ("weight_drop", "recurrent_dropout"):
            if getattr(c, name) and stepwise:
                raise ValueError(f"{name} needs teacher_forcing=1 and no input_feed: such a "
                                 "decoder runs step by step, and would draw a mask per step")
        if c.input_feed and c.attention == "none":
            raise ValueError("input_feed feeds the attentional state: it needs attention")
        if c.bidirectional_encoder and (c.hidden_size % 2 or c.proj_size):
            raise ValueError("a bidirectional encoder runs hidden_size/2 units each way: "
                             f"hidden_size must be even and proj_size 0, got {c.hidden_size} "
                             f"and {c.proj_size}")
        L = self.layers
        L["src_embedding"] = Embedding(c.src_vocab_size, c.embedding_dim, 0, c.dtype, c.seed)
        L["tgt_embedding"] = Embedding(c.tgt_vocab_size, c.embedding_dim, 0, c.dtype,
                                       c.seed + 1)
        # The decoder starts from the encoder's final state: init_state is the encoder's.
        dirs = 2 if c.bidirectional_encoder else 1
        L["encoder"] = make_recurrent(c.cell, c.embedding_dim, c.hidden_size // dirs,
                                      c.num_layers, c, bidirectional=dirs == 2,
                                      dropout=c.dropout, dtype=c.dtype, seed=c.seed + 2)
        H = L["encoder"].output_size * dirs  # the states' size (P with a projection)
        self.feed_size = H if c.input_feed else 0
        L["decoder"] = make_recurrent(c.cell, c.embedding_dim + self.feed_size, c.hidden_size,
                                      c.num_layers, replace(c, init_state="zeros"),
                                      dropout=c.dropout, dtype=c.dtype, seed=c.seed + 3)
        if c.attention in ("dot", "general"):
            L["attention"] = DotAttention(H, kind=c.attention, dtype=c.dtype, seed=c.seed + 4)
        elif c.attention == "additive":
            L["attention"] = AdditiveAttention(H, H, H, dtype=c.dtype, seed=c.seed + 4)
        L["dropout"] = Dropout(c.dropout, seed=c.seed + 5, variational=c.variational)
        feat = 2 * H if c.attention != "none" else H
        if c.input_feed:
            L["combine"] = Linear(feat, H, dtype=c.dtype, seed=c.seed + 8)
            feat = H
        L["head"] = Linear(feat, c.tgt_vocab_size, dtype=c.dtype, seed=c.seed + 6)
        self._finish()
        self.rng = np.random.default_rng(c.seed + 7)

    @property
    def primary_metric(self) -> tuple[str, bool]:
        """Dev loss (lower is better) or BLEU / chrF (higher), as ``select_metric`` says."""
        return self.config.select_metric, self.config.select_metric != "loss"

    def rng_states(self) -> dict:
        return {**super().rng_states(), "_teacher": self.rng.bit_generator.state}

    def set_rng_states(self, states: dict) -> None:
        """Restore what :meth:`rng_states` returned, the teacher-forcing draw included."""
        states = dict(states)
        self.rng.bit_generator.state = states.pop("_teacher")
        super().set_rng_states(states)

    def example_length(self, example) -> int:
        """The source's token count (batches bucket by source length)."""
        return len(example[0])

    def collate(self, examples):
        """→ (src (N, S), src lengths (N,), tgt_in (N, T) = <bos> y, tgt_out (N, T) = y <eos>
        with −1 at padding)."""
        if not examples:
            raise ValueError("empty batch")
        slen = np.array([len(s) for s, _ in examples], dtype=np.int64)
        tlen = np.array([len(t) + 1 for _, t in examples], dtype=np.int64)
        if slen.min() < 1:
            raise ValueError("every source needs at least one token")
        n = len(examples)
        src = np.zeros((n, slen.max()), dtype=np.int64)
        tin = np.zeros((n, tlen.max()), dtype=np.int64)
        tout = np.full((n, tlen.max()), -1, dtype=np.int64)
        for i, (s, t) in enumerate(examples):
            src[i, : len(s)] = s
            tin[i, : len(t) + 1] = [self.BOS] + list(t)
            tout[i, : len(t) + 1] = list(t) + [self.EOS]
        return src, slen, tin, tout

    # ------------------------------------------------------------------ encoder
    def _encode(self, src, slen):
        """→ (encoder states (N, S, H), the decoder's initial state, source mask (N, S),
        cache)."""
        L = self.layers
        e, ecache = L["src_embedding"].forward(src)
        e, d1 = L["dropout"].forward(e)
        enc_out, state, rcache = L["encoder"].forward(e, lengths=slen,
                                                      inference=not self.training)
        mask = np.arange(src.shape[1])[None, :] < slen[:, None]
        return enc_out, _map(self._bridge, state), mask, (ecache, d1, rcache)

    def _encode_backward(self, d_enc_out, dstate, cache):
        L = self.layers
        ecache, d1, rcache = cache
        dx, _ = L["encoder"].backward(d_enc_out, _map(self._unbridge, dstate), rcache)
        L["src_embedding"].backward(L["dropout"].backward(dx, d1), ecache)

    def _bridge(self, x):
        """Final states (2L, N, H/2) of a bidirectional encoder, [l0 →, l0 ←, …] → each
        layer's [→; ←] (L, N, H); a unidirectional encoder's pass as they are."""
        if not self.config.bidirectional_encoder:
            return x
        return np.concatenate([x[0::2], x[1::2]], axis=2)

    def _unbridge(self, d):
        if not self.config.bidirectional_encoder or d is None:
            return d
        h = d.shape[2] // 2
        out = np.empty((2 * d.shape[0], d.shape[1], h), dtype=d.dtype)
        out[0::2], out[1::2] = d[:, :, :h], d[:, :, h:]
        return out

    # ------------------------------------------------------------------ output
    def _project(self, dec_out, enc_out, mask):
        """Decoder states (N, T, H) → (logits (N, T, V), h̃ (N, T, H) with input feeding else
        None, cache)."""
        L = self.layers
        acache = weights = ccache = ht = None
        feat = dec_out
        if "attention" in L:
            ctx, weights, acache = L["attention"].forward(dec_out, enc_out, enc_out, mask)
            feat = np.concatenate([dec_out, ctx], axis=2)
        if "combine" in L:
            pre, ccache = L["combine"].forward(feat)
            feat = ht = np.tanh(pre)
        feat, d2 = L["dropout"].forward(feat)
        logits, hcache = L["head"].forward(feat)
        return logits, ht, (acache, ccache, ht, d2, hcache, weights)

    def _project_backward(self, dlogits, cache, dfeed=None):
        """→ (d dec_out, d enc_out or None); ``dfeed``: ∂L/∂h̃ from the next step's input."""
        L = self.layers
        acache, ccache, ht, d2, hcache, _ = cache
        dfeat = L["dropout"].backward(L["head"].backward(dlogits, hcache), d2)
        if ccache is not None:
            if dfeed is not None:
                dfeat = dfeat + dfeed
            dfeat = L["combine"].backward(dfeat * (1 - ht * ht), ccache)
        if acache is None:
            return dfeat, None
        H = L["decoder"].output_size
        dq, dk, dv = L["attention"].backward(dfeat[:, :, H:], None, acache)
        return dfeat[:, :, :H] + dq, dk + dv

    # ------------------------------------------------------------------ decoder
    def _decode(self, enc_out, state, smask, tin):
        """The decoder over the target input ``tin`` (N, T) from the encoder's ``state``:
        (logits (N, T, V), cache). One sequence when each input is known (gold tokens, no
        input feeding); else step by step, with the previous step's prediction fed with
        probability 1 − ``teacher_forcing`` in training."""
        L, c = self.layers, self.config
        sampled = self.training and c.teacher_forcing < 1
        if not (sampled or c.input_feed):
            e, tcache = L["tgt_embedding"].forward(tin)
            dec_out, _, dcache = L["decoder"].forward(e, state, inference=not self.training)
            logits, _, pcache = self._project(dec_out, enc_out, smask)
            return logits, (tcache, dcache, pcache)
        n, T = tin.shape
        state = (state, self._first_feed(n, enc_out.dtype))
        token, steps, logits = tin[:, 0], [], []
        for t in range(T):
            step_logits, state, cache = self._step(token, state, enc_out, smask)
            steps.append(cache)
            logits.append(step_logits)
            if t + 1 < T:
                token = tin[:, t + 1]
                if sampled:
                    own = step_logits[:, 0].argmax(axis=1)
                    token = np.where(self.rng.random(n) < c.teacher_forcing, token, own)
        return np.concatenate(logits, axis=1), steps

    def _decode_backward(self, dlogits, cache):
        """→ (d encoder states or None, d initial state); adds the decoder's gradients."""
        L = self.layers
        if isinstance(cache, tuple):
            tcache, dcache, pcache = cache
            d_dec, d_enc = self._project_backward(dlogits, pcache)
            dx, dstate = L["decoder"].backward(d_dec, None, dcache)
            L["tgt_embedding"].backward(dx, tcache)
            return d_enc, dstate
        E = self.config.embedding_dim
        d_enc = dstate = dfeed = None
        for t in range(len(cache) - 1, -1, -1):
            tcache, dcache, pcache = cache[t]
            d_out, d_e = self._project_backward(dlogits[:, t:t + 1], pcache, dfeed)
            if d_e is not None:
                d_enc = d_e if d_enc is None else d_enc + d_e
            dx, dstate = L["decoder"].backward(d_out, dstate, dcache)
            L["tgt_embedding"].backward(dx[:, :, :E], tcache)
            dfeed = dx[:, :, E:] if self.feed_size else None
        return d_enc, dstate

    # ------------------------------------------------------------------ training
    def forward_backward(self, batch):
        """Mean cross-entropy over the target tokens of a batch, with teacher forcing as
        configured; adds every gradient (attention and encoder included); returns
        (loss · tokens, tokens).
        """
        src, slen, tin, tout = batch
        mask_t = tout >= 0
        n_tok = int(mask_t.sum())
        enc_out, state, smask, ecache = self._encode(src, slen)
        logits, dcache = self._decode(enc_out, state, smask, tin)
        loss, dlogits = cross_entropy(logits, tout, mask_t, reduction="mean")
        d_enc, dstate = self._decode_backward(dlogits, dcache)
        self._encode_backward(d_enc, dstate, ecache)
        return loss * n_tok, n_tok

    def __call__(self, src, src_lengths, tgt_in):
        """Inference as a function: src (N, S), src lengths (N,), tgt_in (N, T) = <bos> y →
        teacher-forced logits (N, T, V), in eval mode, keeping no cache."""
        return self._forced_logits(np.asarray(src), np.asarray(src_lengths), np.asarray(tgt_in))

    def _forced_logits(self, src, slen, tin):
        """Teacher-forced logits (N, T, V) in eval mode."""
        with self.evaluating():
            enc_out, state, smask, _ = self._encode(src, slen)
            return self._decode(enc_out, state, smask, tin)[0]

    def evaluate(self, batch):
        """Summed teacher-forced loss and token count of a batch (no gradients)."""
        src, slen, tin, tout = batch
        logits = self._forced_logits(src, slen, tin)
        mask = tout >= 0
        loss, _ = cross_entropy(logits, tout, mask, reduction="sum")
        return {"loss_sum": loss, "count": int(mask.sum())}

    def log_likelihood(self, src_ids: list[list[int]], tgt_ids: list[list[int]]) -> np.ndarray:
        """log p(y | x) = Σ_t log p(y_t | y_<t, x) over each target and its <eos>, under the
        distribution decoding draws from (no <pad>/<bos>), teacher-forced: (N,) float64."""
        src, slen, tin, tout = self.collate(list(zip(src_ids, tgt_ids, strict=True)))
        logits = self._forced_logits(src, slen, tin)
        n, t, v = logits.shape
        logp = log_softmax(self._decodable(logits.reshape(n * t, v).astype(np.float64)))
        picked = logp[np.arange(n * t), np.maximum(tout.reshape(-1), 0)].reshape(n, t)
        # summed left to right (cumsum), so the padding's zeros after a short target leave its
        # sum as it is alone; NumPy's pairwise sum regroups with the row's length
        return np.cumsum(np.where(tout >= 0, picked, 0.0), axis=1)[:, -1]

    # ------------------------------------------------------------------ decoding
    def _decodable(self, logits):
        """Decoding never emits <pad> or <bos>: they are inputs, not words."""
        logits = logits.copy()
        logits[:, [self.PAD, self.BOS]] = -np.inf
        return logits

    def _start(self, src_ids: list[list[int]]):
        """Encode sources for decoding: (encoder states, mask, decoder state (RNN state,
        h̃ or None))."""
        src, slen, _, _ = self.collate([(s, []) for s in src_ids])
        enc_out, state, smask, _ = self._encode(src, slen)
        return enc_out, smask, (state, self._first_feed(len(src_ids), enc_out.dtype))

    def _first_feed(self, n: int, dtype):
        """h̃_0 = 0 (N, H) with input feeding, else None."""
        return np.zeros((n, self.feed_size), dtype=dtype) if self.config.input_feed else None

    def _step(self, token, state, enc_out, smask):
        """One decoder step, token (N,) from ``state`` (RNN state, h̃ or None) → (logits
        (N, 1, V), next state, cache for :meth:`_decode_backward`; its last entry's last
        item is the attention weights (N, 1, S)). Training and decoding both take it."""
        L = self.layers
        rnn_state, feed = state
        e, tcache = L["tgt_embedding"].forward(token[:, None])
        x = e if feed is None else np.concatenate([e, feed[:, None]], axis=2)
        out, rnn_state, dcache = L["decoder"].forward(x, rnn_state,
                                                      inference=not self.training)
        logits, ht, pcache = self._project(out, enc_out, smask)
        return logits, (rnn_state, None if ht is None else ht[:, 0]), (tcache, dcache, pcache)

    @staticmethod
    def _rows(state, rows):
        """The decoder state of the given batch rows."""
        rnn, feed = state
        rnn = _map(lambda x: x[:, rows], rnn)
        return rnn, None if feed is None else feed[rows]

    def attention_map(self, src: list[int], max_len: int = 50) -> tuple[list[int], np.ndarray]:
        """Greedy translation of one source (ids) with its attention weights A (T_out, S): row t
        is the distribution over source positions the decoder read while choosing output t
        (the last row: while choosing <eos>, when it came)."""
        if "attention" not in self.layers:
            raise ValueError("this model has no attention (attention='none')")
        with self.evaluating():
            enc_out, smask, state = self._start([src])
            token, out, rows = np.array([self.BOS]), [], []
            for _ in range(max_len):
                logits, state, cache = self._step(token, state, enc_out, smask)
                rows.append(cache[-1][-1][:, 0])
                token = self._decodable(logits[:, 0]).argmax(axis=1)
                if token[0] == self.EOS:
                    break
                out.append(int(token[0]))
            return out, np.concatenate(rows, axis=0)

    def greedy(self, src_ids: list[list[int]], max_len: int = 50) -> list[list[int]]:
        """The most likely token at every step, until <eos> or ``max_len``; one list of target
        ids (without <bos>/<eos>) per source."""
        with self.evaluating():
            enc_out, smask, state = self._start(src_ids)
            n = len(src_ids)
            token = np.full(n, self.BOS, dtype=np.int64)
            out = [[] for _ in range(n)]
            done = np.zeros(n, dtype=bool)
            for _ in range(max_len):
                logits, state, _ = self._step(token, state, enc_out, smask)
                token = self._decodable(logits[:, 0]).argmax(axis=1)
                for i in np.flatnonzero(~done):
                    if token[i] == self.EOS:
                        done[i] = True
                    else:
                        out[i].append(int(token[i]))
                if done.all():
                    break
            return out

    def beam_search(self, src: list[int], beam_size: int = 5, max_len: int = 50,
                    length_penalty: float = 0.6) -> list[int]:
        """The best translation of one source (ids, without <bos>/<eos>) by
        :meth:`beam_search_batch`."""
        return self.beam_search_batch([src], beam_size, max_len, length_penalty)[0][0][0]

    def beam_search_batch(self, src_ids: list[list[int]], beam_size: int = 5,
                          max_len: int = 50, length_penalty: float = 0.6,
                          n_best: int = 1) -> list[list[tuple[list[int], float]]]:
        """Beam search over every source at once: each keeps the ``beam_size`` best partial
        translations by summed log-probability (rows i·B … i·B + B − 1 of one decoder batch);
        a hypothesis that draws <eos> is finished, ranked by log p / lp(length with <eos>)
        (:func:`gnmt_penalty`, α = ``length_penalty``); a source is done when it holds
        ``beam_size`` finished ones (at ``max_len`` its open ones compete too). Per source, its
        ``n_best`` best (target ids, ranking score), best first. A source's result does not
        depend on the others in the batch, up to its rows' rounding."""
        if beam_size < 1 or max_len < 1:
            raise ValueError(f"beam_size and max_len must be >= 1, got {beam_size}, {max_len}")
        if not 1 <= n_best <= beam_size:
            raise ValueError(f"n_best must be in [1, beam_size={beam_size}], got {n_best}")
        B, n = beam_size, len(src_ids)
        with self.evaluating():
            enc_out, smask, state = self._start(src_ids)
            rows = np.repeat(np.arange(n), B)
            enc_b, mask_b, state = enc_out[rows], smask[rows], self._rows(state, rows)
            hyps: list[list[list[int]]] = [[[] for _ in range(B)] for _ in range(n)]
            scores = np.full((n, B), -np.inf)
            scores[:, 0] = 0.0  # one start per source: its copies would only tie
            finished: list[list[tuple[list[int], float]]] = [[] for _ in range(n)]
            done = np.zeros(n, dtype=bool)
            tokens = np.full(n * B, self.BOS, dtype=np.int64)
            for _ in range(max_len):
                logits, state, _ = self._step(tokens, state, enc_b, mask_b)
                logp = log_softmax(self._decodable(logits[:, 0].astype(np.float64)))
                V = logp.shape[1]
                cand = (scores[:, :, None] + logp.reshape(n, B, V)).reshape(n, B * V)
                top = np.argpartition(-cand, 2 * B - 1, axis=1)[:, :2 * B]
                keep = np.zeros(n * B, dtype=np.int64)  # the row each next hypothesis extends
                tokens = np.full(n * B, self.EOS, dtype=np.int64)
                new_scores = np.full((n, B), -np.inf)
                for i in np.flatnonzero(~done):
                    # best first; ties by index, so that the order never depends on the batch
                    order = top[i][np.lexsort((top[i], -cand[i, top[i]]))]
                    alive: list[list[int]] = []
                    for k in order:
                        b, tok = divmod(int(k), V)
                        score = cand[i, k]
                        if not np.isfinite(score):
                            break  # only <pad>/<bos> (or a dead start's copies) are left
                        if tok == self.EOS:
                            finished[i].append((hyps[i][b],
                                                score / gnmt_penalty(len(hyps[i][b]) + 1,
                                                                     length_penalty)))
                        else:
                            r = len(alive)
                            keep[i * B + r], tokens[i * B + r] = i * B + b, tok
                            new_scores[i, r] = score
                            alive.append(hyps[i][b] + [tok])
                        if len(alive) == B:
                            break
                    hyps[i] = alive + [[] for _ in range(B - len(alive))]
                    if len(finished[i]) >= B or not alive:
                        done[i] = True
                scores = new_scores
                if done.all():
                    break
                state = self._rows(state, keep)
            for i in np.flatnonzero(~done):  # max_len reached: the open hypotheses compete
                finished[i] += [(h, s / gnmt_penalty(len(h), length_penalty))
                                for h, s in zip(hyps[i], scores[i], strict=True)
                                if np.isfinite(s)]
            return [[([int(t) for t in h], float(s)) for h, s in
                     sorted(f, key=lambda f: -f[1])[:n_best]] for f in finished]


def _map(fn, state):
    """``fn`` over a recurrent state: an array, or an LSTM's (h, c)."""
    return tuple(fn(x) for x in state) if isinstance(state, tuple) else fn(state)
