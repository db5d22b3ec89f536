"""Randomized stress of the handoff: many kinds of asyncio readers, cancelled at random.

Each seed runs one scenario on its own asyncio loop (and a few on uvloop
when it is importable): a stream with a random overflow policy and gaps
setting, 1-3 reader tasks of different kinds (``async for``,
``receive()``, ``batches()``, ``receive_batch()``, ``wait_for(anext())``
with a tiny timeout, ``asyncio.timeout`` around ``receive()``, a bare
``anext()``), random publishes, random ``task.cancel()`` of a reader
(replaced by a new one), random gaps, random yields; then a drain with a
fresh reader and a random end (``hub.close()``, ``hub.close(error)`` or
``close_nowait()``).

Invariants, checked for every seed:

* no message is read twice, and what was read is what the stream counts
  as delivered;
* every published message is read or counted: delivered + dropped +
  buffered == published;
* before the end, a live reader drains the stream (nothing is stranded in
  the buffer or handed to a reader that never runs);
* every reader finishes after the end (under a deadline);
* the loop's exception handler is never called (no "Future exception was
  never retrieved", no failing wake-up).
"""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from wsmux import ConnectionGap, StreamClosed, StreamLagged
from wsmux.fanout._hub import Hub
from wsmux.fanout._stream import Stream

KINDS = ("for", "receive", "batches", "batch", "wait_for", "timeout", "anext", "gather", "task")
POLICIES = ("lag", "drop_oldest", "drop_newest", "block")
DEADLINE = 10.0


class Boom(Exception):
    """The error a hub is closed with in some scenarios."""


class _Scenario:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.got: list[int] = []
        self.published = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[dict[str, Any]] = []

    async def reader(self, kind: str, stream: Stream) -> None:
        got = self.got
        limit = self.rng.choice((None, 1, 3))
        tiny = self.rng.choice((0, 0.0001))
        while True:
            try:
                if kind == "for":
                    async for msg in stream:
                        got.append(msg)
                    return
                if kind == "batches":
                    async for batch in stream.batches(limit):
                        got.extend(batch)
                    return
                if kind == "receive":
                    got.append(await stream.receive())
                elif kind == "batch":
                    got.extend(await stream.receive_batch(limit))
                elif kind == "anext":
                    got.append(await anext(stream))
                elif kind == "gather":
                    got.extend(await asyncio.gather(anext(stream)))
                elif kind == "task":
                    got.append(await asyncio.get_running_loop().create_task(anext(stream)))
                elif kind == "wait_for":
                    try:
                        # wait_for(..., 0) never lets a coroutine run: after
                        # the end, give the read time to see the end.
                        wait = tiny if not stream.closed else 0.01
                        got.append(await asyncio.wait_for(anext(stream), wait))
                    except TimeoutError:
                        pass
                elif kind == "timeout":
                    try:
                        async with asyncio.timeout(tiny):
                            got.append(await stream.receive())
                    except TimeoutError:
                        pass
            except (StreamLagged, ConnectionGap):
                continue
            except (StopAsyncIteration, anyio.EndOfStream, StreamClosed, Boom):
                return

    def start(self, stream: Stream, kind: str | None = None) -> None:
        kind = kind or self.rng.choice(KINDS)
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.create_task(self.reader(kind, stream), name=kind))

    def live(self) -> list[asyncio.Task[None]]:
        return [t for t in self.tasks if not t.done()]

    def cancellable(self) -> list[asyncio.Task[None]]:
        """Live readers that a cancel cannot make lose a message they were given.

        ``await gather(anext())`` and ``await create_task(anext())``
        lose a result that arrived just before the cancel, with any
        awaitable: asyncio's semantics, not the stream's.
        """
        return [t for t in self.live() if t.get_name() not in ("gather", "task")]

    def publish(self, hub: Hub) -> None:
        hub.publish(self.published)
        self.published += 1

    def check_counts(self, stream: Stream) -> None:
        counts = stream.statistics()
        assert len(set(self.got)) == len(self.got), f"seed {self.seed}: a message read twice"
        assert len(self.got) == counts.delivered, (self.seed, len(self.got), counts)
        assert counts.delivered + counts.dropped + counts.buffered == self.published, (
            self.seed,
            self.published,
            counts,
        )

    async def until(self, check: Callable[[], bool], what: str) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + DEADLINE
        while not check():
            assert loop.time() < end, f"seed {self.seed}: {what}"
            await asyncio.sleep(0)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: self.errors.append(ctx))
        rng = self.rng
        hub = Hub()
        gaps = rng.choice(("raise", "ignore"))
        stream = hub.open_stream(
            maxsize=rng.choice((1, 2, 4, 64)), overflow=rng.choice(POLICIES), gaps=gaps
        )
        for _ in range(rng.randint(1, 3)):
            self.start(stream)
        for _ in range(rng.randint(50, 200)):
            action = rng.random()
            if action < 0.45:
                for _ in range(rng.choice((1, 1, 2, 5))):
                    self.publish(hub)
            elif action < 0.75:
                for _ in range(rng.randint(1, 3)):
                    await asyncio.sleep(0)
            elif action < 0.85:
                live = self.cancellable()
                if live:
                    task = rng.choice(live)
                    task.cancel()
                    if rng.random() < 0.3:
                        task.cancel()  # twice in one turn
                if len(self.live()) < 3:
                    self.start(stream)
            elif action < 0.9:
                hub.mark_gap()
            elif action < 0.95:
                # A publish from a callback of the loop, between two task steps.
                loop.call_soon(self.publish, hub)
            else:
                # Cancel and publish in one turn: the message may be handed
                # to the reader being cancelled.
                live = self.cancellable()
                self.publish(hub)
                if live:
                    rng.choice(live).cancel()
                self.start(stream)
        # Drain: a fresh reader reads everything that was published.
        await asyncio.sleep(0)
        self.start(stream, rng.choice(("for", "receive", "batches", "anext")))
        await self.until(
            lambda: (
                stream.statistics().buffered == 0
                and len(self.got) + stream.statistics().dropped == self.published
            ),
            "a live reader does not drain the stream",
        )
        self.check_counts(stream)
        # Maybe a publish handed to a waiting reader, and a reader cancelled
        # in the same turn as the end, before or after it.
        if rng.random() < 0.5:
            self.publish(hub)
        cancel = rng.choice(("before", "after", None))
        if cancel == "before" and self.cancellable():
            rng.choice(self.cancellable()).cancel()
        end = rng.random()
        if end < 0.4:
            hub.close()
        elif end < 0.6:
            hub.close(Boom("died"))
        else:
            if rng.random() < 0.5:
                self.publish(hub)  # maybe handed to a reader that has not run
            stream.close_nowait()
        if cancel == "after" and self.cancellable():
            rng.choice(self.cancellable()).cancel()
        await self.until(lambda: not self.live(), "a reader hangs after the end")
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.check_counts(stream)
        self.tasks.clear()
        gc.collect()
        await asyncio.sleep(0)
        assert not self.errors, f"seed {self.seed}: {self.errors}"


def _run(seed: int, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
    scenario = _Scenario(seed)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(scenario.main())
    gc.collect()
    assert not scenario.errors, f"seed {seed}: {scenario.errors}"


@pytest.mark.parametrize("block", range(4))
def test_random_readers_cancels_gaps_and_ends(block: int) -> None:
    for seed in range(block * 25, block * 25 + 25):
        _run(seed, None)


def test_random_readers_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    for seed in range(1000, 1030):
        _run(seed, uvloop.new_event_loop)
