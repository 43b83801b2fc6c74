from __future__ import annotations

import numpy as np
import pytest

from rnnkit.diagnostics import numerical_gradient
from rnnkit.layers import Linear

from .helpers import rel_error


def test_linear_gradients():
    rng = np.random.default_rng(0)
    lin = Linear(5, 3, dtype="float64", seed=1)
    x = rng.standard_normal((3, 7, 5))
    g = rng.standard_normal((3, 7, 3))

    def loss():
        return float((lin.forward(x)[0] * g).sum())

    y, cache = lin.forward(x)
    dx = lin.backward(g, cache)
    assert y.shape == (3, 7, 3)
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-8
    for name, p in lin.params.items():
        assert rel_error(lin.grads[name], numerical_gradient(loss, p)) < 1e-8, name


def test_linear_bad_input():
    lin = Linear(5, 3)
    with pytest.raises(ValueError, match=r"Linear expects input \(\.\.\., 5\), got shape \(2, 4\)"):
        lin.forward(np.zeros((2, 4)))
    _, cache = lin.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"dy must have shape \(2, 3\), got \(2, 4\)"):
        lin.backward(np.zeros((2, 4)), cache)


# ---------------------------------------------------------------- Embedding
def test_embedding_gradient_accumulates_and_skips_padding():
    from rnnkit.layers import Embedding

    emb = Embedding(7, 4, padding_idx=0, dtype="float64", seed=0)
    assert np.all(emb.params["weight"][0] == 0)
    ids = np.array([[1, 3, 3, 0], [6, 1, 0, 0]])
    g = np.random.default_rng(1).standard_normal((2, 4, 4))

    def loss():
        return float((emb.forward(ids)[0] * g).sum())

    y, cache = emb.forward(ids)
    assert y.shape == (2, 4, 4)
    assert emb.backward(g, cache) is None
    numeric = numerical_gradient(loss, emb.params["weight"])
    numeric[0] = 0  # the padding row is frozen
    assert rel_error(emb.grads["weight"], numeric) < 1e-8
    assert np.all(emb.grads["weight"][0] == 0)
    np.testing.assert_allclose(emb.grads["weight"][3], g[0, 1] + g[0, 2])


def test_embedding_bad_ids():
    from rnnkit.layers import Embedding

    emb = Embedding(5, 3)
    with pytest.raises(ValueError, match="id 5 out of range for an Embedding of "
                                         "num_embeddings=5"):
        emb.forward(np.array([[1, 5]]))
    with pytest.raises(ValueError, match="id -1 out of range"):
        emb.forward(np.array([-1]))
    with pytest.raises(TypeError, match="integer ids, got dtype float64"):
        emb.forward(np.array([1.0]))


# ---------------------------------------------------------------- Dropout
def test_dropout_seeded_scaled_and_identity_in_eval():
    from rnnkit.layers import Dropout

    x = np.ones((200, 50))
    a, b = Dropout(0.3, seed=4), Dropout(0.3, seed=4)
    ya, mask = a.forward(x)
    yb, _ = b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    assert set(np.unique(ya)) == {0.0, 1 / 0.7}
    assert abs((ya == 0).mean() - 0.3) < 0.02
    np.testing.assert_array_equal(a.backward(np.ones_like(x), mask), mask)
    a.eval()
    y, cache = a.forward(x)
    assert y is x and cache is None
    with pytest.raises(ValueError, match=r"dropout p must be a number in \[0, 1\), got 1"):
        Dropout(1)


# ---------------------------------------------------------------- attention
def _check_attention(att, q, k, v, mask):
    rng = np.random.default_rng(3)
    gc = rng.standard_normal((q.shape[0], q.shape[1], v.shape[2]))
    gw = rng.standard_normal((q.shape[0], q.shape[1], k.shape[1]))

    def loss():
        c, w, _ = att.forward(q, k, v, mask)
        return float((c * gc).sum() + (w * gw).sum())

    c, w, cache = att.forward(q, k, v, mask)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0)
    assert np.all(w[~np.broadcast_to(mask[:, None, :], w.shape)] == 0)
    dq, dk, dv = att.backward(gc, gw, cache)
    for name, arr, analytic in [("q", q, dq), ("k", k, dk), ("v", v, dv)] + [
            (n, p, att.grads[n]) for n, p in att.params.items()]:
        assert rel_error(analytic, numerical_gradient(loss, arr)) < 1e-7, name


@pytest.mark.parametrize("kind,scale", [("dot", False), ("dot", True), ("general", False)])
def test_dot_attention_gradients(kind, scale):
    from rnnkit.layers import DotAttention

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 5, 4)),
               rng.standard_normal((3, 5, 3)))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=bool)
    _check_attention(DotAttention(4, kind=kind, scale=scale, dtype="float64", seed=1), q, k, v,
                     mask)


def test_additive_attention_gradients():
    from rnnkit.layers import AdditiveAttention

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 5, 6)),
               rng.standard_normal((3, 5, 3)))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=bool)
    att = AdditiveAttention(4, 6, 7, dtype="float64", seed=1)
    att.params["bias"][...] = rng.standard_normal(7)
    _check_attention(att, q, k, v, mask)


def test_dot_attention_matches_torch_sdpa():
    torch = pytest.importorskip("torch")
    from rnnkit.layers import DotAttention

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)),
               rng.standard_normal((2, 5, 6)))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
    c, w, _ = DotAttention(4, scale=True, dtype="float64").forward(q, k, v, mask)
    ref = torch.nn.functional.scaled_dot_product_attention(
        torch.tensor(q), torch.tensor(k), torch.tensor(v),
        attn_mask=torch.tensor(mask)[:, None, :])
    np.testing.assert_allclose(c, ref.numpy(), rtol=1e-12, atol=1e-12)


def test_attention_bad_input():
    from rnnkit.layers import DotAttention

    att = DotAttention(4)
    with pytest.raises(ValueError, match=r"keys must be \(N=2, S, 4\), got \(2, 5, 3\)"):
        att.forward(np.zeros((2, 1, 4)), np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="every row of mask needs at least one valid"):
        att.forward(np.zeros((2, 1, 4)), np.zeros((2, 5, 4)), mask=np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="unknown attention kind 'cosine'"):
        DotAttention(4, kind="cosine")
