"""Feed-forward layers with the same forward/backward contract as the recurrent layers.

``y, cache = layer.forward(x)``; ``dx = layer.backward(dy, cache)`` adds parameter gradients
into ``layer.grads`` (parameters in ``layer.params``, PyTorch's names). No state is kept
between the two calls.
"""

from __future__ import annotations

import numpy as np

from . import blas
from .backend import claim, resolve_dtype

Array = np.ndarray


def _positive_int(name: str, v) -> int:
    if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _mm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (..., K) @ w (K, M) → (..., M) as one 2-D product: NumPy runs a 3-D @ 2-D matmul as
    one small GEMM per leading index, 3–5× slower for a (64, 12, 512) @ (512, 12895) head."""
    return blas.matmul(x.reshape(-1, x.shape[-1]), w).reshape(x.shape[:-1] + (w.shape[1],))


def _tmm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ over every leading index of aᵀ b: a (..., I), b (..., J) → (I, J), one 2-D product
    (``einsum`` would not call BLAS for it)."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


class Layer:
    """Shared housekeeping: ``params``/``grads`` dicts, ``zero_grad``, train/eval modes."""

    params: dict[str, Array]
    grads: dict[str, Array]
    training: bool = True

    def _init_grads(self) -> None:
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def zero_grad(self) -> None:
        """Set every gradient in ``grads`` to zero."""
        for g in self.grads.values():
            g.fill(0)

    def train(self, mode: bool = True):
        """Training mode (dropout active); returns the layer."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (no dropout); returns the layer."""
        return self.train(False)


class Linear(Layer):
    """y = x Wᵀ + b over the last axis: x (..., in_features) → y (..., out_features).

    Parameters ``weight`` (out_features, in_features) and ``bias`` (out_features,), initialised
    U(−1/√in, 1/√in) as PyTorch does. Backward: dx = dy W, dW += dyᵀ x, db += Σ dy.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: str = "float32", seed: int | None = None):
        self.in_features = _positive_int("in_features", in_features)
        self.out_features = _positive_int("out_features", out_features)
        self.dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(in_features)
        self.params = {"weight": rng.uniform(-k, k, claim((out_features, in_features))).astype(
            self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-k, k, claim((out_features,))).astype(self.dtype)
        self._init_grads()

    def forward(self, x):
        """Returns ``(y, cache)``."""
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input (..., {self.in_features}), got shape "
                             f"{x.shape}")
        x = x.astype(self.dtype, copy=False)
        y = _mm(x, self.params["weight"].T)
        if "bias" in self.params:
            y += self.params["bias"]
        return y, x

    def backward(self, dy, cache):
        """Adds dW, db into ``grads``; returns dx of x's shape."""
        x = cache
        dy = np.asarray(dy, dtype=self.dtype)
        expected = x.shape[:-1] + (self.out_features,)
        if dy.shape != expected:
            raise ValueError(f"dy must have shape {expected}, got {dy.shape}")
        self.grads["weight"] += _tmm(dy, x)
        if "bias" in self.params:
            self.grads["bias"] += dy.reshape(-1, self.out_features).sum(axis=0)
        return _mm(dy, self.params["weight"])


class Embedding(Layer):
    """y[..., :] = W[ids[...], :]: ids (...) integers in [0, V) → y (..., E).

    ``weight`` (V, E) ~ N(0, 1) as PyTorch; the row ``padding_idx`` starts at zero and never
    receives a gradient. Backward scatters dy into the rows used, dW[ids] += dy (repeated ids
    accumulate), without forming a dense V×E temporary.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 dtype: str = "float32", seed: int | None = None):
        self.num_embeddings = _positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        if padding_idx is not None and not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"padding_idx must be in [-{num_embeddings}, {num_embeddings}), "
                             f"got {padding_idx}")
        self.padding_idx = None if padding_idx is None else int(padding_idx) % num_embeddings
        self.dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        w = rng.standard_normal(claim((num_embeddings, embedding_dim))).astype(self.dtype)
        if self.padding_idx is not None:
            w[self.padding_idx] = 0
        self.params = {"weight": w}
        self._init_grads()

    def forward(self, ids):
        """Returns ``(y, cache)``: y (..., E) = the rows of ``weight`` the ids pick."""
        ids = np.asarray(ids)
        if not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"Embedding expects integer ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise ValueError(f"id {bad} out of range for an Embedding of "
                             f"num_embeddings={self.num_embeddings}")
        return self.params["weight"][ids], ids

    def backward(self, dy, cache):
        """Adds into ``grads["weight"]``; ids have no gradient (returns None)."""
        ids = cache
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != ids.shape + (self.embedding_dim,):
            raise ValueError(f"dy must have shape {ids.shape + (self.embedding_dim,)}, "
                             f"got {dy.shape}")
        flat = ids.reshape(-1)
        rows = dy.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = flat != self.padding_idx
            flat, rows = flat[keep], rows[keep]
        np.add.at(self.grads["weight"], flat, rows)
        return None


class Dropout(Layer):
    """Inverted dropout: in training y = x ⊙ m / (1 − p) with m ~ Bernoulli(1 − p) from the
    layer's seeded generator; in eval mode y = x. Backward: dx = dy ⊙ m / (1 − p).
    ``variational`` (Gal & Ghahramani 2016, "locked" dropout): on x (N, T, F) one mask
    (N, 1, F) for every step of a sequence, so a unit is dropped for the whole sequence."""

    def __init__(self, p: float = 0.5, seed: int | None = None, variational: bool = False):
        if isinstance(p, bool) or not (isinstance(p, int | float) and 0.0 <= p < 1.0):
            raise ValueError(f"dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.variational = bool(variational)
        self.rng = np.random.default_rng(seed)
        self.params, self.grads = {}, {}

    def forward(self, x):
        """Returns ``(y, cache)``: in training y = x ⊙ m / (1 − p) with m ~ Bernoulli(1 − p)
        (seeded; shared over axis 1 when variational and x has 3 axes); in eval mode y = x.
        """
        x = np.asarray(x)
        if not self.training or self.p == 0.0:
            return x, None
        shape = x.shape
        if self.variational and x.ndim == 3:
            shape = (x.shape[0], 1, x.shape[2])
        mask = (self.rng.random(shape) >= self.p).astype(x.dtype) / (1.0 - self.p)
        return x * mask, mask

    def backward(self, dy, cache):
        """dx = dy ⊙ m / (1 − p) with the forward's mask (dy in eval mode)."""
        return dy if cache is None else dy * cache


