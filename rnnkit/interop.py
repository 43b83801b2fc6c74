"""Weights in and out: PyTorch modules and state dicts, ONNX graphs.

PyTorch and rnnkit share names (``weight_ih_l0``…), layouts ((G·H, D) row blocks) and gate orders
(LSTM i, f, g, o; GRU r, z, n), so a state dict maps name for name. torch.nn.GRU has one form
only (reset applied after the recurrent product, ``reset_after=True``); rnnkit.torch_models
writes the other, and whole models.

ONNX (operators LSTM, GRU, RNN; one node per stacked layer) orders LSTM gates i, o, f, c and
peepholes i, o, f, GRU gates z, r, h, stores W (dirs, G·H, D), R (dirs, G·H, H),
B = [W_b, R_b] (dirs, 2·G·H), and reads X time-major (T, N, D). GRU's ``linear_before_reset``
is rnnkit's ``reset_after``.

    layer = rnnkit.from_torch(torch.nn.LSTM(8, 16, 2, bidirectional=True))
    state = rnnkit.to_torch_state_dict(layer)       # → torch.nn.LSTM.load_state_dict
    module = rnnkit.to_torch(model)                  # a whole model: rnnkit.torch_models
    files = rnnkit.export_onnx(model, "model.onnx")  # classifier, tagger, LM, seq2seq
    layer = rnnkit.from_onnx("model.onnx", node="rnn_l0")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .recurrent import GRU, LSTM, RNN, RecurrentLayer

#: ONNX gate block k holds rnnkit's gate block TO_ONNX[op][k]; the map is its own inverse here.
TO_ONNX = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}
FROM_ONNX = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}
PEEPHOLE_TO_ONNX = [0, 2, 1]  # rnnkit p_i, p_f, p_o → ONNX P = [p_i, p_o, p_f]; self-inverse
OPSET = 17
_OP = {LSTM: "LSTM", GRU: "GRU", RNN: "RNN"}


def _op(layer: RecurrentLayer) -> str:
    for cls, name in _OP.items():
        if isinstance(layer, cls):
            return name
    raise TypeError(f"expected an rnnkit RNN, LSTM or GRU layer, got {type(layer).__name__}")


def _blocks(a: np.ndarray, order: list[int], size: int) -> np.ndarray:
    return np.concatenate([a[k * size:(k + 1) * size] for k in order], axis=0)


# ---------------------------------------------------------------------------------- PyTorch
def from_torch(module, dtype: str | None = None):
    """The rnnkit equal of a torch module, weights copied by name: the layer of
    ``torch.nn.RNN | LSTM | GRU`` (or ``RNNCell | LSTMCell | GRUCell``, or
    :class:`rnnkit.torch_models.ResetBeforeGRU`) — same sizes, layers, directions, bias,
    dropout, ``batch_first`` and weights, dtype from the parameters unless given — or the
    whole model of a module :func:`to_torch` made from one."""
    import torch

    from . import torch_models

    if isinstance(module, torch_models.TorchModel):
        return torch_models.model_from_torch(module)
    nn = torch.nn
    kinds = [(nn.LSTM, LSTM), (nn.GRU, GRU), (nn.RNN, RNN), (torch_models.ResetBeforeGRU, GRU),
             (nn.LSTMCell, LSTM), (nn.GRUCell, GRU), (nn.RNNCell, RNN)]
    cls = next((ours for theirs, ours in kinds if isinstance(module, theirs)), None)
    if cls is None:
        raise TypeError(f"from_torch converts torch.nn.RNN, LSTM, GRU and their Cell forms, and "
                        f"the modules rnnkit.to_torch makes; got {type(module).__name__} "
                        f"({type(module).__module__})")
    cell = isinstance(module, nn.RNNCellBase)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    kinds_seen = {v.dtype for v in state.values()}
    if dtype is None:
        names = {torch.float32: "float32", torch.float64: "float64"}
        if len(kinds_seen) != 1 or next(iter(kinds_seen)) not in names:
            raise ValueError(f"parameters of dtype {sorted(map(str, kinds_seen))}: rnnkit "
                             "computes in float32 or float64 (pass dtype= to convert)")
        dtype = names[next(iter(kinds_seen))]
    kw = dict(bias=module.bias, dtype=dtype)
    if not cell:
        kw.update(num_layers=module.num_layers, bidirectional=module.bidirectional,
                  dropout=float(module.dropout), batch_first=module.batch_first)
    if cls is RNN:
        kw["nonlinearity"] = module.nonlinearity
    if cls is GRU:  # torch.nn.GRU's form is reset-after; ResetBeforeGRU's the notes'
        kw["reset_after"] = not isinstance(module, torch_models.ResetBeforeGRU)
    if getattr(module, "proj_size", 0):
        kw["proj_size"] = module.proj_size
    layer = cls(module.input_size, module.hidden_size, **kw)
    for name, value in state.items():
        ours = name + "_l0" if cell else name
        if ours not in layer.params:
            raise ValueError(f"{type(module).__name__} parameter {name!r} has no rnnkit "
                             "counterpart")
        target = layer.params[ours]
        if tuple(value.shape) != target.shape:
            raise ValueError(f"{name}: shape {tuple(value.shape)}, expected {target.shape}")
        target[...] = value.numpy()
    return layer


def to_torch_state_dict(layer: RecurrentLayer) -> dict:
    """``{name: torch.Tensor}`` for ``torch.nn.{RNN,LSTM,GRU}.load_state_dict``; refuses what
    PyTorch cannot compute (the notes' GRU form, peepholes, learned or random initial
    states) instead of handing over weights that would silently disagree."""
    import torch

    _check_torch_twin(layer)
    names = [n for n in layer.params
             if n.startswith(("weight_ih", "weight_hh", "weight_hr", "bias_"))]
    return {n: torch.from_numpy(layer.params[n].copy()) for n in names}


def _check_torch_twin(layer: RecurrentLayer) -> None:
    if isinstance(layer, GRU) and not layer.reset_after:
        raise ValueError("a GRU with reset_after=False (the notes' form, ĥ = tanh(W x + U (r ⊙ "
                         "h) + b)) has no torch.nn.GRU twin: torch.nn.GRU applies the reset gate "
                         "after the recurrent product, n = tanh(W x + b + r ⊙ (U h + b_hn)). "
                         "rnnkit.to_torch(layer) gives a module that computes it "
                         "(rnnkit.torch_models.ResetBeforeGRU, nn.GRU's parameter names)")
    check_torch_module(layer)


def check_torch_module(layer: RecurrentLayer) -> None:
    """Refuse what no torch module computes: peepholes, a learned or random initial state, the
    step extras that act in evaluation."""
    if getattr(layer, "peepholes", False):
        raise ValueError("torch.nn.LSTM has no peephole connections; this LSTM has them")
    if layer.init_state != "zeros":
        raise ValueError(f"init_state={layer.init_state!r}: PyTorch modules take the initial "
                         "state as an input and have no parameter for it")
    _check_no_step_extras(layer, "PyTorch's recurrent modules have")


def _check_no_step_extras(layer: RecurrentLayer, who: str) -> None:
    """Refuse what changes the function a trained layer computes beyond the cell's equations
    (recurrent dropout does not: it is off in evaluation)."""
    if layer.layer_norm:
        raise ValueError(f"this layer is layer-normalised, and {who} no layer normalisation")
    if layer.zoneout or layer.zoneout_c:
        raise ValueError(f"this layer has zoneout, which mixes h_t = p h_(t-1) + (1 - p) h~_t "
                         f"in evaluation too, and {who} no zoneout")


def to_torch(obj):
    """A ``torch.nn.Module`` equal to an rnnkit layer or model, holding its weights: for a
    layer ``torch.nn.RNN | LSTM | GRU`` (the layer's ``batch_first`` and dtype), or
    :class:`rnnkit.torch_models.ResetBeforeGRU` for a GRU with ``reset_after=False``; for a
    task model its twin from :mod:`rnnkit.torch_models` (same inputs, same outputs); for a
    run's checkpoint directory (``runs/x/best``) the twin of the model saved there."""
    from . import torch_models

    if isinstance(obj, str | Path):
        from .io import load_model

        obj = load_model(obj)[0]
    if isinstance(obj, RecurrentLayer):
        return torch_models.recurrent_module(obj)
    return torch_models.model_to_torch(obj)


# ---------------------------------------------------------------------------------- ONNX out
class _Graph:
    """Nodes, initializers and value names of one ONNX graph under construction."""

    def __init__(self, dtype=np.float32):
        self.nodes: list = []
        self.inits: list = []
        self.names: set[str] = set()
        self.dtype = dtype

    def name(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def const(self, base: str, value) -> str:
        from onnx import numpy_helper

        value = np.asarray(value)
        if value.dtype.kind == "f":
            value = value.astype(self.dtype)
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, base: str | None = None,
           node: str | None = None, **attrs):
        from onnx import helper

        outs = [self.name(f"{base or op_type.lower()}_{k}" if n_out > 1 else
                          (base or op_type.lower())) for k in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(
            node or f"{base or op_type.lower()}_node"), **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, inputs, outputs, doc: str):
        from onnx import helper

        graph = helper.make_graph(self.nodes, "rnnkit", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="rnnkit", doc_string=doc)
        model.ir_version = 8  # the IR of opset 17; readable by older runtimes too
        return model


def _recurrent(g: _Graph, layer: RecurrentLayer, prefix: str, x: str, seq_lens: str | None,
               h0: str | None = None, c0: str | None = None):
    """ONNX nodes for a stacked layer: x (T, N, D) time-major → (y (T, N, dirs·H),
    h_n (layers·dirs, N, H), c_n or None). ``seq_lens`` is an int32 (N,) value name."""
    if getattr(layer, "proj_size", 0):
        raise ValueError(f"{prefix}: an LSTM with proj_size={layer.proj_size} cannot be "
                         "exported: ONNX's LSTM operator has no projection")
    try:
        _check_no_step_extras(layer, "ONNX's recurrent operators have")
    except ValueError as e:
        raise ValueError(f"{prefix}: cannot be exported: {e}") from None
    if layer.init_state != "zeros" and h0 is None:
        h0, c0 = (_stored_state(g, layer, prefix, x, name)
                  for name in ("h0", "c0" if layer.cell.has_cell_state else None))
    op, H = _op(layer), layer.hidden_size
    dirs = layer.num_directions
    direction = "bidirectional" if layer.bidirectional else "forward"
    hs, cs = [], []
    for k in range(layer.num_layers):
        W, R, B, P = [], [], [], []
        for d in range(dirs):
            s = layer._suffix(k, d)
            p = layer.params
            W.append(_blocks(p[f"weight_ih{s}"], TO_ONNX[op], H))
            R.append(_blocks(p[f"weight_hh{s}"], TO_ONNX[op], H))
            if layer.bias:
                B.append(np.concatenate([_blocks(p[f"bias_ih{s}"], TO_ONNX[op], H),
                                         _blocks(p[f"bias_hh{s}"], TO_ONNX[op], H)]))
            if f"weight_peephole{s}" in p:
                P.append(_blocks(p[f"weight_peephole{s}"], PEEPHOLE_TO_ONNX, H))
        name = f"{prefix}_l{k}"
        ins = [x, g.const(f"{name}_W", np.stack(W)), g.const(f"{name}_R", np.stack(R)),
               g.const(f"{name}_B", np.stack(B)) if B else "", seq_lens or ""]

        def initial(state, base, k=k, name=name):
            if state is None:
                return ""
            starts = g.const(f"{name}_{base}_start", [k * dirs])
            ends = g.const(f"{name}_{base}_end", [(k + 1) * dirs])
            axes = g.const(f"{name}_{base}_axes", [0])
            return g.op("Slice", [state, starts, ends, axes], base=f"{name}_{base}")

        ins.append(initial(h0, "initial_h"))
        if op == "LSTM":
            ins.append(initial(c0, "initial_c"))
            ins.append(g.const(f"{name}_P", np.stack(P)) if P else "")
        while ins and ins[-1] == "":
            ins.pop()
        attrs = dict(hidden_size=H, direction=direction)
        if op == "GRU":
            attrs["linear_before_reset"] = int(layer.reset_after)
        if op == "RNN":
            attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"] * dirs
        n_out = 3 if op == "LSTM" else 2
        outs = g.op(op, ins, n_out, base=name, node=name, **attrs)
        y = g.op("Transpose", [outs[0]], perm=[0, 2, 1, 3], base=f"{name}_ytn")  # (T, N, dirs, H)
        x = g.op("Reshape", [y, g.const(f"{name}_shape", [0, 0, dirs * H])], base=f"{name}_y")
        hs.append(outs[1])
        if op == "LSTM":
            cs.append(outs[2])
    h_n = hs[0] if len(hs) == 1 else g.op("Concat", hs, axis=0, base=f"{prefix}_h_n")
    c_n = None
    if cs:
        c_n = cs[0] if len(cs) == 1 else g.op("Concat", cs, axis=0, base=f"{prefix}_c_n")
    return x, h_n, c_n


def _stored_state(g: _Graph, layer: RecurrentLayer, prefix: str, x: str,
                  name: str | None) -> str | None:
    """A learned or random initial state (layers·dirs, H), the same for every sequence, as
    the (layers·dirs, N, H) value the recurrent nodes take: Expand over x's batch axis."""
    if name is None:
        return None
    state = layer.params.get(name, layer.buffers.get(name))
    batch = g.op("Slice", [g.op("Shape", [x], base=f"{prefix}_{name}_xshape"),
                           g.const(f"{prefix}_{name}_one", [1]),
                           g.const(f"{prefix}_{name}_two", [2])], base=f"{prefix}_{name}_n")
    ones = g.const(f"{prefix}_{name}_ones", np.ones(1, np.int64))
    shape = g.op("Concat", [ones, batch, ones], axis=0, base=f"{prefix}_{name}_shape")
    return g.op("Expand", [g.const(f"{prefix}_{name}", state[:, None, :]), shape],
                base=f"{prefix}_{name}")


def _embed(g: _Graph, emb, ids: str, base: str) -> str:
    return g.op("Gather", [g.const(f"{base}_weight", emb.params["weight"]), ids], axis=0,
                base=base)


def _linear(g: _Graph, lin, x: str, base: str) -> str:
    y = g.op("MatMul", [x, g.const(f"{base}_weightT", lin.params["weight"].T)], base=f"{base}_mm")
    if "bias" in lin.params:
        y = g.op("Add", [y, g.const(f"{base}_bias", lin.params["bias"])], base=base)
    return y


def _valid(g: _Graph, lengths: str, like: str, axis: int, base: str) -> str:
    """Boolean (N, T) mask t < lengths[n], T read from dimension ``axis`` of ``like``."""
    shape = g.op("Shape", [like], base=f"{base}_shape")
    t = g.op("Gather", [shape, g.const(f"{base}_axis", np.int64(axis))], base=f"{base}_t")
    steps = g.op("Range", [g.const(f"{base}_zero", np.int64(0)), t,
                           g.const(f"{base}_one", np.int64(1))], base=f"{base}_range")
    row = g.op("Unsqueeze", [steps, g.const(f"{base}_ax0", [0])], base=f"{base}_row")
    col = g.op("Unsqueeze", [lengths, g.const(f"{base}_ax1", [1])], base=f"{base}_col")
    return g.op("Less", [row, col], base=base)


def _time_major(g: _Graph, x: str, base: str) -> str:
    return g.op("Transpose", [x], perm=[1, 0, 2], base=base)


def _int32(g: _Graph, lengths: str, base: str) -> str:
    from onnx import TensorProto

    return g.op("Cast", [lengths], to=TensorProto.INT32, base=base)


def _io(name: str, elem, shape):
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, shape)


