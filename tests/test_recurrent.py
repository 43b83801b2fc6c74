"""Gradient checks of the recurrent layers: float64 centred finite differences over every
parameter, the input and the initial state, on odd sizes, for each cell × {1, 2 layers} ×
{uni, bi} × {full, variable lengths} × {zeros, given, learned} initial state."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import rnnkit
from rnnkit.diagnostics import numerical_gradient

from .helpers import misalign, rel_error

N, T, D, H = 3, 5, 3, 4
LENGTHS = np.array([2, 5, 3])
MAX_REL = 1e-6

CELLS = {
    "rnn-tanh": lambda **kw: rnnkit.RNN(D, H, nonlinearity="tanh", **kw),
    "rnn-relu": lambda **kw: rnnkit.RNN(D, H, nonlinearity="relu", **kw),
    "lstm": lambda **kw: rnnkit.LSTM(D, H, **kw),
    "lstm-peep": lambda **kw: rnnkit.LSTM(D, H, peepholes=True, **kw),
    "lstm-proj": lambda **kw: rnnkit.LSTM(D, H, proj_size=3, **kw),
    "gru": lambda **kw: rnnkit.GRU(D, H, **kw),
    "gru-after": lambda **kw: rnnkit.GRU(D, H, reset_after=True, **kw),
}


def _randomise(layer, rng):
    # Learned initial states start at zero; make every parameter generic for the check.
    for p in layer.params.values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)


def check_layer(layer, x, state, lengths, rng, dropout_seed=None):
    """Compare backward with finite differences on L = Σ out⊙G + Σ state_n⊙G_s."""
    lstm = layer.cell.has_cell_state
    dirs, L = layer.num_directions, layer.num_layers
    Ho = layer.output_size  # P for a projected LSTM (its c keeps H)
    gout = rng.standard_normal((N, T, dirs * Ho))
    gs = [rng.standard_normal((L * dirs, N, size)) for size in ((Ho, H) if lstm else (Ho,))]

    def reseed():
        if dropout_seed is not None:  # the same dropout masks in every evaluation
            layer.rng = np.random.default_rng(dropout_seed)

    def loss():
        reseed()
        out, final, _ = layer.forward(x, state, lengths, inference=True)
        finals = final if lstm else (final,)
        state_terms = sum((f * g).sum() for f, g in zip(finals, gs, strict=True))
        return float((out * gout).sum() + state_terms)

    reseed()
    out, _, cache = layer.forward(x, state, lengths)
    layer.zero_grad()
    dx, dstate0 = layer.backward(gout, tuple(gs) if lstm else gs[0], cache)

    checks = [("x", x, dx)]
    if state is not None:
        states = state if lstm else (state,)
        dstates = dstate0 if lstm else (dstate0,)
        pairs = zip(states, dstates, strict=True)
        checks += [(f"state[{i}]", s, d) for i, (s, d) in enumerate(pairs)]
    checks += [(name, p, layer.grads[name]) for name, p in layer.params.items()]
    for name, arr, analytic in checks:
        numeric = numerical_gradient(loss, arr)
        err = rel_error(analytic, numeric)
        assert err < MAX_REL, f"{name}: relative error {err:.2e}"
    if lengths is not None:
        # Padded steps receive no gradient and output exact zeros.
        for i, n in enumerate(lengths):
            assert np.all(dx[i, n:] == 0) and np.all(out[i, n:] == 0)
    return dx


def _gradients(cell, layers, bidir, with_lengths, init):
    key = repr((cell, layers, bidir, with_lengths, init)).encode()
    rng = np.random.default_rng(zlib.crc32(key))
    layer = CELLS[cell](num_layers=layers, bidirectional=bidir, dtype="float64", seed=3,
                        init_state="learned" if init == "learned" else "zeros")
    _randomise(layer, rng)
    x = rng.standard_normal((N, T, D))
    state = None
    if init == "given":
        rows = layers * layer.num_directions
        state = rng.standard_normal((rows, N, layer.output_size))
        if layer.cell.has_cell_state:
            state = (state, rng.standard_normal((rows, N, H)))
    check_layer(layer, x, state, LENGTHS if with_lengths else None, rng)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_gradients(cell, layers, bidir, with_lengths, layer_engine):
    """Every path, with a given (non-zero) initial state: its gradient comes out of the loops."""
    _gradients(cell, layers, bidir, with_lengths, "given")


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("init", ["zeros", "learned"])
def test_gradients_other_initial_states(cell, layers, bidir, with_lengths, init):
    """Zero and learned initial states are made before the loops, the same for every path: the
    planner's default path here (the engine matrix above covers the loops)."""
    _gradients(cell, layers, bidir, with_lengths, init)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_gradients_with_dropout_between_layers(cell, with_lengths, layer_engine):
    rng = np.random.default_rng(11)
    layer = CELLS[cell](num_layers=3, bidirectional=True, dropout=0.4, dtype="float64", seed=5)
    x = rng.standard_normal((N, T, D))
    check_layer(layer, x, None, LENGTHS if with_lengths else None, rng, dropout_seed=99)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_random_initial_state_is_seeded_and_differentiable(cell, layer_engine):
    a = CELLS[cell](init_state="random", seed=1, dtype="float64")
    b = CELLS[cell](init_state="random", seed=1, dtype="float64")
    assert set(a.buffers) == ({"h0", "c0"} if cell == "lstm" else {"h0"})
    for name in a.buffers:
        np.testing.assert_array_equal(a.buffers[name], b.buffers[name])
        assert np.abs(a.buffers[name]).max() > 0
        assert name not in a.params  # random is not trained
    x = np.random.default_rng(0).standard_normal((N, T, D))
    out_a, _, _ = a.forward(x)
    out_z, _, _ = CELLS[cell](seed=1, dtype="float64").forward(x)
    assert not np.allclose(out_a, out_z)
    check_layer(a, x, None, LENGTHS, np.random.default_rng(2))