class TokenDropout(Layer):
    """Word dropout (Iyyer et al. 2015): in training each token id other than padding becomes
    ``unk`` with probability p, from the layer's seeded generator; in eval mode ids pass
    unchanged. Ids in (any shape), ids out; no parameters, nothing to backpropagate."""

    def __init__(self, p: float = 0.0, unk: int = 1, padding: int = 0,
                 seed: int | None = None):
        if isinstance(p, bool) or not (isinstance(p, int | float) and 0.0 <= p < 1.0):
            raise ValueError(f"word_dropout must be a number in [0, 1), got {p!r}")
        self.p, self.unk, self.padding = float(p), int(unk), int(padding)
        self.rng = np.random.default_rng(seed)
        self.params, self.grads = {}, {}

    def forward(self, ids):
        """ids with some replaced by ``unk`` (training, p > 0), else ids."""
        if not self.training or self.p == 0.0:
            return ids
        drop = (self.rng.random(ids.shape) < self.p) & (ids != self.padding)
        return np.where(drop, self.unk, ids)


def _masked_softmax(scores: Array, mask: Array | None) -> Array:
    """Softmax over the last axis; positions where mask is False get weight 0."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    e = np.exp(scores - m)
    return e / e.sum(axis=-1, keepdims=True)


def _check_attention(query, keys, values, mask, q_size, k_size):
    query, keys = np.asarray(query), np.asarray(keys)
    values = keys if values is None else np.asarray(values)
    if query.ndim != 3 or query.shape[2] != q_size:
        raise ValueError(f"query must be (N, Tq, {q_size}), got {query.shape}")
    n = query.shape[0]
    if keys.ndim != 3 or keys.shape[0] != n or keys.shape[2] != k_size:
        raise ValueError(f"keys must be (N={n}, S, {k_size}), got {keys.shape}")
    if values.ndim != 3 or values.shape[:2] != keys.shape[:2]:
        raise ValueError(f"values must be (N, S, Dv) = ({n}, {keys.shape[1]}, Dv), got "
                         f"{values.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != keys.shape[:2]:
            raise ValueError(f"mask must be (N, S) = {keys.shape[:2]}, got {mask.shape}")
        if not mask.any(axis=1).all():
            raise ValueError("every row of mask needs at least one valid (True) position")
        mask = mask[:, None, :]
    return query, keys, values, mask


class DotAttention(Layer):
    """Luong attention. scores e = q kᵀ (``kind="dot"``, optionally / √H with ``scale=True``)
    or e = q W kᵀ (``kind="general"``, ``weight`` (Hq, Hk)); a = softmax(e) over the valid
    source positions; context c = a v.

    query (N, Tq, Hq), keys (N, S, Hk), values (N, S, Dv) (default: the keys), mask (N, S)
    True where valid → context (N, Tq, Dv), weights a (N, Tq, S).
    Backward (dc, da): da += dc vᵀ, dv = aᵀ dc, de = a ⊙ (da − Σ_s a da), dq = de k (Wᵀ),
    dk = deᵀ q (W).
    """

    def __init__(self, query_size: int, key_size: int | None = None, kind: str = "dot",
                 scale: bool = False, dtype: str = "float32", seed: int | None = None):
        if kind not in ("dot", "general"):
            raise ValueError(f"unknown attention kind {kind!r}; expected 'dot' or 'general'")
        self.query_size = _positive_int("query_size", query_size)
        self.key_size = self.query_size if key_size is None else _positive_int("key_size",
                                                                                  key_size)
        if kind == "dot" and self.key_size != self.query_size:
            raise ValueError(f"dot attention needs key_size == query_size, got "
                             f"{self.key_size} and {self.query_size}")
        self.kind, self.scale = kind, bool(scale)
        self.dtype = resolve_dtype(dtype)
        self.params = {}
        if kind == "general":
            rng = np.random.default_rng(seed)
            k = 1.0 / np.sqrt(self.key_size)
            self.params["weight"] = rng.uniform(-k, k, claim((self.query_size,
                                                             self.key_size))).astype(
                self.dtype)
        self._init_grads()

    def forward(self, query, keys, values=None, mask=None):
        """Returns ``(context, weights, cache)``."""
        q, k, v, m = _check_attention(query, keys, values, mask, self.query_size, self.key_size)
        qw = _mm(q, self.params["weight"]) if self.kind == "general" else q
        s = 1.0 / np.sqrt(self.key_size) if self.scale else 1.0
        a = _masked_softmax((qw @ k.transpose(0, 2, 1)) * s, m)
        return a @ v, a, (q, qw, k, v, a, s)

    def backward(self, dcontext, dweights, cache):
        """Returns (dquery, dkeys, dvalues); ``dweights`` may be None."""
        q, qw, k, v, a, s = cache
        da = dcontext @ v.transpose(0, 2, 1)
        if dweights is not None:
            da = da + dweights
        dv = a.transpose(0, 2, 1) @ dcontext
        de = a * (da - (a * da).sum(axis=-1, keepdims=True)) * s
        dqw = de @ k
        dk = de.transpose(0, 2, 1) @ qw
        if self.kind == "general":
            w = self.params["weight"]
            self.grads["weight"] += _tmm(q, dqw)
            return _mm(dqw, w.T), dk, dv
        return dqw, dk, dv


class AdditiveAttention(Layer):
    """Bahdanau attention: e_{ts} = vᵀ tanh(W_q q_t + W_k k_s + b), a = softmax(e) over the
    valid source positions, context c_t = Σ_s a_{ts} v_s.

    Parameters ``query_weight`` (A, Hq), ``key_weight`` (A, Hk), ``bias`` (A,), ``v`` (A,).
    Shapes as :class:`DotAttention`. Backward: with u = tanh(·) (N, Tq, S, A),
    du = de ⊙ v ⊙ (1 − u²); dW_q = Σ (Σ_s du)ᵀ q, dW_k = Σ (Σ_t du)ᵀ k, dv = Σ de u.
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int,
                 dtype: str = "float32", seed: int | None = None):
        self.query_size = _positive_int("query_size", query_size)
        self.key_size = _positive_int("key_size", key_size)
        self.attention_size = _positive_int("attention_size", attention_size)
        self.dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        A = attention_size
        claim((A * (query_size + key_size + 2),))
        self.params = {
            "query_weight": rng.uniform(-1, 1, (A, query_size)).astype(self.dtype)
            / np.sqrt(query_size),
            "key_weight": rng.uniform(-1, 1, (A, key_size)).astype(self.dtype) / np.sqrt(key_size),
            "bias": np.zeros(A, dtype=self.dtype),
            "v": rng.uniform(-1, 1, A).astype(self.dtype) / np.sqrt(A),
        }
        self._init_grads()

    def forward(self, query, keys, values=None, mask=None):
        """Returns ``(context, weights, cache)``."""
        q, k, v, m = _check_attention(query, keys, values, mask, self.query_size, self.key_size)
        p = self.params
        pq = _mm(q, p["query_weight"].T)  # (N, Tq, A)
        pk = _mm(k, p["key_weight"].T) + p["bias"]  # (N, S, A)
        u = np.tanh(pq[:, :, None, :] + pk[:, None, :, :])  # (N, Tq, S, A)
        a = _masked_softmax(u @ p["v"], m)
        return a @ v, a, (q, k, v, u, a)

    def backward(self, dcontext, dweights, cache):
        """Returns (dquery, dkeys, dvalues); ``dweights`` may be None."""
        q, k, v, u, a = cache
        p, g = self.params, self.grads
        da = dcontext @ v.transpose(0, 2, 1)
        if dweights is not None:
            da = da + dweights
        dv = a.transpose(0, 2, 1) @ dcontext
        de = a * (da - (a * da).sum(axis=-1, keepdims=True))  # (N, Tq, S)
        g["v"] += de.reshape(-1) @ u.reshape(-1, u.shape[-1])
        du = de[..., None] * p["v"] * (1 - u * u)  # (N, Tq, S, A)
        dpq = du.sum(axis=2)  # (N, Tq, A)
        dpk = du.sum(axis=1)  # (N, S, A)
        g["query_weight"] += _tmm(dpq, q)
        g["key_weight"] += _tmm(dpk, k)
        g["bias"] += dpk.sum(axis=(0, 1))
        return _mm(dpq, p["query_weight"]), _mm(dpk, p["key_weight"]), dv