def _classifier(g: _Graph, m):
    from onnx import TensorProto as TP

    c, L = m.config, m.layers
    ids, lengths = "ids", "lengths"
    g.names.update((ids, lengths, "bigrams"))
    x = _embed(g, L["embedding"], ids, "embedding")  # (N, T, E)
    inputs = [_io(ids, TP.INT64, ["N", "T"]), _io(lengths, TP.INT64, ["N"])]
    if c.bigram_vocab_size:
        x = _bigram_features(g, L["bigram_embedding"], x, c.bigram_dim)
        inputs.append(_io("bigrams", TP.INT64, ["N", "T", 2]))
    x = _time_major(g, x, "x_tnd")
    y, h_n, _ = _recurrent(g, L["rnn"], "rnn", x, _int32(g, lengths, "seq_lens"))
    dirs, H = L["rnn"].num_directions, c.hidden_size
    if c.pooling == "last":
        last = g.op("Slice", [h_n, g.const("last_start", [-dirs]),
                              g.const("last_end", [np.iinfo(np.int64).max]),
                              g.const("last_axes", [0])], base="last_states")
        nd = g.op("Transpose", [last], perm=[1, 0, 2], base="last_ndh")
        pooled = g.op("Reshape", [nd, g.const("pooled_shape", [0, dirs * H])], base="pooled")
    else:
        out = g.op("Transpose", [y], perm=[1, 0, 2], base="out")  # (N, T, dirs·H)
        mask = g.op("Unsqueeze", [_valid(g, lengths, ids, 1, "valid"), g.const("ax2", [2])],
                    base="mask")
        if c.pooling == "mean":
            fmask = g.op("Cast", [mask], to=TP.FLOAT, base="fmask")
            total = g.op("ReduceSum", [g.op("Mul", [out, fmask], base="masked"),
                                       g.const("time_axis", [1])], keepdims=0, base="total")
            count = g.op("Cast", [g.op("Unsqueeze", [lengths, g.const("ax1", [1])],
                                       base="len_col")], to=TP.FLOAT, base="count")
            pooled = g.op("Div", [total, count], base="pooled")
        else:
            masked = g.op("Where", [mask, out, g.const("minus_inf", np.float32(-np.inf))],
                          base="masked")
            pooled = g.op("ReduceMax", [masked], axes=[1], keepdims=0, base="pooled")
    logits = _linear(g, L["head"], pooled, "logits")
    return inputs, [_io(logits, TP.FLOAT, ["N", c.num_classes])]


