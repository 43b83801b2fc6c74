from __future__ import annotations

import math

import numpy as np
import pytest

from rnnkit.tasks import ADDING_BASELINE_MSE, adding_problem, copy_baseline, copy_memory, dates


def test_adding_problem_structure_and_baseline():
    x, y = adding_problem(20000, 12, np.random.default_rng(0))
    assert x.shape == (20000, 12, 2) and y.shape == (20000, 1)
    marks = x[:, :, 1]
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, :6].sum(axis=1) == 1)  # one mark in each half
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * marks).sum(axis=1), rtol=1e-6)
    # Predicting 1 for every sequence gives the published baseline MSE 1/6.
    assert abs(np.mean((y - 1.0) ** 2) - ADDING_BASELINE_MSE) < 0.005


def test_copy_memory_structure_and_baseline():
    T = 30
    x, y = copy_memory(5000, T, np.random.default_rng(0))
    assert x.shape == y.shape == (5000, T + 20)
    assert np.all((x[:, :10] >= 1) & (x[:, :10] <= 8))
    assert np.all(x[:, 10:T + 9] == 0) and np.all(x[:, T + 9] == 9) and np.all(x[:, T + 10:] == 0)
    assert np.all(y[:, :T + 10] == 0)
    np.testing.assert_array_equal(y[:, -10:], x[:, :10])
    # The memoryless strategy: blanks, then uniform over the 8 symbols.
    p = np.zeros((T + 20, 9))
    p[: T + 10, 0] = 1
    p[T + 10:, 1:] = 1 / 8
    with np.errstate(divide="ignore"):
        ce = -np.log(np.take_along_axis(np.broadcast_to(p, (5000, T + 20, 9)), y[..., None],
                                        axis=2)).mean()
    assert abs(ce - copy_baseline(T)) < 1e-12
    assert abs(copy_baseline(T) - 10 * math.log(8) / (T + 20)) < 1e-15


@pytest.mark.parametrize("task", [adding_problem, copy_memory])
def test_bad_length(task):
    with pytest.raises(ValueError, match="length must be an integer >= 2, got 1"):
        task(3, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        task(0, 5, np.random.default_rng(0))


def test_dates_normalise_to_iso():
    import datetime

    pairs = dates(500, np.random.default_rng(0))
    assert len({src.split()[0][:3] for src, _ in pairs}) > 5  # many formats
    for src, iso in pairs:
        d = datetime.date.fromisoformat(iso)
        assert str(d.year) in src
    assert dates(3, np.random.default_rng(1)) == dates(3, np.random.default_rng(1))
