"""The ``"conflate"`` overflow policy, through the hub (no socket)."""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio
import pytest

from wsmux._exceptions import ConnectionGap
from wsmux.fanout._hub import Hub
from wsmux.fanout._stream import Stream

pytestmark = pytest.mark.anyio


def drain(stream: Stream) -> list[Any]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except anyio.WouldBlock:
            return out


async def test_a_million_updates_of_100_keys_to_a_stalled_consumer() -> None:
    hub = Hub()
    stream = hub.open_stream(overflow="conflate", key="s", name="tickers")
    rng = random.Random(13)
    keys = rng.choices(range(100), k=1_000_000)
    latest: dict[int, int] = {}
    resume = anyio.Event()
    got: list[dict[str, int]] = []

    async def consumer() -> None:
        got.append(await stream.receive())  # then it stalls
        await resume.wait()
        got.extend(drain(stream))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        with anyio.fail_after(20):
            hub.publish({"s": -1, "v": -1})
            while not got:
                await anyio.sleep(0.01)
        publish = hub.publish
        for i, k in enumerate(keys):
            publish({"s": k, "v": i})  # the consumer cannot run: no await here
            latest[k] = i
            if not i % 4096:
                assert len(stream._buf) <= 100
        stats = stream.statistics()
        # peak is the most ever buffered at once: bounded throughout.
        assert stats.peak <= 100 and stats.buffered == 100
        assert stats.conflated == 1_000_000 - 100 and stats.dropped == 0
        resume.set()
    resumed = got[1:]
    assert {m["s"]: m["v"] for m in resumed} == latest  # exactly the latest per key
    assert len(resumed) == 100
    # ... in the order keys were last updated.
    assert [m["v"] for m in resumed] == sorted(latest.values())
    assert hub.conflated() == 1_000_000 - 100


async def test_a_replaced_key_moves_to_the_back() -> None:
    hub = Hub()
    s = hub.open_stream(overflow="conflate", key="s")
    for k, v in [("a", 1), ("b", 2), ("a", 3), ("c", 4)]:
        hub.publish({"s": k, "v": v})
    assert [(m["s"], m["v"]) for m in drain(s)] == [("b", 2), ("a", 3), ("c", 4)]
    stats = s.statistics()
    assert stats.delivered + stats.dropped + stats.buffered + stats.conflated == 4


async def test_a_callable_key_and_typed_messages() -> None:
    class Tick:
        def __init__(self, sym: str, px: float) -> None:
            self.sym, self.px = sym, px

    hub = Hub()
    by_fn = hub.open_stream(overflow="conflate", key=lambda m: (m.sym, "book"))
    by_attr = hub.open_stream(overflow="conflate", key="sym")
    for sym, px in [("X", 1.0), ("Y", 2.0), ("X", 3.0)]:
        hub.publish(Tick(sym, px))
    assert [(t.sym, t.px) for t in drain(by_fn)] == [("Y", 2.0), ("X", 3.0)]
    assert [(t.sym, t.px) for t in drain(by_attr)] == [("Y", 2.0), ("X", 3.0)]


async def test_more_keys_than_maxsize_drops_the_oldest_and_never_lags() -> None:
    hub = Hub()
    s = hub.open_stream(overflow="conflate", key="s", maxsize=3)
    for i in range(10):
        hub.publish({"s": i})
    assert [m["s"] for m in drain(s)] == [7, 8, 9]  # no StreamLagged on the way
    stats = s.statistics()
    assert (stats.delivered, stats.dropped, stats.conflated, stats.peak) == (3, 7, 0, 3)


