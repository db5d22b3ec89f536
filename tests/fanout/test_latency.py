"""Latency histograms and streams that measure receipt-to-consumer time (no socket)."""

from __future__ import annotations

import math
import random

import anyio
import pytest

from wsmux import LatencyHistogram
from wsmux._exceptions import ConnectionGap
from wsmux.fanout._hub import Hub
from wsmux.fanout._latency import event_seconds


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


def test_percentiles_are_within_a_bucket_of_the_exact_ones() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(math.log(0.002), 1.0) for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    s = h.snapshot()
    assert s.count == 20_000 and s.sum == pytest.approx(sum(values))
    assert s.max == max(values)
    for q, got in [(50, s.p50), (90, s.p90), (99, s.p99), (99.9, s.p999)]:
        want = exact(values, q)
        assert want <= got <= want * 1.125, (q, want, got)  # an upper edge, <= 12.5% wide
    # Cumulative counts at powers of two, as a Prometheus histogram wants.
    bounds = [b for b, _ in s.buckets]
    counts = [c for _, c in s.buckets]
    assert bounds == sorted(bounds) and bounds[-1] == math.inf
    assert counts == sorted(counts) and counts[-1] == 20_000
    for bound, count in s.buckets[:-1]:
        assert count == sum(1 for v in values if v <= bound)


def test_edges_zero_negative_huge_and_empty() -> None:
    h = LatencyHistogram()
    assert h.snapshot().count == 0 and h.percentile(99) == 0.0
    assert str(h.snapshot()) == "no samples"
    for v in (0.0, -0.5, 1e-9, 1e6):
        h.record(v)
    s = h.snapshot()
    assert s.count == 4 and s.max == 1e6 and s.sum == pytest.approx(1e6 - 0.5 + 1e-9)
    assert s.buckets[0][1] == 3  # zero, negative and tiny: the lowest bucket
    assert s.buckets[-2] == (64.0, 3) and s.buckets[-1] == (math.inf, 4)  # 1e6 s: only +Inf
    assert h.percentile(100) == 1e6
    with pytest.raises(ValueError, match=r"0\.\.100"):
        h.percentile(101)
    assert "p99" in str(s)


def test_event_seconds_reads_milliseconds_or_calls() -> None:
    ms = event_seconds("E")
    assert ms({"E": 1_700_000_000_123}) == 1_700_000_000.123
    assert ms({"E": "soon"}) is None and ms({}) is None and ms({"E": True}) is None
    assert ms([1, 2]) is None
    assert event_seconds(lambda m: m["t"])({"t": 5.0}) == 5.0
    with pytest.raises(TypeError, match="field name"):
        event_seconds(3)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_streams_measure_only_when_asked() -> None:
    now = [100.0]
    hub = Hub()
    hub.clock = lambda: now[0]
    plain = hub.open_stream()
    timed = hub.open_stream(latency=True, maxsize=2, overflow="drop_oldest")
    keyed = hub.open_stream(latency=True, overflow="conflate", key="s")
    for i in range(3):
        hub.publish({"s": "a", "i": i})
    assert plain.statistics().latency is None
    assert type(plain._buf).__name__ == "deque"  # no cost for a stream not asked
    # Dropped by overflow: not a delivery, not recorded.
    assert [timed.receive_nowait()["i"] for _ in range(2)] == [1, 2]
    assert keyed.receive_nowait()["i"] == 2
    for s in (timed, keyed):
        lat = s.statistics().latency
        assert lat is not None and lat.count == s.statistics().delivered
        assert lat.p50 > 1e6  # read "now", received at the clock's 100.0
    hub.measure_streams = True
    assert hub.open_stream().statistics().latency is not None


@pytest.mark.anyio
async def test_a_timed_stream_keeps_gaps_and_order() -> None:
    hub = Hub()
    s = hub.open_stream(latency=True, gaps="raise")
    hub.publish({"i": 1})
    hub.mark_gap()
    hub.publish({"i": 2})
    assert (await s.receive())["i"] == 1
    with pytest.raises(ConnectionGap):
        await s.receive()
    assert [m["i"] async for m in _take(s, 1)] == [2]
    lat = s.statistics().latency
    assert lat is not None and lat.count == 2


async def _take(stream: object, n: int):  # type: ignore[no-untyped-def]
    with anyio.fail_after(5):
        async for msg in stream:  # type: ignore[attr-defined]
            yield msg
            n -= 1
            if not n:
                return


@pytest.mark.anyio
async def test_a_timed_conflating_stream_evicts_and_keeps_gaps() -> None:
    hub = Hub()
    s = hub.open_stream(latency=True, overflow="conflate", key="s", maxsize=2, gaps="raise")
    hub.publish({"s": "a"})
    hub.mark_gap()
    for k in "bcbd":
        hub.publish({"s": k})
    # "a" and the gap were evicted (the gap is still reported), b moved past c.
    with pytest.raises(ConnectionGap):
        s.receive_nowait()
    assert [s.receive_nowait()["s"] for _ in range(2)] == ["b", "d"]
    stats = s.statistics()
    assert (stats.dropped, stats.conflated, stats.delivered) == (2, 1, 2)
    assert stats.latency is not None and stats.latency.count == 2
    s.close_nowait()
    assert s.statistics().buffered == 0
