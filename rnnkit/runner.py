"""Runs a recurrent layer's forward and backward passes on the path rnnkit.plan chose.

Internally the layers work on *packed* sequences: the P = Σ_t n_t valid (step, row) pairs in
time-major order, so the input projections and every weight-gradient product cover real tokens
only; a step's rows are one contiguous slice (rows sorted by length, so the rows alive at step t
are a prefix [:n_t]). States live in full (T+1, N, H) buffers, where sequences that have ended
(or not yet begun) carry theirs. The batch-major paths skip the packing: training over a batch
without padding keeps its cache in the caller's (N, T, ·) layout, and inference keeps nothing
(each layer's output, two state slots).

Three layouts (rnnkit.plan): "step" runs the loop over steps here in Python (:func:`_step_loops`,
the one Python time loop, forward and backward), the others call the compiled loops of
rnnkit._numba_kernels. Every path forms the input projection before the loop and the weight
gradients after it with one product each (:func:`_param_grads`).
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from . import blas, step_extras
from .backend import kernels_named
from .cells import GRU_AFTER, GRU_BEFORE, LSTM, RNN

Array = np.ndarray


@dataclass
class Weights:
    """One direction's parameters, in the forms the loops want (absent ones empty)."""

    w_ih: Array
    w_hh: Array
    b: Array | None  # bias folded into XW
    p: Array  # peepholes (3H,) or empty
    dp: Array  # their gradient (added into) or empty
    b_hn: Array  # the part of b_hh inside a product (reset-after GRU) or empty
    suffix: str
    hh_mask: Array | None = None  # weight drop's mask: w_hh is then W_hh ⊙ hh_mask
    w_hr: Array | None = None  # a projected LSTM's W_hr (P, H); w_hh is then U W_hr (G·H, H)
    u: Array | None = None  # and U, its W_hh (G·H, P) (⊙ the mask)
    _w_hhT: Array | None = None

    @property
    def b_or_zeros(self) -> Array:
        """The input bias as the compiled loops take it (zeros when the layer has none)."""
        return np.zeros(self.w_ih.shape[0], self.w_ih.dtype) if self.b is None else self.b

    @property
    def w_hhT(self) -> Array:
        """W_hhᵀ, contiguous: products from Python read it row by row (OpenBLAS runs that
        product up to 1.4× faster than on the transposed view)."""
        if self._w_hhT is None:
            self._w_hhT = np.ascontiguousarray(self.w_hh.T)
        return self._w_hhT


class Packing:
    """Where the valid (step, row) pairs of a length-sorted, time-major batch lie.

    ``steps[t]`` rows are alive at step t (a prefix, since rows are sorted by length), and
    they sit at ``[off[t], off[t + 1])`` of a packed (P, ·) array. ``idx`` maps packed rows to
    rows of the flat (T·N, ·) array; None when nothing is padded (packed = flat, no copies).
    """

    def __init__(self, steps: Array, n: int):
        self.steps = steps
        self.t, self.n = len(steps), n
        self.off = np.zeros(self.t + 1, dtype=np.int64)
        np.cumsum(steps, out=self.off[1:])
        self.size = int(self.off[-1])
        # Each row's step count: the number of steps whose alive prefix reaches past it.
        self.lengths = np.bincount(steps, minlength=n + 1)[::-1].cumsum()[::-1][1:]
        self.idx = None
        if self.size != self.t * n:
            rows = np.arange(n)
            self.idx = np.concatenate([ti * n + rows[:m] for ti, m in enumerate(steps)])

    @property
    def padded(self) -> bool:
        return self.idx is not None

    def pack(self, a: Array) -> Array:
        """(T, N, F) → (P, F)."""
        flat = a.reshape(self.t * self.n, -1)
        return flat if self.idx is None else flat[self.idx]

    @property
    def rows(self) -> Array:
        """The (sorted) batch row of each packed row (P,)."""
        return np.arange(self.size) - np.repeat(self.off[:-1], self.steps)

    def unpack(self, p: Array) -> Array:
        """(P, F) → (T, N, F), zeros where padded."""
        if self.idx is None:
            return p.reshape(self.t, self.n, -1)
        out = np.zeros((self.t * self.n, p.shape[1]), dtype=p.dtype)
        out[self.idx] = p
        return out.reshape(self.t, self.n, -1)


