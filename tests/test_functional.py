from __future__ import annotations

import warnings

import numpy as np
import pytest

from rnnkit import functional as F


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_and_exact(dtype):
    x = np.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning
        y = F.sigmoid(x)
    assert y.dtype == dtype
    ref = np.array([0.0, 9.357622968840175e-14, 0.2689414213699951, 0.5, 0.7310585786300049,
                    1.0, 1.0])
    np.testing.assert_allclose(y, ref, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-13)
