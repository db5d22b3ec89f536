"""Slow tier of the reliability suite (issue 4): a soak under random faults, and
a million messages past a slow consumer. Both run in CI, bounded in time."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.lowlevel
import psutil
import pytest
from test_reliability import FAST, Recorder, contiguous, live_tasks, server, settle_tasks, wait_for

from wsmux._mux import Multiplexer

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SOAK_SECONDS = 30.0  # per backend: about a minute in all
MB = 1024 * 1024


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def test_soak_random_faults_for_the_whole_run() -> None:
    options = FAST | {
        "stale_after": 0.4,
        "ping_interval": 0.1,
        "ping_timeout": 0.2,
        "backoff_cap": 0.1,
    }
    async with server() as srv:
        mux = Multiplexer(srv.url, **options)
        gapped = Recorder(mux.stream_filter(gaps="raise", maxsize=50_000))
        plain = Recorder(mux.stream_filter(maxsize=50_000))
        handled = {"n": 0}

        def count(msg: Any) -> None:
            handled["n"] += 1

        mux.add_handler(count)
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(gapped.run)
            tg.start_soon(plain.run)
            srv.start_feed(rate=2000)
            await wait_for(lambda: gapped.count >= 100, what="first messages")
            tasks_when_up = live_tasks()
            # Every 300 +/- 150 ms a connection fault; silences outlast
            # stale_after and half-open links outlast the ping timeout, so each
            # one ends in a replacement. Every ~1.5 s a handshake fault too.
            conn_faults = srv.schedule(
                ("close", "drop", "silence", "half_open", "garbage"),
                every=0.3,
                jitter=0.15,
                code=1011,
                seconds=1.0,
            )
            handshake_faults = srv.schedule(
                ("refuse", "accept_then_drop"), every=1.5, jitter=0.5, count=None, status=503
            )
            start = time.monotonic()
            rss_samples: list[int] = []
            while time.monotonic() - start < SOAK_SECONDS:
                await anyio.sleep(1.0)  # the soak's duration, not a wait for a condition
                rss_samples.append(rss())
            srv.cancel_schedule(conn_faults)
            srv.cancel_schedule(handshake_faults)
            srv.refuse(0)
            srv.accept_then_drop(0)
            # A silenced link resumed before stale_after would show a jump that
            # is the server's doing: end on a fresh connection instead.
            gaps_before = gapped.gaps
            srv.drop()
            await wait_for(
                lambda: gapped.gaps > gaps_before and len(gapped.segments[-1]) >= 50,
                5,
                "data on a fresh connection",
            )
            srv.stop_feed()
            with anyio.fail_after(5):
                await srv.wait_feed_done_async()
            last = srv.last_seq
            await wait_for(lambda: gapped.last == plain.last == last, 5, "the last message")
            tasks_at_end = await settle_tasks(tasks_when_up)
            stats = mux.stats()
            server_stats = srv.stats()
            await mux.exit()
    gapped.assert_ended()  # through every fault, and cleanly at exit()
    plain.assert_ended()
    faults = server_stats.faults
    # Shown with `pytest -rP`: what this run survived.
    print(
        f"soak: faults {dict(faults)}, {stats.disconnects} disconnects, "
        f"{stats.reconnects} reconnects, {stats.connect_errors} connect errors, "
        f"{stats.stale} stale, {stats.parse_errors} parse errors, {stats.messages} messages"
    )
    conn_fault_count = sum(faults.get(k, 0) for k in ("close", "drop", "silence", "half_open"))
    assert sum(faults.values()) >= SOAK_SECONDS / 0.3 * 0.7, faults
    assert stats.disconnects >= conn_fault_count * 0.5, (stats, faults)
    # No lost message on a surviving connection; a gap at every unplanned loss.
    assert gapped.gaps == stats.disconnects
    for seg in gapped.segments:
        assert contiguous(seg), "a message was lost on a connection that stayed up"
    firsts = [seg[0] for seg in gapped.segments if seg]
    assert firsts == sorted(set(firsts))
    assert plain.seqs == gapped.seqs and gapped.seqs[-1] == last
    # Counters agree with each other and with the server.
    assert stats.connects == stats.reconnects + 1 == stats.disconnects + 1
    assert server_stats.handshakes == stats.connects + stats.connect_errors
    assert stats.messages == plain.count + stats.parse_errors == handled["n"] + stats.parse_errors
    assert stats.parse_errors <= server_stats.garbage_sent
    assert stats.drops == 0 and stats.rotations == 0
    assert stats.stale >= 1 and stats.connect_errors >= 1
    # Nothing accumulates: tasks and memory.
    assert tasks_at_end <= tasks_when_up
    growth = max(rss_samples[-3:]) - rss_samples[2]
    assert growth < 20 * MB, f"RSS grew {growth / MB:.1f} MB during the soak"


class MemoryFeed:
    """An in-process connection replaying ``total`` pre-built trade frames.

    A real socket moves 15-30k messages per second in one process (the
    FeedServer thread shares the GIL); a million of them would take a minute
    per backend. This adapter (anything with recv/send/close is a connection)
    keeps the supervisor's reader, parse, hub and streams on the real path.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0

    async def recv(self) -> bytes:
        if self.sent >= self.total:
            await anyio.sleep_forever()
        self.sent += 1
        if not self.sent % 256:
            await anyio.lowlevel.checkpoint()  # a socket's recv yields now and then
        return b'{"e":"trade","s":"SYM%d","p":"27000.5","seq":%d}' % (self.sent % 3, self.sent)

    async def send(self, message: str | bytes) -> None:
        pass

    async def close(self) -> None:
        pass


class MemoryMultiplexer(Multiplexer):
    total = 1_000_000

    async def _create_ws(self) -> Any:
        return MemoryFeed(self.total)


async def test_a_million_messages_past_a_slow_consumer_keep_memory_flat() -> None:
    total = MemoryMultiplexer.total
    mux = MemoryMultiplexer(**FAST)
    fast = Recorder(mux.stream_filter(), name="fast", keep=False)
    slow = Recorder(
        mux.stream_filter(maxsize=100, overflow="lag"), delay=0.001, name="slow", keep=False
    )
    samples: list[tuple[int, int]] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(fast.run)
        tg.start_soon(slow.run)
        async with mux:
            with anyio.fail_after(60):
                while fast.last < total:
                    await anyio.sleep(0.25)  # sampling memory as the run goes
                    samples.append((fast.last, rss()))
            slow.delay = 0.0
            await wait_for(lambda: slow.last == total, 5, "the slow consumer")
            stats = mux.stats()
            slow_stats = slow.stream.statistics()
            await mux.exit()
    fast.assert_ended()
    slow.assert_ended()
    assert stats.messages == total
    assert fast.count == total and fast.increasing and fast.lag_events == 0
    assert slow.increasing
    assert slow.lag_events > 0
    assert slow.count + slow.lagged == total == slow_stats.delivered + slow_stats.dropped
    assert slow.lagged == slow_stats.dropped == stats.drops
    warm = next(r for n, r in samples if n >= total // 10)
    growth = max(r for _, r in samples) - warm
    assert growth < 10 * MB, f"RSS grew {growth / MB:.1f} MB over {total} messages"
