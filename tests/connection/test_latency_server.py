"""Latency against FeedServer's own timestamps ("E", epoch ms), on both backends."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from wsmux import LatencyHistogram, Multiplexer
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST = {"backoff_base": 0.02, "backoff_cap": 0.1, "open_timeout": 2.0, "close_timeout": 0.5}
N = 2000


async def test_histograms_agree_with_the_servers_timestamps() -> None:
    with FeedServer(symbols=4, kinds=("trade",)) as srv:
        mux = Multiplexer(srv.url, event_time="E", **FAST)
        # What the test sees itself: a sync handler runs in the reader just
        # after the frame arrived; the consumer reads the stream.
        inline = LatencyHistogram()
        inline_sum = 0.0

        def on_msg(msg: dict[str, Any]) -> None:
            nonlocal inline_sum
            x = time.time() - msg["E"] / 1000
            inline.record(x)
            inline_sum += x

        mux.add_handler(on_msg)
        stream = mux.stream_filter(name="trades", maxsize=N + 10)
        srv.start_feed(count=N, rate=20_000, min_clients=1)
        consumed = 0.0
        async with mux:
            with anyio.fail_after(20):
                n = 0
                async for msg in stream:
                    consumed += time.time() - msg["E"] / 1000
                    n += 1
                    if n == N:
                        break
            stats = mux.stats()
        received = stats.latency
        waited = stats.named_streams["trades"].latency
        assert received is not None and waited is not None
        assert received.count == waited.count == N
        mine = inline.snapshot()
        # The handler ran a little after the reader took the receipt time:
        # each of its values is at least the multiplexer's, so every
        # percentile is too; by microseconds, so the bulk agrees closely.
        for theirs, ours in [
            (received.p50, mine.p50),
            (received.p90, mine.p90),
            (received.p99, mine.p99),
            (received.max, mine.max),
        ]:
            assert theirs <= ours
        for theirs, ours in [(received.p50, mine.p50), (received.p90, mine.p90)]:
            assert ours - max(0.002, ours * 0.125) <= theirs
        assert 0 <= inline_sum - received.sum <= N * 0.001
        # exchange -> receipt -> consumer adds up to what the consumer saw.
        assert abs(consumed - (received.sum + waited.sum)) <= N * 0.001
        assert received.p50 >= 0


async def test_an_old_timestamp_shows_as_that_much_latency() -> None:
    with FeedServer(symbols=1) as srv:
        # A function that raises (KeyError on a message without "sent") is
        # logged at most every few seconds; that message is not counted.
        mux = Multiplexer(srv.url, event_time=lambda m: m["sent"], name="slow venue", **FAST)
        stream = mux.stream_filter({"e": "late"})
        async with mux:
            with anyio.fail_after(10):
                for i in range(5):
                    srv.broadcast({"e": "late", "sent": time.time() - 1.5, "i": i})
                srv.broadcast({"e": "no time"})  # not recorded, not an error
                for _ in range(5):
                    await stream.receive()
                while mux.stats().messages < 6:
                    await anyio.sleep(0.01)
            lat = mux.stats().latency
        assert lat is not None and lat.count == 5
        assert 1.5 <= lat.p50 <= 1.5 * 1.125 + 0.5  # bucket width, a loaded machine


async def test_nothing_is_measured_without_event_time() -> None:
    with FeedServer(symbols=2) as srv:
        mux = Multiplexer(srv.url, **FAST)
        stream = mux.stream_filter(name="all")
        timed = mux.stream_filter(name="timed", latency=True)
        srv.start_feed(count=50, min_clients=1)
        async with mux:
            with anyio.fail_after(10):
                for _ in range(50):
                    await stream.receive()
                    await timed.receive()
            stats = mux.stats()
        assert stats.latency is None
        assert stats.named_streams["all"].latency is None
        timed_lat = stats.named_streams["timed"].latency
        assert timed_lat is not None and timed_lat.count == 50
