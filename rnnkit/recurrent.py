"""Recurrent layers: run a cell over time, stacked and bidirectional, on variable-length batches.

    layer = rnnkit.LSTM(input_size, hidden_size, num_layers=1, bidirectional=False, ...)
    out, state, cache = layer.forward(x, state=None, lengths=None)   # (N, T, D) -> (N, T, dirs·H)
    dx, dstate = layer.backward(dout, dstate, cache)                 # adds into layer.grads

Shapes: x (N, T, D), out (N, T, dirs·H), state h (and c for the LSTM) (num_layers·dirs, N, H).
Parameters follow PyTorch's names and shapes: ``weight_ih_l{k}[_reverse]`` (G·H, D_k),
``weight_hh_l{k}[_reverse]`` (G·H, H), ``bias_ih_l{k}[_reverse]`` and ``bias_hh_l{k}[_reverse]``
(G·H,).

Variable lengths. ``lengths`` (N,) marks right-padded sequences. The batch is sorted by length
(longest first, stable) so that the rows alive at step t are a prefix ``[:n_t]``; each step computes
only on that prefix, which is what PyTorch's packed sequences do. Padded steps therefore leave the
state untouched, output zeros and receive no gradient, each sequence's final state is that of its
last valid step, and the reverse direction starts at each sequence's own last valid step (its
state still holds h_0 when the sequence becomes alive).

Internally the layers work on *packed* sequences: the P = Σ_t n_t valid (step, row) pairs in
time-major order, so the input projections and every weight-gradient product cover real tokens
only and padding costs nothing; a step's rows are one contiguous slice. States live in full
(T+1, N, H) buffers, where sequences that have ended (or not yet begun) carry theirs. On MKL,
work that needs no packing runs on the batch-major arrays themselves: inference keeps nothing
for backward (the input, each layer's output, two state slots; see
``RecurrentLayer._infer_batch_major``), and a training step over a batch without padding keeps
its cache batch-major (``RecurrentLayer._forward_batch_major``), so that no time-major copy of
the input, the output or their gradients goes through memory.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import numpy as np

from . import blas
from .backend import claim, kernels, resolve_dtype
from .cells import Cell, GRUCell, LSTMCell, RNNCell

Array = np.ndarray
INIT_STATES = ("zeros", "random", "learned")


def _shape(a) -> tuple:
    return tuple(np.shape(a))


@dataclass
class _Weights:
    """One direction's parameters, in the forms the kernels want (absent ones empty)."""

    w_ih: Array
    w_hh: Array
    b: Array | None  # bias folded into XW
    w_hhT_: Array | None  # contiguous W_hhᵀ, made on first use
    p: Array  # peepholes (3H,) or empty
    dp: Array  # their gradient (added into) or empty
    b_hn: Array  # GRU (reset after) b_hn, or empty
    suffix: str

    @property
    def b_or_empty(self) -> Array:
        """The input bias as the kernels take it: b, or an empty array when there is none."""
        return np.empty(0, self.w_ih.dtype) if self.b is None else self.b

    @property
    def w_hhT(self) -> Array:
        """W_hhᵀ, contiguous: the forward kernels without MKL read it row by row."""
        if self.w_hhT_ is None:
            self.w_hhT_ = np.ascontiguousarray(self.w_hh.T)
        return self.w_hhT_


class _Packing:
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

    def pack(self, a: Array) -> Array:
        """(T, N, F) → (P, F)."""
        flat = a.reshape(self.t * self.n, -1)
        return flat if self.idx is None else flat[self.idx]

    def unpack(self, p: Array) -> Array:
        """(P, F) → (T, N, F), zeros where padded."""
        if self.idx is None:
            return p.reshape(self.t, self.n, -1)
        out = np.zeros((self.t * self.n, p.shape[1]), dtype=p.dtype)
        out[self.idx] = p
        return out.reshape(self.t, self.n, -1)


def _unsort(order: Array | None, a: Array, h: Array, c: Array | None):
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


@dataclass
class _Buffers:
    """One direction of one layer: what forward fills and backward reads (see rnnkit.cells)."""

    A: Array  # (P, G·H) packed XW, then gate activations, then ∂L/∂XW
    Hx: Array  # (T+1, N, H) states; h_0 at index 0 (forward) or T (reverse)
    Cx: Array | None  # (T+1, N, H) LSTM memories, laid out as Hx
    E: Array | None  # (P, H) packed GRU extra
    off: Array  # (T+1,) packed offsets of the steps
    reverse: bool

    def states(self) -> Array:
        """h_t for every t, (T, N, H), a view."""
        return self.Hx[:-1] if self.reverse else self.Hx[1:]

    def hprev(self) -> Array:
        """h_{t−1} for every t, (T, N, H), a view."""
        return self.Hx[1:] if self.reverse else self.Hx[:-1]

    def final(self, x: Array) -> Array:
        return x[0] if self.reverse else x[-1]


