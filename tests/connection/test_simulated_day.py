"""A simulated day of a user-data adapter, under trio's autojump clock.

24 hours of an exchange that writes an event every 2 s; the adapter rotates
its connection every 60 minutes (a listen key's lifetime); every few minutes
the live connection is dropped, silenced or the next connects are refused.
The whole connection layer reads time from the event loop's clock, so the
day passes in seconds of wall time. Checked: every event id published at
most once and in order; every missing id inside a gap that a
``gaps="raise"`` stream was told about; a gap for each unplanned loss and
for nothing else (planned rotations never); memory flat; no task left.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Hashable
from typing import Any

import anyio
import pytest
from connection._memory import MemoryExchange
from trio.testing import MockClock

from wsmux import ConnectionGap, Multiplexer

HOUR = 3600.0
DAY = 24 * HOUR


class UserData(Multiplexer):
    """A listen-key adapter over the in-memory exchange."""

    def __init__(self, exchange: MemoryExchange, **options: Any) -> None:
        super().__init__(None, **options)
        self.exchange = exchange

    async def _create_ws(self) -> Any:
        return await self.exchange.connect()

    async def _when2create_new_ws(self) -> None:
        # The listen key expires on the hour, whatever happened to connections.
        now = anyio.current_time()
        await anyio.sleep_until((now // HOUR + 1) * HOUR)

    def _message_id(self, msg: Any) -> Hashable | None:
        return msg.get("id") if isinstance(msg, dict) else None


async def _day(seed: int) -> dict[str, Any]:
    exchange = MemoryExchange(seed)
    rng = exchange.rng
    mux = UserData(
        exchange,
        stale_after=30.0,
        ping_interval=None,
        backoff_base=1.0,
        backoff_cap=30.0,
        reset_after=60.0,
        rotation_drain=10.0,
    )
    stream = mux.stream_filter(gaps="raise", maxsize=100_000)
    seen: list[int] = []
    gaps_after: list[int] = []  # the last id seen before each gap
    faults = {"drop": 0, "silence": 0, "refuse": 0}
    objects: list[int] = []

    async def consume() -> None:
        while True:
            try:
                msg = await stream.receive()
            except ConnectionGap:
                gaps_after.append(seen[-1] if seen else 0)
                continue
            except anyio.EndOfStream:
                return
            seen.append(msg["id"])

    async def feed() -> None:
        while True:
            await anyio.sleep(2.0)
            exchange.emit()

    async def faults_every_few_minutes() -> None:
        while True:
            await anyio.sleep(rng.uniform(3 * 60, 12 * 60))
            kind = rng.choice(("drop", "silence", "refuse"))
            conn = exchange.newest()
            if kind == "refuse":
                exchange.refusals = rng.randint(1, 4)
                if conn is not None:
                    conn.drop()  # and the reconnection meets the refusals
            elif conn is not None:
                conn.drop() if kind == "drop" else setattr(conn, "silent", True)
            faults[kind] += 1

    async def sample_memory() -> None:
        for _ in range(4):
            await anyio.sleep(DAY / 5)
            gc.collect()
            objects.append(len(gc.get_objects()))

    async with mux, anyio.create_task_group() as tg:
        tg.start_soon(consume)
        tg.start_soon(feed)
        tg.start_soon(faults_every_few_minutes)
        tg.start_soon(sample_memory)
        await anyio.sleep(DAY)
        tg.cancel_scope.cancel()
        stats = mux.stats()
    return {
        "seen": seen,
        "gaps_after": gaps_after,
        "stats": stats,
        "emitted": exchange.emitted,
        "faults": faults,
        "objects": objects,
    }


@pytest.mark.slow
def test_a_simulated_day() -> None:
    started = time.monotonic()
    out = anyio.run(
        _day, 7, backend="trio", backend_options={"clock": MockClock(autojump_threshold=0)}
    )
    wall = time.monotonic() - started
    seen: list[int] = out["seen"]
    stats = out["stats"]
    gaps_after: list[int] = out["gaps_after"]
    assert wall < 60, f"the simulated day took {wall:.1f}s of wall time"
    # Exactly once, in order.
    assert len(seen) == len(set(seen)), "an id was published twice"
    assert seen == sorted(seen)
    # Each missing id lies right after a point where a gap was announced.
    gap_points = set(gaps_after)
    previous = 0
    for n in seen:
        if n != previous + 1:
            assert previous in gap_points, f"ids {previous + 1}..{n - 1} missing without a gap"
        previous = n
    # A gap for each unplanned loss, none for the planned rotations.
    assert stats.rotation_gaps == 0  # every planned rotation was fenced
    assert len(gaps_after) == stats.disconnects
    assert stats.rotations >= 20, stats  # about one per hour, faults aside
    assert stats.disconnects >= sum(out["faults"].values()) * 0.5, (stats, out["faults"])
    assert stats.duplicates == 0  # zero latency: nothing repeats
    # Most of the day's events arrived (faults cost seconds, not hours).
    assert len(seen) > out["emitted"] * 0.95
    # Memory flat: the number of live objects does not grow with time.
    first, *_, last = out["objects"]
    assert last < first * 1.1 + 2000, out["objects"]