def _bigram_features(g: _Graph, layer, x: str, dim: int) -> str:
    """x (N, T, E) → [x; left-bigram vector; right-bigram vector] (N, T, E + 2B) from the
    ``bigrams`` input (N, T, 2)."""
    b = _embed(g, layer, "bigrams", "bigram_embedding")  # (N, T, 2, B)
    b = g.op("Reshape", [b, g.const("bigram_shape", [0, 0, 2 * dim])], base="bigram_features")
    return g.op("Concat", [x, b], axis=2, base="token_bigram")


def _tagger(g: _Graph, m):
    from onnx import TensorProto as TP

    c, L = m.config, m.layers
    g.names.update(("ids", "lengths", "chars", "char_lengths", "bigrams"))
    x = _embed(g, L["embedding"], "ids", "embedding")  # (N, T, E)
    inputs = [_io("ids", TP.INT64, ["N", "T"]), _io("lengths", TP.INT64, ["N"])]
    if c.bigram_vocab_size:
        x = _bigram_features(g, L["bigram_embedding"], x, c.bigram_dim)
        inputs.append(_io("bigrams", TP.INT64, ["N", "T", 2]))
    if c.char_vocab_size:
        # chars (N, T, L): every word's spelling; padding words get length 1 like collate's.
        flat = g.op("Reshape", [g.op("Transpose", ["chars"], perm=[2, 0, 1], base="chars_lnt"),
                                g.const("chars_shape", [0, -1])], base="chars_lw")
        ce = g.op("Gather", [g.const("char_embedding_weight",
                                     L["char_embedding"].params["weight"]), flat], axis=0,
                  base="char_embedding")  # (L, N·T, Ec)
        clen = g.op("Max", [g.op("Reshape", ["char_lengths", g.const("clen_shape", [-1])],
                                 base="clen_flat"), g.const("one_i64", np.array(1, np.int64))],
                    base="clen")
        _, h, _ = _recurrent(g, L["char_rnn"], "char_rnn", ce, _int32(g, clen, "char_lens"))
        words = g.op("Reshape", [g.op("Transpose", [h], perm=[1, 0, 2], base="char_h"),
                                 g.const("char_h_shape", [-1, 2 * c.char_hidden_size])],
                     base="char_words")  # (N·T, 2Hc)
        nt = g.op("Shape", ["ids"], base="ids_shape")
        shape = g.op("Concat", [nt, g.const("feat_dim", [2 * c.char_hidden_size])], axis=0,
                     base="char_feat_shape")
        feats = g.op("Reshape", [words, shape], base="char_feats")
        mask = g.op("Cast", [g.op("Unsqueeze", [_valid(g, "lengths", "ids", 1, "valid"),
                                                g.const("ax2", [2])], base="mask")],
                    to=TP.FLOAT, base="fmask")
        feats = g.op("Mul", [feats, mask], base="char_feats_masked")
        x = g.op("Concat", [x, feats], axis=2, base="features")
        inputs += [_io("chars", TP.INT64, ["N", "T", "L"]),
                   _io("char_lengths", TP.INT64, ["N", "T"])]
    y, _, _ = _recurrent(g, L["rnn"], "rnn", _time_major(g, x, "x_tnd"),
                         _int32(g, "lengths", "seq_lens"))
    out = g.op("Transpose", [y], perm=[1, 0, 2], base="out")
    logits = _linear(g, L["head"], out, "logits")
    return inputs, [_io(logits, TP.FLOAT, ["N", "T", c.num_tags])]