@dataclass
class _Work:
    """Per-step scratch buffers, reused across steps and calls (never part of a cache)."""

    g: Array  # (N, G·H)
    x: Array  # (N, G·H) a step's input products (inference)
    h1: Array  # (N, H)
    h2: Array  # (N, H)


# Work arrays kept between calls, per thread (two threads may run one layer at once) and per
# layer (weakly: they go with it). Fresh 10–100 MB arrays would cost a page fault every 4 kB.
_pools = threading.local()


def _pool(layer) -> dict:
    pools = getattr(_pools, "by_layer", None)
    if pools is None:
        pools = _pools.by_layer = weakref.WeakKeyDictionary()
    return pools.setdefault(layer, {})


@dataclass
class _Cache:
    """Everything ``backward`` needs; opaque to users."""

    n: int
    t: int
    order: Array | None  # permutation that sorts the batch by length (None: no lengths)
    packing: _Packing
    inputs: list  # per layer: its packed input (P, D_k) after dropout
    dirs: list  # per layer: list of _Buffers per direction
    masks: list  # per layer: the dropout mask applied to its output (or None)
    layer_id: int
    owned: list  # (key, array) of the layer's work pool, returned to it after backward
    batch_major: bool = False  # made by _forward_batch_major (inputs, buffers batch-major)


# Load MKL (when installed) now, not at the first forward pass: thread limits set before that
# (threadpoolctl, MKL_NUM_THREADS) then apply to it.
blas.blas()

#: Batches of at most this many rows run each direction's whole time loop in one compiled
#: kernel (numba engine): at small N the per-step dispatch from Python would dominate.
SEQUENCE_KERNEL_MAX_ROWS = 4


