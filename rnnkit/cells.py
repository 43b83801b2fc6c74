"""One time step of each recurrent cell: forward, and its hand-derived backward.

A cell knows nothing of sequences, layers or models. The recurrent layer (``rnnkit.recurrent``)
computes the input projection of *all* steps with one matrix product before the time loop,

    XW_t = x_t W_ihᵀ + b        (N, G·H),   b = ``cell.input_bias(b_ih, b_hh)``

and then calls, for every step t, on the rows still active at t,

    h_t, c_t, cache = cell.forward_step(XW_t, h_{t−1}, c_{t−1}, W_hh, b_hh, p, keep)
    dXW_t, dHW_t, dh_{t−1}, dc_{t−1} = cell.backward_step(dh_t, dc_t, cache, W_hh, p, dp)

``dXW_t`` is ∂L/∂(x_t W_ihᵀ + b_ih) and ``dHW_t`` is ∂L/∂(h_{t−1} W_hhᵀ + b_hh) for the step;
the layer stacks them over time and forms dW_ih, dW_hh, db_ih, db_hh and dx with one matrix
product (or sum) each after the loop. Shapes: n active rows, hidden size H, G gates; weights
use PyTorch's layout and gate order (W_hh is (G·H, H); LSTM i,f,g,o; GRU r,z,n).
"""

from __future__ import annotations

import numpy as np

from .functional import sigmoid

Array = np.ndarray


class Cell:
    """Interface shared by the cells; see the module docstring for the protocol."""

    gates: int = 1
    #: True when ∂L/∂(h W_hhᵀ) differs from ∂L/∂(x W_ihᵀ) (GRU with reset after).
    separate_hh_grad: bool = False
    #: True when the cell carries a memory c besides h (LSTM).
    has_cell_state: bool = False

    def __init__(self, hidden_size: int):
        self.hidden_size = hidden_size

    def input_bias(self, b_ih: Array | None, b_hh: Array | None) -> Array | None:
        """The bias folded into the input projection XW (both biases, unless the cell needs
        b_hh inside a product)."""
        if b_ih is None:
            return None
        return b_ih + b_hh

    def hh_weight_grad(self, dhw: Array, hprev: Array, caches: list, steps: Array) -> Array:
        """dW_hh = Σ_t dHW_tᵀ h_{t−1}; ``dhw`` is (T·N, G·H) and ``hprev`` (T·N, H), zero rows
        where a sequence had ended."""
        return dhw.T @ hprev


