"""The element-wise primitives of the cells, each defined once, with NumPy semantics.

    σ(x) = ½ (1 + tanh(x/2))        relu(x) = max(x, 0)        positive(x) = [x > 0]
    flush(x) = 0 where |x| < 1e-30 (float32) / 1e-300 (float64), else x
    layer_norm(x) = (x − μ) / √(σ² + ε) over each row's last axis (μ, σ² the row's mean and
                    variance; ε = 1e-5, PyTorch's LayerNorm default)

The cells' equations (:mod:`rnnkit.cells`) are written with these and plain arithmetic only, so
one definition serves every engine: NumPy evaluates it on whole (n, H) blocks, and
:mod:`rnnkit._numba_kernels` compiles it for one element after registering a scalar version of
each primitive here (numba's ``overload``). The constants ``ONE``, ``HALF`` and ``ZERO`` are
float32: exact in float64, and they keep float32 arithmetic in float32 under both engines (a
Python float would promote a numba float32 to float64).

``layer_norm`` and ``layer_norm_backward`` reduce over each row, so numba's element-wise step
functions never call them: rnnkit.step_extras applies them with NumPy around a cell's step.

σ as ½ (1 + tanh(x/2)) has the same value as 1 / (1 + e^{−x}) but never overflows and costs one
transcendental call; its derivative is written from the output, σ' = σ(1 − σ). For x ≪ 0 the tiny
result carries absolute, not relative, accuracy (σ(−30) ≈ 9.4e-14 to ±1e-16), which no gradient
notices.

Why flush: backward zeroes gradient values below the guard because vanishing gradients otherwise
sink into denormal numbers over long sequences, which cost x86 CPUs ~100 cycles an operation
(an LSTM's backward at T = 200 ran 6× slower); values that small carry no information.
"""

from __future__ import annotations

import numpy as np

ONE = np.float32(1.0)
HALF = np.float32(0.5)
ZERO = np.float32(0.0)
#: The denormal guard of :func:`flush`, per precision.
FLUSH32 = np.float32(1e-30)
FLUSH64 = 1e-300


def tanh(x):
    """tanh, element-wise (numba: a float32 rational approximation, see _numba_kernels)."""
    return np.tanh(x)


def sigmoid(x):
    """σ(x) = ½ (1 + tanh(x/2)), element-wise, same shape and dtype as x."""
    return HALF + HALF * tanh(HALF * x)


def relu(x):
    """max(x, 0), element-wise."""
    return np.maximum(x, ZERO)


def positive(x):
    """[x > 0] as x's dtype: ReLU's derivative read from its output."""
    return (x > 0).astype(np.result_type(x, ZERO))


def flush(x):
    """x with entries below the denormal guard set to 0 (see the module docstring)."""
    x = np.asarray(x)
    tiny = FLUSH32 if x.dtype == np.float32 else FLUSH64
    return np.where(np.abs(x) < tiny, x.dtype.type(0), x)


#: ε of :func:`layer_norm` (PyTorch's ``nn.LayerNorm`` default).
LN_EPS = 1e-5


def layer_norm(x):
    """Each row of x (n, F) normalised over its F values: → (x̂, r), x̂ = (x − μ) r with
    r = 1/√(σ² + ε) (n, 1) kept for :func:`layer_norm_backward`. No gain or bias: the caller
    applies them (Ba, Kiros & Hinton 2016)."""
    mu = x.mean(axis=-1, keepdims=True)
    d = x - mu
    r = ONE / np.sqrt((d * d).mean(axis=-1, keepdims=True) + x.dtype.type(LN_EPS))
    return d * r, r


def layer_norm_backward(dxhat, xhat, r):
    """∂L/∂x from ∂L/∂x̂ (n, F), with x̂ and r from :func:`layer_norm`:
    ∂L/∂x = r (∂L/∂x̂ − mean(∂L/∂x̂) − x̂ mean(∂L/∂x̂ ⊙ x̂)), the means over each row."""
    return r * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))


def adam_update(p, g, m, v, b1, b2, step_size, root2, eps):
    """One Adam step, element-wise (the equations are in :class:`rnnkit.optim.Adam`):
    m ← b1 m + (1 − b1) g, v ← b2 v + (1 − b2) g², p ← p − step_size · m / (√v / root2 + eps).
    → (p, m, v)."""
    m = b1 * m + (ONE - b1) * g
    v = b2 * v + (ONE - b2) * g * g
    return p - step_size * (m / (np.sqrt(v) / root2 + eps)), m, v
