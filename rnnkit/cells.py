"""One time step of each recurrent cell: the equations, forward and hand-derived backward.

A cell knows nothing of sequences, layers or models. The recurrent layer (``rnnkit.recurrent``)
computes the input projection of *all* steps with one matrix product before the time loop, ``XW = X
W_ihᵀ + b`` (P, G·H) with ``b = cell.input_bias(b_ih, b_hh)``, keeps it in the buffer ``buf.A``,
and calls for every step t, on the rows ``[:n]`` still alive at t:

    cell.forward_step(K, o, n, src, dst, buf, w, work)
    cell.backward_step(K, o, n, src, dst, buf, w, dh, dc, dout_t, work)

``buf.A`` and ``buf.E`` are *packed* like PyTorch's PackedSequence: the P = Σ_t n_t valid (step,
row) pairs in time order, step t's rows at ``[o, o + n)`` with ``o = buf.off[t]``; with no padding
P = T·N and that is plain time-major order.

``buf.Hx`` (T+1, N, H) holds the states (``Hx[src]`` = h_{t−1}, ``Hx[dst]`` = h_t; ``Cx`` likewise
for the LSTM's c); step t's rows of ``buf.A`` hold XW_t before forward, the gate activations after
it (the cache), and ∂L/∂XW_t after backward; ``buf.E`` (P, H) is a per-cell extra (GRU). ``K`` is
the kernel engine (:mod:`rnnkit.kernels` or :mod:`rnnkit._numba_kernels`): the element-wise maths
below, fused. Recurrent matrix products go to BLAS here (forward reads a contiguous W_hhᵀ: OpenBLAS
runs that product up to 1.4× faster than on the transposed view); with MKL (:mod:`rnnkit.blas`)
``forward_blas``/``backward_blas`` run the whole loop in one kernel around MKL's packed GEMM, and
inference (``infer_blas``) makes each step's input product in the loop too, on the layer's
batch-major input and output. After the loop the layer forms every weight gradient with one matrix
product each (``add_hh_grad``).
Shapes: N rows, H hidden units, G gates; weights in PyTorch's layout and gate order (W_hh is
(G·H, H); LSTM i,f,g,o; GRU r,z,n).
"""

from __future__ import annotations

import numpy as np

from . import blas

Array = np.ndarray


