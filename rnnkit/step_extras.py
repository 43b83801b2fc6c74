"""What the Python step loop adds around a cell's step: layer normalisation, zoneout and
dropout on the recurrent state. The cells' own step functions (rnnkit.cells, run by the engine's
kernels) are unchanged; these wrap them, so a layer with any of them runs the "step" layout
(rnnkit.plan), under either engine's kernels.

Layer normalisation (Ba, Kiros & Hinton 2016, in haste's LayerNormLSTM form), with
LN(v) = (v − μ_v) / √(σ²_v + ε) over a row's values (rnnkit.functional.layer_norm):

    a_t = LN(W x_t) ⊙ γ_ih + LN_k(U h_{t−1}) ⊙ γ_hh + b          (then the cell's step)
    LSTM: h_t = o ⊙ tanh(LN(c_t) ⊙ γ_c + β_c)

LN(W x_t) normalises all G·H values of the input projection at once; LN_k normalises each of
the cell's recurrent products on its own (one for the RNN, LSTM and reset-after GRU; the
reset-before GRU's r,z product and its n product, which reads r ⊙ h_{t−1}). b (b_ih + b_hh,
or b_hn inside the reset-after GRU's product) comes after the normalisation, as it would
cancel inside it. Gains start at 1, β_c at 0.

Zoneout (Krueger et al. 2017): each unit keeps its previous value with probability p,

    h_t = d ⊙ h_{t−1} + (1 − d) ⊙ h̃_t,   c_t = d_c ⊙ c_{t−1} + (1 − d_c) ⊙ c̃_t (LSTM)

h̃_t, c̃_t the cell's step; d ~ Bernoulli(p) fresh at every step in training, d = p (the
expectation) in evaluation. Backward: ∂L/∂h̃_t = (1 − d) ⊙ ∂L/∂h_t, and d ⊙ ∂L/∂h_t flows
straight to h_{t−1} (likewise c).

Recurrent dropout (Gal & Ghahramani 2016; Keras's ``recurrent_dropout``): the recurrent products
read h_{t−1} ⊙ m, with one inverted-dropout mask m (N, H) per sequence, the same at every step;
the GRU's h_t = n + z ⊙ (h_{t−1} − n) keeps the unmasked h_{t−1}. Training only.

Backward (one step, rows [:n]): the zoneout split; for the LN-LSTM the output's gradient
(cells.lstm_ln_output_backward) and the normalisation's go into ∂L/∂c_t before the cell's
kernel runs with ∂L/∂h̃ = 0; then R = ∂L/∂(U h) (through LN_k), ∂L/∂h_{t−1} += (R U) ⊙ m.
After the loop ∂L/∂U = Σ Rᵀ (h_{t−1} ⊙ m), and the input projection's ∂L/∂(W x) =
LN's backward of ∂L/∂a ⊙ γ_ih feeds ∂L/∂W_ih and ∂L/∂x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cells
from .cells import GRU_AFTER, GRU_BEFORE, LSTM, RNN
from .functional import layer_norm, layer_norm_backward

Array = np.ndarray


@dataclass
class StepExtras:
    """One direction's extras for one forward pass and its backward; arrays over the P packed
    (step, row) pairs, a step's rows at [o, o + n)."""

    grads: dict  # the layer's gradients
    suffix: str
    ln: bool
    g_ih: Array | None = None  # γ_ih (G·H,)
    g_hh: Array | None = None  # γ_hh (G·H,)
    g_c: Array | None = None  # γ_c, β_c (H,): the LN-LSTM's cell normalisation
    b_c: Array | None = None
    zh: Array | float | None = None  # zoneout of h: masks (P, H), or p in evaluation
    zc: Array | float | None = None  # zoneout of c (LSTM)
    rmask: Array | None = None  # recurrent dropout's mask (N, H), rows sorted by length
    xi: Array | None = None  # LN(W x): x̂ (P, G·H) and r (P, 1)
    ri: Array | None = None
    xh: Array | None = None  # LN_k(U h): x̂ (P, G·H) and r (P, blocks)
    rh: Array | None = None
    xc: Array | None = None  # LN(c̃_t): x̂ (P, H) and r (P, 1)
    rc: Array | None = None
    ct: Array | None = None  # c̃_t before zoneout (P, H), what the LSTM's backward reads
    R: Array | None = None  # ∂L/∂(U h_{t−1}) of every step (P, G·H), filled by backward

    # -------------------------------------------------------------- the input projection
    def normalise_input(self, A: Array) -> None:
        """A (P, G·H) = W x of every step → LN(W x) ⊙ γ_ih, in place (biases come after)."""
        if not self.ln:
            return
        self.xi, self.ri = layer_norm(A)
        np.multiply(self.xi, self.g_ih, out=A)

    def input_grad(self, dA: Array) -> Array:
        """∂L/∂a (P, G·H) → ∂L/∂(W x), adding ∂L/∂γ_ih."""
        if not self.ln:
            return dA
        self.grads[f"ln_weight_ih{self.suffix}"] += (dA * self.xi).sum(axis=0)
        return layer_norm_backward(dA * self.g_ih, self.xi, self.ri)

    # -------------------------------------------------------------- the recurrent products
    def _normalise(self, v: Array, o: int, n: int, cols: slice, block: int) -> None:
        """One recurrent product's rows v (n, cols) → LN(v) ⊙ γ_hh[cols], in place."""
        if not self.ln:
            return
        xh, r = layer_norm(v)
        self.xh[o:o + n, cols] = xh
        self.rh[o:o + n, block] = r[:, 0]
        np.multiply(xh, self.g_hh[cols], out=v)

    def _raw_grad(self, dv: Array, o: int, n: int, cols: slice, block: int) -> Array:
        """∂L/∂(one normalised product) (n, cols) → ∂L/∂(the product), kept in R; adds
        ∂L/∂γ_hh."""
        if self.ln:
            xh = self.xh[o:o + n, cols]
            self.grads[f"ln_weight_hh{self.suffix}"][cols] += (dv * xh).sum(axis=0)
            dv = layer_norm_backward(dv * self.g_hh[cols], xh, self.rh[o:o + n, block, None])
        self.R[o:o + n, cols] = dv
        return self.R[o:o + n, cols]

    def _masked(self, h: Array, n: int) -> Array:
        return h[:n] if self.rmask is None else h[:n] * self.rmask[:n]

    def _zone(self, z, o: int, n: int):
        return z if not isinstance(z, np.ndarray) else z[o:o + n]

    # -------------------------------------------------------------- one step
    def forward(self, K, cell, w, n: int, o: int, a, e, hp, cp, hn, cn, g, s) -> None:
        """The step of rows [:n] (packed rows [o, o + n)); arguments as runner.step_forward."""
        H = cell.hidden_size
        hin = self._masked(hp, n)
        if cell.kind == GRU_BEFORE:
            rz, nb = slice(0, 2 * H), slice(2 * H, 3 * H)
            np.matmul(hin, w.w_hhT[:, rz], out=g[:n, rz])
            self._normalise(g[:n, rz], o, n, rz, 0)
            K.gru_before_fwd1(g, a, hin, e, n)
            np.matmul(e, w.w_hhT[:, nb], out=s[:n])
            self._normalise(s[:n], o, n, nb, 1)
            K.gru_before_fwd2(s, a, hp, hn, n)
        else:
            np.matmul(hin, w.w_hhT, out=g[:n])
            self._normalise(g[:n], o, n, slice(None), 0)
            if cell.kind == RNN:
                K.rnn_fwd(g, a, hn, cell.relu, n)
            elif cell.kind == LSTM:
                K.lstm_fwd(g, a, cp, cn, hn, w.p, n)
                if self.ct is not None:
                    self.ct[o:o + n] = cn[:n]
                if self.ln:  # h̃_t = o ⊙ tanh(LN(c̃_t) ⊙ γ_c + β_c)
                    xc, r = layer_norm(cn[:n])
                    self.xc[o:o + n], self.rc[o:o + n] = xc, r
                    hn[:n] = cells.lstm_ln_output(a[:, 3 * H:], xc * self.g_c + self.b_c)
            else:
                K.gru_after_fwd(g, a, hp, e, hn, w.b_hn, n)
        if self.zh is not None:
            d = self._zone(self.zh, o, n)
            hn[:n] = d * hp[:n] + (1 - d) * hn[:n]
            if cn is not None:
                dc = self._zone(self.zc, o, n)
                cn[:n] = dc * cp[:n] + (1 - dc) * cn[:n]

    def backward(self, K, cell, w, n: int, o: int, a, e, hp, cp, cn, dh, dc, dout, g, s,
                 s2) -> None:
        """One step backwards; arguments as runner.step_backward. ∂L/∂h_{t−1} leaves in dh,
        ∂L/∂c_{t−1} in dc."""
        H = cell.hidden_size
        total = dh[:n] + dout
        zero = np.zeros_like(total)
        direct_h = direct_c = None
        if self.zh is not None:
            d = self._zone(self.zh, o, n)
            direct_h, total = total * d, total * (1 - d)
            if dc is not None:
                d = self._zone(self.zc, o, n)
                direct_c, dc[:n] = dc[:n] * d, dc[:n] * (1 - d)
        dh[:n] = total
        hin = self._masked(hp, n)
        if cell.kind in (RNN, LSTM):
            if cell.kind == RNN:
                K.rnn_bwd(a, dh, zero, cell.relu, n)
            else:
                c_t = cn if self.ct is None else self.ct[o:o + n]
                if self.ln:  # the output's gradient goes through ∂L/∂c_t; the kernel's h-path
                    xc = self.xc[o:o + n]  # then carries nothing
                    da_o, dnorm = cells.lstm_ln_output_backward(
                        a[:, 3 * H:], xc * self.g_c + self.b_c, total)
                    self.grads[f"ln_weight_c{self.suffix}"] += (dnorm * xc).sum(axis=0)
                    self.grads[f"ln_bias_c{self.suffix}"] += dnorm.sum(axis=0)
                    dc[:n] += layer_norm_backward(dnorm * self.g_c, xc, self.rc[o:o + n])
                    dh[:n] = 0
                K.lstm_bwd(a, cp, c_t, dh, zero, dc, w.p, w.dp, n)
                if self.ln:
                    a[:, 3 * H:] = da_o
            r = self._raw_grad(a, o, n, slice(None), 0)
            np.matmul(r, w.w_hh, out=dh[:n])
            if self.rmask is not None:
                dh[:n] *= self.rmask[:n]
        elif cell.kind == GRU_AFTER:
            K.gru_after_bwd(a, hp, e, dh, zero, g, n)  # g: ∂L/∂(normalised U h); dh: z-path
            r = self._raw_grad(g[:n], o, n, slice(None), 0)
            np.matmul(r, w.w_hh, out=s[:n])
            dh[:n] += s[:n] if self.rmask is None else s[:n] * self.rmask[:n]
        else:
            rz, nb = slice(0, 2 * H), slice(2 * H, 3 * H)
            K.gru_before_bwd1(a, hp, dh, zero, n)  # n and z blocks of a; dh: z-path
            r = self._raw_grad(a[:, nb], o, n, nb, 1)
            np.matmul(r, w.w_hh[nb], out=s2[:n])  # ∂L/∂(r ⊙ h_{t−1} ⊙ m)
            via_n = np.zeros_like(total)
            K.gru_before_bwd2(a, hin, s2, via_n, n)  # r block of a; via_n = r ⊙ ∂L/∂(r ⊙ h)
            r = self._raw_grad(a[:, rz], o, n, rz, 0)
            np.matmul(r, w.w_hh[rz], out=s[:n])
            via = via_n + s[:n]
            dh[:n] += via if self.rmask is None else via * self.rmask[:n]
        if direct_h is not None:
            dh[:n] += direct_h
            if direct_c is not None:
                dc[:n] += direct_c

    # -------------------------------------------------------------- after the loop
    def add_hh_grads(self, cell, hprev: Array, E: Array | None, rows: Array, db, dw,
                     dbias) -> None:
        """∂L/∂W_hh from the kept R and the products' inputs (h_{t−1} ⊙ m, packed (P, H);
        ``rows`` each packed row's batch row), ∂L/∂b_hh by the cell's rule."""
        hin = hprev if self.rmask is None else hprev * self.rmask[rows]
        if cell.kind == GRU_BEFORE:
            H = cell.hidden_size
            dw[:2 * H] += self.R[:, :2 * H].T @ hin
            dw[2 * H:] += self.R[:, 2 * H:].T @ E
        else:
            dw += self.R.T @ hin
        cell.add_hh_bias_grad(db, E, dbias)


