"""Initialisations of a recurrent layer's weights that help long-range learning.

- ``"default"``: PyTorch's U(−1/√H, 1/√H) for every weight and bias (what the layers start with).
- ``"orthogonal"``: each gate's H×H block of W_hh a random orthogonal matrix (Saxe et al. 2014):
  all its singular values are 1, so the linearised ∏ ∂s_j/∂s_{j−1} neither shrinks nor grows.
- ``"identity"``: each gate's block of W_hh = I, biases 0, W_ih ~ N(0, 0.001²) — the IRNN of
  Le, Jaitly & Hinton (2015), meant for ``RNN(nonlinearity="relu")``: with h_t = relu(x_t W +
  h_{t−1}) the state is copied forward unchanged until the inputs say otherwise.
``gain`` multiplies W_hh (a gain above 1 makes gradients explode: see docs/long-range.md).
"""

from __future__ import annotations

import numpy as np

INITS = ("default", "orthogonal", "identity")


def init_recurrent(layer, kind: str = "default", gain: float = 1.0, seed: int | None = None):
    """Re-initialise ``layer``'s weights in place (``kind`` in INITS); returns the layer."""
    if kind not in INITS:
        raise ValueError(f"unknown initialisation {kind!r}; expected one of {', '.join(INITS)}")
    if not gain > 0:
        raise ValueError(f"gain must be positive, got {gain}")
    rng = np.random.default_rng(seed)
    H, G = layer.hidden_size, layer.cell.gates
    for name, p in layer.params.items():
        if name.startswith("weight_hh"):
            for g in range(G):
                if kind == "orthogonal":
                    q, r = np.linalg.qr(rng.standard_normal((H, H)))
                    block = q * np.sign(np.diag(r))  # uniform over orthogonal matrices
                elif kind == "identity":
                    block = np.eye(H)
                else:
                    block = p[g * H:(g + 1) * H].copy()
                p[g * H:(g + 1) * H] = gain * block
        elif kind == "identity" and name.startswith("bias"):
            p[...] = 0
        elif kind == "identity" and name.startswith("weight_ih"):
            p[...] = rng.normal(0.0, 0.001, p.shape)
    return layer