class Cell:
    """Interface shared by the cells; see the module docstring for the protocol."""

    gates: int = 1
    #: True when the cell carries a memory c besides h (LSTM).
    has_cell_state: bool = False
    #: True when the cell keeps a per-step extra (T, N, H) buffer ``E``.
    needs_extra: bool = False

    def __init__(self, hidden_size: int):
        self.hidden_size = hidden_size

    def input_bias(self, b_ih: Array | None, b_hh: Array | None) -> Array | None:
        """The bias folded into the input projection XW (both, unless b_hh sits inside a
        product)."""
        if b_ih is None:
            return None
        return b_ih + b_hh

    def add_hh_grad(self, dA: Array, hprev: Array, E: Array | None, db: Array, dw: Array,
                    dbias: Array | None) -> None:
        """Adds ∂L/∂W_hh into ``dw`` and ∂L/∂b_hh into ``dbias`` (when not None) from the packed
        ∂L/∂XW ``dA`` (P, G·H), h_{t−1} (P, H) and ``db`` = Σ_P dA (the input bias's gradient,
        which b_hh shares wherever it sits in XW)."""
        blas.matmul(dA.T, hprev, out=dw, accumulate=True)
        if dbias is not None:
            dbias += db

    def forward_step(self, K, o: int, n: int, src: int, dst: int, buf, w, work) -> None:
        """Step t for the rows [:n]: h_t (and c_t) into ``buf.Hx[dst]`` from h_{t−1} in
        ``buf.Hx[src]`` and XW_t in ``buf.A[o:o+n]``, which then holds the gate activations
        (the cache). ``w`` holds the weights, ``work`` scratch buffers, ``K`` the kernels."""
        raise NotImplementedError

    def backward_step(self, K, o: int, n: int, src: int, dst: int, buf, w, dh: Array,
                      dc: Array | None, dout_t: Array, work) -> None:
        """Step t backwards for the rows [:n]: adds ∂L/∂h_t from the output (``dout_t``) to the
        carried ``dh`` (and ``dc``), turns ``buf.A[o:o+n]`` into ∂L/∂XW_t and leaves
        ∂L/∂h_{t−1} (and ∂L/∂c_{t−1}) in ``dh`` (``dc``), in place."""
        raise NotImplementedError

    def forward_sequence(self, K, buf, w, steps: Array, reverse: bool) -> None:
        """All steps of one direction in one compiled kernel (numba engine, few rows): the
        same result as :meth:`forward_step` for t = 0 … T−1 (or backwards when ``reverse``)."""
        raise NotImplementedError

    def backward_sequence(self, K, buf, w, steps: Array, reverse: bool, dout: Array,
                          dh: Array, dc: Array | None) -> None:
        """All steps backwards in one compiled kernel: :meth:`backward_step` for every t."""
        raise NotImplementedError

    def forward_blas(self, K, buf, w, steps: Array, lengths: Array, reverse: bool,
                     work) -> None:
        """All steps of one direction in compiled kernels whose recurrent products are MKL's
        packed GEMM (numba engine with MKL, any batch size; see rnnkit.blas), one kernel per
        block of rows (:func:`rnnkit.blas.run_blocks`; ``lengths`` (N,) the rows' step counts).
        The input bias ``w.b`` is not yet in ``buf.A``: the kernel adds it
        step by step."""
        raise NotImplementedError

    def backward_blas(self, K, buf, w, steps: Array, lengths: Array, reverse: bool,
                      dout: Array, dh: Array, dc: Array | None, work) -> None:
        """:meth:`backward_step` for every t, in compiled kernels with MKL's packed GEMM."""
        raise NotImplementedError

    def forward_bm(self, K, A: Array, Hp: Array, Cx: Array | None, E: Array | None, y: Array,
                   d: int, w, lengths: Array, reverse: bool, work) -> None:
        """Training forward on batch-major arrays, for batches without padding (numba with
        MKL; see the batch-major section of rnnkit._numba_kernels): ``A`` (N, T, G·H) holds
        XW, the input bias ``w.b`` not yet in it, and becomes the cache;
        ``Hp`` (N, T, H) receives the state each step reads (h_0 already in place at the
        first step); h_t goes into ``y[:, t, d]`` of the output (N, T, dirs, H)."""
        raise NotImplementedError

    def backward_bm(self, K, A: Array, Hp: Array, Cx: Array | None, E: Array | None, w,
                    lengths: Array, reverse: bool, dy: Array, d: int, dh: Array,
                    dc: Array | None, work) -> None:
        """:meth:`forward_bm` backwards: ∂L/∂h_t from ``dy[:, t, d]`` (N, T, dirs, H); ``A``
        becomes ∂L/∂XW and ``dh`` (``dc``) ∂L/∂(initial state), as :meth:`backward_blas`."""
        raise NotImplementedError

    def fuses_input(self) -> bool:
        """Whether the cell has :meth:`infer_blas`."""
        return False

    def infer_blas(self, K, x: Array, y: Array, col: int, Hx: Array, Cx: Array | None, w,
                   steps: Array, lengths: Array, reverse: bool, work) -> None:
        """Inference on batch-major arrays: from x (N, T, D) (rows sorted by length), h_t of
        every row into ``y[:, t, col:col + H]`` of the output (N, T, ·), which keeps its
        values at padded steps. Each step's input product is made in the loop, beside the
        recurrent one. ``Hx`` (and ``Cx``) (2, N, H) hold the state, the initial one in slot 0;
        the final one is left in slot T % 2."""
        raise NotImplementedError