@dataclass
class Buffers:
    """One direction of one layer: what forward fills and backward reads.

    Time-major: A (P, G·H) packed XW, then gate activations, then ∂L/∂XW; Hx, Cx (T+1, N, H)
    states (h_0 at 0, or T reversed); E (P, H) the GRU's extra. Batch-major: A (N, T, G·H),
    Hx (N, T, H) the state each step reads, E (N, T, H); Cx stays (T+1, N, H)."""

    A: Array
    Hx: Array
    Cx: Array | None
    E: Array | None
    reverse: bool
    h0: Array | None = None  # a projected LSTM's initial h (N, P): the loops carry m, not h
    ex: object = None  # rnnkit.step_extras.StepExtras (layer norm, zoneout, ...) or None

    def states(self) -> Array:
        """h_t for every t, (T, N, H), a view (time-major)."""
        return self.Hx[:-1] if self.reverse else self.Hx[1:]

    def hprev(self) -> Array:
        """h_{t−1} for every t, (T, N, H), a view (time-major)."""
        return self.Hx[1:] if self.reverse else self.Hx[:-1]

    def final(self, x: Array) -> Array:
        """The last state of a (T+1, N, H) state buffer in this direction's order."""
        return x[0] if self.reverse else x[-1]


@dataclass
class Cache:
    """Everything ``backward`` needs; opaque to users."""

    n: int
    t: int
    order: Array | None  # permutation that sorts the batch by length (None: no lengths)
    packing: Packing
    plan: object  # the rnnkit.plan.Plan forward ran
    inputs: list  # per layer: its input (packed, or batch-major) after dropout
    dirs: list  # per layer: list of Buffers per direction
    masks: list  # per layer: the dropout mask applied to its output (or None)
    hh_masks: dict | None  # weight drop's masks of W_hh, by parameter suffix (or None)
    layer_id: int
    owned: list  # (key, array) of the layer's work pool, returned to it after backward


# Work arrays kept between calls, per thread (two threads may run one layer at once) and per
# layer (weakly: they go with it). Fresh 10–100 MB arrays would cost a page fault every 4 kB.
_pools = threading.local()


def _pool(layer) -> dict:
    pools = getattr(_pools, "by_layer", None)
    if pools is None:
        pools = _pools.by_layer = weakref.WeakKeyDictionary()
    return pools.setdefault(layer, {})


def work_array(layer, key: tuple, shape: tuple, owned: list | None) -> Array:
    """An uninitialised work array from this thread's pool for the layer. With ``owned`` a
    list, the array leaves the pool and is recorded there (a cache holds it until
    :func:`return_arrays`); with None it stays in the pool and serves the next call too."""
    pool, size = _pool(layer), math.prod(shape)
    a = pool.get(key)
    if a is None or a.size < size or a.dtype != layer.dtype:
        a = np.empty(size, dtype=layer.dtype)
        if owned is None:
            pool[key] = a
    elif owned is not None:
        del pool[key]
    if owned is not None:
        owned.append((key, a))
    return a[:size].reshape(shape)


def return_arrays(layer, owned: list) -> None:
    """Give a used cache's work arrays back to the pool (the larger one of a key stays)."""
    pool = _pool(layer)
    for key, a in owned:
        old = pool.get(key)
        if old is None or old.size < a.size or old.dtype != a.dtype:
            pool[key] = a


def _scratch(layer, n: int) -> tuple[Array, Array, Array, Array]:
    """Per-step scratch (G, Gx (n, G·H), S, S2 (n, H)), reused across steps and calls."""
    GH, H = layer.cell.gates * layer.hidden_size, layer.hidden_size
    return (work_array(layer, ("g",), (n, GH), None), work_array(layer, ("gx",), (n, GH), None),
            work_array(layer, ("s",), (n, H), None), work_array(layer, ("s2",), (n, H), None))


# ------------------------------------------------------------------------------ the Python loop
def step_forward(K, cell, w: Weights, n: int, a, e, hp, cp, hn, cn, g, s) -> None:
    """One step for the rows [:n], products by NumPy (``a``, ``e`` the step's n rows; states
    (N, H); ``g``, ``s`` scratch)."""
    H = cell.hidden_size
    if cell.kind == GRU_BEFORE:
        np.matmul(hp[:n], w.w_hhT[:, :2 * H], out=g[:n, :2 * H])
        K.gru_before_fwd1(g, a, hp, e, n)
        np.matmul(e, w.w_hhT[:, 2 * H:], out=s[:n])
        K.gru_before_fwd2(s, a, hp, hn, n)
        return
    np.matmul(hp[:n], w.w_hhT, out=g[:n])
    if cell.kind == RNN:
        K.rnn_fwd(g, a, hn, cell.relu, n)
    elif cell.kind == LSTM:
        K.lstm_fwd(g, a, cp, cn, hn, w.p, n)
    else:
        K.gru_after_fwd(g, a, hp, e, hn, w.b_hn, n)


