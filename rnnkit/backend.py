"""The array module in one place.

rnnkit computes with NumPy. Everything that touches the array library imports ``xp`` from here, so
a GPU array module (CuPy) can later replace it in one line.
"""

from __future__ import annotations

import numpy as np

xp = np

#: Floating dtypes a layer may compute in.
FLOAT_DTYPES = ("float32", "float64")


def resolve_dtype(dtype: object) -> np.dtype:
    """Return the NumPy dtype for ``"float32"``/``"float64"`` (or the dtype objects themselves).

    Raises ValueError for anything else, naming what was given.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}") from exc
    if dt.name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dt.name!r}")
    return dt
