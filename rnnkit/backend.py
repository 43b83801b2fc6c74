"""The array module and the kernel engine, in one place.

rnnkit computes with NumPy. The fused element-wise kernels of the cells come in two engines with
the same functions: ``"numba"`` (:mod:`rnnkit._numba_kernels`, compiled, the default when numba
imports) and ``"numpy"`` (:mod:`rnnkit.kernels`, the reference and fallback). Choose with
:func:`set_engine` or the environment variable ``RNNKIT_ENGINE`` (``auto``, ``numba``, ``numpy``).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

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


ENGINES = ("auto", "numba", "numpy")
_engine: ModuleType | None = None


def set_engine(name: str = "auto") -> str:
    """Select the kernel engine; returns the name of the one now in use.

    ``"auto"`` takes numba when it imports and NumPy otherwise; ``"numba"`` raises ImportError
    when numba is missing.
    """
    global _engine
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; expected one of {ENGINES}")
    if name in ("auto", "numba"):
        try:
            from . import _numba_kernels as mod
        except ImportError:
            if name == "numba":
                raise
            from . import kernels as mod
    else:
        from . import kernels as mod
    _engine = mod
    return mod.name


def numba_kernels() -> ModuleType:
    """The compiled engine (ImportError when numba is missing)."""
    from . import _numba_kernels

    return _numba_kernels


def kernels_named(name: str) -> ModuleType:
    """The kernel engine called ``name`` (``"numba"`` or ``"numpy"``)."""
    if name == "numba":
        return numba_kernels()
    from . import kernels as mod

    return mod


def kernels() -> ModuleType:
    """The kernel engine in use (chosen on first use from ``RNNKIT_ENGINE``)."""
    if _engine is None:
        set_engine(os.environ.get("RNNKIT_ENGINE", "auto"))
    return _engine


def engine() -> str:
    """The name of the kernel engine in use: ``"numba"`` or ``"numpy"``."""
    return kernels().name


# ------------------------------------------------------------------ untrusted configurations
_budget = threading.local()


@contextmanager
def parameter_budget(elements: int) -> Iterator[None]:
    """Within this block, layers whose parameters would need more than ``elements`` numbers in
    all raise ValueError *before* allocating: a model built from an untrusted config (a
    downloaded checkpoint) cannot ask for more memory than its weights file holds."""
    previous = getattr(_budget, "left", None)
    _budget.left = int(elements)
    try:
        yield
    finally:
        _budget.left = previous


def claim(shape: tuple) -> tuple:
    """Reserve a parameter's elements against the active :func:`parameter_budget`."""
    left = getattr(_budget, "left", None)
    if left is not None:
        n = math.prod(int(d) for d in shape)
        if n > left:
            raise ValueError(f"the configuration asks for a parameter of shape {tuple(shape)}, "
                             f"more than the weights file holds ({left} numbers left)")
        _budget.left = left - n
    return shape
