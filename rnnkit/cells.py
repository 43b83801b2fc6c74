"""One time step of each recurrent cell: the equations, forward and hand-derived backward.

Each cell's step is written once, element by element, in the functions below (``rnn_forward``,
``lstm_backward`` …) with plain arithmetic and rnnkit.functional's primitives: NumPy evaluates
them on whole (n, H) blocks of gate columns (rnnkit.kernels), numba compiles them for one element
inside its row loops and time loops (rnnkit._numba_kernels). Nothing else in the package writes a
gate's maths.

A cell knows nothing of sequences, layers or models. The classes say what a cell is: gate count,
state, parameter shapes, how its biases fold into the input projection, and how its W_hh
gradient is formed from the cache. The recurrent layer makes the input projection of all steps,
XW = X W_ihᵀ + b (b = ``cell.input_bias(b_ih, b_hh)``), with one product before the time loop;
a time loop then computes, at each step, the recurrent product(s) h_{t−1} W_hhᵀ (one per
``cell.recurrent_blocks()``) and the step function on the rows alive; after the loop every weight
gradient is one product (``add_hh_grad``).

Shapes: N rows, H hidden units, G gates; weights in PyTorch's layout and gate order (W_hh is
(G·H, H); LSTM i,f,g,o; GRU r,z,n).
"""

from __future__ import annotations

import numpy as np

from . import blas
from .functional import ONE, flush, positive, relu, sigmoid, tanh

Array = np.ndarray

#: The cells' kinds, by which the compiled time loops dispatch (rnnkit._numba_kernels).
RNN, LSTM, GRU_AFTER, GRU_BEFORE = 0, 1, 2, 3


# ------------------------------------------------------------------------------- the maths
# Each cell's step, forward and backward, element by element: the one definition every engine
# runs (NumPy on (n, H) blocks of gate columns, numba compiled for one element; see
# rnnkit.functional). Arguments named x* are a gate's input projection XW_t (biases folded in),
# g* the recurrent product's block of h_{t−1} W_hhᵀ; backward's dh is ∂L/∂h_t in all (carried
# from t+1 plus the output's), dc the carried ∂L/∂c_t. Gradients leave flushed (functional.flush).

def rnn_forward(s, use_relu):
    """h_t = f(s_t), s_t = XW_t + U h_{t−1}; f = ReLU when ``use_relu`` else tanh."""
    return relu(s) if use_relu else tanh(s)


def rnn_backward(h, dh, use_relu):
    """ds_t = dh ⊙ f'(s_t), read from h_t: [h_t > 0] (ReLU) or 1 − h_t² (tanh)."""
    return flush(dh * positive(h)) if use_relu else flush(dh * (ONE - h * h))


def lstm_forward(xi, xf, xg, xo, c0, pi, pf, po, peepholes=True):
    """i, f, g, o, c_t, h_t from the gates' pre-activations (without peepholes) and c_{t−1};
    pi, pf, po the peepholes, used when ``peepholes`` (a constant where compiled, so that a
    cell without them computes no 0 · c)."""
    if peepholes:
        xi = xi + pi * c0
        xf = xf + pf * c0
    i = sigmoid(xi)
    f = sigmoid(xf)
    g = tanh(xg)
    c = f * c0 + i * g
    o = sigmoid(xo + po * c) if peepholes else sigmoid(xo)
    return i, f, g, o, c, o * tanh(c)


def lstm_backward(i, f, g, o, c0, c, dh, dc, pi, pf, po, peepholes=True):
    """→ ∂L/∂(a_i, a_f, a_g, a_o), ∂L/∂c_{t−1}, and the peepholes' terms da_i c_{t−1},
    da_f c_{t−1}, da_o c_t (summed over rows by the caller; meaningless without peepholes)."""
    tc = tanh(c)
    da_o = dh * tc * o * (ONE - o)
    dct = dc + dh * o * (ONE - tc * tc)
    if peepholes:
        dct = dct + da_o * po
    da_i = dct * g * i * (ONE - i)
    da_f = dct * c0 * f * (ONE - f)
    da_g = dct * i * (ONE - g * g)
    dc0 = dct * f
    if peepholes:
        dc0 = dc0 + da_i * pi + da_f * pf
    return (flush(da_i), flush(da_f), flush(da_g), flush(da_o), flush(dc0),
            da_i * c0, da_f * c0, da_o * c)