class RNNCell(Cell):
    """Simple (Elman) RNN step, SPEC §1:

        s_t = W x_t + U h_{t−1} + b,   h_t = f(s_t),   f = tanh (default) or ReLU.

    Backward: ds_t = dh_t ⊙ f'(s_t) (1 − h_t² for tanh, [h_t > 0] for ReLU), dh_{t−1} = ds_t U.
    Cache: h_t in ``A``.
    """

    gates = 1

    def __init__(self, hidden_size: int, nonlinearity: str = "tanh"):
        super().__init__(hidden_size)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; expected 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        self.relu = nonlinearity == "relu"

    def forward_step(self, K, o, n, src, dst, buf, w, work):
        np.matmul(buf.Hx[src, :n], w.w_hhT, out=work.g[:n])
        K.rnn_fwd(work.g, buf.A[o:o + n], buf.Hx[dst], self.relu, n)

    def backward_step(self, K, o, n, src, dst, buf, w, dh, dc, dout_t, work):
        a = buf.A[o:o + n]
        K.rnn_bwd(a, dh, dout_t, self.relu, n)
        np.matmul(a, w.w_hh, out=dh[:n])

    def forward_sequence(self, K, buf, w, steps, reverse):
        K.rnn_seq_fwd(buf.A, buf.Hx, w.w_hhT, self.relu, steps, buf.off, reverse)

    def backward_sequence(self, K, buf, w, steps, reverse, dout, dh, dc):
        K.rnn_seq_bwd(buf.A, w.w_hh, self.relu, steps, buf.off, reverse, dout, dh)

    def forward_blas(self, K, buf, w, steps, lengths, reverse, work):
        b = w.b_or_empty
        gemm, wp = blas.routines(buf.A.dtype).compute, blas.pack(w.w_hh.T, buf.Hx.shape[1])
        blas.run_blocks(lambda r0, r1: K.rnn_blas_fwd(
            gemm, wp, buf.A, b, buf.Hx, work.g, self.relu, steps, buf.off, reverse, r0, r1),
            lengths, w.w_hh.size)

    def backward_blas(self, K, buf, w, steps, lengths, reverse, dout, dh, dc, work):
        gemm, wp = blas.routines(buf.A.dtype).compute, blas.pack(w.w_hh, dh.shape[0])
        blas.run_blocks(lambda r0, r1: K.rnn_blas_bwd(
            gemm, wp, buf.A, self.relu, steps, buf.off, reverse, dout, dh, r0, r1), lengths,
            w.w_hh.size)

    def forward_bm(self, K, A, Hp, Cx, E, y, d, w, lengths, reverse, work):
        b = w.b_or_empty
        gemm, wp = blas.routines(A.dtype).compute, blas.pack(w.w_hh.T, A.shape[0])
        blas.run_blocks(lambda r0, r1: K.rnn_bm_fwd(
            gemm, wp, A, b, Hp, y, d, work.g, self.relu, reverse, r0, r1), lengths, w.w_hh.size)

    def backward_bm(self, K, A, Hp, Cx, E, w, lengths, reverse, dy, d, dh, dc, work):
        gemm, wp = blas.routines(A.dtype).compute, blas.pack(w.w_hh, A.shape[0])
        blas.run_blocks(lambda r0, r1: K.rnn_bm_bwd(
            gemm, wp, A, self.relu, reverse, dy, d, dh, r0, r1), lengths, w.w_hh.size)

    def fuses_input(self):
        return True

    def infer_blas(self, K, x, y, col, Hx, Cx, w, steps, lengths, reverse, work):
        b = w.b_or_empty
        n = Hx.shape[1]
        gemm = blas.routines(x.dtype).compute
        wxp, whp = blas.pack(w.w_ih.T, n), blas.pack(w.w_hh.T, n)
        blas.run_blocks(lambda r0, r1: K.rnn_blas_infer(
            gemm, wxp, whp, x, b, Hx, work.x, work.g, y, col, self.relu, steps, reverse, r0,
            r1), lengths, w.w_hh.size + w.w_ih.size)