def _state_io(g: _Graph, layer, suffix: str = ""):
    from onnx import TensorProto as TP

    names = ["h", "c"] if isinstance(layer, LSTM) else ["h"]
    shape = [layer.num_layers * layer.num_directions, "N", layer.hidden_size]
    g.names.update(n + suffix for n in names)
    return [n + suffix for n in names], [_io(n + suffix, TP.FLOAT, shape) for n in names]


def _lm(g: _Graph, m):
    from onnx import TensorProto as TP

    c, L = m.config, m.layers
    g.names.add("ids")
    state, state_io = _state_io(g, L["rnn"])
    x = _time_major(g, _embed(g, L["embedding"], "ids", "embedding"), "x_tnd")
    y, h_n, c_n = _recurrent(g, L["rnn"], "rnn", x, None, *state)
    logits = _linear(g, L["head"], g.op("Transpose", [y], perm=[1, 0, 2], base="out"), "logits")
    outs = [_io(logits, TP.FLOAT, ["N", "T", c.vocab_size])]
    shape = [c.num_layers, "N", c.hidden_size]
    outs.append(_io(g.op("Identity", [h_n], base="h_next"), TP.FLOAT, shape))
    if c_n is not None:
        outs.append(_io(g.op("Identity", [c_n], base="c_next"), TP.FLOAT, shape))
    return [_io("ids", TP.INT64, ["N", "T"])] + state_io, outs


