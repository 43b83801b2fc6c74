"""Generated sequence tasks.

The adding problem (Hochreiter & Schmidhuber 1997, in the form of Arjovsky, Shah & Bengio 2016):
each step carries (value ∈ U[0, 1], marker ∈ {0, 1}); exactly two steps are marked, one in each
half of the sequence; the target is the sum of the two marked values. Always predicting the mean
sum 1 gives MSE = Var(u₁ + u₂) = 1/6 ≈ 0.167, the baseline to beat.
"""

from __future__ import annotations

import numpy as np

ADDING_BASELINE_MSE = 1.0 / 6.0


def adding_problem(n: int, length: int, rng: np.random.Generator,
                   dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Returns x (n, length, 2) and y (n, 1)."""
    if length < 2:
        raise ValueError(f"the adding problem needs length >= 2, got {length}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    x = np.zeros((n, length, 2), dtype=dtype)
    x[:, :, 0] = rng.uniform(0, 1, (n, length))
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    rows = np.arange(n)
    x[rows, first, 1] = 1
    x[rows, second, 1] = 1
    y = (x[rows, first, 0] + x[rows, second, 0])[:, None]
    return x, y.astype(dtype)