class LSTMCell(Cell):
    """LSTM step, SPEC §1 (gate order i, f, g, o as PyTorch; g is the candidate ĉ):

        i = σ(a_i + p_i ⊙ c_{t−1})   f = σ(a_f + p_f ⊙ c_{t−1})   g = tanh(a_g)
        c_t = f ⊙ c_{t−1} + i ⊙ g     o = σ(a_o + p_o ⊙ c_t)       h_t = o ⊙ tanh(c_t)

    with a = W x_t + U h_{t−1} + b; the peephole terms p (Gers & Schmidhuber 2000, ONNX's P) are
    present only with ``peepholes=True``.

    Backward, with dh = dh_t, dc_t the gradient carried from step t+1 and τ = tanh(c_t):
        da_o = dh ⊙ τ ⊙ o(1−o)
        dĉ  = dc_t + dh ⊙ o ⊙ (1−τ²) + da_o ⊙ p_o
        da_i = dĉ ⊙ g ⊙ i(1−i),  da_f = dĉ ⊙ c_{t−1} ⊙ f(1−f),  da_g = dĉ ⊙ i ⊙ (1−g²)
        dc_{t−1} = dĉ ⊙ f + da_i ⊙ p_i + da_f ⊙ p_f,   dh_{t−1} = da U
        dp_i += Σ da_i ⊙ c_{t−1},  dp_f += Σ da_f ⊙ c_{t−1},  dp_o += Σ da_o ⊙ c_t
    Cache: i, f, g, o in ``A``; c_{t−1}, c_t in ``Cx`` (τ is recomputed, not stored).
    """

    gates = 4
    has_cell_state = True

    def __init__(self, hidden_size: int, peepholes: bool = False):
        super().__init__(hidden_size)
        self.peepholes = peepholes

    def forward_step(self, K, o, n, src, dst, buf, w, work):
        np.matmul(buf.Hx[src, :n], w.w_hhT, out=work.g[:n])
        K.lstm_fwd(work.g, buf.A[o:o + n], buf.Cx[src], buf.Cx[dst], buf.Hx[dst], w.p, n)

    def backward_step(self, K, o, n, src, dst, buf, w, dh, dc, dout_t, work):
        a = buf.A[o:o + n]
        K.lstm_bwd(a, buf.Cx[src], buf.Cx[dst], dh, dout_t, dc, w.p, w.dp, n)
        np.matmul(a, w.w_hh, out=dh[:n])

    def forward_sequence(self, K, buf, w, steps, reverse):
        K.lstm_seq_fwd(buf.A, buf.Hx, buf.Cx, w.w_hhT, w.p, steps, buf.off, reverse)

    def backward_sequence(self, K, buf, w, steps, reverse, dout, dh, dc):
        K.lstm_seq_bwd(buf.A, buf.Cx, w.w_hh, w.p, w.dp, steps, buf.off, reverse, dout, dh,
                       dc)

    def forward_blas(self, K, buf, w, steps, lengths, reverse, work):
        b = w.b_or_empty
        gemm, wp = blas.routines(buf.A.dtype).compute, blas.pack(w.w_hh.T, buf.Hx.shape[1])
        blas.run_blocks(lambda r0, r1: K.lstm_blas_fwd(
            gemm, wp, buf.A, b, buf.Hx, buf.Cx, work.g, w.p, steps, buf.off, reverse, r0, r1),
            lengths, w.w_hh.size)

    def backward_blas(self, K, buf, w, steps, lengths, reverse, dout, dh, dc, work):
        gemm, wp = blas.routines(buf.A.dtype).compute, blas.pack(w.w_hh, dh.shape[0])
        # Blocks would race on the peephole gradient's sums over rows.
        blas.run_blocks(lambda r0, r1: K.lstm_blas_bwd(
            gemm, wp, buf.A, buf.Cx, w.p, w.dp, steps, buf.off, reverse, dout, dh, dc, r0, r1),
            lengths, w.w_hh.size, split=w.p.shape[0] == 0)

    def forward_bm(self, K, A, Hp, Cx, E, y, d, w, lengths, reverse, work):
        b = w.b_or_empty
        gemm, wp = blas.routines(A.dtype).compute, blas.pack(w.w_hh.T, A.shape[0])
        blas.run_blocks(lambda r0, r1: K.lstm_bm_fwd(
            gemm, wp, A, b, Hp, Cx, y, d, work.g, w.p, reverse, r0, r1), lengths, w.w_hh.size)

    def backward_bm(self, K, A, Hp, Cx, E, w, lengths, reverse, dy, d, dh, dc, work):
        gemm, wp = blas.routines(A.dtype).compute, blas.pack(w.w_hh, A.shape[0])
        # Blocks would race on the peephole gradient's sums over rows.
        blas.run_blocks(lambda r0, r1: K.lstm_bm_bwd(
            gemm, wp, A, Cx, w.p, w.dp, reverse, dy, d, dh, dc, r0, r1), lengths,
            w.w_hh.size, split=w.p.shape[0] == 0)

    def fuses_input(self):
        return not self.peepholes

    def infer_blas(self, K, x, y, col, Hx, Cx, w, steps, lengths, reverse, work):
        b = w.b_or_empty
        n = Hx.shape[1]
        gemm = blas.routines(x.dtype).compute
        wxp, whp = blas.pack(w.w_ih.T, n), blas.pack(w.w_hh.T, n)
        if b.shape[0] == 0:
            b = np.zeros(w.w_hh.shape[0], dtype=x.dtype)
        blas.run_blocks(lambda r0, r1: K.lstm_blas_infer(
            gemm, wxp, whp, x, b, Hx, Cx, work.g, y, col, steps, reverse, r0, r1),
            lengths, w.w_hh.size + w.w_ih.size)