def lstm_ln_output(o, c_hat):
    """The layer-normalised LSTM's output (rnnkit.step_extras): h_t = o ⊙ tanh(ĉ_t), with
    ĉ_t = LN(c_t) ⊙ γ_c + β_c in place of c_t. NumPy only (the normalisation is a row-wise
    reduction, which the element-wise kernels do not make)."""
    return o * tanh(c_hat)


def lstm_ln_output_backward(o, c_hat, dh):
    """→ ∂L/∂a_o = dh ⊙ tanh(ĉ) ⊙ o(1−o) and ∂L/∂ĉ = dh ⊙ o ⊙ (1 − tanh²(ĉ))."""
    tc = tanh(c_hat)
    return flush(dh * tc * o * (ONE - o)), dh * o * (ONE - tc * tc)


def gru_after_forward(xr, xz, xn, gr, gz, gn, hp, b_hn):
    """Reset after the product: → r, z, n, e = U_n h + b_hn (kept), h_t."""
    r = sigmoid(xr + gr)
    z = sigmoid(xz + gz)
    e = gn + b_hn
    n = tanh(xn + r * e)
    return r, z, n, e, n + z * (hp - n)


def gru_after_backward(r, z, n, e, hp, dh):
    """→ ∂L/∂(a_r, a_z, a_n), ∂L/∂(U_n h + b_hn) = da_n ⊙ r, and the direct z-path dh ⊙ z
    of ∂L/∂h_{t−1} (the caller adds [da_r, da_z, da_n ⊙ r] W_hh)."""
    da_n = flush(dh * (ONE - z) * (ONE - n * n))
    da_z = flush(dh * (hp - n) * z * (ONE - z))
    da_r = flush(da_n * e * r * (ONE - r))
    return da_r, da_z, da_n, da_n * r, flush(dh * z)


def gru_before_forward_gates(xr, xz, gr, gz, hp):
    """Reset before the product, first half: → r, z, r ⊙ h_{t−1} (which the caller multiplies
    by U_nᵀ)."""
    r = sigmoid(xr + gr)
    z = sigmoid(xz + gz)
    return r, z, r * hp


def gru_before_forward_state(xn, gn, z, hp):
    """Second half, gn = (r ⊙ h_{t−1}) U_nᵀ: → n, h_t."""
    n = tanh(xn + gn)
    return n, n + z * (hp - n)


def gru_before_backward_state(z, n, hp, dh):
    """Backward, first half: → da_n, da_z, the z-path dh ⊙ z of ∂L/∂h_{t−1}."""
    da_n = flush(dh * (ONE - z) * (ONE - n * n))
    da_z = flush(dh * (hp - n) * z * (ONE - z))
    return da_n, da_z, flush(dh * z)


def gru_before_backward_gates(r, hp, drh, dhp):
    """Second half, drh = ∂L/∂(r ⊙ h_{t−1}) = da_n U_n: → da_r, dhp + drh ⊙ r."""
    return flush(drh * hp * r * (ONE - r)), flush(dhp + drh * r)