def make(layer, layer_i: int, direction: int, size: int, n: int,
         inference: bool) -> StepExtras | None:
    """The extras of one direction for a forward pass over ``size`` packed rows of ``n``
    sequences, masks drawn from the layer's generator in training mode (``inference``: no
    backward follows); None when the layer has none."""
    training = layer.training
    if not layer.needs_step_extras(training):
        return None
    s, p, dt = layer._suffix(layer_i, direction), layer.params, layer.dtype
    H, GH = layer.hidden_size, layer.hidden_size * layer.cell.gates
    lstm = layer.cell.kind == LSTM
    ex = StepExtras(grads=layer.grads, suffix=s, ln=layer.layer_norm)
    if layer.layer_norm:
        ex.g_ih, ex.g_hh = p[f"ln_weight_ih{s}"], p[f"ln_weight_hh{s}"]
        ex.xh = np.empty((size, GH), dt)
        ex.rh = np.empty((size, len(layer.cell.recurrent_blocks())), dt)
        if lstm:
            ex.g_c, ex.b_c = p[f"ln_weight_c{s}"], p[f"ln_bias_c{s}"]
            ex.xc, ex.rc = np.empty((size, H), dt), np.empty((size, 1), dt)
    if layer.zoneout > 0 or (lstm and layer.zoneout_c > 0):
        def zone(q: float):
            if not training:
                return dt.type(q)
            return (layer.rng.random((size, H)) < q).astype(dt)
        ex.zh = zone(layer.zoneout)
        if lstm:
            ex.zc = zone(layer.zoneout_c)
            ex.ct = np.empty((size, H), dt)
    if training and layer.recurrent_dropout > 0:
        ex.rmask = layer._keep_mask((n, H), layer.recurrent_dropout)
    if not inference:
        ex.R = np.empty((size, GH), dt)
    return ex