def step_backward(K, cell, w: Weights, n: int, a, e, hp, cp, cn, dh, dc, dout, g, s,
                  s2) -> None:
    """One step backwards for the rows [:n]: ``a`` becomes ∂L/∂XW_t, ``dh`` (``dc``) carry
    ∂L/∂h_{t−1} (∂L/∂c_{t−1}) out."""
    H = cell.hidden_size
    if cell.kind in (RNN, LSTM):
        if cell.kind == RNN:
            K.rnn_bwd(a, dh, dout, cell.relu, n)
        else:
            K.lstm_bwd(a, cp, cn, dh, dout, dc, w.p, w.dp, n)
        np.matmul(a, w.w_hh, out=dh[:n])
        return
    if cell.kind == GRU_AFTER:
        K.gru_after_bwd(a, hp, e, dh, dout, g, n)
        np.matmul(g[:n], w.w_hh, out=s[:n])
    else:
        K.gru_before_bwd1(a, hp, dh, dout, n)
        np.matmul(a[:, 2 * H:], w.w_hh[2 * H:], out=s2[:n])
        K.gru_before_bwd2(a, hp, s2, dh, n)
        np.matmul(a[:, :2 * H], w.w_hh[:2 * H], out=s[:n])
    dh[:n] += s[:n]


def _step_loops(layer, K, buf: Buffers, w: Weights, pk: Packing, backward=None):
    """Forward over all steps, or with ``backward = (dout, dh, dc, probe)`` backwards."""
    cell, t_len, n, steps, off = layer.cell, pk.t, pk.n, pk.steps, pk.off
    g, _, s, s2 = _scratch(layer, n)
    Hx, Cx, E, A = buf.Hx, buf.Cx, buf.E, buf.A
    for i in range(t_len):
        # Backward visits the steps in the opposite order to forward.
        ti = (t_len - 1 - i) if (buf.reverse == (backward is None)) else i
        src, dst = (ti + 1, ti) if buf.reverse else (ti, ti + 1)
        m, o = steps[ti], off[ti]
        e = None if E is None else E[o:o + m]
        cp = cn = None
        if Cx is not None:
            cp, cn = Cx[src], Cx[dst]
        if backward is None:
            if m and buf.ex is not None:
                buf.ex.forward(K, cell, w, m, o, A[o:o + m], e, Hx[src], cp, Hx[dst], cn, g, s)
            elif m:
                step_forward(K, cell, w, m, A[o:o + m], e, Hx[src], cp, Hx[dst], cn, g, s)
            if m < n:  # ended (or not yet started) sequences carry their state
                Hx[dst, m:] = Hx[src, m:]
                if Cx is not None:
                    Cx[dst, m:] = Cx[src, m:]
        elif m:
            dout, dh, dc, probe = backward
            if probe is not None:  # ∂L/∂h_t = what flows back from t+1 plus dout_t
                probe[ti, :m] = np.linalg.norm(dh[:m] + dout[o:o + m], axis=1)
            if buf.ex is None:
                step_backward(K, cell, w, m, A[o:o + m], e, Hx[src], cp, cn, dh, dc,
                              dout[o:o + m], g, s, s2)
            else:
                buf.ex.backward(K, cell, w, m, o, A[o:o + m], e, Hx[src], cp, cn, dh, dc,
                                dout[o:o + m], g, s, s2)


# ------------------------------------------------------------------------------ compiled loops
def _right_operand(m: Array, products: str, n: int) -> tuple[Array, Array]:
    """(packed, plain): one right operand (k, cols) of a loop's products, packed for MKL (for
    products of at most n rows) or for rnnkit's own GEMM (rnnkit._simd), or plain and
    contiguous for NumPy's cblas_?gemm and for products in the loop; the other one empty."""
    if products == "mkl":
        return blas.pack(m, n), np.empty((0, 0), m.dtype)
    if products == "packed":
        return blas.own_pack(m), np.empty((0, 0), m.dtype)
    return np.empty(0, np.uint8), np.ascontiguousarray(m)


def _operands(cell, w: Weights, products: str, n: int, backward: bool):
    """(gemm, Wp1, Wp2, W1, W2): the recurrent products' right operands, one per
    ``cell.recurrent_blocks()`` — W_hhᵀ's blocks forward, W_hh's backward — as
    :func:`_right_operand` makes them, and ``gemm`` the routine that takes them: MKL's ctypes
    routine, an empty int8 array for rnnkit's own GEMM, NumPy's cblas_?gemm, or None for
    products in the loop."""
    mats = [w.w_hh[b] for b in cell.recurrent_blocks()]
    ops = [_right_operand(m if backward else m.T, products, n) for m in mats]
    # No second block: empty operands of the types the path's loops compile its product for
    # (they compile the reset-before GRU's second product for every cell).
    dt = w.w_hh.dtype
    ops.append((np.empty(0, dt if products == "packed" else np.uint8), np.empty((0, 0), dt)))
    gemm = None
    if products == "mkl":
        gemm = blas.routines(w.w_hh.dtype).compute
    elif products == "packed":
        gemm = np.empty(0, np.int8)
    elif products == "cblas":
        gemm = blas.numpy_gemm(w.w_hh.dtype)
    return gemm, ops[0][0], ops[1][0], ops[0][1], ops[1][1]