class GRUCell(Cell):
    """GRU step, SPEC §1 (gate order r, z, n as PyTorch; n is the candidate ĥ).

    ``reset_after=False`` — the notes' form (ONNX ``linear_before_reset=0``), the default:
        r = σ(a_r + U_r h),  z = σ(a_z + U_z h),  n = tanh(a_n + U_n (r ⊙ h))
    ``reset_after=True`` — cuDNN / PyTorch / Keras (ONNX ``linear_before_reset=1``):
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

    def input_bias(self, b_ih, b_hh):
        if b_ih is None:
            return None
        if not self.reset_after:
            return b_ih + b_hh
        H = self.hidden_size
        b = b_ih.copy()
        b[: 2 * H] += b_hh[: 2 * H]
        return b

    def forward_step(self, K, o, n, src, dst, buf, w, work):
        H = self.hidden_size
        hp = buf.Hx[src]
        a, e = buf.A[o:o + n], buf.E[o:o + n]
        if self.reset_after:
            np.matmul(hp[:n], w.w_hhT, out=work.g[:n])
            K.gru_after_fwd(work.g, a, hp, e, buf.Hx[dst], w.b_hn, n)
        else:
            g = work.g[:, : 2 * H]
            np.matmul(hp[:n], w.w_hhT[:, : 2 * H], out=g[:n])
            K.gru_before_fwd1(g, a, hp, e, n)
            gn = work.h1
            np.matmul(e, w.w_hhT[:, 2 * H:], out=gn[:n])
            K.gru_before_fwd2(gn, a, hp, buf.Hx[dst], n)

    def backward_step(self, K, o, n, src, dst, buf, w, dh, dc, dout_t, work):
        H = self.hidden_size
        hp = buf.Hx[src]
        a = buf.A[o:o + n]
        tmp = work.h1[:n]
        if self.reset_after:
            K.gru_after_bwd(a, hp, buf.E[o:o + n], dh, dout_t, work.g, n)
            np.matmul(work.g[:n], w.w_hh, out=tmp)
        else:
            K.gru_before_bwd1(a, hp, dh, dout_t, n)
            drh = work.h2
            np.matmul(a[:, 2 * H:], w.w_hh[2 * H:], out=drh[:n])
            K.gru_before_bwd2(a, hp, drh, dh, n)
            np.matmul(a[:, : 2 * H], w.w_hh[: 2 * H], out=tmp)
        dh[:n] += tmp

    def forward_sequence(self, K, buf, w, steps, reverse):
        if self.reset_after:
            K.gru_after_seq_fwd(buf.A, buf.Hx, buf.E, w.w_hhT, w.b_hn, steps, buf.off,
                                 reverse)
        else:
            H = self.hidden_size
            K.gru_before_seq_fwd(buf.A, buf.Hx, buf.E, np.ascontiguousarray(w.w_hh[:2 * H].T),
                                 np.ascontiguousarray(w.w_hh[2 * H:].T), steps, buf.off,
                                 reverse)

    def backward_sequence(self, K, buf, w, steps, reverse, dout, dh, dc):
        if self.reset_after:
            K.gru_after_seq_bwd(buf.A, buf.Hx, buf.E, w.w_hh, steps, buf.off, reverse, dout,
                                 dh)
        else:
            K.gru_before_seq_bwd(buf.A, buf.Hx, w.w_hh, steps, buf.off, reverse, dout, dh)

    def forward_blas(self, K, buf, w, steps, lengths, reverse, work):
        b = w.b_or_empty
        gemm, n, H = blas.routines(buf.A.dtype).compute, buf.Hx.shape[1], self.hidden_size
        if self.reset_after:
            wp = blas.pack(w.w_hh.T, n)
            blas.run_blocks(lambda r0, r1: K.gru_after_blas_fwd(
                gemm, wp, buf.A, b, buf.Hx, buf.E, work.g, w.b_hn, steps, buf.off, reverse, r0,
                r1), lengths, w.w_hh.size)
        else:
            wp_rz, wp_n = blas.pack(w.w_hh[:2 * H].T, n), blas.pack(w.w_hh[2 * H:].T, n)
            blas.run_blocks(lambda r0, r1: K.gru_before_blas_fwd(
                gemm, wp_rz, wp_n, buf.A, b, buf.Hx, buf.E, work.g, work.h1, steps, buf.off,
                reverse, r0, r1), lengths, w.w_hh.size)

    def backward_blas(self, K, buf, w, steps, lengths, reverse, dout, dh, dc, work):
        gemm, n, H = blas.routines(buf.A.dtype).compute, dh.shape[0], self.hidden_size
        if self.reset_after:
            wp = blas.pack(w.w_hh, n)
            blas.run_blocks(lambda r0, r1: K.gru_after_blas_bwd(
                gemm, wp, buf.A, buf.Hx, buf.E, work.g, steps, buf.off, reverse, dout, dh, r0,
                r1), lengths, w.w_hh.size)
        else:
            wp_rz, wp_n = blas.pack(w.w_hh[:2 * H], n), blas.pack(w.w_hh[2 * H:], n)
            blas.run_blocks(lambda r0, r1: K.gru_before_blas_bwd(
                gemm, wp_rz, wp_n, buf.A, buf.Hx, work.h1, steps, buf.off, reverse, dout, dh,
                r0, r1), lengths, w.w_hh.size)

    def forward_bm(self, K, A, Hp, Cx, E, y, d, w, lengths, reverse, work):
        b = w.b_or_empty
        gemm, n, H = blas.routines(A.dtype).compute, A.shape[0], self.hidden_size
        if self.reset_after:
            wp = blas.pack(w.w_hh.T, n)
            blas.run_blocks(lambda r0, r1: K.gru_after_bm_fwd(
                gemm, wp, A, b, Hp, E, y, d, work.g, w.b_hn, reverse, r0, r1), lengths,
                w.w_hh.size)
        else:
            wp_rz, wp_n = blas.pack(w.w_hh[:2 * H].T, n), blas.pack(w.w_hh[2 * H:].T, n)
            blas.run_blocks(lambda r0, r1: K.gru_before_bm_fwd(
                gemm, wp_rz, wp_n, A, b, Hp, E, y, d, work.g, work.h1, reverse, r0, r1),
                lengths, w.w_hh.size)

    def backward_bm(self, K, A, Hp, Cx, E, w, lengths, reverse, dy, d, dh, dc, work):
        gemm, n, H = blas.routines(A.dtype).compute, A.shape[0], self.hidden_size
        if self.reset_after:
            wp = blas.pack(w.w_hh, n)
            blas.run_blocks(lambda r0, r1: K.gru_after_bm_bwd(
                gemm, wp, A, Hp, E, work.g, reverse, dy, d, dh, r0, r1), lengths, w.w_hh.size)
        else:
            wp_rz, wp_n = blas.pack(w.w_hh[:2 * H], n), blas.pack(w.w_hh[2 * H:], n)
            blas.run_blocks(lambda r0, r1: K.gru_before_bm_bwd(
                gemm, wp_rz, wp_n, A, Hp, work.h1, reverse, dy, d, dh, r0, r1), lengths,
                w.w_hh.size)

    def fuses_input(self):
        return True

    def infer_blas(self, K, x, y, col, Hx, Cx, w, steps, lengths, reverse, work):
        b = w.b_or_empty
        gemm, n, H = blas.routines(x.dtype).compute, Hx.shape[1], self.hidden_size
        wxp = blas.pack(w.w_ih.T, n)
        if self.reset_after:
            wp = blas.pack(w.w_hh.T, n)
            blas.run_blocks(lambda r0, r1: K.gru_after_blas_infer(
                gemm, wxp, wp, x, b, Hx, work.x, work.g, work.h1, y, col, w.b_hn, steps,
                reverse, r0, r1), lengths, w.w_hh.size + w.w_ih.size)
        else:
            wp_rz, wp_n = blas.pack(w.w_hh[:2 * H].T, n), blas.pack(w.w_hh[2 * H:].T, n)
            blas.run_blocks(lambda r0, r1: K.gru_before_blas_infer(
                gemm, wxp, wp_rz, wp_n, x, b, Hx, work.x, work.g, work.h1, work.h2, y, col,
                steps, reverse, r0, r1), lengths, w.w_hh.size + w.w_ih.size)

    def add_hh_grad(self, dA, hprev, E, db, dw, dbias):
        H = self.hidden_size
        blas.matmul(dA[:, : 2 * H].T, hprev, out=dw[: 2 * H], accumulate=True)
        if self.reset_after:
            # E holds da_n ⊙ r = ∂L/∂(U_n h + b_hn)
            blas.matmul(E.T, hprev, out=dw[2 * H:], accumulate=True)
        else:
            # The candidate's recurrent product reads r ⊙ h (kept in E), and b_hn sits in XW.
            blas.matmul(dA[:, 2 * H:].T, E, out=dw[2 * H:], accumulate=True)
        if dbias is not None:
            dbias[: 2 * H] += db[: 2 * H]
            dbias[2 * H:] += E.sum(axis=0) if self.reset_after else db[2 * H:]
