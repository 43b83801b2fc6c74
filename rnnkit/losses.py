"""Losses: each returns ``(loss, dprediction)``.

Only the mean squared error so far (the demo's regression target); the masked softmax
cross-entropy of SPEC §1 comes with the training issue.
"""

from __future__ import annotations

import numpy as np


def mse_loss(pred, target) -> tuple[float, np.ndarray]:
    """L = (1/M) Σ (pred − target)² over all M elements; dL/dpred = 2 (pred − target) / M."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape}")
    if pred.size == 0:
        raise ValueError("mse_loss of an empty batch")
    diff = pred - target
    return float(np.mean(diff * diff)), (2.0 / diff.size) * diff
