from __future__ import annotations

import numpy as np
import pytest

from rnnkit.tasks import ADDING_BASELINE_MSE, adding_problem


def test_adding_problem_structure_and_baseline():
    x, y = adding_problem(20000, 12, np.random.default_rng(0))
    assert x.shape == (20000, 12, 2) and y.shape == (20000, 1)
    marks = x[:, :, 1]
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, :6].sum(axis=1) == 1)  # one mark in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * marks).sum(axis=1), rtol=1e-6)
    # Predicting 1 for every sequence gives the published baseline MSE 1/6.
    assert abs(np.mean((y - 1.0) ** 2) - ADDING_BASELINE_MSE) < 0.005


def test_adding_problem_bad_length():
    with pytest.raises(ValueError, match="length >= 2, got 1"):
        adding_problem(3, 1, np.random.default_rng(0))