class RNNCell(Cell):
    """Simple (Elman) RNN step, SPEC §1:

        s_t = W x_t + U h_{t−1} + b,   h_t = f(s_t),   f = tanh (default) or ReLU.

    Backward: ds_t = dh_t ⊙ f'(s_t),  dh_{t−1} = ds_t U,  dXW_t = dHW_t = ds_t.
    """

    gates = 1

    def __init__(self, hidden_size: int, nonlinearity: str = "tanh"):
        super().__init__(hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity

    def forward_step(self, xw, h, c, w_hh, b_hh, p, keep):
        s = h @ w_hh.T
        s += xw
        if self.nonlinearity == "tanh":
            hn = np.tanh(s, out=s)
        else:
            hn = np.maximum(s, 0, out=s)
        return hn, None, (hn if keep else None)

    def backward_step(self, dh, dc, cache, w_hh, p, dp):
        hn = cache
        if self.nonlinearity == "tanh":
            ds = dh * (1 - hn * hn)
        else:
            ds = dh * (hn > 0)
        return ds, ds, ds @ w_hh, None


class LSTMCell(Cell):
    """LSTM step, SPEC §1 (gate order i, f, g, o as PyTorch; g is the candidate ĉ):

        i = σ(a_i + p_i ⊙ c_{t−1})   f = σ(a_f + p_f ⊙ c_{t−1})   g = tanh(a_g)
        c_t = f ⊙ c_{t−1} + i ⊙ g     o = σ(a_o + p_o ⊙ c_t)       h_t = o ⊙ tanh(c_t)

    with a = W x_t + U h_{t−1} + b; the peephole terms p (Gers & Schmidhuber 2000, ONNX's P) are
    present only with ``peepholes=True``.

    Backward, with dc_t the gradient carried from step t+1 and τ = tanh(c_t):
        da_o = dh ⊙ τ ⊙ o(1−o)
        dĉ  = dc_t + dh ⊙ o ⊙ (1−τ²) + da_o ⊙ p_o
        da_i = dĉ ⊙ g ⊙ i(1−i),  da_f = dĉ ⊙ c_{t−1} ⊙ f(1−f),  da_g = dĉ ⊙ i ⊙ (1−g²)
        dc_{t−1} = dĉ ⊙ f + da_i ⊙ p_i + da_f ⊙ p_f,   dh_{t−1} = da U
        dp_i += Σ da_i ⊙ c_{t−1},  dp_f += Σ da_f ⊙ c_{t−1},  dp_o += Σ da_o ⊙ c_t
    """

    gates = 4
    has_cell_state = True

    def __init__(self, hidden_size: int, peepholes: bool = False):
        super().__init__(hidden_size)
        self.peepholes = peepholes

    def forward_step(self, xw, h, c, w_hh, b_hh, p, keep):
        H = self.hidden_size
        a = h @ w_hh.T
        a += xw
        if p is None:
            act = sigmoid(a)
            act[:, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])
            i, f, g, o = act[:, :H], act[:, H : 2 * H], act[:, 2 * H : 3 * H], act[:, 3 * H :]
            cn = f * c
            cn += i * g
        else:
            a[:, :H] += p[:H] * c
            a[:, H : 2 * H] += p[H : 2 * H] * c
            act = np.empty_like(a)
            act[:, : 2 * H] = sigmoid(a[:, : 2 * H])
            act[:, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])
            i, f, g = act[:, :H], act[:, H : 2 * H], act[:, 2 * H : 3 * H]
            cn = f * c
            cn += i * g
            act[:, 3 * H :] = sigmoid(a[:, 3 * H :] + p[2 * H :] * cn)
            o = act[:, 3 * H :]
        tc = np.tanh(cn)
        hn = o * tc
        return hn, cn, ((c, act, cn, tc) if keep else None)

    def backward_step(self, dh, dc, cache, w_hh, p, dp):
        H = self.hidden_size
        c, act, cn, tc = cache
        i, f, g, o = act[:, :H], act[:, H : 2 * H], act[:, 2 * H : 3 * H], act[:, 3 * H :]
        da = np.empty_like(act)
        da_o = da[:, 3 * H :]
        np.multiply(dh * tc, o * (1 - o), out=da_o)
        dct = dh * o * (1 - tc * tc)
        dct += dc
        if p is not None:
            dct += da_o * p[2 * H :]
        np.multiply(dct * g, i * (1 - i), out=da[:, :H])
        np.multiply(dct * c, f * (1 - f), out=da[:, H : 2 * H])
        np.multiply(dct * i, 1 - g * g, out=da[:, 2 * H : 3 * H])
        dc_prev = dct * f
        if p is not None:
            dc_prev += da[:, :H] * p[:H]
            dc_prev += da[:, H : 2 * H] * p[H : 2 * H]
            dp[:H] += (da[:, :H] * c).sum(axis=0)
            dp[H : 2 * H] += (da[:, H : 2 * H] * c).sum(axis=0)
            dp[2 * H :] += (da_o * cn).sum(axis=0)
        return da, da, da @ w_hh, dc_prev


