"""Feed-forward layers with the same forward/backward contract as the recurrent layers.

Only :class:`Linear` so far (the read-out of the demo); Embedding, Dropout and attention come
with the training issue.
"""

from __future__ import annotations

import numpy as np

from .backend import resolve_dtype


class Linear:
    """y = x Wᵀ + b over the last axis: x (..., in_features) → y (..., out_features).

    Parameters ``weight`` (out_features, in_features) and ``bias`` (out_features,), initialised
    U(−1/√in, 1/√in) as PyTorch does. Backward: dx = dy W, dW += dyᵀ x, db += Σ dy.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: str = "float32", seed: int | None = None):
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = resolve_dtype(dtype)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(in_features)
        self.params = {"weight": rng.uniform(-k, k, (out_features, in_features)).astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-k, k, out_features).astype(self.dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.training = True

    def zero_grad(self) -> None:
        for g in self.grads.values():
            g.fill(0)

    def forward(self, x):
        """Returns ``(y, cache)``."""
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input (..., {self.in_features}), got shape "
                             f"{x.shape}")
        x = x.astype(self.dtype, copy=False)
        y = x @ self.params["weight"].T
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
        dy2 = dy.reshape(-1, self.out_features)
        self.grads["weight"] += dy2.T @ x.reshape(-1, self.in_features)
        if "bias" in self.params:
            self.grads["bias"] += dy2.sum(axis=0)
        return dy @ self.params["weight"]
