"""Data-parallel training and prediction over MPI (mpi4py), when rnnkit runs under mpiexec:

    mpiexec -n K rnnkit train TASK ...        mpiexec -n K rnnkit predict RUN FILE

Every rank builds the same model from the same seed and walks the same plan of global batches;
rank r takes the examples r, r + K, … of each (a language model: those rows of each window).
With n_r its count (examples or tokens) and g_r its mean gradient, the step uses

    g = Σ_r n_r g_r / Σ_r n_r

— the global batch's mean gradient, whatever K — summed by one Allreduce over a flat float64
buffer (in buckets of :data:`BUCKET` values), before clipping and the optimiser step: every
rank then holds the same weights after every step. Rank 0 alone writes checkpoints, metrics and
plots. Without mpiexec (no MPI in the environment) :func:`world` is one process and mpi4py is
never imported.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

#: Environment variables an MPI launcher sets in every process it starts (MPICH's Hydra and
#: PMI, Open MPI, PMIx as under Slurm's srun).
LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK")
#: Values per Allreduce call (32 MB of float64): large gradients go in several.
BUCKET = 1 << 22


@dataclass(frozen=True)
class World:
    """This process's place among the ranks: ``rank`` of ``size``; ``comm`` the MPI
    communicator, None for a single process."""

    rank: int = 0
    size: int = 1
    comm: object = None

    @property
    def parallel(self) -> bool:
        """More than one rank."""
        return self.size > 1

    def allreduce_(self, buf: np.ndarray) -> np.ndarray:
        """Sum ``buf`` (1-D, contiguous) over the ranks, in place, bucket by bucket."""
        if self.parallel:
            from mpi4py import MPI

            for start in range(0, buf.size, BUCKET):
                self.comm.Allreduce(MPI.IN_PLACE, buf[start:start + BUCKET], op=MPI.SUM)
        return buf

    def allgather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        return self.comm.allgather(obj) if self.parallel else [obj]

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` in rank order on rank 0 (None elsewhere)."""
        return self.comm.gather(obj, root=0) if self.parallel else [obj]

    def bcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        return self.comm.bcast(obj, root=0) if self.parallel else obj

    def abort(self, code: int) -> None:
        """End every rank now (a failure on one must not leave the others waiting)."""
        if self.parallel:
            self.comm.Abort(code)


def under_mpiexec() -> bool:
    """Whether an MPI launcher started this process."""
    return any(v in os.environ for v in LAUNCHER_VARS)


@functools.cache
def world() -> World:
    """The ranks of this run: MPI's world under mpiexec, else one process (MPI untouched)."""
    if not under_mpiexec():
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        raise ValueError("rnnkit runs under an MPI launcher but mpi4py is not installed: "
                         "pip install \"rnnkit[mpi]\"") from None
    comm = MPI.COMM_WORLD
    w = World(comm.Get_rank(), comm.Get_size(), comm)
    if w.parallel:  # an exception nothing caught ends every rank (as python -m mpi4py does)
        _abort_on_uncaught(w)
    return w


def _abort_on_uncaught(w: World) -> None:
    import sys

    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        w.abort(1)
    sys.excepthook = hook


def share(items: list, w: World) -> list:
    """This rank's part of a list: items r, r + K, …"""
    return items[w.rank::w.size]


def allreduce_gradients(grads: dict, loss_sum: float, count: int, w: World) -> tuple:
    """``grads`` (each the mean over this rank's ``count``) become the mean over every rank's
    examples, in place; → (summed loss, summed count)."""
    if not w.parallel:
        return loss_sum, count
    arrays = list(grads.values())
    sizes = [g.size for g in arrays]
    buf = np.empty(sum(sizes) + 2)
    at = 0
    for g, n in zip(arrays, sizes, strict=True):
        np.multiply(g.reshape(-1), count, out=buf[at:at + n], casting="unsafe")
        at += n
    buf[-2:] = loss_sum, count
    w.allreduce_(buf)
    total = buf[-1]
    at = 0
    for g, n in zip(arrays, sizes, strict=True):
        g[...] = (buf[at:at + n] / total).reshape(g.shape) if total else 0.0
        at += n
    return float(buf[-2]), int(round(total))


def merge_totals(parts: list[dict]) -> dict:
    """Evaluation totals of every rank summed key by key, in rank order."""
    out: dict = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out[k] + v if k in out else v
    return out