class RecurrentLayer:
    """Base of :class:`RNN`, :class:`LSTM` and :class:`GRU`; see the module docstring."""

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        bidirectional: bool = False,
        dropout: float = 0.0,
        dtype: str = "float32",
        seed: int | None = None,
        init_state: str = "zeros",
    ):
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(dropout, int | float) and 0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if init_state not in INIT_STATES:
            raise ValueError(f"unknown init_state {init_state!r}; expected one of {INIT_STATES}")
        self.cell = cell
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.bidirectional = bool(bidirectional)
        self.dropout = float(dropout)
        self.dtype = resolve_dtype(dtype)
        self.init_state = init_state
        self.training = True
        #: When a list, backward appends (layer, direction, norms (T, N)) with ‖∂L/∂h_t‖ of
        #: every step and sequence (rnnkit.diagnostics.gradient_flow sets it).
        self.probe: list | None = None
        self.rng = np.random.default_rng(seed)
        self.params: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        self._init_params()
        self.grads: dict[str, Array] = {}
        self.zero_grad()

    # ------------------------------------------------------------------ parameters
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _init_params(self) -> None:
        # PyTorch's initialisation: every weight and bias ~ U(−1/√H, 1/√H).
        H, G = self.hidden_size, self.cell.gates
        k = 1.0 / np.sqrt(H)
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else H * self.num_directions
            for direction in range(self.num_directions):
                s = self._suffix(layer, direction)
                shapes = {f"weight_ih{s}": (G * H, d_in), f"weight_hh{s}": (G * H, H)}
                if self.bias:
                    shapes[f"bias_ih{s}"] = (G * H,)
                    shapes[f"bias_hh{s}"] = (G * H,)
                if getattr(self.cell, "peepholes", False):
                    shapes[f"weight_peephole{s}"] = (3 * H,)
                for name, shape in shapes.items():
                    self.params[name] = self.rng.uniform(-k, k, claim(shape)).astype(self.dtype)
        state_shape = (self.num_layers * self.num_directions, H)
        names = ("h0", "c0") if self.cell.has_cell_state else ("h0",)
        for name in names:
            if self.init_state == "learned":
                self.params[name] = np.zeros(claim(state_shape), dtype=self.dtype)
            elif self.init_state == "random":
                self.buffers[name] = self.rng.uniform(-k, k, state_shape).astype(self.dtype)

    def zero_grad(self) -> None:
        """Set every gradient in ``grads`` to zero (allocating it on first use)."""
        for name, p in self.params.items():
            g = self.grads.get(name)
            if g is None or g.shape != p.shape or g.dtype != p.dtype:
                self.grads[name] = np.zeros_like(p)
            else:
                g.fill(0)

    def train(self, mode: bool = True) -> RecurrentLayer:
        """Training mode: dropout between stacked layers is active."""
        self.training = bool(mode)
        return self

    def eval(self) -> RecurrentLayer:
        """Evaluation mode: no dropout."""
        return self.train(False)

    def num_parameters(self) -> int:
        """The number of trainable values (learned initial states included)."""
        return int(sum(p.size for p in self.params.values()))

    def to_torch_state_dict(self) -> dict:
        """``{name: torch.Tensor}`` for ``torch.nn.{RNN,LSTM,GRU}.load_state_dict`` (same names
        and gate order); raises for what PyTorch cannot compute (see rnnkit.interop)."""
        from .interop import to_torch_state_dict

        return to_torch_state_dict(self)

    def __repr__(self) -> str:
        extra = ""
        if self.num_layers != 1:
            extra += f", num_layers={self.num_layers}"
        if self.bidirectional:
            extra += ", bidirectional=True"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype={self.dtype.name})")

    # ------------------------------------------------------------------ checks
    def _check_x(self, x) -> Array:
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D (N, T, D), got shape {_shape(x)}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
        n, t, d = x.shape
        if d != self.input_size:
            raise ValueError(f"x has {d} features (shape {_shape(x)}), expected "
                             f"input_size={self.input_size}")
        if n == 0 or t == 0:
            raise ValueError(f"x must have at least one sequence and one step, got {_shape(x)}")
        return x.astype(self.dtype, copy=False)

    def _check_lengths(self, lengths, n: int, t: int) -> Array | None:
        if lengths is None:
            return None
        arr = np.asarray(lengths)
        if arr.shape != (n,):
            raise ValueError(f"lengths must have shape (N,) = ({n},), got {_shape(arr)}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                raise ValueError(f"lengths must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.min() < 1 or arr.max() > t:
            raise ValueError(f"lengths must lie in [1, T={t}], got values from {arr.min()} "
                             f"to {arr.max()}")
        return arr

    def _state_pair(self, state, what: str, n: int):
        """Split a state (or dstate) into (h, c) arrays, checking shapes; None stays None."""
        if state is None:
            return None, None
        expected = (self.num_layers * self.num_directions, n, self.hidden_size)
        if self.cell.has_cell_state:
            if not (isinstance(state, tuple | list) and len(state) == 2):
                raise ValueError(f"LSTM {what} must be a pair (h, c) of arrays {expected}, "
                                 f"got {type(state).__name__}")
            parts = state
        else:
            parts = (state, None)
        out = []
        for label, a in zip(("h", "c"), parts, strict=True):
            if a is None:
                out.append(None)
                continue
            a = np.asarray(a)
            if a.shape != expected:
                raise ValueError(f"{what} {label} must have shape (num_layers*dirs, N, H) = "
                                 f"{expected}, got {a.shape}")
            out.append(a.astype(self.dtype, copy=False))
        return out[0], out[1]

    def _initial_state(self, state, n: int):
        h0, c0 = self._state_pair(state, "state", n)
        if state is not None:
            return h0, c0
        shape = (self.num_layers * self.num_directions, n, self.hidden_size)
        names = ("h0", "c0") if self.cell.has_cell_state else ("h0",)
        arrays = []
        for name in names:
            src = self.params.get(name, self.buffers.get(name))
            if src is None:
                arrays.append(np.zeros(shape, dtype=self.dtype))
            else:
                arrays.append(np.repeat(src[:, None, :], n, axis=1))
        return arrays[0], (arrays[1] if len(arrays) > 1 else None)

    # ------------------------------------------------------------------ forward
    def forward(self, x, state=None, lengths=None, inference: bool = False):
        """Run the layer over x (N, T, D).

        Returns ``(out, state, cache)``: out (N, T, dirs·H) with zeros at padded steps; the
        final state in the form of ``state`` — h (L·dirs, N, H), or (h, c) for the LSTM; and the
        cache for :meth:`backward` (None with ``inference=True``, which keeps nothing). The
        cache may hold x itself, not a copy: change x in place before backward and the weight
        gradients follow the change (as with PyTorch's saved tensors).
        """
        x = self._check_x(x)
        n, t, _ = x.shape
        lens = self._check_lengths(lengths, n, t)
        h0, c0 = self._initial_state(state, n)
        K = kernels()
        order = None
        if lens is not None and np.any(lens != t):
            order = np.argsort(-lens, kind="stable")
            steps = (lens[order][None, :] > np.arange(t)[:, None]).sum(axis=1)
            x, h0 = x[order], h0[:, order]
            c0 = None if c0 is None else c0[:, order]
        else:
            steps = np.full(t, n, dtype=np.int64)
        pk = _Packing(steps, n)
        if inference and self._infers_batch_major(K, n):
            out, hn, cn = self._infer_batch_major(K, x, h0, c0, pk)
            cache = None
        elif not inference and self._trains_batch_major(K, pk):
            out, hn, cn, cache = self._forward_batch_major(K, x, h0, c0, pk)
        else:
            out, hn, cn, cache = self._forward_time_major(K, x, h0, c0, pk, order, inference)
        out, hn, cn = _unsort(order, out, hn, cn)
        return out, ((hn, cn) if self.cell.has_cell_state else hn), cache

    def _forward_time_major(self, K, x: Array, h0: Array, c0: Array | None, pk: _Packing,
                            order: Array | None, inference: bool):
        """Every layer on packed time-major arrays (see the module docstring); x, h0 and c0
        sorted by length. → (out (N, T, dirs·H) as a view, h_n, c_n, cache or None)."""
        n, t = pk.n, pk.t
        H, dirs = self.hidden_size, self.num_directions
        # Work arrays come from the layer's pool: borrowed by the cache until backward returns
        # them (training), used in place (inference).
        owned = None if inference else []
        xt = self._array(("x",), (t, n, x.shape[2]), owned)
        np.copyto(xt, x.transpose(1, 0, 2))
        inp = pk.pack(xt)
        hn = np.empty_like(h0)
        cn = None if c0 is None else np.empty_like(c0)
        inputs, dir_bufs, masks = [], [], []
        for layer in range(self.num_layers):
            bufs = []
            for direction in range(dirs):
                idx = layer * dirs + direction
                buf = self._run_direction(K, inp, h0[idx], None if c0 is None else c0[idx],
                                          layer, direction, pk, owned)
                hn[idx] = buf.final(buf.Hx)
                if cn is not None:
                    cn[idx] = buf.final(buf.Cx)
                bufs.append(buf)
            if dirs == 1:
                out = pk.pack(bufs[0].states())  # a view when nothing is padded
            else:
                out = self._array(("out", layer), (pk.size, dirs * H), owned)
                for direction, buf in enumerate(bufs):
                    out[:, direction * H:(direction + 1) * H] = pk.pack(buf.states())
            if not inference:
                inputs.append(inp)
                dir_bufs.append(bufs)
            mask = None
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                mask = self._dropout_mask(out.shape)
                out = out * mask  # never in place: out may be a view of the cache
            masks.append(mask)
            inp = out
        cache = None
        if not inference:
            cache = _Cache(n=n, t=t, order=order, packing=pk, inputs=inputs, dirs=dir_bufs,
                           masks=masks, layer_id=id(self), owned=owned)
        return pk.unpack(inp).transpose(1, 0, 2), hn, cn, cache

    def _trains_batch_major(self, K, pk: _Packing) -> bool:
        """Whether a training forward pass runs on batch-major arrays
        (:meth:`_forward_batch_major`): numba with MKL, more rows than the whole-sequence
        kernels take, no padding, and no gradient probe (which reads the time-major loop)."""
        return (pk.idx is None and pk.n > SEQUENCE_KERNEL_MAX_ROWS and K.has_sequence_kernels
                and blas.blas() == "mkl" and self.probe is None)

    def _forward_batch_major(self, K, x: Array, h0: Array, c0: Array | None, pk: _Packing):
        """Training forward pass on batch-major arrays (a batch without padding): each
        layer's input (N, T, D_k) is multiplied by W_ihᵀ as it is, the loops write h_t into
        the layer's output (N, T, dirs·H), and the cache keeps the input by reference (as
        PyTorch's autograd does: change x in place before backward and the weight gradient
        follows the change). → (out, h_n, c_n, cache).

        The time-major path copies x, the output, ∂L/∂out and ∂L/∂x between layouts; here none
        of them goes through memory. See the batch-major section of rnnkit._numba_kernels."""
        n, t, H, dirs = pk.n, pk.t, self.hidden_size, self.num_directions
        owned: list = []
        hn = np.empty_like(h0)
        cn = None if c0 is None else np.empty_like(c0)
        inp = np.ascontiguousarray(x)
        inputs, dir_bufs, masks = [], [], []
        for layer in range(self.num_layers):
            shape = (n, t, dirs * H)
            if layer == self.num_layers - 1:  # returned to the caller
                y = np.empty(shape, dtype=self.dtype)
            else:  # the next layer's input, kept by the cache
                y = self._array(("out", layer), shape, owned)
            y4 = y.reshape(n, t, dirs, H)
            bufs = []
            for direction in range(dirs):
                idx, reverse, key = layer * dirs + direction, bool(direction), (layer, direction)
                w = self._weights(layer, direction)
                A = self._array(key + ("A",), (n * t, w.w_ih.shape[0]), owned)
                blas.matmul(inp.reshape(n * t, -1), w.w_ih.T, out=A)
                A = A.reshape(n, t, -1)
                Hp = self._array(key + ("H",), (n, t, H), owned)
                Hp[:, t - 1 if reverse else 0] = h0[idx]
                Cx = None
                if c0 is not None:
                    Cx = self._array(key + ("C",), (t + 1, n, H), owned)
                    Cx[t if reverse else 0] = c0[idx]
                E = self._array(key + ("E",), (n, t, H), owned) if self.cell.needs_extra \
                    else None
                self.cell.forward_bm(K, A, Hp, Cx, E, y4, direction, w, pk.lengths, reverse,
                                     self._work(n))
                hn[idx] = y4[:, 0 if reverse else t - 1, direction]
                if cn is not None:
                    cn[idx] = Cx[0 if reverse else t]
                bufs.append(_Buffers(A=A, Hx=Hp, Cx=Cx, E=E, off=pk.off, reverse=reverse))
            inputs.append(inp)
            dir_bufs.append(bufs)
            mask = None
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                # Drawn in the time-major path's order: the same seed, the same masks.
                mask = self._dropout_mask((t * n, dirs * H)).reshape(t, n, -1).transpose(1, 0, 2)
                y = y * mask
            masks.append(mask)
            inp = y
        cache = _Cache(n=n, t=t, order=None, packing=pk, inputs=inputs, dirs=dir_bufs,
                       masks=masks, layer_id=id(self), owned=owned, batch_major=True)
        return inp, hn, cn, cache

    def _dropout_mask(self, shape: tuple) -> Array:
        """Inverted dropout between layers: 0 with probability ``dropout``, else 1/(1−p)."""
        keep_p = 1.0 - self.dropout
        return (self.rng.random(shape) < keep_p).astype(self.dtype) / keep_p

    def _infers_batch_major(self, K, n: int) -> bool:
        """Whether inference runs on batch-major arrays (:meth:`_infer_batch_major`)."""
        return (n > SEQUENCE_KERNEL_MAX_ROWS and K.has_sequence_kernels
                and blas.blas() == "mkl"
                and not (self.training and self.dropout > 0 and self.num_layers > 1)
                and self.cell.fuses_input())

    def _infer_batch_major(self, K, x: Array, h0: Array, c0: Array | None, pk: _Packing):
        """Inference on MKL with each step's input product inside the time loop: the loops
        read x (N, T, D), rows sorted by length, and write each layer's output (N, T, dirs·H)
        in place; the state lives in two slots. → (out, h_n, c_n).

        SPEC §5 asks for one input product before the loop, and training keeps it (backward
        needs XW anyway). For inference this measured faster, as no (P, G·H) projection and
        no time-major copy of the input or the output go through memory. Medians in the
        benchmark's conditions, ms, one product before the loop → products in the loop:
        (N, T, D, H) = (128, 200, 256, 256), 1 thread: RNN 62.9 → 56.6, GRU 152.6 → 133.3,
        LSTM 214.1 → 190.1; 2 threads: RNN 44.3 → 34.9, GRU 81.5 → 75.8, LSTM 113.8 →
        105.3; (32, 100, 128, 256), 1 thread: LSTM 21.8 → 18.8; (64, 50, 512, 512): within
        ±2%."""
        n, t, H, dirs = pk.n, pk.t, self.hidden_size, self.num_directions
        padded = pk.idx is not None
        hn = np.empty_like(h0)
        cn = None if c0 is None else np.empty_like(c0)
        inp = np.ascontiguousarray(x)
        work = self._work(n)
        for layer in range(self.num_layers):
            shape = (n, t, dirs * H)
            if layer == self.num_layers - 1:  # returned to the caller: a fresh array
                y = (np.zeros if padded else np.empty)(shape, dtype=self.dtype)
            else:  # the next layer's input
                y = self._array(("y", layer % 2), shape, None)
                if padded:
                    y.fill(0)
            for direction in range(dirs):
                idx = layer * dirs + direction
                w = self._weights(layer, direction)
                Hx = self._array(("h2",), (2, n, H), None)
                Hx[0] = h0[idx]
                Cx = None
                if c0 is not None:
                    Cx = self._array(("c2",), (2, n, H), None)
                    Cx[0] = c0[idx]
                self.cell.infer_blas(K, inp, y, direction * H, Hx, Cx, w, pk.steps, pk.lengths,
                                     bool(direction), work)
                hn[idx] = Hx[t % 2]
                if cn is not None:
                    cn[idx] = Cx[t % 2]
            inp = y
        return inp, hn, cn

    def _weights(self, layer: int, direction: int) -> _Weights:
        s = self._suffix(layer, direction)
        p, H = self.params, self.hidden_size
        empty = np.empty(0, dtype=self.dtype)
        b_ih, b_hh = p.get(f"bias_ih{s}"), p.get(f"bias_hh{s}")
        w_hh = p[f"weight_hh{s}"]
        b_hn = empty
        if getattr(self.cell, "reset_after", False) and b_hh is not None:
            b_hn = b_hh[2 * H:]
        peep = p.get(f"weight_peephole{s}")
        return _Weights(
            w_ih=p[f"weight_ih{s}"], w_hh=w_hh, b=self.cell.input_bias(b_ih, b_hh),
            w_hhT_=None,
            p=empty if peep is None else peep,
            dp=empty if peep is None else self.grads[f"weight_peephole{s}"],
            b_hn=b_hn, suffix=s)

    def _work(self, n: int) -> _Work:
        G, H = self.cell.gates * self.hidden_size, self.hidden_size
        pool = _pool(self)
        w = pool.get("work")
        if w is None or w.g.shape[0] < n or w.g.dtype != self.dtype:
            w = _Work(g=np.empty((n, G), self.dtype), x=np.empty((n, G), self.dtype),
                      h1=np.empty((n, H), self.dtype), h2=np.empty((n, H), self.dtype))
            pool["work"] = w
        return w

    def _array(self, key: tuple, shape: tuple, owned: list | None) -> Array:
        """An uninitialised work array from this thread's pool for the layer. With ``owned`` a
        list, the array leaves the pool and is recorded there (a cache holds it until
        :meth:`_return`); with None it stays in the pool and serves the next call too."""
        pool, size = _pool(self), math.prod(shape)
        a = pool.get(key)
        if a is None or a.size < size or a.dtype != self.dtype:
            a = np.empty(size, dtype=self.dtype)
            if owned is None:
                pool[key] = a
        elif owned is not None:
            del pool[key]
        if owned is not None:
            owned.append((key, a))
        return a[:size].reshape(shape)

    def _return(self, owned: list) -> None:
        """Give a used cache's work arrays back to the pool (the larger one of a key stays)."""
        pool = _pool(self)
        for key, a in owned:
            old = pool.get(key)
            if old is None or old.size < a.size or old.dtype != a.dtype:
                pool[key] = a

    def _run_direction(self, K, inp, h0, c0, layer, direction, pk: _Packing,
                       owned: list | None) -> _Buffers:
        """One direction of one layer over all steps; returns its filled buffers (work arrays
        as :meth:`_array` with ``owned``)."""
        cell = self.cell
        t_len, n, steps, off = pk.t, pk.n, pk.steps, pk.off
        H = self.hidden_size
        w = self._weights(layer, direction)
        reverse = bool(direction)
        key = (layer, direction)
        use_blas = (n > SEQUENCE_KERNEL_MAX_ROWS and K.has_sequence_kernels
                    and blas.blas() == "mkl")
        # One matrix product for the input projection of every step (SPEC §5).
        A = blas.matmul(inp, w.w_ih.T, out=self._array(
            key + ("A",), (pk.size, w.w_ih.shape[0]), owned))
        if w.b is not None and not use_blas:
            A += w.b
        Hx = self._array(key + ("H",), (t_len + 1, n, H), owned)
        Hx[t_len if reverse else 0] = h0
        Cx = None
        if c0 is not None:
            Cx = self._array(key + ("C",), (t_len + 1, n, H), owned)
            Cx[t_len if reverse else 0] = c0
        E = self._array(key + ("E",), (pk.size, H), owned) if cell.needs_extra else None
        buf = _Buffers(A=A, Hx=Hx, Cx=Cx, E=E, off=off, reverse=reverse)
        if n <= SEQUENCE_KERNEL_MAX_ROWS and K.has_sequence_kernels:
            cell.forward_sequence(K, buf, w, steps, reverse)
            return buf
        work = self._work(n)
        if use_blas:
            cell.forward_blas(K, buf, w, steps, pk.lengths, reverse, work)
            return buf
        for s_ in range(t_len):
            ti = t_len - 1 - s_ if reverse else s_
            src, dst = (ti + 1, ti) if reverse else (ti, ti + 1)
            m = steps[ti]
            if m:
                cell.forward_step(K, off[ti], m, src, dst, buf, w, work)
            if m < n:  # ended (or not yet started) sequences carry their state
                Hx[dst, m:] = Hx[src, m:]
                if Cx is not None:
                    Cx[dst, m:] = Cx[src, m:]
        return buf

    # ------------------------------------------------------------------ backward
    def backward(self, dout, dstate, cache: _Cache):
        """Backpropagate through time.

        ``dout`` (N, T, dirs·H) or None is ∂L/∂out; ``dstate`` (in the form of the state, or
        None) is ∂L/∂(final state). Adds ∂L/∂θ into ``self.grads`` and returns
        ``(dx, dstate0)``: dx (N, T, D) and ∂L/∂(initial state) in the form of the state. With
        ``init_state="learned"`` the latter is also summed over the batch into ``grads["h0"]``.
        A cache serves one backward pass: backward reuses its buffers for the gradients.
        """
        if cache is None:
            raise ValueError("backward needs the cache of a forward pass made with "
                             "inference=False")
        if not isinstance(cache, _Cache) or cache.layer_id != id(self):
            raise ValueError("cache does not come from this layer's forward pass")
        if cache.dirs is None:
            raise ValueError("this cache has already been used by a backward pass")
        n, t = cache.n, cache.t
        if dout is not None:
            dout = np.asarray(dout)
            expected = (n, t, self.num_directions * self.hidden_size)
            if dout.shape != expected:
                raise ValueError(f"dout must have shape (N, T, dirs*H) = {expected}, "
                                 f"got {dout.shape}")
            dout = dout.astype(self.dtype, copy=False)
        dh_n, dc_n = self._state_pair(dstate, "dstate", n)
        K = kernels()
        if cache.batch_major:
            dx, dh0, dc0 = self._backward_batch_major(K, dout, dh_n, dc_n, cache)
        else:
            dx, dh0, dc0 = self._backward_time_major(K, dout, dh_n, dc_n, cache)
        self._return(cache.owned)
        cache.inputs = cache.owned = None
        if "h0" in self.params:
            self.grads["h0"] += dh0.sum(axis=1)
            if dc0 is not None:
                self.grads["c0"] += dc0.sum(axis=1)
        return dx, ((dh0, dc0) if self.cell.has_cell_state else dh0)

    def _final_grads(self, dh_n: Array | None, dc_n: Array | None, idx: int, n: int):
        """The carried ∂L/∂h (and ∂L/∂c) at the start of one direction's backward loop."""
        H = self.hidden_size
        dh = np.zeros((n, H), self.dtype) if dh_n is None else dh_n[idx].copy()
        dc = None
        if self.cell.has_cell_state:
            dc = np.zeros((n, H), self.dtype) if dc_n is None else dc_n[idx].copy()
        return dh, dc

    def _backward_batch_major(self, K, dout, dh_n, dc_n, cache: _Cache):
        """Backward of :meth:`_forward_batch_major`: the loops read ∂L/∂out (N, T, dirs·H)
        as given, and ∂L/∂x comes out of one product per direction in the batch-major layout.
        → (dx, dh_0, dc_0)."""
        n, t, pk = cache.n, cache.t, cache.packing
        H, dirs, L = self.hidden_size, self.num_directions, self.num_layers
        dy = (np.zeros((n, t, dirs * H), self.dtype) if dout is None
              else np.ascontiguousarray(dout))
        dh0 = np.zeros((L * dirs, n, H), dtype=self.dtype)
        dc0 = np.zeros_like(dh0) if self.cell.has_cell_state else None
        bufs_all, cache.dirs = cache.dirs, None
        for layer in range(L - 1, -1, -1):
            if cache.masks[layer] is not None:
                dy = dy * cache.masks[layer]
            inp = cache.inputs[layer]
            if layer == 0:  # returned to the caller
                dx = np.empty(inp.shape, dtype=self.dtype)
            else:
                dx = self._array(("dx", layer), inp.shape, None)
            dy4 = dy.reshape(n, t, dirs, H)
            for direction in range(dirs):
                idx = layer * dirs + direction
                buf = bufs_all[layer][direction]
                w = self._weights(layer, direction)
                dh, dc = self._final_grads(dh_n, dc_n, idx, n)
                self.cell.backward_bm(K, buf.A, buf.Hx, buf.Cx, buf.E, w, pk.lengths,
                                      buf.reverse, dy4, direction, dh, dc, self._work(n))
                E = None if buf.E is None else buf.E.reshape(n * t, H)
                self._param_grads(buf.A.reshape(n * t, -1), inp.reshape(n * t, -1),
                                  buf.Hx.reshape(n * t, H), E, w, dx.reshape(n * t, -1),
                                  direction > 0)
                dh0[idx] = dh
                if dc0 is not None:
                    dc0[idx] = dc
            dy = dx
        return dy, dh0, dc0

    def _backward_time_major(self, K, dout, dh_n, dc_n, cache: _Cache):
        """Backward of :meth:`_forward_time_major`. → (dx, dh_0, dc_0)."""
        n, t = cache.n, cache.t
        H, dirs, L = self.hidden_size, self.num_directions, self.num_layers
        order, pk = cache.order, cache.packing
        if order is not None:
            dout = None if dout is None else dout[order]
            dh_n = None if dh_n is None else dh_n[:, order]
            dc_n = None if dc_n is None else dc_n[:, order]
        if dout is None:
            d_inp = np.zeros((pk.size, dirs * H), dtype=self.dtype)
        else:
            dt = self._array(("dout",), (t, n, dirs * H), None)
            np.copyto(dt, dout.transpose(1, 0, 2))
            d_inp = pk.pack(dt)
        dh0 = np.zeros((L * dirs, n, H), dtype=self.dtype)
        dc0 = np.zeros_like(dh0) if self.cell.has_cell_state else None
        bufs_all, cache.dirs = cache.dirs, None
        for layer in range(L - 1, -1, -1):
            mask = cache.masks[layer]
            if mask is not None:
                d_inp = d_inp * mask
            inp = cache.inputs[layer]
            d_below = self._array(("dx", layer), inp.shape, None)
            for direction in range(dirs):
                idx = layer * dirs + direction
                dh, dc = self._final_grads(dh_n, dc_n, idx, n)
                d_dir = d_inp if dirs == 1 else np.ascontiguousarray(
                    d_inp[:, direction * H:(direction + 1) * H])
                self._backward_direction(K, d_dir, dh, dc, inp, layer, direction, pk,
                                         bufs_all[layer][direction], d_below, direction > 0)
                dh0[idx] = dh
                if dc0 is not None:
                    dc0[idx] = dc
            d_inp = d_below
        d_inp = pk.unpack(d_inp)
        return _unsort(order, d_inp.transpose(1, 0, 2), dh0, dc0)

    def _backward_direction(self, K, dout, dh, dc, inp, layer, direction, pk, buf, dx: Array,
                            accumulate: bool) -> None:
        """Reverse loop of one direction; updates dh/dc in place to ∂L/∂(initial state), adds
        parameter gradients and writes (or adds) ∂L/∂input, packed (P, D_k), into ``dx``."""
        cell = self.cell
        t_len, n, steps, off = pk.t, pk.n, pk.steps, pk.off
        w = self._weights(layer, direction)
        A = buf.A
        reverse = buf.reverse
        probe = None if self.probe is None else np.zeros((t_len, n), dtype=np.float64)
        if probe is None and n <= SEQUENCE_KERNEL_MAX_ROWS and K.has_sequence_kernels:
            cell.backward_sequence(K, buf, w, steps, reverse, dout, dh, dc)
        elif probe is None and K.has_sequence_kernels and blas.blas() == "mkl":
            cell.backward_blas(K, buf, w, steps, pk.lengths, reverse, dout, dh, dc,
                               self._work(n))
        else:
            work = self._work(n)
            # Backward visits the steps in the opposite order to forward.
            for s_ in range(t_len):
                ti = s_ if reverse else t_len - 1 - s_
                src, dst = (ti + 1, ti) if reverse else (ti, ti + 1)
                m = steps[ti]
                if m:
                    o = off[ti]
                    if probe is not None:  # ∂L/∂h_t = what flows back from t+1 plus dout_t
                        probe[ti, :m] = np.linalg.norm(dh[:m] + dout[o:o + m], axis=1)
                    cell.backward_step(K, o, m, src, dst, buf, w, dh, dc, dout[o:o + m], work)
            if probe is not None:
                self.probe.append((layer, direction, probe))
        self._param_grads(A, inp, pk.pack(buf.hprev()), buf.E, w, dx, accumulate)

    def _param_grads(self, dA: Array, inp: Array, hprev: Array, E: Array | None, w,
                     dx: Array, accumulate: bool) -> None:
        """The weight gradients of all steps, one matrix product each (SPEC §5), from
        ∂L/∂XW ``dA`` (P, G·H), the input (P, D_k) and h_{t−1} (P, H), whose rows pair up
        (any order); ∂L/∂input = dA W_ih written (or added) into ``dx`` (P, D_k)."""
        g, s = self.grads, w.suffix
        blas.matmul(dA.T, inp, out=g[f"weight_ih{s}"], accumulate=True)
        db = None
        if w.b is not None:
            db = dA.sum(axis=0)
            g[f"bias_ih{s}"] += db
        self.cell.add_hh_grad(dA, hprev, E, db, g[f"weight_hh{s}"], g.get(f"bias_hh{s}"))
        blas.matmul(dA, w.w_ih, out=dx, accumulate=accumulate)


class RNN(RecurrentLayer):
    """Elman RNN layer: h_t = f(W x_t + U h_{t−1} + b), f = tanh or ReLU (``nonlinearity``).

    x (N, T, D) → out (N, T, dirs·H); state h (num_layers·dirs, N, H). See the module docstring.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, bidirectional: bool = False,
                 dropout: float = 0.0, dtype: str = "float32", seed: int | None = None,
                 init_state: str = "zeros"):
        self.nonlinearity = nonlinearity
        super().__init__(RNNCell(hidden_size, nonlinearity), input_size, hidden_size,
                         num_layers, bias, bidirectional, dropout, dtype, seed, init_state)


class LSTM(RecurrentLayer):
    """LSTM layer (gates i, f, g, o; optional peepholes): see :class:`rnnkit.cells.LSTMCell`.

    x (N, T, D) → out (N, T, dirs·H); state (h, c), each (num_layers·dirs, N, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, bidirectional: bool = False, dropout: float = 0.0,
                 dtype: str = "float32", seed: int | None = None, init_state: str = "zeros",
                 peepholes: bool = False):
        self.peepholes = bool(peepholes)
        super().__init__(LSTMCell(hidden_size, self.peepholes), input_size, hidden_size,
                         num_layers, bias, bidirectional, dropout, dtype, seed, init_state)


class GRU(RecurrentLayer):
    """GRU layer (gates r, z, n): see :class:`rnnkit.cells.GRUCell`.

    ``reset_after=False`` (default) is the notes' form; ``True`` is PyTorch's / cuDNN's.
    x (N, T, D) → out (N, T, dirs·H); state h (num_layers·dirs, N, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, bidirectional: bool = False, dropout: float = 0.0,
                 dtype: str = "float32", seed: int | None = None, init_state: str = "zeros",
                 reset_after: bool = False):
        self.reset_after = bool(reset_after)
        super().__init__(GRUCell(hidden_size, self.reset_after), input_size, hidden_size,
                         num_layers, bias, bidirectional, dropout, dtype, seed, init_state)