class Cell:
    """What a cell is: its gates, its state, its parameters, and where its step's maths lives
    (the functions above). How the steps run over time is the engine's business
    (rnnkit.kernels, rnnkit._numba_kernels, chosen by rnnkit.plan)."""

    gates: int = 1
    #: The compiled loops' dispatch key (RNN, LSTM, GRU_AFTER or GRU_BEFORE).
    kind: int = RNN
    #: True when the cell carries a memory c besides h (LSTM).
    has_cell_state: bool = False
    #: True when the cell keeps a per-step extra (T, N, H) buffer ``E`` (GRU).
    needs_extra: bool = False
    #: True for ReLU instead of tanh (RNN only).
    relu: bool = False
    #: P of a projected state h_t = W_hr m_t (LSTM only); 0: none.
    proj_size: int = 0

    def __init__(self, hidden_size: int):
        self.hidden_size = hidden_size
        #: The size of h_t, what the layer outputs and carries.
        self.output_size = hidden_size

    def parameter_shapes(self, input_size: int) -> dict[str, tuple]:
        """The shapes of one direction's parameters, PyTorch's names without the suffix."""
        GH, H = self.gates * self.hidden_size, self.hidden_size
        return {"weight_ih": (GH, input_size), "weight_hh": (GH, H), "bias_ih": (GH,),
                "bias_hh": (GH,)}

    def recurrent_blocks(self) -> list[slice]:
        """The row blocks of W_hh, one recurrent product each per step: all gates at once, or
        (reset-before GRU) r,z and then n, whose product reads r ⊙ h."""
        return [slice(0, self.gates * self.hidden_size)]

    def input_bias(self, b_ih: Array | None, b_hh: Array | None) -> Array | None:
        """The bias folded into the input projection XW (both, unless b_hh sits inside a
        product)."""
        if b_ih is None:
            return None
        return b_ih + b_hh

    def hidden_bias(self, b_hh: Array | None) -> Array | None:
        """The part of b_hh that stays inside a product (reset-after GRU's b_hn), or None."""
        return None

    def add_hh_grad(self, dA: Array, hprev: Array, E: Array | None, db: Array, dw: Array,
                    dbias: Array | None, matmul=blas.matmul) -> None:
        """Adds ∂L/∂W_hh into ``dw`` and ∂L/∂b_hh into ``dbias`` (when not None) from the packed
        ∂L/∂XW ``dA`` (P, G·H), h_{t−1} (P, H) and ``db`` = Σ_P dA (the input bias's gradient,
        which b_hh shares wherever it sits in XW); its products by ``matmul(a, b, out=,
        accumulate=)``, the layer's (rnnkit.blas's, or rnnkit's own: rnnkit.runner)."""
        matmul(dA.T, hprev, out=dw, accumulate=True)
        self.add_hh_bias_grad(db, E, dbias)

    def add_hh_bias_grad(self, db: Array | None, E: Array | None, dbias: Array | None) -> None:
        """Adds ∂L/∂b_hh into ``dbias`` (when not None): b_hh sits in XW beside b_ih, so it
        shares db = Σ_P ∂L/∂XW."""
        if dbias is not None:
            dbias += db


