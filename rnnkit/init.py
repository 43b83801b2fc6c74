"""Initialisations of a recurrent layer that help long-range learning.

Of W_hh (``kind``):
- ``"default"``: PyTorch's U(−1/√H, 1/√H) for every weight and bias (what the layers start with).
- ``"orthogonal"``: each gate's H×H block of W_hh a random orthogonal matrix (Saxe et al. 2014):
  all its singular values are 1, so the linearised ∏ ∂s_j/∂s_{j−1} neither shrinks nor grows.
- ``"identity"``: each gate's block of W_hh = I, biases 0, W_ih ~ N(0, 0.001²) — the IRNN of
  Le, Jaitly & Hinton (2015), meant for ``RNN(nonlinearity="relu")``: with h_t = relu(x_t W +
  h_{t−1}) the state is copied forward unchanged until the inputs say otherwise.
``gain`` multiplies W_hh (a gain above 1 makes gradients explode: see docs/long-range.md).

Of the gate biases (the gate that keeps the state: the LSTM's forget gate f, the GRU's update
gate z, since h_t = z ⊙ h_{t−1} + (1 − z) ⊙ n):
- ``forget_bias=b``: b_f = b (Gers, Schmidhuber & Cummins 2000; Jozefowicz et al. 2015 use 1).
  With b_f = b the state decays by σ(b) per step at the start: 0.73 for b = 1 against 0.5.
- ``chrono=T_max`` (Tallec & Ollivier 2018): b_f = log u, u ~ U[1, T_max − 1], and for the
  LSTM b_i = −b_f. A unit that keeps σ(b_f) of its state per step forgets with time constant
  1/(1 − σ(b_f)) = 1 + u steps, so the units' memories start spread over [2, T_max] steps.
The value set is the whole bias of that gate: b_ih's block gets it and b_hh's block 0 (the
layers add the two).
"""

from __future__ import annotations

import numpy as np

INITS = ("default", "orthogonal", "identity")


def init_recurrent(layer, kind: str = "default", gain: float = 1.0, seed: int | None = None,
                   forget_bias: float | None = None, chrono: int | None = None):
    """Re-initialise ``layer``'s weights in place (``kind`` in INITS), then its keep gate's
    biases (``forget_bias`` or ``chrono``, not both); returns the layer."""
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
    if forget_bias is not None or chrono is not None:
        init_gate_biases(layer, forget_bias, chrono, rng)
    return layer


def init_gate_biases(layer, forget_bias: float | None = None, chrono: int | None = None,
                     rng: np.random.Generator | None = None):
    """Set the keep gate's bias (and with ``chrono`` the LSTM's input gate's) of every layer
    and direction; see the module docstring. Returns the layer."""
    if forget_bias is not None and chrono is not None:
        raise ValueError("choose forget_bias or chrono, not both")
    if forget_bias is not None and not np.isfinite(forget_bias):
        raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
    if chrono is not None and (isinstance(chrono, bool) or not isinstance(chrono, int | np.integer)
                               or chrono < 3):
        raise ValueError(f"chrono must be an integer T_max >= 3 (the longest dependency, in "
                         f"steps), got {chrono!r}")
    if forget_bias is None and chrono is None:
        return layer
    gates = layer.cell.gates
    if gates == 1:
        raise ValueError("forget_bias and chrono set a gate's bias: the LSTM's and the GRU's; "
                         "the simple RNN has no gate")
    if not layer.bias:
        raise ValueError("forget_bias and chrono set biases: this layer has bias=False")
    rng = rng if rng is not None else np.random.default_rng()
    H = layer.hidden_size
    keep = slice(H, 2 * H)  # LSTM i,f,g,o: f; GRU r,z,n: z
    for name, b in layer.params.items():
        if not name.startswith("bias_"):
            continue
        if name.startswith("bias_hh"):
            b[keep] = 0
            if chrono is not None and gates == 4:
                b[:H] = 0
            continue
        if chrono is None:
            b[keep] = forget_bias
        else:
            b[keep] = np.log(rng.uniform(1.0, chrono - 1.0, H))
            if gates == 4:
                b[:H] = -b[keep]
    return layer
