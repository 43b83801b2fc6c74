"""Optimisers over named parameter dicts (``params[name]`` updated in place from ``grads[name]``).

Only Adam so far (the demo's); SGD, AdamW, RMSprop, Adagrad, clipping and schedules come with
the training issue.
"""

from __future__ import annotations

import numpy as np


class Adam:
    """Adam (Kingma & Ba 2015), as torch.optim.Adam without weight decay:

        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
        θ ← θ − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
    """

    def __init__(self, groups: list[tuple[dict, dict]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.groups = groups
        self.lr, self.betas, self.eps = lr, betas, eps
        self.t = 0
        self.m = [{k: np.zeros_like(p) for k, p in params.items()} for params, _ in groups]
        self.v = [{k: np.zeros_like(p) for k, p in params.items()} for params, _ in groups]

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for (params, grads), m, v in zip(self.groups, self.m, self.v, strict=True):
            for name, p in params.items():
                g = grads[name]
                m[name] *= b1
                m[name] += (1 - b1) * g
                v[name] *= b2
                v[name] += (1 - b2) * g * g
                p -= self.lr * (m[name] / c1) / (np.sqrt(v[name] / c2) + self.eps)
