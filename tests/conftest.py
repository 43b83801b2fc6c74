"""The engine matrix: tests of numbers take one of these fixtures and run once per path.

``kernel_engine`` — the two kernel engines (NumPy, numba), for code that runs the element-wise
kernels directly (a cell's step, the optimisers). ``layer_engine`` — every path a recurrent layer
can take (rnnkit.plan): the NumPy engine; numba per step with NumPy's BLAS from Python; numba's
compiled loops with products in the loop (normally only for batches of a few rows), with NumPy's
cblas_?gemm, with rnnkit's own GEMM on W packed once per call (rnnkit._simd; on the threads the
planner gives it, one for these small layers: more threads give the same bits, which
test_recurrent.py::test_threads_sharing_each_step_give_the_same_bits checks), and with MKL's
packed GEMM (when MKL is installed), as one loop and cut into three row blocks
(normally only for ≥ 64 rows a block). Paths are chosen through rnnkit.plan.forced, the public
way, not by patching."""

from __future__ import annotations

import pytest

from rnnkit import backend, plan

# name: the kernel engine, and the path forced through rnnkit.plan.forced
ENGINES = {
    "numpy": ("numpy", dict(kernel="numpy")),
    "numba-step": ("numba", dict(kernel="numba", products="numpy")),
    "numba-loop": ("numba", dict(kernel="numba", products="loop")),
    "numba-cblas": ("numba", dict(kernel="numba", products="cblas")),
    "numba-packed": ("numba", dict(kernel="numba", products="packed")),
    "numba-mkl": ("numba", dict(kernel="numba", products="mkl", blocks=1)),
    "numba-mkl-blocks": ("numba", dict(kernel="numba", products="mkl", blocks=3)),
}


def _use(name):
    kind, path = ENGINES[name]
    if kind == "numba":
        pytest.importorskip("numba")
    try:
        context = plan.forced(**path)
        context.__enter__()
    except ImportError as exc:
        pytest.skip(str(exc))
    previous = backend.engine()
    backend.set_engine(kind)
    try:
        yield name
    finally:
        backend.set_engine(previous)
        context.__exit__(None, None, None)


@pytest.fixture(params=["numpy", "numba-step"], ids=["numpy", "numba"])
def kernel_engine(request):
    """Each kernel engine (for code that calls the kernels directly)."""
    yield from _use(request.param)


@pytest.fixture(params=list(ENGINES))
def layer_engine(request):
    """Each path of a recurrent layer."""
    yield from _use(request.param)