def _encoder(g: _Graph, m):
    from onnx import TensorProto as TP

    c, L = m.config, m.layers
    g.names.update(("src", "src_lengths"))
    x = _time_major(g, _embed(g, L["src_embedding"], "src", "src_embedding"), "x_tnd")
    y, h_n, c_n = _recurrent(g, L["encoder"], "encoder", x, _int32(g, "src_lengths",
                                                                    "seq_lens"))
    enc = g.op("Transpose", [y], perm=[1, 0, 2], base="enc_out")
    shape = [c.num_layers, "N", c.hidden_size]
    outs = [_io(enc, TP.FLOAT, ["N", "S", c.hidden_size]),
            _io(g.op("Identity", [h_n], base="h"), TP.FLOAT, shape)]
    if c_n is not None:
        outs.append(_io(g.op("Identity", [c_n], base="c"), TP.FLOAT, shape))
    return [_io("src", TP.INT64, ["N", "S"]), _io("src_lengths", TP.INT64, ["N"])], outs


def _decoder_step(g: _Graph, m):
    from onnx import TensorProto as TP

    c, L = m.config, m.layers
    g.names.update(("token", "enc_out", "src_lengths"))
    state, state_io = _state_io(g, L["decoder"])
    tok = g.op("Unsqueeze", ["token", g.const("ax0", [0])], base="token_1n")  # (1, N)
    x = _embed(g, L["tgt_embedding"], tok, "tgt_embedding")  # (1, N, E) time-major already
    y, h_n, c_n = _recurrent(g, L["decoder"], "decoder", x, None, *state)
    q = g.op("Transpose", [y], perm=[1, 0, 2], base="query")  # (N, 1, H)
    feat = q
    if "attention" in L:
        att = L["attention"]
        mask = g.op("Unsqueeze", [_valid(g, "src_lengths", "enc_out", 1, "valid"),
                                  g.const("ax1", [1])], base="mask")  # (N, 1, S)
        keys_t = g.op("Transpose", ["enc_out"], perm=[0, 2, 1], base="keys_t")
        if c.attention == "additive":
            p = att.params
            pq = g.op("MatMul", [q, g.const("att_qT", p["query_weight"].T)], base="att_pq")
            pk = g.op("Add", [g.op("MatMul", ["enc_out", g.const("att_kT", p["key_weight"].T)],
                                   base="att_pk_mm"), g.const("att_b", p["bias"])],
                      base="att_pk")  # (N, S, A); pq (N, 1, A) broadcasts over S
            u = g.op("Tanh", [g.op("Add", [pq, pk], base="att_sum")], base="att_u")
            e = g.op("MatMul", [u, g.const("att_v", p["v"][:, None])], base="att_e")  # (N,S,1)
            scores = g.op("Transpose", [e], perm=[0, 2, 1], base="scores")
        else:
            qw = q
            if att.kind == "general":
                qw = g.op("MatMul", [q, g.const("att_W", att.params["weight"])], base="att_qw")
            scores = g.op("MatMul", [qw, keys_t], base="scores_raw")
            if att.scale:
                scores = g.op("Mul", [scores, g.const("att_scale",
                                                      np.float32(1 / np.sqrt(att.key_size)))],
                              base="scores")
        masked = g.op("Where", [mask, scores, g.const("minus_inf", np.float32(-np.inf))],
                      base="scores_masked")
        weights = g.op("Softmax", [masked], axis=-1, base="attention")
        ctx = g.op("MatMul", [weights, "enc_out"], base="context")
        feat = g.op("Concat", [q, ctx], axis=2, base="features")
    logits = g.op("Squeeze", [_linear(g, L["head"], feat, "logits_3d"), g.const("sq1", [1])],
                  base="logits")
    shape = [c.num_layers, "N", c.hidden_size]
    outs = [_io(logits, TP.FLOAT, ["N", c.tgt_vocab_size]),
            _io(g.op("Identity", [h_n], base="h_next"), TP.FLOAT, shape)]
    if c_n is not None:
        outs.append(_io(g.op("Identity", [c_n], base="c_next"), TP.FLOAT, shape))
    inputs = [_io("token", TP.INT64, ["N"])] + state_io + [
        _io("enc_out", TP.FLOAT, ["N", "S", c.hidden_size]), _io("src_lengths", TP.INT64, ["N"])]
    return inputs, outs


