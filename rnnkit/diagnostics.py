"""Diagnostics: numerical gradients for checking hand-written backward passes, and the flow of
the gradient back through time (SPEC §1, notes §3).

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


def gradient_flow(obj, data, dout=None, seed: int = 0) -> dict[str, np.ndarray]:
    """‖∂L/∂h_k‖ for every step k and every layer, from the real backward pass.

    ``obj`` is a recurrent layer with ``data`` its input x (N, T, D), or a model of
    :mod:`rnnkit.models` with ``data`` a collated batch (its own loss is used). For a layer the
    loss is L = Σ_n g_n · h_T(n) with fixed random unit vectors g_n — taken at the last step —
    unless ``dout`` (N, T, dirs·H) gives ∂L/∂out. Returns {name: (T,) array}: the norm of the
    gradient with respect to the layer's output at step k (both directions together), averaged
    over the batch; names are ``l{k}`` for a layer and ``{layer}.l{k}`` for a model.
    """
    from .recurrent import RecurrentLayer

    if isinstance(obj, RecurrentLayer):
        layers = {"": obj}
    else:
        layers = {name: layer for name, layer in obj.layers.items()
                  if isinstance(layer, RecurrentLayer)}
        if not layers:
            raise ValueError(f"{type(obj).__name__} has no recurrent layer")
    for layer in layers.values():
        layer.probe = []
    try:
        if isinstance(obj, RecurrentLayer):
            out, _, cache = obj.forward(data)
            if dout is None:
                g = np.random.default_rng(seed).standard_normal((out.shape[0], out.shape[2]))
                g /= np.linalg.norm(g, axis=1, keepdims=True)
                dout = np.zeros_like(out)
                dout[:, -1] = g
            obj.backward(dout, None, cache)
        else:
            obj.zero_grad()
            obj.forward_backward(data)
            obj.zero_grad()
        result = {}
        for name, layer in layers.items():
            per_layer: dict[int, np.ndarray] = {}
            for lyr, _direction, norms in layer.probe:
                per_layer[lyr] = per_layer.get(lyr, 0.0) + norms**2
            for lyr in sorted(per_layer):
                key = f"l{lyr}" if not name else f"{name}.l{lyr}"
                result[key] = np.sqrt(per_layer[lyr]).mean(axis=1)
        return result
    finally:
        for layer in layers.values():
            layer.probe = None


def plot_gradient_flow(curves: dict[str, np.ndarray], path, title: str = "") -> None:
    """Draw ‖∂L/∂h_k‖ against the distance T−1−k from the loss, log scale, one curve each.
    Zeros (gradients flushed below 1e-30) are left out of a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, norms in curves.items():
        dist = np.arange(len(norms))[::-1]
        keep = norms > 0
        ax.semilogy(dist[keep], norms[keep], label=name)
    ax.set_xlabel("steps back from the loss (T − 1 − k)")
    ax.set_ylabel("‖∂L/∂h_k‖ (mean over the batch)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
