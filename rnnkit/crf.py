"""A linear-chain conditional random field over per-token scores: the negative log-likelihood
and its gradient by the forward–backward algorithm in log space, Viterbi decoding, and hard
constraints from a tag scheme (BIO, BIOES, BMES). The derivation is in docs/crf.md.

Shapes: N sentences, T steps, K tags; emissions E (N, T, K) (a tagger's logits), lengths (N,)
(each ≥ 1; steps past a sentence's end are ignored), transitions A (K, K) (A[i, j] scores tag i
followed by j), start and end scores s, e (K,). A tag sequence y of length n scores

    S(y) = s[y_1] + Σ_{t=1..n} E_t[y_t] + Σ_{t=2..n} A[y_{t−1}, y_t] + e[y_n]

and p(y) = exp S(y) / Z, Z = Σ_y' exp S(y'). With α_1 = s + E_1,
α_t[j] = logsumexp_i(α_{t−1}[i] + A[i, j]) + E_t[j], log Z = logsumexp(α_n + e); with β_n = e,
β_t[i] = logsumexp_j(A[i, j] + E_{t+1}[j] + β_{t+1}[j]). Then ∂ log Z/∂E_t[j] = p(y_t = j) =
exp(α_t[j] + β_t[j] − log Z), ∂ log Z/∂A[i, j] = Σ_t exp(α_{t−1}[i] + A[i, j] + E_t[j] + β_t[j]
− log Z), ∂ log Z/∂s = p(y_1), ∂ log Z/∂e = p(y_n); ∂S(y)/∂θ counts y's own terms.

Constraints enter as −∞ scores (the ``allowed`` masks of rnnkit.schemes.scheme_constraints): a
forbidden transition, start or end gets probability 0, and Viterbi never takes it. The layer
applies them when decoding only: real corpora hold a few invalid gold sequences (an I- after
an O), whose likelihood under the constraints would be 0 and whose loss infinite; trained
without them, the transitions learn to score such steps low, and decoding rules them out.
"""

from __future__ import annotations

import numpy as np

from .layers import Layer

Array = np.ndarray
NEG = -np.inf


def _logsumexp(a: Array, axis: int) -> Array:
    """log Σ exp over ``axis``; −∞ where every term is −∞ (no NaN)."""
    m = a.max(axis=axis, keepdims=True)
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.exp(a - m_safe).sum(axis=axis, keepdims=True)) + m_safe
    return np.squeeze(out, axis=axis)


def _alive(lengths: Array, t: int) -> Array:
    """(N, 1) True for sentences that have step t."""
    return (lengths > t)[:, None]


def forward_algorithm(E: Array, lengths: Array, A: Array, s: Array, e: Array):
    """→ (log Z (N,), α (N, T, K)); α_t is carried unchanged past a sentence's end."""
    n, t_len, _ = E.shape
    alpha = np.empty_like(E)
    alpha[:, 0] = s + E[:, 0]
    for t in range(1, t_len):
        new = _logsumexp(alpha[:, t - 1, :, None] + A, axis=1) + E[:, t]
        alpha[:, t] = np.where(_alive(lengths, t), new, alpha[:, t - 1])
    return _logsumexp(alpha[:, -1] + e, axis=1), alpha