class GRUCell(Cell):
    """GRU step, SPEC §1 (gate order r, z, n as PyTorch; n is the candidate ĥ).

    ``reset_after=False`` — the notes' form (ONNX ``linear_before_reset=0``), the default:
        r = σ(a_r + U_r h),  z = σ(a_z + U_z h),  n = tanh(a_n + U_n (r ⊙ h) + b_hn)
    ``reset_after=True`` — cuDNN / PyTorch / Keras (ONNX ``linear_before_reset=1``):
        n = tanh(a_n + r ⊙ (U_n h + b_hn))
    in both, a = W x_t + b_ih (+ b_hr, b_hz for r and z) and h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}.

    Backward, with dh = dh_t: dn = dh ⊙ (1−z), dz = dh ⊙ (h_{t−1} − n), da_n = dn ⊙ (1−n²);
      reset before: d(r⊙h) = da_n U_n,  dr = d(r⊙h) ⊙ h_{t−1}
      reset after:  dr = da_n ⊙ (U_n h + b_hn),  dHW_n = da_n ⊙ r
    da_r = dr ⊙ r(1−r),  da_z = dz ⊙ z(1−z),
    dh_{t−1} = dh ⊙ z + [da_r, da_z] U_rz + (d(r⊙h) ⊙ r  |  dHW_n U_n).
    """

    gates = 3

    def __init__(self, hidden_size: int, reset_after: bool = False):
        super().__init__(hidden_size)
        self.reset_after = reset_after
        self.separate_hh_grad = reset_after

    def input_bias(self, b_ih, b_hh):
        if b_ih is None:
            return None
        if not self.reset_after:
            return b_ih + b_hh
        H = self.hidden_size
        b = b_ih.copy()
        b[: 2 * H] += b_hh[: 2 * H]
        return b

    def forward_step(self, xw, h, c, w_hh, b_hh, p, keep):
        H = self.hidden_size
        if self.reset_after:
            gh = h @ w_hh.T
            if b_hh is not None:
                gh[:, 2 * H :] += b_hh[2 * H :]
            rz = sigmoid(gh[:, : 2 * H] + xw[:, : 2 * H])
            r, z = rz[:, :H], rz[:, H:]
            ghn = gh[:, 2 * H :]
            n = np.tanh(xw[:, 2 * H :] + r * ghn)
            extra = ghn
        else:
            gh = h @ w_hh[: 2 * H].T
            gh += xw[:, : 2 * H]
            rz = sigmoid(gh)
            r, z = rz[:, :H], rz[:, H:]
            rh = r * h
            a_n = rh @ w_hh[2 * H :].T
            a_n += xw[:, 2 * H :]
            n = np.tanh(a_n, out=a_n)
            extra = rh
        hn = h - n
        hn *= z
        hn += n
        return hn, None, ((h, rz, n, extra) if keep else None)

    def backward_step(self, dh, dc, cache, w_hh, p, dp):
        H = self.hidden_size
        h, rz, n, extra = cache
        r, z = rz[:, :H], rz[:, H:]
        dxw = np.empty((h.shape[0], 3 * H), dtype=h.dtype)
        da_n = dxw[:, 2 * H :]
        np.multiply(dh * (1 - z), 1 - n * n, out=da_n)
        dh_prev = dh * z
        if self.reset_after:
            dr = da_n * extra
        else:
            drh = da_n @ w_hh[2 * H :]
            dr = drh * h
            dh_prev += drh * r
        np.multiply(dr, r * (1 - r), out=dxw[:, :H])
        np.multiply(dh * (h - n), z * (1 - z), out=dxw[:, H : 2 * H])
        if self.reset_after:
            dhw = dxw.copy()
            dhw[:, 2 * H :] *= r
            dh_prev += dhw @ w_hh
            return dxw, dhw, dh_prev, None
        dh_prev += dxw[:, : 2 * H] @ w_hh[: 2 * H]
        return dxw, dxw, dh_prev, None

    def hh_weight_grad(self, dhw, hprev, caches, steps):
        if self.reset_after:
            return dhw.T @ hprev
        # The candidate's recurrent product reads r ⊙ h, not h: stack it like hprev.
        H = self.hidden_size
        T = len(caches)
        N = hprev.shape[0] // T
        rh = np.zeros((T, N, H), dtype=hprev.dtype)
        for t, cache in enumerate(caches):
            if cache is not None:
                rh[t, : steps[t]] = cache[3]
        dw = np.empty((3 * H, H), dtype=hprev.dtype)
        dw[: 2 * H] = dhw[:, : 2 * H].T @ hprev
        dw[2 * H :] = dhw[:, 2 * H :].T @ rh.reshape(T * N, H)
        return dw