def _run_compiled(layer, K, plan, buf: Buffers, w: Weights, pk: Packing, *, y=None, d=0,
                  backward=None) -> None:
    """The compiled forward (or, with ``backward = (dout, dh, dc)``, backward) loop of one
    direction, on the plan's layout and products, in the plan's row blocks."""
    cell, n, H = layer.cell, pk.n, layer.hidden_size
    dt = layer.dtype
    g, _, s, _ = _scratch(layer, n)
    bm = plan.layout == "batch-major"
    E = buf.E if buf.E is not None else (np.empty((0, pk.t, H), dt) if bm
                                        else np.empty((0, H), dt))
    Cx = buf.Cx if buf.Cx is not None else np.empty((pk.t + 1, 0, H), dt)
    ops = _operands(cell, w, plan.products, n, backward is not None)
    common = (cell.kind, cell.relu) + ops
    weights = w.w_hh.size
    if backward is None:
        args = common + (w.b_or_zeros, w.p, w.b_hn, buf.A, E, buf.Hx, Cx)
        if bm:
            def run(*block):
                K.bm_forward(*args, y, d, g, s, buf.reverse, *block)
        else:
            def run(*block):
                K.tm_forward(*args, g, s, pk.steps, pk.off, buf.reverse, *block)
        blas.run_blocks(run, pk.lengths, weights, plan.blocks, plan.threads)
        return
    dout, dh, dc = backward
    dc = dc if dc is not None else np.empty((n, 0), dt)
    args = common + (w.p, w.dp, buf.A, E, buf.Hx, Cx)
    if bm:
        def run(*block):
            K.bm_backward(*args, dout, d, dh, dc, g, s, buf.reverse, *block)
    else:
        def run(*block):
            K.tm_backward(*args, g, s, pk.steps, pk.off, buf.reverse, dout, dh, dc, *block)
    blas.run_blocks(run, pk.lengths, weights, plan.backward_blocks, plan.backward_threads)


# ------------------------------------------------------------------------------ forward
def _product(a: Array, w: Array, plan, out: Array, accumulate: bool = False) -> Array:
    """out (+)= a @ w for the layer's products outside its time loops: the input projection
    of all steps at once (SPEC §5), ∂L/∂X = ∂L/∂XW · W_ih, and the weight gradients (a = dAᵀ,
    a transposed view). Where the loops run rnnkit's own products on several threads, these
    are made by them too, on row blocks of out, one per thread: a multi-threaded BLAS call
    leaves that BLAS's threads spinning on the cores the loop's threads are about to use (LSTM
    (32, 100, 128, 256) on 2 threads of a Zen 5 EPYC: inference loop 8.5 ms after our own
    input projection, 15 after OpenBLAS's; training loops 17 → 28–45 ms beside OpenBLAS's
    weight gradients). On one thread the library's: faster in training (it packs a as well:
    3–10% on a whole training step on a Zen 5 EPYC), and an inference pass gained only 0–3.5%
    from rnnkit's own (float32, every cell), not worth what it costs in compilation."""
    threads = max(plan.blocks, plan.threads)
    if plan.products != "packed" or threads == 1:
        return blas.matmul(a, w, out=out, accumulate=accumulate)
    from . import _simd

    packed = blas.own_pack(w)
    m, k = a.shape
    cols, beta = w.shape[1], 1.0 if accumulate else 0.0
    if a.strides[0] == a.itemsize and m > 1:  # aᵀ's rows are contiguous: a weight gradient
        at = a.T

        def run(r0, r1, *_):
            ap = np.empty((8, _simd.K_BLOCK), a.dtype)
            _simd.product_t_rows(r0, r1, cols, k, at, packed, beta, out, ap)
    else:
        def run(r0, r1, *_):
            _simd.product_rows(r0, r1, cols, k, a, packed, beta, out)
    blas.run_blocks(run, np.ones(m, np.int64), 0, threads)
    return out


def _output_mask(layer, layer_i: int, pk: Packing, width: int, batch_major: bool):
    """The dropout mask of layer ``layer_i``'s output in the path's layout — (N, T, width)
    batch-major (broadcast over T when variational), (P, width) packed — or None."""
    steps = pk.t * pk.n if batch_major else pk.size
    mask = layer.dropout_mask((steps, width), layer_i, pk.n)
    if mask is None:
        return None
    if layer.variational:  # (N, width): one mask per sequence
        return mask[:, None, :] if batch_major else mask[pk.rows]
    return mask.reshape(pk.t, pk.n, -1).transpose(1, 0, 2) if batch_major else mask


# A projected LSTM (cells.LSTMCell, proj_size P): h_t = W_hr m_t, m_t = o ⊙ tanh(c_t). Its
# loops run the plain LSTM step on m with U' = U W_hr (G·H, H), since h_{t−1} Uᵀ =
# m_{t−1} U'ᵀ; the given h_0 enters through XW of each sequence's first step (h_0 Uᵀ, m_0 = 0),
# and h_t = m_t W_hrᵀ is made for all steps at once after the loop. Backward: ∂L/∂m =
# ∂L/∂h W_hr, ∂L/∂U = ∂L/∂U' W_hrᵀ (+ the first step's dA_0ᵀ h_0), ∂L/∂W_hr = Uᵀ ∂L/∂U' +
# Σ_t ∂L/∂h_tᵀ m_t, ∂L/∂h_0 = dA_0 U.