def backward_algorithm(E: Array, lengths: Array, A: Array, e: Array) -> Array:
    """β (N, T, K): β at each sentence's last step is e; meaningless past the end."""
    n, t_len, k = E.shape
    beta = np.empty_like(E)
    beta[:, -1] = e
    for t in range(t_len - 2, -1, -1):
        rec = _logsumexp(A[None] + (E[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
        last = (lengths == t + 1)[:, None]
        beta[:, t] = np.where(last, e, np.where(_alive(lengths, t + 1), rec, e))
    return beta


def path_score(E: Array, lengths: Array, tags: Array, A: Array, s: Array, e: Array) -> Array:
    """S(y) (N,) of the given tag ids (N, T) (entries past the end ignored)."""
    n, t_len, _ = E.shape
    rows = np.arange(n)
    y = np.where(np.arange(t_len)[None, :] < lengths[:, None], tags, 0)
    score = s[y[:, 0]] + e[y[rows, lengths - 1]]
    for t in range(t_len):
        alive = lengths > t
        score = score + np.where(alive, E[rows, t, y[:, t]], 0.0)
        if t:
            score = score + np.where(alive, A[y[:, t - 1], y[:, t]], 0.0)
    return score


def nll(E: Array, lengths: Array, tags: Array, A: Array, s: Array, e: Array):
    """−log p(y) per sentence (N,) and its gradients: → (loss, dE, dA, ds, de), the
    gradients of Σ_n loss_n."""
    n, t_len, k = E.shape
    log_z, alpha = forward_algorithm(E, lengths, A, s, e)
    beta = backward_algorithm(E, lengths, A, e)
    loss = log_z - path_score(E, lengths, tags, A, s, e)
    steps = np.arange(t_len)[None, :] < lengths[:, None]  # (N, T)
    with np.errstate(invalid="ignore"):
        marg = np.exp(alpha + beta - log_z[:, None, None])
    marg = np.where(steps[..., None], np.nan_to_num(marg), 0.0)
    dE = marg.copy()
    dA = np.zeros_like(A)
    for t in range(1, t_len):
        alive = steps[:, t]
        if not alive.any():
            break
        pair = (alpha[alive, t - 1, :, None] + A[None] + (E[alive, t] + beta[alive, t])[:, None]
                - log_z[alive, None, None])
        dA += np.exp(pair).sum(axis=0)
    ds = marg[:, 0].sum(axis=0)
    rows = np.arange(n)
    de = marg[rows, lengths - 1].sum(axis=0)
    # Minus the gold path's own counts.
    y = np.where(steps, tags, 0)
    np.add.at(dE, (rows[:, None].repeat(t_len, 1)[steps], np.nonzero(steps)[1], y[steps]), -1.0)
    np.add.at(ds, y[:, 0], -1.0)
    np.add.at(de, y[rows, lengths - 1], -1.0)
    for t in range(1, t_len):
        alive = steps[:, t]
        np.add.at(dA, (y[alive, t - 1], y[alive, t]), -1.0)
    return loss, dE, dA, ds, de


def viterbi(E: Array, lengths: Array, A: Array, s: Array, e: Array) -> Array:
    """The highest-scoring tag ids (N, T), −1 past each sentence's end."""
    n, t_len, k = E.shape
    delta = s + E[:, 0]
    back = np.zeros((n, t_len, k), dtype=np.int64)
    for t in range(1, t_len):
        cand = delta[:, :, None] + A  # (N, K_from, K_to)
        best = cand.argmax(axis=1)
        new = np.take_along_axis(cand, best[:, None, :], axis=1)[:, 0] + E[:, t]
        alive = _alive(lengths, t)
        back[:, t] = best
        delta = np.where(alive, new, delta)
    last = (delta + e).argmax(axis=1)
    out = np.full((n, t_len), -1, dtype=np.int64)
    for i in range(n):
        y = last[i]
        for t in range(lengths[i] - 1, -1, -1):
            out[i, t] = y
            y = back[i, t, y]
    return out


def constraint_scores(allowed: Array, start: Array, end: Array):
    """The masks as additive scores: 0 where allowed, −∞ where not."""
    return tuple(np.where(m, 0.0, NEG) for m in (allowed, start, end))


class CRF(Layer):
    """The CRF as a layer: parameters ``transitions`` (K, K), ``start`` (K,), ``end`` (K,)
    (zeros at first), plus fixed constraint scores (0 / −∞) from :func:`scheme_constraints`.

        loss, cache = crf.forward(E, lengths, tags)   # Σ_n −log p(y_n), a float
        dE = crf.backward(1.0, cache)                 # adds into grads
        tags = crf.decode(E, lengths)                 # Viterbi, −1 past the end
    """

    def __init__(self, num_tags: int, constraints: tuple | None = None,
                 dtype: str = "float32"):
        self.dtype = np.dtype(dtype)
        self.params = {name: np.zeros(shape, self.dtype) for name, shape in
                       (("transitions", (num_tags, num_tags)), ("start", (num_tags,)),
                        ("end", (num_tags,)))}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.mask = None if constraints is None else constraint_scores(*constraints)

    def _scores(self, constrained: bool = False):
        p = self.params
        A, s, e = (p[k].astype(np.float64) for k in ("transitions", "start", "end"))
        if constrained and self.mask is not None:
            A, s, e = A + self.mask[0], s + self.mask[1], e + self.mask[2]
        return A, s, e

    def forward(self, E: Array, lengths: Array, tags: Array):
        """Σ_n −log p(y_n) of the gold tags (N, T) under emissions E (N, T, K), and the cache
        (its gradients) for :meth:`backward`. Unconstrained: see the module docstring."""
        loss, dE, dA, ds, de = nll(E.astype(np.float64), lengths, tags, *self._scores())
        return float(loss.sum()), (dE, dA, ds, de)

    def backward(self, dloss: float, cache) -> Array:
        """Adds dloss · ∂L/∂(transitions, start, end) into ``grads``; returns dloss · ∂L/∂E."""
        dE, dA, ds, de = cache
        g = self.grads
        g["transitions"] += dloss * np.nan_to_num(dA).astype(self.dtype)
        g["start"] += dloss * ds.astype(self.dtype)
        g["end"] += dloss * de.astype(self.dtype)
        return (dloss * dE).astype(self.dtype)

    def decode(self, E: Array, lengths: Array) -> Array:
        """The Viterbi tag ids (N, T) under the scheme's constraints, −1 past the end."""
        return viterbi(E.astype(np.float64), lengths, *self._scores(constrained=True))
