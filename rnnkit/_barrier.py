"""A barrier for the threads of one cooperative time loop (compiled, called without the GIL).

Threads that share one step of a time loop (rnnkit._numba_kernels: each makes a share of the
recurrent product's column panels, then a share of the rows' element-wise work) meet twice or
more per step, every few tens of microseconds: far too often for an OS wait, so they spin.

``sync`` is an int64 array of ``threads · LINE`` zeros, fresh for each run of a loop; thread
``tid`` counts the barriers it has reached in ``sync[tid · LINE]`` (one 64-byte cache line
each, so that no two threads write one line) with a release store, and waits until every
thread's count has reached its own, with acquire loads: what a thread wrote before the barrier
is seen by every thread after it. All threads run the same sequence of barriers, so the counts
need no reset. A thread that has spun :data:`SPINS` times yields its core (``sched_yield``),
so that more threads than cores, or a core taken by another process, costs time, not progress.
"""

from __future__ import annotations

import os

import llvmlite.ir as ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LINE = 8  # int64 counters per 64-byte cache line
SPINS = 256
_HAS_SCHED_YIELD = hasattr(os, "sched_yield")  # POSIX: libc's, in the process already


@intrinsic
def _load_acquire(typingctx, ary, i):
    """ary[i] of an int64 array, an atomic load with acquire ordering."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.load_atomic(builder.gep(a.data, [args[1]]), "acquire", 8)
    return types.int64(ary, types.intp), codegen


@intrinsic
def _store_release(typingctx, ary, i, v):
    """ary[i] = v for an int64 array, an atomic store with release ordering."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        builder.store_atomic(args[2], builder.gep(a.data, [args[1]]), "release", 8)
        return context.get_dummy_value()
    return types.none(ary, types.intp, types.int64), codegen


@intrinsic
def _yield(typingctx):
    """Give up the core to another thread (libc's ``sched_yield``; nothing where there is
    none). Declared in the loop's own code, not called through ctypes, so that numba can cache
    the loops that use it."""
    def codegen(context, builder, sig, args):
        if _HAS_SCHED_YIELD:
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.IntType(32), []),
                                                "sched_yield")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.none(), codegen


@njit(cache=True, nogil=True)
def barrier(sync, tid, threads):
    """Return once all ``threads`` threads have reached this barrier (see the module
    docstring); one thread returns at once."""
    if threads <= 1:
        return
    reached = sync[tid * LINE] + 1
    _store_release(sync, tid * LINE, reached)
    for j in range(threads):
        spins = 0
        while _load_acquire(sync, j * LINE) < reached:
            spins += 1
            if spins == SPINS:
                spins = 0
                _yield()


@njit(cache=True, nogil=True, inline="always")
def share(n, tid, threads):
    """[lo, hi): thread tid's share of n items cut into ``threads`` nearly equal runs."""
    return n * tid // threads, n * (tid + 1) // threads
