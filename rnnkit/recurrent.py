"""Recurrent layers: run a cell over time, stacked and bidirectional, on variable-length batches.

    layer = rnnkit.LSTM(input_size, hidden_size, num_layers=1, bidirectional=False, ...)
    out, state, cache = layer.forward(x, state=None, lengths=None)   # (N, T, D) -> (N, T, dirs·H)
    dx, dstate = layer.backward(dout, dstate, cache)                 # adds into layer.grads

Shapes: x (N, T, D), out (N, T, dirs·H), state h (and c for the LSTM) (num_layers·dirs, N, H);
with ``batch_first=False`` (PyTorch's default layout) x (T, N, D) and out (T, N, dirs·H), the
state as before. ``out, state = layer(x)`` runs inference and keeps no cache.
Parameters follow PyTorch's names and shapes: ``weight_ih_l{k}[_reverse]`` (G·H, D_k),
``weight_hh_l{k}[_reverse]`` (G·H, H), ``bias_ih_l{k}[_reverse]`` and ``bias_hh_l{k}[_reverse]``
(G·H,).

Variable lengths. ``lengths`` (N,) marks right-padded sequences. The batch is sorted by length
(longest first, stable) so that the rows alive at step t are a prefix ``[:n_t]``; each step computes
only on that prefix, which is what PyTorch's packed sequences do. Padded steps therefore leave the
state untouched, output zeros and receive no gradient, each sequence's final state is that of its
last valid step, and the reverse direction starts at each sequence's own last valid step (its
state still holds h_0 when the sequence becomes alive).

How the time loops run — NumPy or numba, products by NumPy's BLAS, MKL or in the loop, on
packed time-major or batch-major arrays, in row blocks on threads — is decided in one place,
:func:`rnnkit.plan.plan`, and run by :mod:`rnnkit.runner`; the layer checks its inputs, holds
its parameters and hands the batch over. Choose a path with :func:`rnnkit.plan.forced`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import blas, runner
from .backend import claim, resolve_dtype
from .cells import Cell, GRUCell, LSTMCell, RNNCell
from .plan import plan

Array = np.ndarray
INIT_STATES = ("zeros", "random", "learned")


def _shape(a) -> tuple:
    return tuple(np.shape(a))


# Load MKL (when installed) now, not at the first forward pass: thread limits set before that
# (threadpoolctl, MKL_NUM_THREADS) then apply to it.
blas.blas()


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
        weight_drop: float = 0.0,
        variational: bool = False,
        layer_norm: bool = False,
        zoneout: float = 0.0,
        zoneout_cell: float | None = None,
        recurrent_dropout: float = 0.0,
        batch_first: bool = True,
    ):
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if zoneout_cell is None:
            zoneout_cell = zoneout if cell.has_cell_state else 0.0
        for name, value in (("dropout", dropout), ("weight_drop", weight_drop),
                            ("zoneout", zoneout), ("zoneout_cell", zoneout_cell),
                            ("recurrent_dropout", recurrent_dropout)):
            if isinstance(value, bool) or not (isinstance(value, int | float)
                                               and 0.0 <= value < 1.0):
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        if init_state not in INIT_STATES:
            raise ValueError(f"unknown init_state {init_state!r}; expected one of {INIT_STATES}")
        if zoneout_cell > 0 and not cell.has_cell_state:
            raise ValueError("zoneout_cell is the LSTM's cell state's zoneout; this cell has none")
        extras = bool(layer_norm) or zoneout > 0 or zoneout_cell > 0 or recurrent_dropout > 0
        for name, value in (("peepholes", getattr(cell, "peepholes", False)),
                            ("proj_size", cell.proj_size)):
            if extras and value:
                raise ValueError(f"{name} cannot be combined with layer_norm, zoneout or "
                                 f"recurrent_dropout (not implemented)")
        self.cell = cell
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.bidirectional = bool(bidirectional)
        #: x and out are (N, T, ·) when True (rnnkit's layout), (T, N, ·) when False (PyTorch's
        #: default); the state is (layers·dirs, N, H) either way.
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.weight_drop = float(weight_drop)
        self.variational = bool(variational)
        #: The step loop's extras (rnnkit.step_extras).
        self.layer_norm = bool(layer_norm)
        self.zoneout, self.zoneout_c = float(zoneout), float(zoneout_cell)
        self.recurrent_dropout = float(recurrent_dropout)
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

    @property
    def output_size(self) -> int:
        """The size of h_t: ``proj_size`` for a projected LSTM, else ``hidden_size``."""
        return self.cell.output_size

    def _suffix(self, layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _init_params(self) -> None:
        # PyTorch's initialisation: every weight and bias ~ U(−1/√H, 1/√H).
        H, Ho = self.hidden_size, self.output_size
        k = 1.0 / np.sqrt(H)
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else Ho * self.num_directions
            for direction in range(self.num_directions):
                s = self._suffix(layer, direction)
                for name, shape in self.cell.parameter_shapes(d_in).items():
                    if name.startswith("bias") and not self.bias:
                        continue
                    self.params[f"{name}{s}"] = self.rng.uniform(-k, k, claim(shape)).astype(
                        self.dtype)
                if self.layer_norm:  # gains 1, bias 0 (rnnkit.step_extras)
                    GH = self.cell.gates * H
                    for name, size, value in (("ln_weight_ih", GH, 1), ("ln_weight_hh", GH, 1),
                                              ("ln_weight_c", H, 1), ("ln_bias_c", H, 0)):
                        if name.endswith("_c") and not self.cell.has_cell_state:
                            continue
                        self.params[f"{name}{s}"] = np.full(size, value, self.dtype)
        names = ("h0", "c0") if self.cell.has_cell_state else ("h0",)
        for name in names:
            state_shape = (self.num_layers * self.num_directions, Ho if name == "h0" else H)
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

    def __repr__(self) -> str:
        extra = ""
        if self.num_layers != 1:
            extra += f", num_layers={self.num_layers}"
        if self.bidirectional:
            extra += ", bidirectional=True"
        if not self.batch_first:
            extra += ", batch_first=False"
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra}, "
                f"dtype={self.dtype.name})")

    # ------------------------------------------------------------------ checks
    def _check_x(self, x) -> Array:
        """x in the layer's layout → (N, T, D) in the layer's dtype."""
        x = np.asarray(x)
        layout = "(N, T, D)" if self.batch_first else "(T, N, D)"
        if x.ndim != 3:
            raise ValueError(f"x must be 3-D {layout}, got shape {_shape(x)}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
        if x.shape[2] != self.input_size:
            raise ValueError(f"x has {x.shape[2]} features (shape {_shape(x)}), expected "
                             f"input_size={self.input_size}")
        if 0 in x.shape[:2]:
            raise ValueError(f"x must have at least one sequence and one step, got {_shape(x)}")
        if not self.batch_first:  # one copy: transposed and cast together
            return np.ascontiguousarray(x.swapaxes(0, 1), dtype=self.dtype)
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
        rows = self.num_layers * self.num_directions
        expected = (rows, n, self.output_size)
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
            if label == "c":
                expected = (rows, n, self.hidden_size)
            if a.shape != expected:
                raise ValueError(f"{what} {label} must have shape (num_layers*dirs, N, "
                                 f"{'H' if label == 'c' or not self.cell.proj_size else 'P'}) = "
                                 f"{expected}, got {a.shape}")
            out.append(a.astype(self.dtype, copy=False))
        return out[0], out[1]

    def _initial_state(self, state, n: int):
        h0, c0 = self._state_pair(state, "state", n)
        if state is not None:
            return h0, c0
        names = ("h0", "c0") if self.cell.has_cell_state else ("h0",)
        arrays = []
        for name in names:
            src = self.params.get(name, self.buffers.get(name))
            if src is None:
                size = self.output_size if name == "h0" else self.hidden_size
                shape = (self.num_layers * self.num_directions, n, size)
                arrays.append(np.zeros(shape, dtype=self.dtype))
            else:
                arrays.append(np.repeat(src[:, None, :], n, axis=1))
        return arrays[0], (arrays[1] if len(arrays) > 1 else None)

    # ------------------------------------------------------------------ forward
    def __call__(self, x, state=None, lengths=None):
        """Inference as a function, as ``torch.nn`` modules are called: ``out, state =
        layer(x)`` is :meth:`forward` with ``inference=True`` — no cache is kept, so nothing
        can be backpropagated (dropout between stacked layers still follows train/eval)."""
        out, state, _ = self.forward(x, state, lengths, inference=True)
        return out, state

    def forward(self, x, state=None, lengths=None, inference: bool = False):
        """Run the layer over x (N, T, D) — (T, N, D) with ``batch_first=False``.

        Returns ``(out, state, cache)``: out (N, T, dirs·H) (time-major (T, N, dirs·H) with
        ``batch_first=False``) with zeros at padded steps; the
        final state in the form of ``state`` — h (L·dirs, N, H), or (h, c) for the LSTM; and the
        cache for :meth:`backward` (None with ``inference=True``, which keeps nothing). The
        cache may hold x itself, not a copy: change x in place before backward and the weight
        gradients follow the change (as with PyTorch's saved tensors).
        """
        x = self._check_x(x)
        n, t, _ = x.shape
        lens = self._check_lengths(lengths, n, t)
        h0, c0 = self._initial_state(state, n)
        order = None
        if lens is not None and np.any(lens != t):
            order = np.argsort(-lens, kind="stable")
            steps = (lens[order][None, :] > np.arange(t)[:, None]).sum(axis=1)
            x, h0 = x[order], h0[:, order]
            c0 = None if c0 is None else c0[:, order]
        else:
            steps = np.full(t, n, dtype=np.int64)
        pk = runner.Packing(steps, n)
        chosen = self.plan(n, pk.padded, inference, t)
        hh_masks = self.weight_drop_masks()
        if inference and hh_masks is not None and chosen.layout == "batch-major":
            chosen = replace(chosen, layout="time-major")  # the inference loop keeps no masks
        cache = None
        if chosen.layout == "batch-major" and inference:
            out, hn, cn = runner.infer_batch_major(self, chosen, x, h0, c0, pk)
        elif chosen.layout == "batch-major":
            out, hn, cn, cache = runner.forward_batch_major(self, chosen, x, h0, c0, pk,
                                                            hh_masks)
        else:
            out, hn, cn, cache = runner.forward_time_major(self, chosen, x, h0, c0, pk, order,
                                                           inference, hh_masks)
        out, hn, cn = runner.unsort(order, out, hn, cn)
        if not self.batch_first:
            out = out.swapaxes(0, 1)
        return out, ((hn, cn) if self.cell.has_cell_state else hn), cache

    def plan(self, n: int, padded: bool = False, inference: bool = False, steps: int = 1):
        """The :class:`rnnkit.plan.Plan` a forward pass over n rows and ``steps`` steps would
        run."""
        dropout_between = self.training and (self.dropout > 0 and self.num_layers > 1
                                             or self.weight_drop > 0)
        chosen = plan(self.cell, n, padded, inference, probe=self.probe is not None,
                      dropout_between=dropout_between, steps=steps,
                      step_only=self.needs_step_extras(self.training))
        if self.cell.proj_size and chosen.layout == "batch-major":
            # A projected state starts the loop through XW_0 (rnnkit.runner): time-major only.
            chosen = replace(chosen, layout="time-major")
        return chosen

    def needs_step_extras(self, training: bool) -> bool:
        """Whether a forward pass runs rnnkit.step_extras around the cell's step (layer norm,
        zoneout, or in training recurrent dropout): the Python step loop then."""
        return self.layer_norm or self.zoneout > 0 or self.zoneout_c > 0 or (
            training and self.recurrent_dropout > 0)

    def _keep_mask(self, shape: tuple, p: float) -> Array:
        """Inverted dropout's mask: 0 with probability p, else 1/(1−p)."""
        keep_p = 1.0 - p
        return (self.rng.random(shape) < keep_p).astype(self.dtype) / keep_p

    def dropout_mask(self, shape: tuple, layer: int, rows: int) -> Array | None:
        """Dropout on layer ``layer``'s output: a mask of ``shape`` (steps × rows of the
        path's layout, width), a fresh value at every step, or with ``variational`` (Gal &
        Ghahramani 2016) one (rows, width) mask that every step of a sequence shares; None
        where none applies (eval mode, no dropout, the last layer)."""
        if not (self.training and self.dropout > 0 and layer < self.num_layers - 1):
            return None
        if self.variational:
            return self._keep_mask((rows, shape[-1]), self.dropout)
        return self._keep_mask(shape, self.dropout)

    def weight_drop_masks(self) -> dict[str, Array] | None:
        """DropConnect on W_hh (Wan et al. 2013; the "weight drop" of Merity et al. 2018): in
        training, a mask M per layer and direction, drawn once per forward pass and used at
        every step: the loops run W_hh ⊙ M, and ∂L/∂W_hh = ∂L/∂(W_hh ⊙ M) ⊙ M. Keyed by the
        parameters' suffix; None when off."""
        if not (self.training and self.weight_drop > 0):
            return None
        return {self._suffix(i, d): self._keep_mask(
                    self.params[f"weight_hh{self._suffix(i, d)}"].shape, self.weight_drop)
                for i in range(self.num_layers) for d in range(self.num_directions)}

    def weights(self, layer: int, direction: int,
                hh_masks: dict[str, Array] | None = None) -> runner.Weights:
        """One direction's parameters in the forms the time loops take (W_hh ⊙ M with
        :meth:`weight_drop_masks`' masks)."""
        s = self._suffix(layer, direction)
        p, empty = self.params, np.empty(0, dtype=self.dtype)
        b_ih, b_hh = p.get(f"bias_ih{s}"), p.get(f"bias_hh{s}")
        b_hn = self.cell.hidden_bias(b_hh)
        peep = p.get(f"weight_peephole{s}")
        mask = None if hh_masks is None else hh_masks[s]
        w_hh = p[f"weight_hh{s}"] if mask is None else p[f"weight_hh{s}"] * mask
        w_hr = p.get(f"weight_hr{s}")
        return runner.Weights(
            w_ih=p[f"weight_ih{s}"], w_hh=w_hh if w_hr is None else w_hh @ w_hr,
            b=self.cell.input_bias(b_ih, b_hh), p=empty if peep is None else peep,
            dp=empty if peep is None else self.grads[f"weight_peephole{s}"],
            b_hn=empty if b_hn is None else b_hn, suffix=s, hh_mask=mask,
            w_hr=w_hr, u=None if w_hr is None else w_hh)

    # ------------------------------------------------------------------ backward
    def backward(self, dout, dstate, cache: runner.Cache):
        """Backpropagate through time.

        ``dout`` (N, T, dirs·H) or None is ∂L/∂out; ``dstate`` (in the form of the state, or
        None) is ∂L/∂(final state). Adds ∂L/∂θ into ``self.grads`` and returns
        ``(dx, dstate0)``: dx (N, T, D) and ∂L/∂(initial state) in the form of the state
        (dout and dx time-major with ``batch_first=False``). With
        ``init_state="learned"`` the latter is also summed over the batch into ``grads["h0"]``.
        A cache serves one backward pass: backward reuses its buffers for the gradients.
        """
        if cache is None:
            raise ValueError("backward needs the cache of a forward pass made with "
                             "inference=False")
        if not isinstance(cache, runner.Cache) or cache.layer_id != id(self):
            raise ValueError("cache does not come from this layer's forward pass")
        if cache.dirs is None:
            raise ValueError("this cache has already been used by a backward pass")
        n, t = cache.n, cache.t
        if dout is not None:
            dout = np.asarray(dout)
            expected = (n, t, self.num_directions * self.output_size)
            layout = "(N, T, dirs*H)"
            if not self.batch_first:
                expected, layout = (t, n, expected[2]), "(T, N, dirs*H)"
            if dout.shape != expected:
                raise ValueError(f"dout must have shape {layout} = {expected}, "
                                 f"got {dout.shape}")
            dout = dout.astype(self.dtype, copy=False)
            if not self.batch_first:
                dout = dout.swapaxes(0, 1)
        dh_n, dc_n = self._state_pair(dstate, "dstate", n)
        if self.probe is not None and cache.plan.layout == "batch-major":
            raise ValueError("set the gradient probe before the forward pass")
        dx, dh0, dc0 = runner.backward(self, dout, dh_n, dc_n, cache)
        if not self.batch_first:
            dx = dx.swapaxes(0, 1)
        runner.return_arrays(self, cache.owned)
        cache.inputs = cache.owned = None
        if "h0" in self.params:
            self.grads["h0"] += dh0.sum(axis=1)
            if dc0 is not None:
                self.grads["c0"] += dc0.sum(axis=1)
        return dx, ((dh0, dc0) if self.cell.has_cell_state else dh0)


