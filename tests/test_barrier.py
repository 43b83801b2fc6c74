"""The spinning barrier of cooperative time loops (rnnkit._barrier)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from rnnkit._barrier import LINE, barrier, share  # noqa: E402


@numba.njit(nogil=True)
def _rounds(sync, tid, threads, seen, rounds):
    """Each round every thread writes its slot, meets the others, then reads all slots: a
    missing write (a barrier that let a thread through early) is recorded."""
    bad = 0
    for s in range(rounds):
        seen[s, tid] = s + 1
        barrier(sync, tid, threads)
        for j in range(threads):
            if seen[s, j] != s + 1:
                bad += 1
        barrier(sync, tid, threads)
    return bad


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_no_thread_passes_before_all_arrive(threads):
    """Also with more threads than this machine's cores (they must yield, not hang)."""
    rounds = 2000
    sync = np.zeros(threads * LINE, np.int64)
    seen = np.zeros((rounds, threads), np.int64)
    with ThreadPoolExecutor(threads) as pool:
        bad = [f.result(timeout=120) for f in
               [pool.submit(_rounds, sync, tid, threads, seen, rounds)
                for tid in range(threads)]]
    assert bad == [0] * threads
    assert (sync[::LINE] == 2 * rounds if threads > 1 else sync == 0).all()


def test_shares_cover_each_item_once():
    for n in (0, 1, 7, 64):
        for threads in (1, 2, 3, 8):
            cuts = [share(n, tid, threads) for tid in range(threads)]
            assert cuts[0][0] == 0 and cuts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(cuts, cuts[1:], strict=False))
