"""Losses: each returns ``(loss, dprediction)``.

Cross-entropy follows the notes (SPEC §1): L = Σ_t L_t with L_t = −y_tᵀ log ŷ_t and
ŷ_t = softmax(z_t), computed through log-softmax (log ŷ = z − max z − log Σ exp(z − max z)) so
that no exponential overflows; padded positions (``mask`` False) contribute nothing.
"""

from __future__ import annotations

import numpy as np

REDUCTIONS = ("sum", "mean", "sequence_mean")


def log_softmax(z: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, stable for any finite z."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN logits give NaN, reported later
        m = z.max(axis=-1, keepdims=True)
        s = z - m
        return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def cross_entropy(logits, targets, mask=None, reduction: str = "mean",
                  label_smoothing: float = 0.0, class_weights=None) -> tuple[float, np.ndarray]:
    """Softmax cross-entropy over the last axis of ``logits``.

    logits (..., V) — e.g. (N, T, V) for sequences or (N, V) for classes; targets (...) integer
    classes in [0, V) (any value where masked out); mask (...) True where the position counts.
    Per position, with smoothing ε and class weights w (default 1):
        ℓ = (1 − ε) w_y (−log ŷ_y) + (ε / V) Σ_c w_c (−log ŷ_c),
        ∂ℓ/∂z = (Σ_c q_c) ŷ − q,  q = (1 − ε) w_y e_y + (ε / V) w.
    Reductions: ``"sum"`` Σ ℓ (the notes' L); ``"mean"`` Σ ℓ / Σ w_y over counted positions (the
    mean per token, as torch.nn.functional.cross_entropy); ``"sequence_mean"`` Σ ℓ / N, the
    notes' per-sequence L averaged over the batch (N = logits.shape[0]).
    Returns ``(loss, dlogits)`` with dlogits of the logits' shape and dtype.
    """
    z = np.asarray(logits)
    if not np.issubdtype(z.dtype, np.floating):
        raise TypeError(f"logits must be floating point, got dtype {z.dtype}")
    if z.ndim < 2:
        raise ValueError(f"logits must be (..., V) with a batch axis, got shape {z.shape}")
    y = np.asarray(targets)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"targets must be integer class ids, got dtype {y.dtype}")
    if y.shape != z.shape[:-1]:
        raise ValueError(f"targets must have shape {z.shape[:-1]} (logits without the class "
                         f"axis), got {y.shape}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    V = z.shape[-1]
    m = np.ones(y.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != y.shape:
        raise ValueError(f"mask must have shape {y.shape}, got {m.shape}")
    if z.size == 0 or not m.any():
        raise ValueError("cross_entropy of an empty batch (no position is counted)")
    counted = y[m]
    if counted.min() < 0 or counted.max() >= V:
        bad = counted.min() if counted.min() < 0 else counted.max()
        raise ValueError(f"target class {bad} out of range [0, {V})")
    w = None
    if class_weights is not None:
        w = np.asarray(class_weights, dtype=z.dtype)
        if w.shape != (V,):
            raise ValueError(f"class_weights must have shape ({V},), got {w.shape}")
    yc = np.where(m, y, 0)
    eps = float(label_smoothing)
    if not eps and w is None:
        return _plain_cross_entropy(z, yc, m, reduction)
    logp = log_softmax(z)
    q = np.zeros_like(z)
    np.put_along_axis(q, yc[..., None], 1.0 - eps, axis=-1)
    if w is not None:
        q *= w
    if eps:
        q += (eps / V) * (w if w is not None else 1.0)
    q *= m[..., None]
    loss = -(q * logp).sum()
    wy = m if w is None else w[yc] * m
    denom = {"sum": 1.0, "mean": float(wy.sum()), "sequence_mean": float(z.shape[0])}[reduction]
    dz = (q.sum(axis=-1, keepdims=True) * np.exp(logp) - q) / denom
    return float(loss / denom), dz.astype(z.dtype, copy=False)


def _plain_cross_entropy(z, yc, m, reduction):
    """The common case (no smoothing, no weights) in five passes over (…, V), which matters for
    large vocabularies: ℓ = log Σ e^{z−max} − (z_y − max), ∂ℓ/∂z = c (softmax(z) − e_y) with c
    the position's weight in the reduction (0 where masked)."""
    denom = {"sum": 1.0, "mean": float(m.sum()), "sequence_mean": float(z.shape[0])}[reduction]
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN logits give NaN, reported later
        zmax = z.max(axis=-1, keepdims=True)
        p = np.subtract(z, zmax)
        np.exp(p, out=p)
        total = p.sum(axis=-1, keepdims=True)
        picked = np.take_along_axis(z, yc[..., None], axis=-1) - zmax
        loss = float(((np.log(total) - picked)[..., 0] * m).sum())
        c = (m[..., None] / denom).astype(p.dtype)
        p *= c / total
    np.put_along_axis(p, yc[..., None], np.take_along_axis(p, yc[..., None], axis=-1) - c,
                      axis=-1)
    return loss / denom, p


def mse_loss(pred, target) -> tuple[float, np.ndarray]:
    """L = (1/M) Σ (pred − target)² over all M elements; dL/dpred = 2 (pred − target) / M."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and "
                         f"{target.shape}")
    if pred.size == 0:
        raise ValueError("mse_loss of an empty batch")
    diff = pred - target
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged model: inf, reported later
        return float(np.mean(diff * diff)), (2.0 / diff.size) * diff