_BUILDERS = {"SequenceClassifier": [("", _classifier)], "SequenceTagger": [("", _tagger)],
             "LanguageModel": [("", _lm)],
             "Seq2Seq": [(".encoder", _encoder), (".decoder", _decoder_step)]}


def export_onnx(model, path: str | Path) -> list[Path]:
    """Write ``model`` as ONNX (opset 17, float32, ONNX's own LSTM/GRU/RNN operators with
    ``sequence_lens`` for variable lengths); returns the files written.

    Inputs and outputs, by model (N batch, T/S lengths, dynamic):
      SequenceClassifier  ids (N, T) int64, lengths (N,) int64 [, bigrams (N, T, 2) int64]
                          → logits (N, C)
      SequenceTagger      ids, lengths [, bigrams (N, T, 2) int64] [, chars (N, T, L) int64,
                          char_lengths (N, T) int64] → logits (N, T, K)
      LanguageModel       ids (N, T), h [, c] (layers, N, H) → logits (N, T, V), h_next
                          [, c_next]; T = 1 is one generation step with the state in and out
      Seq2Seq             two files, PATH.encoder.onnx: src (N, S), src_lengths (N,) →
                          enc_out (N, S, H), h [, c]; PATH.decoder.onnx (one step): token (N,),
                          h [, c], enc_out, src_lengths → logits (N, V), h_next [, c_next];
                          start from <bos> (2), stop at <eos> (3), and, as rnnkit's decoding
                          does, never pick <pad> (0) or <bos>
    :func:`onnx_feed` turns an rnnkit batch into these inputs."""
    import onnx

    kind = type(model).__name__
    if kind not in _BUILDERS:
        raise ValueError(f"ONNX export supports {', '.join(_BUILDERS)}; got {kind}")
    if kind == "Seq2Seq" and (model.config.bidirectional_encoder or model.config.input_feed):
        raise ValueError("ONNX export of a translation model supports a one-way encoder and a "
                         "decoder without input feeding (not implemented for "
                         "bidirectional_encoder or input_feed)")
    path = Path(path)
    written = []
    for suffix, build in _BUILDERS[kind]:
        g = _Graph()
        inputs, outputs = build(g, model)
        proto = g.model(inputs, outputs, f"rnnkit {kind}{suffix}")
        onnx.checker.check_model(proto, full_check=True)
        target = path.with_name(path.stem + suffix + path.suffix) if suffix else path
        written.append(_save(proto, target))
    return written