def _first_rows(pk: Packing, reverse: bool) -> Array:
    """The packed row of each sequence's first step in this direction (N,)."""
    rows = np.arange(pk.n)
    return pk.off[pk.lengths - 1] + rows if reverse else pk.off[0] + rows


def _outputs(buf: Buffers, w: Weights, pk: Packing) -> Array:
    """The direction's h_t of every alive step, packed (P_rows, H or P)."""
    m = pk.pack(buf.states())
    return m if w.w_hr is None else blas.matmul(m, w.w_hr.T)


def forward_time_major(layer, plan, x: Array, h0: Array, c0: Array | None, pk: Packing,
                       order: Array | None, inference: bool, hh_masks: dict | None = None):
    """Every layer on packed time-major arrays (layouts "step" and "time-major"); x, h0 and
    c0 sorted by length. → (out (N, T, dirs·H) as a view, h_n, c_n, cache or None)."""
    K = kernels_named(plan.kernel)
    n, t = pk.n, pk.t
    H, Ho, dirs = layer.hidden_size, layer.output_size, layer.num_directions
    # Work arrays come from the layer's pool: borrowed by the cache until backward returns
    # them (training), used in place (inference).
    owned = None if inference else []
    xt = work_array(layer, ("x",), (t, n, x.shape[2]), owned)
    np.copyto(xt, x.transpose(1, 0, 2))
    inp = pk.pack(xt)
    hn = np.empty_like(h0)
    cn = None if c0 is None else np.empty_like(c0)
    inputs, dir_bufs, masks = [], [], []
    for layer_i in range(layer.num_layers):
        bufs, ws = [], []
        for direction in range(dirs):
            idx, reverse, key = layer_i * dirs + direction, bool(direction), (layer_i, direction)
            w = layer.weights(layer_i, direction, hh_masks)
            ws.append(w)
            # One matrix product for the input projection of every step (SPEC §5).
            A = _product(inp, w.w_ih.T, plan, work_array(
                layer, key + ("A",), (pk.size, w.w_ih.shape[0]), owned))
            Hx = work_array(layer, key + ("H",), (t + 1, n, H), owned)
            Hx[t if reverse else 0] = h0[idx] if w.w_hr is None else 0
            if w.w_hr is not None:
                A[_first_rows(pk, reverse)] += blas.matmul(h0[idx], w.u.T)
            Cx = None
            if c0 is not None:
                Cx = work_array(layer, key + ("C",), (t + 1, n, H), owned)
                Cx[t if reverse else 0] = c0[idx]
            E = work_array(layer, key + ("E",), (pk.size, H), owned) \
                if layer.cell.needs_extra else None
            buf = Buffers(A=A, Hx=Hx, Cx=Cx, E=E, reverse=reverse,
                          h0=None if w.w_hr is None else h0[idx],
                          ex=step_extras.make(layer, layer_i, direction, pk.size, n,
                                              inference))
            if buf.ex is not None:
                buf.ex.normalise_input(A)
            if plan.layout == "step":
                if w.b is not None:
                    A += w.b
                _step_loops(layer, K, buf, w, pk)
            else:
                _run_compiled(layer, K, plan, buf, w, pk)
            hn[idx] = buf.final(Hx) if w.w_hr is None else blas.matmul(buf.final(Hx), w.w_hr.T)
            if cn is not None:
                cn[idx] = buf.final(Cx)
            bufs.append(buf)
        if dirs == 1:
            out = _outputs(bufs[0], w, pk)  # a view when nothing is padded or projected
        else:
            out = work_array(layer, ("out", layer_i), (pk.size, dirs * Ho), owned)
            for direction, (buf, w) in enumerate(zip(bufs, ws, strict=True)):
                out[:, direction * Ho:(direction + 1) * Ho] = _outputs(buf, w, pk)
        if not inference:
            inputs.append(inp)
            dir_bufs.append(bufs)
        mask = _output_mask(layer, layer_i, pk, dirs * Ho, False)
        if mask is not None:
            out = out * mask  # never in place: out may be a view of the cache
        masks.append(mask)
        inp = out
    cache = None
    if not inference:
        cache = Cache(n=n, t=t, order=order, packing=pk, plan=plan, inputs=inputs,
                      dirs=dir_bufs, masks=masks, hh_masks=hh_masks, layer_id=id(layer),
                      owned=owned)
    return pk.unpack(inp).transpose(1, 0, 2), hn, cn, cache


