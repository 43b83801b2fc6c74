"""rnnkit._simd: the packed-panel GEMM of the time loops against NumPy's product, for full and
partial panels and row tiles, accumulating or not, on strided rows, float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

simd = pytest.importorskip("rnnkit._simd")

TOL = {np.float64: 1e-13, np.float32: 2e-6}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,cols", [(32, 64, 256), (7, 5, 12), (9, 13, 40), (1, 4, 3),
                                      (5, 33, 65), (4, 16, 32), (3, 1, 17)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_product_equals_numpy(dtype, m, k, cols, beta):
    rng = np.random.default_rng(m * 1000 + k * 10 + cols)
    a = rng.standard_normal((m, k + 3)).astype(dtype)[:, :k]  # rows 3 elements apart
    w = rng.standard_normal((k, cols)).astype(dtype)
    c0 = rng.standard_normal((m + 1, cols + 2)).astype(dtype)
    c = c0.copy()
    simd.product(m, cols, k, a, simd.pack(w), dtype(beta), c[:, :cols], 0, 1)
    want = a.astype(np.float64) @ w + (c0[:m, :cols] if beta else 0)
    np.testing.assert_allclose(c[:m, :cols], want, rtol=TOL[dtype], atol=TOL[dtype] * k)
    # Nothing past the m rows and cols columns is touched.
    np.testing.assert_array_equal(c[:, cols:], c0[:, cols:])
    np.testing.assert_array_equal(c[m:], c0[m:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,cols", [(32, 64, 256), (7, 5, 12), (9, 1100, 40), (1, 4, 3),
                                      (17, 513, 65), (3, 0, 17)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_product_of_a_transpose_equals_numpy(dtype, m, k, cols, beta):
    """product_t, a weight gradient (atᵀ @ W over many steps): runs of K_BLOCK steps, row
    tiles of 8 and fewer, in row blocks as the layers cut them, and k = 0."""
    rng = np.random.default_rng(m * 1000 + k * 10 + cols)
    at = rng.standard_normal((k, m + 2)).astype(dtype)[:, 1:m + 1]  # columns of a wider array
    w = rng.standard_normal((k, cols)).astype(dtype)
    c0 = rng.standard_normal((m + 1, cols + 2)).astype(dtype)
    c = c0.copy()
    ap = np.empty((8, simd.K_BLOCK), dtype)
    packed = simd.pack(w)
    for r0, r1 in ((0, m // 3), (m // 3, m)):
        simd.product_t_rows(r0, r1, cols, k, at, packed, dtype(beta), c[:, :cols], ap)
    want = at.T.astype(np.float64) @ w + (c0[:m, :cols] if beta else 0)
    np.testing.assert_allclose(c[:m, :cols], want, rtol=TOL[dtype],
                               atol=TOL[dtype] * max(k, 1) ** 0.5 * 4)
    np.testing.assert_array_equal(c[:, cols:], c0[:, cols:])
    np.testing.assert_array_equal(c[m:], c0[m:])


def test_pack_layout():
    """Panels of 2·L columns, k rows each, the last one zero-padded."""
    w = np.arange(3 * 40, dtype=np.float32).reshape(3, 40)
    p = simd.pack(w)
    width = 2 * simd.lanes(np.float32)
    assert width == 32 and p.shape == (2 * 3 * 32,)
    panels = p.reshape(2, 3, 32)
    np.testing.assert_array_equal(panels[0], w[:, :32])
    np.testing.assert_array_equal(panels[1, :, :8], w[:, 32:])
    assert not panels[1, :, 8:].any()