def _save(proto, path: Path) -> Path:
    """Write through a temporary file and rename, so a crash never leaves half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(path)
    return path


def export_layer_onnx(layer: RecurrentLayer, path: str | Path, *, time_major: bool = False,
                      lengths: bool = True) -> Path:
    """A lone layer as ONNX: x (N, T, D), lengths (N,) int64 → y (N, T, dirs·H), h_n [, c_n];
    one node per stacked layer, named ``rnn_l0``, ``rnn_l1``…

    ``time_major``: x (T, N, D) and y (T, N, dirs·H), the operators' own layout (no Transpose
    nodes); ``lengths=False``: no lengths input, every sequence runs T steps."""
    import onnx
    from onnx import TensorProto as TP

    g = _Graph()
    g.names.update(("x", "lengths"))
    x = "x" if time_major else _time_major(g, "x", "x_tnd")
    seq_lens = _int32(g, "lengths", "seq_lens") if lengths else None
    y, h_n, c_n = _recurrent(g, layer, "rnn", x, seq_lens)
    dims = [layer.num_layers * layer.num_directions, "N", layer.hidden_size]
    width = layer.num_directions * layer.hidden_size
    if time_major:
        y = g.op("Identity", [y], base="y")
    else:
        y = g.op("Transpose", [y], perm=[1, 0, 2], base="y")
    outs = [_io(y, TP.FLOAT, ["T", "N", width] if time_major else ["N", "T", width]),
            _io(h_n, TP.FLOAT, dims)]
    if c_n is not None:
        outs.append(_io(c_n, TP.FLOAT, dims))
    ins = [_io("x", TP.FLOAT, (["T", "N"] if time_major else ["N", "T"]) + [layer.input_size])]
    if lengths:
        ins.append(_io("lengths", TP.INT64, ["N"]))
    proto = g.model(ins, outs, f"rnnkit {type(layer).__name__}")
    onnx.checker.check_model(proto, full_check=True)
    return _save(proto, Path(path))


def onnx_feed(model, batch) -> list[dict]:
    """The exported graphs' inputs for an rnnkit batch (``model.collate(...)``), float32; one
    dict per file :func:`export_onnx` wrote (for Seq2Seq: the encoder's only — the decoder's
    depend on the encoder's outputs and the token)."""
    kind = type(model).__name__
    if kind == "SequenceClassifier":
        ids, lengths, _, bigrams = batch
        feed = {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int64)}
        if bigrams is not None:
            feed["bigrams"] = bigrams.astype(np.int64)
        return [feed]
    if kind == "SequenceTagger":
        ids, lengths, _, chars, bigrams = batch
        feed = {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int64)}
        if bigrams is not None:
            feed["bigrams"] = bigrams.astype(np.int64)
        if chars is not None:
            cids, clen = chars  # (P, L), (P,) over real words in time-major order
            n, t = ids.shape
            mask = np.arange(t)[:, None] < lengths[None, :]  # (T, N)
            grid = np.full((t, n, cids.shape[1]), model.config.padding_idx, dtype=np.int64)
            glen = np.ones((t, n), dtype=np.int64)
            grid[mask], glen[mask] = cids, clen
            feed.update(chars=grid.transpose(1, 0, 2).copy(), char_lengths=glen.T.copy())
        return [feed]
    if kind == "LanguageModel":
        x = batch[0] if isinstance(batch, tuple) else batch
        h0, c0 = model.layers["rnn"]._initial_state(None, len(x))  # zeros, learned or random
        feed = {"ids": np.asarray(x, np.int64), "h": h0.astype(np.float32)}
        if c0 is not None:
            feed["c"] = c0.astype(np.float32)
        return [feed]
    if kind == "Seq2Seq":
        return [{"src": batch[0].astype(np.int64), "src_lengths": batch[1].astype(np.int64)}]
    raise ValueError(f"no ONNX inputs for {kind}")