def forward_batch_major(layer, plan, x: Array, h0: Array, c0: Array | None, pk: Packing,
                        hh_masks: dict | None = None):
    """Training forward pass on batch-major arrays (a batch without padding): each layer's
    input (N, T, D_k) is multiplied by W_ihᵀ as it is, the loops write h_t into the layer's
    output (N, T, dirs·H), and the cache keeps the input by reference (as PyTorch's autograd
    does). → (out, h_n, c_n, cache). The time-major path copies x, the output, ∂L/∂out and
    ∂L/∂x between layouts; here none of them goes through memory."""
    K = kernels_named(plan.kernel)
    n, t, H, dirs = pk.n, pk.t, layer.hidden_size, layer.num_directions
    owned: list = []
    hn = np.empty_like(h0)
    cn = None if c0 is None else np.empty_like(c0)
    inp = np.ascontiguousarray(x)
    inputs, dir_bufs, masks = [], [], []
    for layer_i in range(layer.num_layers):
        shape = (n, t, dirs * H)
        if layer_i == layer.num_layers - 1:  # returned to the caller
            y = np.empty(shape, dtype=layer.dtype)
        else:  # the next layer's input, kept by the cache
            y = work_array(layer, ("out", layer_i), shape, owned)
        y4 = y.reshape(n, t, dirs, H)
        bufs = []
        for direction in range(dirs):
            idx, reverse, key = layer_i * dirs + direction, bool(direction), (layer_i, direction)
            w = layer.weights(layer_i, direction, hh_masks)
            A = work_array(layer, key + ("A",), (n * t, w.w_ih.shape[0]), owned)
            _product(inp.reshape(n * t, -1), w.w_ih.T, plan, A)
            A = A.reshape(n, t, -1)
            Hp = work_array(layer, key + ("H",), (n, t, H), owned)
            Hp[:, t - 1 if reverse else 0] = h0[idx]
            Cx = None
            if c0 is not None:
                Cx = work_array(layer, key + ("C",), (t + 1, n, H), owned)
                Cx[t if reverse else 0] = c0[idx]
            E = work_array(layer, key + ("E",), (n, t, H), owned) \
                if layer.cell.needs_extra else None
            buf = Buffers(A=A, Hx=Hp, Cx=Cx, E=E, reverse=reverse)
            _run_compiled(layer, K, plan, buf, w, pk, y=y4, d=direction)
            hn[idx] = y4[:, 0 if reverse else t - 1, direction]
            if cn is not None:
                cn[idx] = Cx[0 if reverse else t]
            bufs.append(buf)
        inputs.append(inp)
        dir_bufs.append(bufs)
        # Drawn in the time-major path's order: the same seed, the same masks.
        mask = _output_mask(layer, layer_i, pk, dirs * H, True)
        if mask is not None:
            y = y * mask
        masks.append(mask)
        inp = y
    cache = Cache(n=n, t=t, order=None, packing=pk, plan=plan, inputs=inputs, dirs=dir_bufs,
                  masks=masks, hh_masks=hh_masks, layer_id=id(layer), owned=owned)
    return inp, hn, cn, cache


def infer_batch_major(layer, plan, x: Array, h0: Array, c0: Array | None, pk: Packing):
    """Inference with each step's input product inside the time loop: the loops read x
    (N, T, D), rows sorted by length, and write each layer's output (N, T, dirs·H) in place;
    the state lives in two slots. → (out, h_n, c_n).

    SPEC §5 asks for one input product before the loop, and training keeps it (backward
    needs XW anyway). For inference this measured faster, as no (P, G·H) projection and no
    time-major copy of the input or the output go through memory (README "Speed")."""
    K = kernels_named(plan.kernel)
    n, t, H, dirs, dt = pk.n, pk.t, layer.hidden_size, layer.num_directions, layer.dtype
    cell = layer.cell
    hn = np.empty_like(h0)
    cn = None if c0 is None else np.empty_like(c0)
    inp = np.ascontiguousarray(x)
    g, gx, s, s2 = _scratch(layer, n)
    for layer_i in range(layer.num_layers):
        shape = (n, t, dirs * H)
        if layer_i == layer.num_layers - 1:  # returned to the caller: a fresh array
            y = (np.zeros if pk.padded else np.empty)(shape, dtype=dt)
        else:  # the next layer's input
            y = work_array(layer, ("y", layer_i % 2), shape, None)
            if pk.padded:
                y.fill(0)
        for direction in range(dirs):
            idx = layer_i * dirs + direction
            w = layer.weights(layer_i, direction)
            Hx = work_array(layer, ("h2",), (2, n, H), None)
            Hx[0] = h0[idx]
            Cx = np.empty((2, 0, H), dt)
            if c0 is not None:
                Cx = work_array(layer, ("c2",), (2, n, H), None)
                Cx[0] = c0[idx]
            E = s2 if cell.needs_extra else np.empty((0, H), dt)
            ops = _operands(cell, w, plan.products, n, False)
            wx = _right_operand(w.w_ih.T, plan.products, n)  # W_ihᵀ, in the loop
            args = (cell.kind, cell.relu, ops[0]) + wx + ops[1:] + (
                w.b_or_zeros, w.p, w.b_hn, inp, Hx, Cx, gx, E, y, direction * H, g, s,
                pk.steps, bool(direction))
            blas.run_blocks(lambda *block, args=args: K.bm_infer(*args, *block), pk.lengths,
                            w.w_hh.size + w.w_ih.size, plan.blocks, plan.threads)
            hn[idx] = Hx[t % 2]
            if cn is not None:
                cn[idx] = Cx[t % 2]
        inp = y
    return inp, hn, cn