@pytest.mark.parametrize("cell", list(CELLS))
def test_float32_agrees_with_float64(cell, layer_engine):
    rng = np.random.default_rng(5)
    n, t, d = 8, 40, D
    l64 = CELLS[cell](num_layers=2, bidirectional=True, dtype="float64", seed=2)
    l32 = CELLS[cell](num_layers=2, bidirectional=True, dtype="float32", seed=2)
    for name in l64.params:
        l32.params[name][...] = l64.params[name]  # the same weights, rounded to float32
        l64.params[name][...] = l32.params[name]
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    lengths = rng.integers(1, t + 1, n)
    gout = rng.standard_normal((n, t, 2 * l64.output_size)).astype(np.float32)
    results = []
    for layer in (l64, l32):
        out, _, cache = layer.forward(x, lengths=lengths)
        dx, _ = layer.backward(gout, None, cache)
        assert out.dtype == dx.dtype == layer.dtype
        results.append((out, dx, dict(layer.grads)))
    (o64, dx64, g64), (o32, dx32, g32) = results
    assert rel_error(o32, o64) < 1e-5
    assert rel_error(dx32, dx64) < 1e-5
    for name in g64:
        assert rel_error(g32[name], g64[name]) < 1e-5, name


# ---------------------------------------------------------------- bad input
def _x(n=N, t=T, d=D):
    return np.zeros((n, t, d))


