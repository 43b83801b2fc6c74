"""Dynamic batching for a served model: the instances of requests that arrive together run as
one batch, on the model's own thread, while the event loop goes on accepting requests.

    batcher = Batcher(fn, max_batch=64, max_delay=0.005)   # fn(items) -> results, in order
    results = await batcher.submit(items)                   # this request's results

A batch takes queued instances in arrival order, up to ``max_batch`` (a request with more is
split over several batches). It does not wait when nothing more is coming: as Triton's dynamic
batcher, it waits up to ``max_delay`` for more instances only while other requests have arrived
but are still being read (:meth:`Batcher.arriving`); under load, the requests that come in
while one batch runs form the next. ``fn`` must give each item the result it would give it
alone (rnnkit.pipeline.Task.records does, with numba); if a batch raises, each of its requests
is run alone, so that one bad request fails by itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class _Request:
    items: list
    future: asyncio.Future
    results: list = field(default_factory=list)
    next: int = 0  # the first item not yet taken into a batch


class Batcher:
    """Runs ``fn`` on batches of the submitted items, on one thread of its own."""

    def __init__(self, fn: Callable[[list], list], max_batch: int = 64,
                 max_delay: float = 0.005, name: str = "model",
                 on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or max_delay < 0:
            raise ValueError(f"max_batch must be >= 1 and max_delay >= 0, got {max_batch}, "
                             f"{max_delay}")
        self.fn, self.max_batch, self.max_delay = fn, max_batch, max_delay
        self.on_batch = on_batch
        #: The model's thread: every computation of this model (batches, generation) runs here,
        #: one at a time, off the event loop.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"rnnkit-{name}")
        self._queue: deque[_Request] = deque()
        self._arriving = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around reading a request that will submit to this batcher: a batch about to run
        waits (up to ``max_delay``) for such requests."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def submit(self, items: list) -> list:
        """The results of ``items``, in order, once the batches holding them have run."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
        request = _Request(list(items), loop.create_future())
        self._queue.append(request)
        self._wake.set()
        return await request.future

    async def call(self, fn: Callable, *args):
        """``fn(*args)`` on the model's thread (between batches)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        """Stop the batching task and the model's thread (after what runs now)."""
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                deadline = loop.time() + self.max_delay
                while (self._arriving and self._queued() < self.max_batch
                       and loop.time() < deadline):
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), deadline - loop.time())
                    except TimeoutError:
                        break
                parts = self._take()
                if parts:
                    await self._execute(parts)

    def _queued(self) -> int:
        return sum(len(r.items) - r.next for r in self._queue if not r.future.done())

    def _take(self) -> list[tuple[_Request, int, int]]:
        """(request, start, stop) slices, up to max_batch items; done (timed out) requests are
        dropped."""
        parts, room = [], self.max_batch
        while self._queue and room:
            r = self._queue[0]
            if r.future.done():
                self._queue.popleft()
                continue
            stop = min(len(r.items), r.next + room)
            parts.append((r, r.next, stop))
            room -= stop - r.next
            r.next = stop
            if stop == len(r.items):
                self._queue.popleft()
        return parts

    async def _execute(self, parts: list[tuple[_Request, int, int]]) -> None:
        items = [x for r, a, b in parts for x in r.items[a:b]]
        try:
            results = await self.call(self.fn, items)
        except Exception as e:  # noqa: BLE001 — handed to the request it belongs to
            if len({id(r) for r, _, _ in parts}) == 1:
                if not parts[0][0].future.done():
                    parts[0][0].future.set_exception(e)
                return
            for part in parts:  # alone, so that the bad request fails by itself
                await self._execute([part])
            return
        if self.on_batch is not None:
            self.on_batch(len(items))
        k = 0
        for r, a, b in parts:
            r.results += results[k:k + b - a]
            k += b - a
            if len(r.results) == len(r.items) and not r.future.done():
                r.future.set_result(r.results)