# ---------------------------------------------------------------------------------- ONNX in
def from_onnx(source, node: str | int | list | None = None,
              dtype: str = "float32") -> RecurrentLayer:
    """An rnnkit layer from the weights of ONNX LSTM/GRU/RNN node(s) in ``source`` (a path or
    ModelProto). ``node``: a node name or index among the recurrent nodes, or a list of them
    read as a stack (layer 0 first); None when the graph has exactly one. Only the nodes'
    weights are read: the layer starts from zeros whatever initial state the graph feeds."""
    import onnx
    from onnx import helper, numpy_helper

    where = str(source) if isinstance(source, str | Path) else "model"
    if isinstance(source, str | Path):
        try:
            model = onnx.load(str(source))
        except Exception as exc:  # protobuf raises its own DecodeError
            raise ValueError(f"{where}: not a readable ONNX model ({exc})") from None
    else:
        model = source
    graph = model.graph
    seen_names: set[str] = set()
    for t in graph.initializer:  # two tensors of one name: which one would run is undefined
        if t.name in seen_names:
            raise ValueError(f"{where}: two initializers are named {t.name!r}")
        seen_names.add(t.name)
    tensors = {t.name: t for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            tensors[n.output[0]] = n.attribute[0].t
    rec = [n for n in graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    if not rec:
        ops = sorted({n.op_type for n in graph.node})
        raise ValueError(f"{where}: no LSTM, GRU or RNN node in the graph (it has: "
                         f"{', '.join(ops) or 'no nodes'})")
    names = [n.name or f"#{i}" for i, n in enumerate(rec)]
    if node is None:
        if len(rec) != 1:
            raise ValueError(f"{where}: {len(rec)} recurrent nodes ({', '.join(names)}); pass "
                             "node= a name, an index or a list for a stack")
        chosen = rec
    else:
        chosen = []
        for want in node if isinstance(node, list) else [node]:
            if isinstance(want, int) and not isinstance(want, bool):
                if not -len(rec) <= want < len(rec):
                    raise ValueError(f"{where}: node index {want} out of range; the graph has "
                                     f"{len(rec)} recurrent nodes")
                chosen.append(rec[want])
            elif want in names:
                chosen.append(rec[names.index(want)])
            else:
                raise ValueError(f"{where}: no recurrent node named {want!r} (have: "
                                 f"{', '.join(names)})")

    def array(n, k: int, what: str):
        if len(n.input) <= k or not n.input[k]:
            return None
        if n.input[k] not in tensors:
            raise ValueError(f"{where}: {n.op_type} node {n.name!r}: {what} ({n.input[k]!r}) is "
                             "computed at run time, not stored in the file")
        a = numpy_helper.to_array(tensors[n.input[k]])
        if a.dtype.kind != "f":
            raise ValueError(f"{where}: {n.op_type} node {n.name!r}: {what} holds {a.dtype} "
                             "values; weights must be floating point")
        return a

    op = chosen[0].op_type
    layers = []
    for n in chosen:
        if n.op_type != op:
            raise ValueError(f"{where}: a stack mixes {op} and {n.op_type} nodes")
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        what = f"{where}: {op} node {n.name!r}"
        for bad in ("clip", "activation_alpha", "activation_beta"):
            if bad in attrs:
                raise ValueError(f"{what}: attribute {bad!r} is not supported by rnnkit")
        if attrs.get("input_forget", 0):
            raise ValueError(f"{what}: input_forget=1 (coupled input and forget gates) is not "
                             "supported by rnnkit")
        direction = attrs.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction == "reverse":
            raise ValueError(f"{what}: a reverse-only node has no rnnkit layer (rnnkit runs "
                             "forward or bidirectional)")
        if direction not in ("forward", "bidirectional"):
            raise ValueError(f"{what}: unknown direction {direction!r} (ONNX has forward, "
                             "reverse and bidirectional)")
        acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
        nonlinearity = "tanh"
        if op == "RNN" and acts:
            if set(acts) == {"Relu"}:
                nonlinearity = "relu"
            elif set(acts) != {"Tanh"}:
                raise ValueError(f"{what}: activations {acts} not supported (Tanh or Relu)")
        elif acts:
            default = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}[op]
            if acts != default * (len(acts) // len(default)):
                raise ValueError(f"{what}: activations {acts} not supported (only the "
                                 f"defaults {default})")
        W, R, B = array(n, 1, "W"), array(n, 2, "R"), array(n, 3, "B")
        P = array(n, 7, "P") if op == "LSTM" else None
        if W is None or R is None:
            raise ValueError(f"{what}: W and R are required")
        dirs = 2 if direction == "bidirectional" else 1
        G = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        H = int(attrs.get("hidden_size", R.shape[-1]))
        D = W.shape[-1]
        for label, a, shape in (("W", W, (dirs, G * H, D)), ("R", R, (dirs, G * H, H)),
                                ("B", B, (dirs, 2 * G * H)), ("P", P, (dirs, 3 * H))):
            if a is not None and a.shape != shape:
                raise ValueError(f"{what}: {label} has shape {a.shape}, expected {shape} for "
                                 f"hidden_size={H}, {dirs} direction(s)")
        layers.append(dict(W=W, R=R, B=B, P=P, H=H, D=D, dirs=dirs, nonlinearity=nonlinearity,
                           reset_after=bool(attrs.get("linear_before_reset", 0)), name=n.name))
    first = layers[0]
    for k, spec in enumerate(layers[1:], 1):
        for key in ("H", "dirs", "nonlinearity", "reset_after"):
            if spec[key] != first[key]:
                raise ValueError(f"{where}: node {spec['name']!r} differs from "
                                 f"{first['name']!r} in {key} ({spec[key]} vs {first[key]})")
        if spec["D"] != first["dirs"] * first["H"]:
            raise ValueError(f"{where}: node {spec['name']!r} (layer {k}) takes inputs of size "
                             f"{spec['D']}, but the layer below gives {first['dirs'] * first['H']}")
    kw = dict(num_layers=len(layers), bias=True, bidirectional=first["dirs"] == 2, dtype=dtype)
    if op == "LSTM":
        layer = LSTM(first["D"], first["H"], peepholes=any(s["P"] is not None for s in layers),
                     **kw)
    elif op == "GRU":
        layer = GRU(first["D"], first["H"], reset_after=first["reset_after"], **kw)
    else:
        layer = RNN(first["D"], first["H"], nonlinearity=first["nonlinearity"], **kw)
    H, GH = first["H"], G * first["H"]
    for k, spec in enumerate(layers):
        for d in range(spec["dirs"]):
            s = layer._suffix(k, d)
            p = layer.params
            p[f"weight_ih{s}"][...] = _blocks(spec["W"][d], FROM_ONNX[op], H)
            p[f"weight_hh{s}"][...] = _blocks(spec["R"][d], FROM_ONNX[op], H)
            b = spec["B"][d] if spec["B"] is not None else np.zeros(2 * GH)
            p[f"bias_ih{s}"][...] = _blocks(b[:GH], FROM_ONNX[op], H)
            p[f"bias_hh{s}"][...] = _blocks(b[GH:], FROM_ONNX[op], H)
            if getattr(layer, "peepholes", False):
                peep = spec["P"][d] if spec["P"] is not None else np.zeros(3 * H)
                p[f"weight_peephole{s}"][...] = _blocks(peep, PEEPHOLE_TO_ONNX, H)
    return layer