@pytest.mark.parametrize("kwargs,match", [
    (dict(init_state="ones"), r"unknown init_state 'ones'; expected one of"),
    (dict(dtype="float16"), r"dtype must be one of .* got 'float16'"),
    (dict(dtype="int32"), r"dtype must be one of .* got 'int32'"),
    (dict(dropout=1.0), r"dropout must be a number in \[0, 1\), got 1.0"),
    (dict(num_layers=0), r"num_layers must be a positive integer, got 0"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnnkit.LSTM(D, H, **kwargs)


def test_bad_sizes_and_nonlinearity():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 2.5"):
        rnnkit.GRU(D, 2.5)
    with pytest.raises(ValueError, match="unknown nonlinearity 'gelu'"):
        rnnkit.RNN(D, H, nonlinearity="gelu")


@pytest.mark.parametrize("x,match", [
    (np.zeros((N, D)), r"x must be 3-D \(N, T, D\), got shape \(3, 3\)"),
    (np.zeros((N, T, D + 1)), r"x has 4 features \(shape \(3, 5, 4\)\), expected input_size=3"),
    (np.zeros((0, T, D)), r"at least one sequence and one step, got \(0, 5, 3\)"),
    (np.zeros((N, 0, D)), r"at least one sequence and one step, got \(3, 0, 3\)"),
])
def test_bad_x(x, match):
    with pytest.raises(ValueError, match=match):
        rnnkit.RNN(D, H).forward(x)


def test_non_numeric_x():
    with pytest.raises(TypeError, match="x must hold real numbers, got dtype <U1"):
        rnnkit.RNN(D, H).forward(np.full((N, T, D), "a"))


@pytest.mark.parametrize("lengths,match", [
    ([5, 5], r"lengths must have shape \(N,\) = \(3,\), got \(2,\)"),
    ([[5, 5, 5]], r"lengths must have shape \(N,\) = \(3,\), got \(1, 3\)"),
    ([0, 5, 3], r"lengths must lie in \[1, T=5\], got values from 0 to 5"),
    ([6, 5, 3], r"lengths must lie in \[1, T=5\], got values from 3 to 6"),
    ([2.5, 5, 3], r"lengths must be integers, got dtype float64"),
])
def test_bad_lengths(lengths, match):
    with pytest.raises(ValueError, match=match):
        rnnkit.GRU(D, H).forward(_x(), lengths=lengths)


def test_bad_state_shapes_never_broadcast():
    layer = rnnkit.GRU(D, H, num_layers=2)
    with pytest.raises(ValueError, match=r"state h must have shape .* = \(2, 3, 4\), "
                                         r"got \(2, 1, 4\)"):
        layer.forward(_x(), np.zeros((2, 1, H)))
    lstm = rnnkit.LSTM(D, H, bidirectional=True)
    with pytest.raises(ValueError, match=r"LSTM state must be a pair \(h, c\)"):
        lstm.forward(_x(), np.zeros((2, N, H)))
    with pytest.raises(ValueError, match=r"state c must have shape .* = \(2, 3, 4\), "
                                         r"got \(1, 3, 4\)"):
        lstm.forward(_x(), (np.zeros((2, N, H)), np.zeros((1, N, H))))


def test_bad_backward_arguments():
    layer = rnnkit.LSTM(D, H)
    out, _, cache = layer.forward(_x())
    with pytest.raises(ValueError, match=r"dout must have shape \(N, T, dirs\*H\) = "
                                         r"\(3, 5, 4\), got \(3, 5, 8\)"):
        layer.backward(np.zeros((N, T, 2 * H)), None, cache)
    with pytest.raises(ValueError, match=r"dstate h must have shape .* got \(1, 3, 5\)"):
        layer.backward(None, (np.zeros((1, N, H + 1)), None), cache)
    _, _, none = layer.forward(_x(), inference=True)
    assert none is None
    with pytest.raises(ValueError, match="needs the cache of a forward pass"):
        layer.backward(out, None, none)
    with pytest.raises(ValueError, match="cache does not come from this layer"):
        rnnkit.LSTM(D, H).backward(out, None, cache)


# ---------------------------------------------------------------- behaviour
def test_variable_lengths_match_separate_runs(layer_engine):
    """Each sequence of a padded batch gives what it gives alone, in both directions."""
    rng = np.random.default_rng(4)
    layer = rnnkit.LSTM(D, H, num_layers=2, bidirectional=True, dtype="float64", seed=1)
    x = rng.standard_normal((N, T, D))
    out, (h, c), _ = layer.forward(x, lengths=LENGTHS)
    for i, n in enumerate(LENGTHS):
        o1, (h1, c1), _ = layer.forward(x[i:i + 1, :n])
        np.testing.assert_allclose(out[i, :n], o1[0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(h[:, i], h1[:, 0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(c[:, i], c1[:, 0], rtol=1e-13, atol=1e-14)


def test_dropout_is_seeded_and_off_in_eval():
    x = np.random.default_rng(0).standard_normal((N, T, D))
    a = rnnkit.GRU(D, H, num_layers=2, dropout=0.5, seed=3)
    b = rnnkit.GRU(D, H, num_layers=2, dropout=0.5, seed=3)
    np.testing.assert_array_equal(a.forward(x)[0], b.forward(x)[0])
    train_out = a.forward(x)[0]
    a.eval()
    e1, e2 = a.forward(x)[0], a.forward(x)[0]
    np.testing.assert_array_equal(e1, e2)
    assert not np.allclose(train_out, e1)
    nodrop = rnnkit.GRU(D, H, num_layers=2, seed=3).eval()
    np.testing.assert_array_equal(nodrop.forward(x)[0], e1)


def test_parameter_names_and_shapes_follow_pytorch():
    layer = rnnkit.LSTM(D, H, num_layers=2, bidirectional=True, bias=True)
    shapes = {k: v.shape for k, v in layer.params.items()}
    assert shapes["weight_ih_l0"] == (4 * H, D)
    assert shapes["weight_ih_l1_reverse"] == (4 * H, 2 * H)
    assert shapes["weight_hh_l1"] == (4 * H, H)
    assert shapes["bias_hh_l0_reverse"] == (4 * H,)
    assert len(shapes) == 16
    assert set(layer.grads) == set(layer.params)
    assert all(v.dtype == np.float32 for v in layer.params.values())
    assert set(rnnkit.GRU(D, H, bias=False).params) == {"weight_ih_l0", "weight_hh_l0"}


@pytest.mark.parametrize("cell", list(CELLS))
def test_gradients_without_bias(cell, layer_engine):
    rng = np.random.default_rng(8)
    layer = CELLS[cell](num_layers=2, bidirectional=True, bias=False, dtype="float64", seed=4)
    x = rng.standard_normal((N, T, D))
    check_layer(layer, x, None, LENGTHS, rng)


@pytest.mark.parametrize("cell", list(CELLS))
def test_work_arrays_are_never_shared_by_live_results(cell, layer_engine):
    """The layer reuses its work arrays across calls (rnnkit.recurrent._pool): two caches
    alive at once, an inference call in between, and returned arrays of a batch of one must
    all stay independent."""
    rng = np.random.default_rng(3)
    layer = CELLS[cell](num_layers=2, bidirectional=True, dtype="float64", seed=0)
    xs = [rng.standard_normal((n, T, D)) for n in (7, 7, 1)]
    gouts = [rng.standard_normal((n, T, 2 * layer.output_size)) for n in (7, 7, 1)]

    def alone(x, g):
        layer.zero_grad()
        out, _, cache = layer.forward(x)
        dx, _ = layer.backward(g, None, cache)
        return out.copy(), dx.copy(), {k: v.copy() for k, v in layer.grads.items()}

    expected = [alone(x, g) for x, g in zip(xs, gouts, strict=True)]
    # Interleaved: forward, forward, inference, backward in the opposite order.
    results = []
    for i in (0, 1):
        out, _, cache = layer.forward(xs[i])
        results.append((out, cache))
    infer, _, _ = layer.forward(xs[2], inference=True)
    for i in (1, 0):
        out, cache = results[i]
        layer.zero_grad()
        dx, _ = layer.backward(gouts[i], None, cache)
        np.testing.assert_array_equal(out, expected[i][0])
        np.testing.assert_array_equal(dx, expected[i][1])
        for k, v in layer.grads.items():
            np.testing.assert_array_equal(v, expected[i][2][k], err_msg=k)
    # Inference keeps no cache, and may take another path than training's forward pass (on
    # MKL it runs batch-major, with each step's input product in the loop): the same numbers
    # to rounding, not bit for bit (products on another path may take other kernels).
    for ours, theirs in ((infer, expected[2][0]),
                         (layer.forward(xs[0], inference=True)[0], expected[0][0])):
        np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-13)
    # A batch of one: out and dx must not be views of arrays the next call overwrites.
    out1, _, cache = layer.forward(xs[2])
    dx1, _ = layer.backward(gouts[2], None, cache)
    layer.forward(xs[0], inference=True)
    out2, _, cache = layer.forward(xs[2] + 1.0)
    layer.backward(gouts[2] * 2.0, None, cache)
    np.testing.assert_array_equal(out1, expected[2][0])
    np.testing.assert_array_equal(dx1, expected[2][1])


@pytest.mark.parametrize("cell", [c for c in CELLS if c != "lstm-proj"])  # time-major only
@pytest.mark.parametrize("products", ["mkl", "cblas", "packed", "loop"])
def test_batch_major_paths_agree_with_time_major(cell, products):
    """Training without padding and inference run on batch-major arrays (rnnkit.plan); output,
    final state, ∂L/∂x, ∂L/∂state and every parameter gradient are those of the time-major path
    to rounding (the two paths' products may take other kernels, and the gradients sum their
    rows in another order). A padded batch trains time-major; inference stays batch-major."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    layer = CELLS[cell](num_layers=2, bidirectional=True, dtype="float64", seed=2,
                        init_state="learned")
    _randomise(layer, rng)
    x = rng.standard_normal((7, T, D))
    gout = rng.standard_normal((7, T, 2 * H))
    shape = (4, 7, H)
    state, gstate = rng.standard_normal(shape), rng.standard_normal(shape)
    if layer.cell.has_cell_state:
        state, gstate = (state, rng.standard_normal(shape)), (gstate, rng.standard_normal(shape))
    pair = (lambda s: s) if layer.cell.has_cell_state else (lambda s: (s,))

    def step(lengths=None):
        layer.zero_grad()
        out, final, cache = layer.forward(x, state, lengths)
        dx, dstate = layer.backward(gout, gstate, cache)
        infer, final_i, _ = layer.forward(x, state, lengths, inference=True)
        return ([out, *pair(final), dx, *pair(dstate), infer, *pair(final_i)],
                {k: v.copy() for k, v in layer.grads.items()}, cache.plan)

    try:
        with rnnkit.plan.forced(kernel="numba", products=products, layout="batch-major"):
            ours, ours_grads, used = step(np.full(7, T))  # lengths all T: no padding either
            assert used.layout == "batch-major"
            assert layer.plan(7, padded=True, inference=False).layout == "time-major"
            assert layer.plan(7, padded=True, inference=True).layout == "batch-major"
        with rnnkit.plan.forced(kernel="numba", products=products, layout="time-major"):
            theirs, theirs_grads, used = step()
            assert used.layout == "time-major"
    except ImportError as exc:
        pytest.skip(str(exc))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    for k in theirs_grads:
        np.testing.assert_allclose(ours_grads[k], theirs_grads[k], rtol=1e-12, atol=1e-12,
                                   err_msg=k)
    lengths = np.array([5, 2, 3, 5, 1, 4, 5])  # unsorted: rows are reordered and back
    with rnnkit.plan.forced(kernel="numba", products=products, layout="batch-major"):
        out, _, _ = layer.forward(x, state, lengths, inference=True)
    expected, _, _ = layer.forward(x, state, lengths)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    for i, n in enumerate(lengths):
        assert np.all(out[i, n:] == 0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_results_do_not_depend_on_memory_alignment(cell, layer_engine, monkeypatch):
    """The same computation on arrays at another address gives the same bits: a run resumed
    in a new process (another heap) must end exactly where an uninterrupted one does. BLAS
    libraries may pick their kernels by alignment (MKL does unless its CNR mode is on)."""
    rng = np.random.default_rng(21)
    n, t, d, h = 9, 5, 6, 13
    x0 = rng.standard_normal((n, t, d)).astype(np.float32)
    g0 = rng.standard_normal((n, t, 2 * h)).astype(np.float32)
    lengths = np.array([5, 2, 3, 5, 1, 4, 5, 3, 5])
    make = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn-tanh": rnnkit.RNN}[cell]
    results = []
    for shift in (0, 1, 5, 11):
        empty = misalign(monkeypatch, shift)
        layer = make(d, h, num_layers=2, bidirectional=True, seed=6)  # fresh work arrays
        x, g = empty(x0.shape, x0.dtype), empty(g0.shape, g0.dtype)
        x[...], g[...] = x0, g0
        out, _, cache = layer.forward(x, None, lengths)
        dx, _ = layer.backward(g, None, cache)
        infer, _, _ = layer.forward(x, None, lengths, inference=True)
        results.append([out.copy(), dx.copy(), infer.copy(),
                        *(v.copy() for v in layer.grads.values())])
        monkeypatch.undo()
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["time-major", "batch-major"])
@pytest.mark.parametrize("cell", ["lstm", "lstm-peepholes", "gru", "gru-after", "rnn-relu"])
def test_threads_sharing_each_step_give_the_same_bits(cell, layout):
    """rnnkit's own products on 2 and 3 threads that split every step's product columns and
    rows: each number is made by the same arithmetic, so outputs, input and weight gradients
    are identical (one path, only the thread count moves). One thread leaves the products
    outside the loops to the library (rnnkit.runner._product): equal to rounding."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    n, t, d, h = 11, 6, 5, 9
    x = rng.standard_normal((n, t, d))
    g = rng.standard_normal((n, t, 2 * h))
    lengths = None if layout == "batch-major" else np.array([6, 2, 3, 6, 1, 4, 5, 3, 6, 2, 1])
    make = {"lstm": rnnkit.LSTM, "lstm-peepholes": lambda *a, **k: rnnkit.LSTM(
        *a, peepholes=True, **k), "gru": rnnkit.GRU, "gru-after": lambda *a, **k: rnnkit.GRU(
        *a, reset_after=True, **k), "rnn-relu": lambda *a, **k: rnnkit.RNN(
        *a, nonlinearity="relu", **k)}[cell]
    results = []
    for threads in (1, 2, 3):
        layer = make(d, h, num_layers=2, bidirectional=True, seed=3, dtype=np.float64)
        with rnnkit.plan.forced(kernel="numba", products="packed", layout=layout,
                                threads=threads):
            assert layer.plan(n, lengths is not None).threads == threads
            out, _, cache = layer.forward(x, None, lengths)
            dx, _ = layer.backward(g, None, cache)
            infer, _, _ = layer.forward(x, None, lengths, inference=True)
        results.append(([out, dx, infer], list(layer.grads.values())))
    one, two, three = ([*values, *grads] for values, grads in results)
    for a, b, c in zip(one, two, three, strict=True):
        np.testing.assert_array_equal(b, c)
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh", "lstm-proj"])
def test_gradients_time_major(cell):
    """batch_first=False (PyTorch's default layout): x (T, N, D), out (T, N, dirs·H), dout and
    dx likewise; every gradient against finite differences, padded rows included."""
    rng = np.random.default_rng(12)
    layer = CELLS[cell](num_layers=2, bidirectional=True, dtype="float64", seed=4,
                        batch_first=False)
    _randomise(layer, rng)
    x = rng.standard_normal((T, N, D))
    gout = rng.standard_normal((T, N, 2 * layer.output_size))
    gh = rng.standard_normal((4, N, layer.output_size))

    def loss():
        out, final, _ = layer.forward(x, None, LENGTHS, inference=True)
        h = final[0] if isinstance(final, tuple) else final
        return float((out * gout).sum() + (h * gh).sum())

    out, _, cache = layer.forward(x, None, LENGTHS)
    assert out.shape == (T, N, 2 * layer.output_size)
    layer.zero_grad()
    lstm = layer.cell.has_cell_state
    dx, _ = layer.backward(gout, (gh, None) if lstm else gh, cache)
    assert dx.shape == x.shape
    for name, arr, analytic in [("x", x, dx), *((n, p, layer.grads[n])
                                                for n, p in layer.params.items())]:
        err = rel_error(analytic, numerical_gradient(loss, arr))
        assert err < MAX_REL, f"{name}: relative error {err:.2e}"
    for i, n in enumerate(LENGTHS):
        assert np.all(out[n:, i] == 0) and np.all(dx[n:, i] == 0)
    with pytest.raises(ValueError, match=r"\(T, N, dirs\*H\)"):
        layer.backward(gout.transpose(1, 0, 2), None, layer.forward(x, None, LENGTHS)[2])