class RNN(RecurrentLayer):
    """Elman RNN layer: h_t = f(W x_t + U h_{t−1} + b), f = tanh or ReLU (``nonlinearity``).

    x (N, T, D) → out (N, T, dirs·H); state h (num_layers·dirs, N, H). See the module docstring.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, bidirectional: bool = False,
                 dropout: float = 0.0, dtype: str = "float32", seed: int | None = None,
                 init_state: str = "zeros", weight_drop: float = 0.0, variational: bool = False,
                 layer_norm: bool = False, zoneout: float = 0.0, recurrent_dropout: float = 0.0,
                 batch_first: bool = True):
        self.nonlinearity = nonlinearity
        super().__init__(RNNCell(hidden_size, nonlinearity), input_size, hidden_size,
                         num_layers, bias, bidirectional, dropout, dtype, seed, init_state,
                         weight_drop, variational, layer_norm, zoneout, None, recurrent_dropout,
                         batch_first)


class LSTM(RecurrentLayer):
    """LSTM layer (gates i, f, g, o; optional peepholes): see :class:`rnnkit.cells.LSTMCell`.

    x (N, T, D) → out (N, T, dirs·H); state (h, c), each (num_layers·dirs, N, H). With
    ``proj_size=P`` (0 < P < H; PyTorch's option) h_t = W_hr (o ⊙ tanh(c_t)) has P values:
    out (N, T, dirs·P), h (num_layers·dirs, N, P), and ``weight_hr_l{k}`` (P, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, bidirectional: bool = False, dropout: float = 0.0,
                 dtype: str = "float32", seed: int | None = None, init_state: str = "zeros",
                 peepholes: bool = False, weight_drop: float = 0.0, variational: bool = False,
                 proj_size: int = 0, layer_norm: bool = False, zoneout: float = 0.0,
                 zoneout_cell: float | None = None, recurrent_dropout: float = 0.0,
                 batch_first: bool = True):
        self.peepholes = bool(peepholes)
        if isinstance(proj_size, bool) or not isinstance(proj_size, int | np.integer) or (
                isinstance(hidden_size, int | np.integer) and not 0 <= proj_size < hidden_size):
            raise ValueError(f"proj_size must be an integer in [0, hidden_size={hidden_size}), "
                             f"got {proj_size!r}")
        self.proj_size = int(proj_size)
        super().__init__(LSTMCell(hidden_size, self.peepholes, self.proj_size), input_size,
                         hidden_size, num_layers, bias, bidirectional, dropout, dtype, seed,
                         init_state, weight_drop, variational, layer_norm, zoneout, zoneout_cell,
                         recurrent_dropout, batch_first)


class GRU(RecurrentLayer):
    """GRU layer (gates r, z, n): see :class:`rnnkit.cells.GRUCell`.

    ``reset_after=False`` (default) is the notes' form; ``True`` is PyTorch's / cuDNN's.
    x (N, T, D) → out (N, T, dirs·H); state h (num_layers·dirs, N, H).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, bidirectional: bool = False, dropout: float = 0.0,
                 dtype: str = "float32", seed: int | None = None, init_state: str = "zeros",
                 reset_after: bool = False, weight_drop: float = 0.0, variational: bool = False,
                 layer_norm: bool = False, zoneout: float = 0.0, recurrent_dropout: float = 0.0,
                 batch_first: bool = True):
        self.reset_after = bool(reset_after)
        super().__init__(GRUCell(hidden_size, self.reset_after), input_size, hidden_size,
                         num_layers, bias, bidirectional, dropout, dtype, seed, init_state,
                         weight_drop, variational, layer_norm, zoneout, None, recurrent_dropout,
                         batch_first)
