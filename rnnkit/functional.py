"""Element-wise functions of the cells, numerically stable, in one place.

σ(x) = 1 / (1 + e^{−x}) is computed as ½ (1 + tanh(x/2)): the same value, but it never
overflows (``exp`` of a large negative argument would) and costs one transcendental call.
Derivatives are written in terms of the function's *output*, which the caches keep:
σ'(x) = σ(x)(1 − σ(x)), tanh'(x) = 1 − tanh²(x), relu'(x) = [relu(x) > 0].
"""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = ½ (1 + tanh(x/2)), element-wise, same shape and dtype as x."""
    y = np.multiply(x, 0.5)
    np.tanh(y, out=y)
    y += 1.0
    y *= 0.5
    return y


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh(x), element-wise."""
    return np.tanh(x)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), element-wise."""
    return np.maximum(x, 0)


def dsigmoid_from_output(y: np.ndarray) -> np.ndarray:
    """σ'(x) given y = σ(x): y (1 − y)."""
    return y * (1 - y)


def dtanh_from_output(y: np.ndarray) -> np.ndarray:
    """tanh'(x) given y = tanh(x): 1 − y²."""
    return 1 - y * y


def drelu_from_output(y: np.ndarray) -> np.ndarray:
    """relu'(x) given y = relu(x): 1 where y > 0, else 0 (the sub-gradient 0 at x = 0)."""
    return (y > 0).astype(y.dtype)