class RNNCell(Cell):
    """Simple (Elman) RNN step, SPEC §1 (:func:`rnn_forward`, :func:`rnn_backward`):

        s_t = W x_t + U h_{t−1} + b,   h_t = f(s_t),   f = tanh (default) or ReLU.

    Backward: ds_t = dh_t ⊙ f'(s_t) (1 − h_t² for tanh, [h_t > 0] for ReLU), dh_{t−1} = ds_t U.
    Cache: h_t in ``A``.
    """

    gates = 1
    kind = RNN

    def __init__(self, hidden_size: int, nonlinearity: str = "tanh"):
        super().__init__(hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        self.relu = nonlinearity == "relu"


class LSTMCell(Cell):
    """LSTM step, SPEC §1 (gate order i, f, g, o as PyTorch; g is the candidate ĉ;
    :func:`lstm_forward`, :func:`lstm_backward`):

        i = σ(a_i + p_i ⊙ c_{t−1})   f = σ(a_f + p_f ⊙ c_{t−1})   g = tanh(a_g)
        c_t = f ⊙ c_{t−1} + i ⊙ g     o = σ(a_o + p_o ⊙ c_t)       h_t = o ⊙ tanh(c_t)

    with a = W x_t + U h_{t−1} + b; the peephole terms p (Gers & Schmidhuber 2000, ONNX's P) are
    present only with ``peepholes=True``. With ``proj_size=P`` (Sak et al. 2014, PyTorch's
    ``proj_size``) the state is projected: h_t = W_hr (o ⊙ tanh(c_t)), W_hr (P, H), U (G·H, P);
    the layers run the same step on m_t = o ⊙ tanh(c_t) with U' = U W_hr (rnnkit.runner).

    Backward, with dh = dh_t, dc_t the gradient carried from step t+1 and τ = tanh(c_t):
        da_o = dh ⊙ τ ⊙ o(1−o)
        dĉ  = dc_t + dh ⊙ o ⊙ (1−τ²) + da_o ⊙ p_o
        da_i = dĉ ⊙ g ⊙ i(1−i),  da_f = dĉ ⊙ c_{t−1} ⊙ f(1−f),  da_g = dĉ ⊙ i ⊙ (1−g²)
        dc_{t−1} = dĉ ⊙ f + da_i ⊙ p_i + da_f ⊙ p_f,   dh_{t−1} = da U
        dp_i += Σ da_i ⊙ c_{t−1},  dp_f += Σ da_f ⊙ c_{t−1},  dp_o += Σ da_o ⊙ c_t
    Cache: i, f, g, o in ``A``; c_{t−1}, c_t in ``Cx`` (τ is recomputed, not stored).
    """

    gates = 4
    kind = LSTM
    has_cell_state = True

    def __init__(self, hidden_size: int, peepholes: bool = False, proj_size: int = 0):
        super().__init__(hidden_size)
        self.peepholes = peepholes
        self.proj_size = proj_size
        self.output_size = proj_size or hidden_size

    def parameter_shapes(self, input_size: int) -> dict[str, tuple]:
        shapes = super().parameter_shapes(input_size)
        if self.proj_size:
            shapes["weight_hh"] = (4 * self.hidden_size, self.proj_size)
            shapes["weight_hr"] = (self.proj_size, self.hidden_size)
        if self.peepholes:
            shapes["weight_peephole"] = (3 * self.hidden_size,)
        return shapes


class GRUCell(Cell):
    """GRU step, SPEC §1 (gate order r, z, n as PyTorch; n is the candidate ĥ).

    ``reset_after=False`` — the notes' form (ONNX ``linear_before_reset=0``), the default
    (:func:`gru_before_forward_gates` and ``_state``, :func:`gru_before_backward_state` and
    ``_gates``):
        r = σ(a_r + U_r h),  z = σ(a_z + U_z h),  n = tanh(a_n + U_n (r ⊙ h))
    ``reset_after=True`` — cuDNN / PyTorch / Keras (ONNX ``linear_before_reset=1``;
    :func:`gru_after_forward`, :func:`gru_after_backward`):
        n = tanh(a_n + r ⊙ (U_n h + b_hn))
    in both, h = h_{t−1}, a = W x_t + b_ih (+ b_hr, b_hz for r and z, + b_hn for n when reset
    comes before) and h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}.

    Backward, with dh = dh_t: dn = dh ⊙ (1−z), dz = dh ⊙ (h_{t−1} − n), da_n = dn ⊙ (1−n²);
      reset before: d(r⊙h) = da_n U_n,  dr = d(r⊙h) ⊙ h_{t−1}
      reset after:  dr = da_n ⊙ (U_n h + b_hn),  ∂L/∂(U_n h + b_hn) = da_n ⊙ r
    da_r = dr ⊙ r(1−r),  da_z = dz ⊙ z(1−z),
    dh_{t−1} = dh ⊙ z + [da_r, da_z] U_rz + (d(r⊙h) ⊙ r  |  (da_n ⊙ r) U_n).
    Cache: r, z, n in ``A``; ``E`` holds r ⊙ h_{t−1} (before) or U_n h + b_hn (after),
    and after backward what the n-block of dW_hh needs (r ⊙ h_{t−1}, or da_n ⊙ r).
    """

    gates = 3
    needs_extra = True

    def __init__(self, hidden_size: int, reset_after: bool = False):
        super().__init__(hidden_size)
        self.reset_after = reset_after
        self.kind = GRU_AFTER if reset_after else GRU_BEFORE

    def recurrent_blocks(self) -> list[slice]:
        H = self.hidden_size
        return [slice(0, 3 * H)] if self.reset_after else [slice(0, 2 * H), slice(2 * H, 3 * H)]

    def input_bias(self, b_ih, b_hh):
        if b_ih is None:
            return None
        if not self.reset_after:
            return b_ih + b_hh
        H = self.hidden_size
        b = b_ih.copy()
        b[: 2 * H] += b_hh[: 2 * H]
        return b

    def hidden_bias(self, b_hh):
        if not self.reset_after or b_hh is None:
            return None
        return b_hh[2 * self.hidden_size:]

    def add_hh_grad(self, dA, hprev, E, db, dw, dbias, matmul=blas.matmul):
        H = self.hidden_size
        matmul(dA[:, : 2 * H].T, hprev, out=dw[: 2 * H], accumulate=True)
        if self.reset_after:
            # E holds da_n ⊙ r = ∂L/∂(U_n h + b_hn)
            matmul(E.T, hprev, out=dw[2 * H:], accumulate=True)
        else:
            # The candidate's recurrent product reads r ⊙ h (kept in E), and b_hn sits in XW.
            matmul(dA[:, 2 * H:].T, E, out=dw[2 * H:], accumulate=True)
        self.add_hh_bias_grad(db, E, dbias)

    def add_hh_bias_grad(self, db, E, dbias):
        # Reset after: b_hn sits inside the product; E holds ∂L/∂(U_n h + b_hn).
        if dbias is not None:
            H = self.hidden_size
            dbias[: 2 * H] += db[: 2 * H]
            dbias[2 * H:] += E.sum(axis=0) if self.reset_after else db[2 * H:]
