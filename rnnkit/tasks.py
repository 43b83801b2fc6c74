"""Generated sequence tasks for long-range dependencies, in their published forms.

The adding problem (Hochreiter & Schmidhuber 1997, in the form of Arjovsky, Shah & Bengio 2016):
each step carries (value ∈ U[0, 1], marker ∈ {0, 1}); exactly two steps are marked, one in each
half of the sequence; the target is the sum of the two marked values. Always predicting the mean
sum 1 gives MSE = Var(u₁ + u₂) = 1/6 ≈ 0.167, the baseline to beat.

The copy-memory task (Arjovsky et al. 2016): symbols 0 = blank, 1…8 = data, 9 = delimiter. The
input is 10 data symbols drawn uniformly from 1…8, then T − 1 blanks, the delimiter, and 10 more
blanks (length T + 20); the target is T + 10 blanks followed by the 10 data symbols. Predicting
blanks and then a uniform guess over the 8 symbols gives the baseline cross-entropy
10 log 8 / (T + 20) per step.
"""

from __future__ import annotations

import math

import numpy as np

ADDING_BASELINE_MSE = 1.0 / 6.0
COPY_SYMBOLS = 10  # input alphabet: blank, 8 data symbols, delimiter
COPY_CLASSES = 9  # output alphabet: blank and the 8 data symbols
COPY_MEMORY = 10  # symbols to remember


def _check(n: int, length: int) -> None:
    if not isinstance(length, int | np.integer) or length < 2:
        raise ValueError(f"length must be an integer >= 2, got {length!r}")
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")


def adding_problem(n: int, length: int, rng: np.random.Generator,
                   dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    """Returns x (n, length, 2) and y (n, 1)."""
    _check(n, length)
    x = np.zeros((n, length, 2), dtype=dtype)
    x[:, :, 0] = rng.uniform(0, 1, (n, length))
    half = length // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, length, n)
    rows = np.arange(n)
    x[rows, first, 1] = 1
    x[rows, second, 1] = 1
    y = (x[rows, first, 0] + x[rows, second, 0])[:, None]
    return x, y.astype(dtype)


def copy_memory(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Returns input symbols (n, length + 20) and target classes (n, length + 20), int64."""
    _check(n, length)
    total = length + 2 * COPY_MEMORY
    data = rng.integers(1, 9, (n, COPY_MEMORY))
    x = np.zeros((n, total), dtype=np.int64)
    x[:, :COPY_MEMORY] = data
    x[:, length + COPY_MEMORY - 1] = 9
    y = np.zeros((n, total), dtype=np.int64)
    y[:, -COPY_MEMORY:] = data
    return x, y


def copy_baseline(length: int) -> float:
    """Cross-entropy per step of the memoryless strategy: 10 log 8 / (T + 20)."""
    return COPY_MEMORY * math.log(8) / (length + 2 * COPY_MEMORY)


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _ordinal(d: int) -> str:
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


def dates(n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Date normalisation, a generated translation task: a date written one of many ways →
    ISO 8601. ("3 March 2021" → "2021-03-03", "Wed, Mar 3 2021" → "2021-03-03", …)."""
    import datetime

    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    start = datetime.date(1950, 1, 1).toordinal()
    span = datetime.date(2049, 12, 31).toordinal() - start
    formats = [
        lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
        lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
        lambda d: f"{MONTHS[d.month - 1][:3]} {d.day} {d.year}",
        lambda d: f"{d.day} {MONTHS[d.month - 1][:3].lower()} {d.year}",
        lambda d: f"{_ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",
        lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",
        lambda d: f"{WEEKDAYS[d.weekday()][:3]}, {MONTHS[d.month - 1][:3]} {d.day} {d.year}",
        lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
        lambda d: f"{d.year}/{d.month}/{d.day}",
        lambda d: f"{MONTHS[d.month - 1].upper()} {_ordinal(d.day).upper()}, {d.year}",
    ]
    out = []
    for _ in range(n):
        d = datetime.date.fromordinal(start + int(rng.integers(0, span + 1)))
        out.append((formats[int(rng.integers(0, len(formats)))](d), d.isoformat()))
    return out