# ------------------------------------------------------------------------------ backward
def backward(layer, dout: Array | None, dh_n, dc_n, cache: Cache):
    """Backward of whichever forward made the cache. → (dx, dh_0, dc_0), rows in the
    caller's order."""
    if cache.plan.layout == "batch-major":
        return _backward_batch_major(layer, dout, dh_n, dc_n, cache)
    return _backward_time_major(layer, dout, dh_n, dc_n, cache)


def _final_grads(layer, dh_n: Array | None, dc_n: Array | None, idx: int, n: int):
    """The carried ∂L/∂h (and ∂L/∂c) at the start of one direction's backward loop."""
    H, dt = layer.hidden_size, layer.dtype
    dh = np.zeros((n, layer.output_size), dt) if dh_n is None else dh_n[idx].copy()
    dc = None
    if layer.cell.has_cell_state:
        dc = np.zeros((n, H), dt) if dc_n is None else dc_n[idx].copy()
    return dh, dc


def _backward_batch_major(layer, dout, dh_n, dc_n, cache: Cache):
    """The loops read ∂L/∂out (N, T, dirs·H) as given, and ∂L/∂x comes out of one product
    per direction in the batch-major layout."""
    K = kernels_named(cache.plan.kernel)
    n, t, pk = cache.n, cache.t, cache.packing
    H, dirs, L = layer.hidden_size, layer.num_directions, layer.num_layers
    dy = (np.zeros((n, t, dirs * H), layer.dtype) if dout is None
          else np.ascontiguousarray(dout))
    dh0 = np.zeros((L * dirs, n, H), dtype=layer.dtype)
    dc0 = np.zeros_like(dh0) if layer.cell.has_cell_state else None
    bufs_all, cache.dirs = cache.dirs, None
    for layer_i in range(L - 1, -1, -1):
        if cache.masks[layer_i] is not None:
            dy = dy * cache.masks[layer_i]
        inp = cache.inputs[layer_i]
        if layer_i == 0:  # returned to the caller
            dx = np.empty(inp.shape, dtype=layer.dtype)
        else:
            dx = work_array(layer, ("dx", layer_i), inp.shape, None)
        dy4 = dy.reshape(n, t, dirs, H)
        for direction in range(dirs):
            idx = layer_i * dirs + direction
            buf = bufs_all[layer_i][direction]
            w = layer.weights(layer_i, direction, cache.hh_masks)
            dh, dc = _final_grads(layer, dh_n, dc_n, idx, n)
            _run_compiled(layer, K, cache.plan, buf, w, pk, d=direction,
                          backward=(dy4, dh, dc))
            E = None if buf.E is None else buf.E.reshape(n * t, H)
            _param_grads(layer, cache.plan, buf.A.reshape(n * t, -1), inp.reshape(n * t, -1),
                         buf.Hx.reshape(n * t, H), E, w, dx.reshape(n * t, -1), direction > 0)
            dh0[idx] = dh
            if dc0 is not None:
                dc0[idx] = dc
        dy = dx
    return dy, dh0, dc0


