"""The hub and its streams and handlers, with no socket."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from wsmux._exceptions import ConnectionGap, StreamClosed, StreamLagged
from wsmux.fanout._hub import Hub
from wsmux.fanout._stream import Stream

pytestmark = pytest.mark.anyio


async def pump(hub: Hub, msgs: Any) -> None:
    """Publish like the supervisor does: relieve when asked to."""
    for msg in msgs:
        if hub.publish(msg):
            await hub.relieve()


async def drain(stream: Stream) -> list[Any]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except anyio.WouldBlock:
            return out


async def test_stream_receives_matching_messages_in_order() -> None:
    hub = Hub()
    trades = hub.open_stream([{"e": "trade"}])
    everything = hub.open_stream()
    await pump(hub, [{"e": "trade", "i": 1}, {"e": "depth", "i": 2}, {"e": "trade", "i": 3}])
    assert [m["i"] for m in await drain(trades)] == [1, 3]
    assert [m["i"] for m in await drain(everything)] == [1, 2, 3]


async def test_subscribers_share_the_same_object() -> None:
    hub = Hub()
    a, b = hub.open_stream(), hub.open_stream({"x": 1})
    msg = {"x": 1}
    hub.publish(msg)
    assert a.receive_nowait() is msg and b.receive_nowait() is msg


async def test_lag_policy_reports_the_count_then_goes_on() -> None:
    hub = Hub()
    s = hub.open_stream(maxsize=3)
    for i in range(10):
        hub.publish({"i": i})
    with pytest.raises(StreamLagged) as info:
        await s.receive()
    assert info.value.count == 7
    assert [await s.receive() for _ in range(3)] == [{"i": 7}, {"i": 8}, {"i": 9}]
    assert s.statistics() == (3, 7, 0, 3)


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("drop_oldest", [7, 8, 9]), ("drop_newest", [0, 1, 2])],
)
async def test_silent_drop_policies_count_drops(policy: Any, kept: list[int]) -> None:
    hub = Hub()
    s = hub.open_stream(maxsize=3, overflow=policy)
    for i in range(10):
        hub.publish({"i": i})
    assert [m["i"] for m in await drain(s)] == kept
    stats = s.statistics()
    assert (stats.delivered, stats.dropped, stats.buffered) == (3, 7, 0)


async def test_block_policy_applies_backpressure_and_loses_nothing() -> None:
    hub = Hub()
    s = hub.open_stream(maxsize=4, overflow="block")
    got: list[int] = []

    async def consume() -> None:
        async for msg in s:
            got.append(msg["i"])
            await anyio.lowlevel.checkpoint()
            if msg["i"] == 99:
                return

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await pump(hub, ({"i": i} for i in range(100)))
    assert got == list(range(100))
    assert s.statistics().peak <= 4
    assert s.statistics().dropped == 0


async def test_slow_stream_does_not_delay_a_fast_one() -> None:
    hub = Hub()
    slow = hub.open_stream(maxsize=10)
    fast = hub.open_stream(maxsize=100_000)
    with anyio.fail_after(5):
        await pump(hub, ({"i": i} for i in range(10_000)))
    assert len(await drain(fast)) == 10_000
    with pytest.raises(StreamLagged):
        slow.receive_nowait()


async def test_burst_into_catch_all_stream_loses_nothing() -> None:
    """A consumer that keeps up on average never lags from burst batching."""
    hub = Hub()
    stream = hub.open_stream()  # default maxsize and policy
    n = 200_000
    count = 0

    async def consume() -> None:
        nonlocal count
        async for _ in stream:
            count += 1

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await pump(hub, ({"i": i} for i in range(n)))
            hub.close()
    assert count == n
    assert stream.statistics().dropped == 0


async def test_busy_consumer_lets_other_tasks_run() -> None:
    hub = Hub()
    stream = hub.open_stream(maxsize=100_000)
    for i in range(10_000):
        hub.publish(i)
    hub.close()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async for _ in stream:
            pass  # never awaits anything itself
        tg.cancel_scope.cancel()
    assert ticks >= 10_000 // 128 - 2


async def test_accounting_invariant_over_random_traffic() -> None:
    """delivered + dropped + buffered == matched, for every stream."""
    import random

    from fanout._reference import reference_match

    rng = random.Random(7)
    hub = Hub()
    flts: list[Any] = []
    streams = []
    for _ in range(30):
        flt = rng.choice([None, {"s": rng.randrange(5)}, [{"s": 1}, {"k": "a"}]])
        flts.append(flt)
        streams.append(
            hub.open_stream(
                flt,
                maxsize=rng.choice([1, 5, 50]),
                overflow=rng.choice(["lag", "drop_oldest", "drop_newest"]),
            )
        )
    matched = [0] * len(streams)
    for _ in range(3000):
        msg = {"s": rng.randrange(5), "k": rng.choice("ab")}
        hub.publish(msg)
        for i, flt in enumerate(flts):
            matched[i] += reference_match(flt, msg)
        for s in rng.sample(streams, 3):
            with contextlib.suppress(anyio.WouldBlock, StreamLagged):
                s.receive_nowait()
    for i, s in enumerate(streams):
        delivered, dropped, buffered, _ = s.statistics()
        assert delivered + dropped + buffered == matched[i]
    assert hub.dropped() == sum(s.statistics().dropped for s in streams)


async def test_close_unregisters_at_once_and_twice_is_harmless() -> None:
    hub = Hub()
    s = hub.open_stream({"s": "X"})
    assert hub.stream_count() == 1
    await s.close()
    await s.close()
    await s.aclose()
    assert hub.stream_count() == 0 and len(hub._index) == 0
    hub.publish({"s": "X"})
    with pytest.raises(StreamClosed):
        s.receive_nowait()
    assert [m async for m in s] == []


async def test_async_with_closes_the_stream() -> None:
    hub = Hub()
    async with hub.open_stream() as s:
        hub.publish(1)
        assert await s.receive() == 1
    assert s.closed and hub.stream_count() == 0


async def test_close_wakes_a_waiting_reader() -> None:
    hub = Hub()
    s = hub.open_stream()
    out: list[Any] = []

    async def read() -> None:
        out.extend([m async for m in s])

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await anyio.sleep(0.01)
            await s.close()
    assert out == []


async def test_clean_hub_close_drains_then_ends() -> None:
    hub = Hub()
    s = hub.open_stream()
    hub.publish(1)
    hub.publish(2)
    hub.close()
    assert [m async for m in s] == [1, 2]
    late = hub.open_stream()
    assert [m async for m in late] == []


async def test_fatal_hub_close_drains_then_raises() -> None:
    hub = Hub()
    s = hub.open_stream()
    hub.publish(1)
    boom = RuntimeError("boom")
    hub.close(boom)
    hub.close()  # the first outcome stays
    assert await s.receive() == 1
    with pytest.raises(RuntimeError, match="boom"):
        await s.receive()


async def test_gap_raises_at_the_point_of_the_gap() -> None:
    hub = Hub()
    s = hub.open_stream(gaps="raise")
    quiet = hub.open_stream()
    hub.publish(1)
    hub.mark_gap()
    hub.publish(2)
    assert await s.receive() == 1
    with pytest.raises(ConnectionGap):
        await s.receive()
    assert await s.receive() == 2
    assert [quiet.receive_nowait(), quiet.receive_nowait()] == [1, 2]
    assert s.statistics() == (2, 0, 0, 3)


async def test_gap_survives_overflow() -> None:
    hub = Hub()
    s = hub.open_stream(gaps="raise", maxsize=2)
    hub.mark_gap()
    for i in range(5):
        hub.publish(i)
    with pytest.raises(StreamLagged):
        s.receive_nowait()
    with pytest.raises(ConnectionGap):
        s.receive_nowait()
    assert [s.receive_nowait(), s.receive_nowait()] == [3, 4]


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"maxsize": 0}, ValueError),
        ({"maxsize": "10"}, ValueError),
        ({"overflow": "newest"}, ValueError),
        ({"gaps": "yes"}, ValueError),
        ({"filters": "e=trade"}, TypeError),
    ],
)
async def test_bad_options_raise_at_creation(kwargs: dict[str, Any], exc: type) -> None:
    hub = Hub()
    with pytest.raises(exc):
        hub.open_stream(**kwargs)
    assert hub.stream_count() == 0


# -- handlers ------------------------------------------------------------------


async def test_sync_and_async_handlers_with_filters() -> None:
    seen_sync: list[Any] = []
    seen_async: list[Any] = []
    done = anyio.Event()

    async with Hub() as hub:

        @hub.on({"e": "trade"})
        def on_trade(msg: Any) -> None:
            seen_sync.append(msg["i"])

        async def on_any(msg: Any) -> None:
            await anyio.lowlevel.checkpoint()
            seen_async.append(msg["i"])
            if msg["i"] == 2:
                done.set()

        hub.add_handler(on_any)
        await pump(hub, [{"e": "trade", "i": 0}, {"e": "x", "i": 1}, {"e": "trade", "i": 2}])
        with anyio.fail_after(2):
            await done.wait()
    assert seen_sync == [0, 2]
    assert seen_async == [0, 1, 2]


async def test_async_handler_added_before_start_misses_nothing() -> None:
    seen: list[int] = []
    hub = Hub()

    async def handler(msg: int) -> None:
        seen.append(msg)

    hub.add_handler(handler)
    hub.publish(1)
    async with hub:
        hub.publish(2)
    assert seen == [1, 2]


async def test_raising_handlers_are_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[int] = []

    def bad(msg: Any) -> None:
        raise ValueError("bad handler")

    async def bad_async(msg: Any) -> None:
        raise ValueError("bad async handler")

    with caplog.at_level(logging.ERROR, logger="wsmux"):
        async with Hub() as hub:
            hub.add_handler(bad)
            hub.add_handler(bad_async)
            hub.add_handler(seen.append)
            await pump(hub, range(50))
    assert seen == list(range(50))
    assert hub.handler_errors == 100
    # rate-limited: far fewer log lines than errors
    assert 1 <= len([r for r in caplog.records if "raised" in r.getMessage()]) <= 4


async def test_handler_can_remove_itself_mid_publish() -> None:
    hub = Hub()
    calls: list[str] = []

    def once(msg: Any) -> None:
        calls.append("once")
        hub.remove_handler(once)

    def always(msg: Any) -> None:
        calls.append("always")

    hub.add_handler(once)
    hub.add_handler(always)
    hub.publish(1)
    hub.publish(2)
    assert calls == ["once", "always", "always"]
    with pytest.raises(KeyError):
        hub.remove_handler(once)


async def test_async_handler_can_remove_itself_and_close_the_hub() -> None:
    seen: list[int] = []
    with anyio.fail_after(2):
        async with Hub() as hub:

            async def handler(msg: int) -> None:
                seen.append(msg)
                if msg == 3:
                    hub.remove_handler(handler)
                    hub.close()

            hub.add_handler(handler)
            await pump(hub, range(10))
    assert seen[:4] == [0, 1, 2, 3]
    assert hub.closed


async def test_sync_handler_can_close_the_hub() -> None:
    hub = Hub()
    s = hub.open_stream()  # registered before the handler: it gets 1 first
    hub.add_handler(lambda msg: hub.close())
    hub.publish(1)
    hub.publish(2)  # after close: the ended stream takes nothing more
    assert hub.closed
    with anyio.fail_after(1):
        assert [m async for m in s] == [1]
    assert s.statistics() == (1, 0, 0, 1)  # delivered, dropped, buffered, peak


async def test_handler_validation() -> None:
    hub = Hub()
    with pytest.raises(TypeError):
        hub.add_handler(42)  # type: ignore[arg-type]
    hub.add_handler(print)
    with pytest.raises(ValueError):
        hub.add_handler(print)


async def test_failing_predicate_is_counted_not_raised() -> None:
    hub = Hub()
    s = hub.open_stream({"e": "x", "p": lambda v: 1 / 0})
    hub.publish({"e": "x", "p": 1})
    assert hub.filter_errors == 1
    with pytest.raises(anyio.WouldBlock):
        s.receive_nowait()
