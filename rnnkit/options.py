"""The recurrent stack's options a model config carries, and the one factory that builds the
stack from a cell name and those options.

Every task model's config inherits :class:`RecurrentOptions` (keyword-only fields, so that a
config saved before a field existed loads with the field's default). The cell names:

    rnn        tanh RNN                 lstm       LSTM (i, f, g, o)
    rnn-relu   ReLU RNN                 gru        GRU, reset before the product (the notes)
    irnn       ReLU RNN, W_hh = I       gru-after  GRU, reset after (cuDNN, PyTorch, Keras)
"""

from __future__ import annotations

from dataclasses import dataclass

from .init import init_recurrent
from .recurrent import GRU, LSTM, RNN, RecurrentLayer

#: (layer class, keyword arguments, initialisation of W_hh) per cell name.
CELL_SPECS = {
    "rnn": (RNN, {"nonlinearity": "tanh"}, "default"),
    "rnn-relu": (RNN, {"nonlinearity": "relu"}, "default"),
    "irnn": (RNN, {"nonlinearity": "relu"}, "identity"),
    "lstm": (LSTM, {}, "default"),
    "gru": (GRU, {"reset_after": False}, "default"),
    "gru-after": (GRU, {"reset_after": True}, "default"),
}


@dataclass(kw_only=True)
class RecurrentOptions:
    init: str | None = None  # W_hh: default | orthogonal | identity (None: the cell's own)
    gain: float = 1.0  # multiplies W_hh after initialisation
    forget_bias: float | None = None  # keep gate's bias (LSTM f, GRU z); None: PyTorch's
    chrono: int | None = None  # chrono initialisation for dependencies up to this many steps
    peepholes: bool = False  # LSTM only: peephole connections from c to i, f, o
    proj_size: int = 0  # LSTM only: h_t = W_hr (o ⊙ tanh(c_t)) of this size (0: none)
    init_state: str = "zeros"  # initial state: zeros | random (fixed) | learned
    weight_drop: float = 0.0  # DropConnect on W_hh, one mask per batch (AWD-LSTM)
    variational: bool = False  # dropout between layers: one mask per sequence, every step
    layer_norm: bool = False  # layer-normalised products (and LSTM cell) (Ba et al. 2016)
    zoneout: float = 0.0  # each unit keeps its previous h with this probability (Krueger 2017)
    zoneout_cell: float | None = None  # LSTM: the same for c (None: as zoneout)
    recurrent_dropout: float = 0.0  # dropout on h_{t−1} in the products, a mask per sequence


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                   options: RecurrentOptions | None = None, *, bidirectional: bool = False,
                   dropout: float = 0.0, dtype: str = "float32",
                   seed: int = 0) -> RecurrentLayer:
    """The recurrent stack of a cell name (CELL_SPECS) with ``options``, initialised."""
    if cell not in CELL_SPECS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(CELL_SPECS)}")
    o = options if options is not None else RecurrentOptions()
    cls, kwargs, default_init = CELL_SPECS[cell]
    kwargs = dict(kwargs)
    for name in ("peepholes", "proj_size", "zoneout_cell"):
        if getattr(o, name):
            if cls is not LSTM:
                raise ValueError(f"{name} is an LSTM option; cell {cell!r} has none")
            kwargs[name] = getattr(o, name)
    layer = cls(input_size, hidden_size, num_layers, bidirectional=bidirectional,
                dropout=dropout, dtype=dtype, seed=seed, init_state=o.init_state,
                weight_drop=o.weight_drop, variational=o.variational,
                layer_norm=o.layer_norm, zoneout=o.zoneout,
                recurrent_dropout=o.recurrent_dropout, **kwargs)
    return init_recurrent(layer, o.init or default_init, o.gain, seed=seed,
                          forget_bias=o.forget_bias, chrono=o.chrono)