async def test_messages_without_a_key_are_kept_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_key(msg: dict[str, Any]) -> Any:
        if msg.get("boom"):
            raise RuntimeError("boom")
        return msg.get("s") if "l" not in msg else [1]  # a list: unhashable

    hub = Hub()
    by_field = hub.open_stream(overflow="conflate", key="s", name="f")
    by_fn = hub.open_stream(overflow="conflate", key=bad_key, name="g")
    msgs = [{"s": "a", "v": 1}, {"id": 1}, {"s": None}, {"id": 1}, {"s": "a", "v": 2}]
    msgs += [{"boom": True}, {"l": 1}]
    with caplog.at_level(logging.WARNING, logger="wsmux"):
        for m in msgs:
            hub.publish(m)
    got = drain(by_field)
    # Kept in place, never replaced by each other; the keyed one moved on.
    assert got == [{"id": 1}, {"s": None}, {"id": 1}, {"s": "a", "v": 2}, *msgs[5:]]
    assert by_field.statistics().unkeyed == 5
    assert by_field.statistics().conflated == 1
    assert len(drain(by_fn)) == 6 and by_fn.statistics().unkeyed == 5
    lines = [r.getMessage() for r in caplog.records]
    assert any("'f'" in line and "no key" in line for line in lines)
    assert any("'g'" in line for line in lines)  # once per interval, not per message


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"overflow": "conflate"}, ValueError, "needs key="),
        ({"overflow": "lag", "key": "s"}, ValueError, "conflate"),
        ({"key": "s"}, ValueError, "conflate"),
        ({"overflow": "conflate", "key": ""}, TypeError, "field name"),
        ({"overflow": "conflate", "key": 3}, TypeError, "field name"),
    ],
)
async def test_bad_options_say_what_is_wrong(
    kwargs: dict[str, Any], exc: type[Exception], words: str
) -> None:
    with pytest.raises(exc, match=words):
        Hub().open_stream(**kwargs)


async def test_a_gap_is_raised_where_it_happened() -> None:
    hub = Hub()
    s = hub.open_stream(overflow="conflate", key="s", gaps="raise")
    hub.publish({"s": "a", "v": 1})
    hub.publish({"s": "b", "v": 1})
    hub.mark_gap()
    hub.publish({"s": "a", "v": 2})
    assert s.receive_nowait() == {"s": "b", "v": 1}  # a moved past the gap
    with pytest.raises(ConnectionGap):
        s.receive_nowait()
    assert s.receive_nowait() == {"s": "a", "v": 2}
    assert s.statistics().buffered == 0


async def test_a_gap_survives_eviction() -> None:
    hub = Hub()
    s = hub.open_stream(overflow="conflate", key="s", gaps="raise", maxsize=2)
    hub.mark_gap()
    for i in range(5):
        hub.publish({"s": i})
    with pytest.raises(ConnectionGap):
        s.receive_nowait()
    assert [m["s"] for m in drain(s)] == [3, 4]


async def test_async_handler_gets_the_latest_per_key() -> None:
    seen: list[dict[str, Any]] = []
    entered, gate = anyio.Event(), anyio.Event()

    async def slow(msg: dict[str, Any]) -> None:
        entered.set()
        await gate.wait()
        seen.append(msg)

    async with Hub() as hub:
        hub.add_handler(slow, overflow="conflate", key="s")
        hub.publish({"s": "a", "v": 0})
        with anyio.fail_after(10):
            await entered.wait()  # busy with the first message
            for v in range(1, 50):
                hub.publish({"s": "ab"[v % 2], "v": v})
            gate.set()
            while len(seen) < 3:
                await anyio.sleep(0.01)
    assert seen == [{"s": "a", "v": 0}, {"s": "a", "v": 48}, {"s": "b", "v": 49}]


async def test_listen_conflates_typed_messages() -> None:
    from wsmux import Multiplexer

    class Tick:
        def __init__(self, sym: str, px: float) -> None:
            self.sym, self.px = sym, px

    mux = Multiplexer("ws://127.0.0.1:9")  # never started: the hub is fed by hand
    ticks = mux.listen(Tick, overflow="conflate", key="sym")
    for sym, px in [("X", 1.0), ("Y", 2.0), ("X", 3.0)]:
        mux._hub.publish(Tick(sym, px))
    mux._hub.publish({"sym": "X"})  # not a Tick
    assert [(t.sym, t.px) for t in drain(ticks)] == [("Y", 2.0), ("X", 3.0)]
    assert mux.stats().conflated == 1
    with pytest.raises(ValueError, match="conflate"):
        mux.listen(Tick, key="sym")