def _backward_time_major(layer, dout, dh_n, dc_n, cache: Cache):
    K = kernels_named(cache.plan.kernel)
    n, t = cache.n, cache.t
    H, dirs, L = layer.output_size, layer.num_directions, layer.num_layers
    order, pk = cache.order, cache.packing
    if order is not None:
        dout = None if dout is None else dout[order]
        dh_n = None if dh_n is None else dh_n[:, order]
        dc_n = None if dc_n is None else dc_n[:, order]
    if dout is None:
        d_inp = np.zeros((pk.size, dirs * H), dtype=layer.dtype)
    else:
        dt = work_array(layer, ("dout",), (t, n, dirs * H), None)
        np.copyto(dt, dout.transpose(1, 0, 2))
        d_inp = pk.pack(dt)
    dh0 = np.zeros((L * dirs, n, H), dtype=layer.dtype)
    dc0 = (np.zeros((L * dirs, n, layer.hidden_size), layer.dtype)
           if layer.cell.has_cell_state else None)
    bufs_all, cache.dirs = cache.dirs, None
    for layer_i in range(L - 1, -1, -1):
        mask = cache.masks[layer_i]
        if mask is not None:
            d_inp = d_inp * mask
        inp = cache.inputs[layer_i]
        d_below = work_array(layer, ("dx", layer_i), inp.shape, None)
        for direction in range(dirs):
            idx = layer_i * dirs + direction
            dh, dc = _final_grads(layer, dh_n, dc_n, idx, n)
            d_dir = d_inp if dirs == 1 else np.ascontiguousarray(
                d_inp[:, direction * H:(direction + 1) * H])
            buf = bufs_all[layer_i][direction]
            w = layer.weights(layer_i, direction, cache.hh_masks)
            if w.w_hr is not None:
                d_dir, dh = _projection_backward(layer, w, buf, pk, d_dir, dh)
            if cache.plan.layout == "step":
                probe = None if layer.probe is None else np.zeros((t, n), dtype=np.float64)
                _step_loops(layer, K, buf, w, pk, backward=(d_dir, dh, dc, probe))
                if probe is not None:
                    layer.probe.append((layer_i, direction, probe))
            else:
                _run_compiled(layer, K, cache.plan, buf, w, pk, backward=(d_dir, dh, dc))
            _param_grads(layer, cache.plan, buf.A, inp, pk.pack(buf.hprev()), buf.E, w, d_below,
                         direction > 0, buf.ex, pk)
            if w.w_hr is not None:  # h_0 entered through XW of each first step
                dA0 = buf.A[_first_rows(pk, buf.reverse)]
                dh = dA0 @ w.u
                du = dA0.T @ buf.h0
                layer.grads[f"weight_hh{w.suffix}"] += du if w.hh_mask is None \
                    else du * w.hh_mask
            dh0[idx] = dh
            if dc0 is not None:
                dc0[idx] = dc
        d_inp = d_below
    d_inp = pk.unpack(d_inp)
    return unsort(order, d_inp.transpose(1, 0, 2), dh0, dc0)


def _projection_backward(layer, w: Weights, buf: Buffers, pk: Packing, d_out: Array,
                         dh_n: Array) -> tuple[Array, Array]:
    """A projected LSTM's ∂L/∂h (the outputs' (P_rows, P), the final state's (N, P)) → the
    loops' ∂L/∂m, adding Σ_t ∂L/∂h_tᵀ m_t into ∂L/∂W_hr."""
    m = pk.pack(buf.states())
    g = layer.grads[f"weight_hr{w.suffix}"]
    g += d_out.T @ m
    g += dh_n.T @ buf.final(buf.Hx)
    return d_out @ w.w_hr, dh_n @ w.w_hr


def _param_grads(layer, plan, dA: Array, inp: Array, hprev: Array, E: Array | None,
                 w: Weights, dx: Array, accumulate: bool, ex=None,
                 pk: Packing | None = None) -> None:
    """The weight gradients of all steps, one matrix product each (SPEC §5), from
    ∂L/∂XW ``dA`` (P, G·H), the input (P, D_k) and h_{t−1} (P, H), whose rows pair up
    (any order); ∂L/∂input = dA W_ih written (or added) into ``dx`` (P, D_k). With step
    extras ``ex`` (rows packed by ``pk``) the products go through their normalisations."""
    g, s = layer.grads, w.suffix
    d_in = dA if ex is None else ex.input_grad(dA)  # ∂L/∂(X W_ihᵀ)
    _product(d_in.T, inp, plan, g[f"weight_ih{s}"], accumulate=True)
    db = None
    if w.b is not None:
        db = dA.sum(axis=0)
        g[f"bias_ih{s}"] += db
    # With weight drop the loops ran W_hh ⊙ M: ∂L/∂W_hh = ∂L/∂(W_hh ⊙ M) ⊙ M; a projected
    # LSTM's ran U' = U W_hr (see _first_rows).
    own = w.hh_mask is None and w.w_hr is None
    dw = g[f"weight_hh{s}"] if own else np.zeros_like(w.w_hh)
    if ex is None:
        layer.cell.add_hh_grad(dA, hprev, E, db, dw, g.get(f"bias_hh{s}"),
                               lambda a, b, out, accumulate: _product(a, b, plan, out,
                                                                      accumulate))
    else:
        ex.add_hh_grads(layer.cell, hprev, E, pk.rows, db, dw, g.get(f"bias_hh{s}"))
    if w.w_hr is not None:
        g[f"weight_hr{s}"] += w.u.T @ dw
        dw = dw @ w.w_hr.T
    if not own:
        g[f"weight_hh{s}"] += dw if w.hh_mask is None else dw * w.hh_mask
    _product(d_in, w.w_ih, plan, dx, accumulate)


def unsort(order: Array | None, a: Array, h: Array, c: Array | None):
    """Rows back in the caller's order: a (N, T, F), the states h, c (L, N, H) (c may be None).
    a comes back as an array of its own (it may be a view of a work array, e.g. when N or T
    is 1)."""
    if order is not None:
        inv = np.argsort(order)
        a, h = a[inv], h[:, inv]
        c = None if c is None else c[:, inv]
    a = np.ascontiguousarray(a)
    if not a.flags.owndata:
        a = a.copy()
    return a, h, c
