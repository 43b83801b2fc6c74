"""Diagnostics: numerical gradients for checking hand-written backward passes.

``numerical_gradient(f, a)`` is the centred finite difference
    ∂f/∂a_i ≈ (f(a + ε e_i) − f(a − ε e_i)) / 2ε,
whose error is O(ε²) from truncation plus O(u/ε) from rounding (u the unit round-off); in
float64 with ε = 1e-6 both are ≲ 1e-10 relative for well-scaled f.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Centred finite-difference gradient of the scalar ``f()`` with respect to the array ``a``.

    ``a`` is perturbed in place, one element at a time, and restored exactly; ``f`` must read it.
    Returns an array of a's shape (float64).
    """
    grad = np.zeros(a.shape, dtype=np.float64)
    flat = a.reshape(-1)
    if not np.shares_memory(flat, a):
        raise ValueError("numerical_gradient needs an array whose reshape is a view")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        grad.reshape(-1)[i] = (fp - fm) / (2 * eps)
    return grad
