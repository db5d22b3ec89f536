"""Frames that carry several messages (``wsmux.Messages``), against a real server.

Binance's ``!miniTicker@arr`` sends one JSON array of tickers per frame. An
adapter whose ``_parse_raw_data`` returns ``Messages`` has each element
published as a message of its own; a plain list stays one message.
"""

from __future__ import annotations

import inspect
from typing import Any

import anyio
import orjson
import pytest

import wsmux
from wsmux import Messages, Multiplexer
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.1, "close_timeout": 0.5}


def ticker(symbol: str, n: int) -> dict[str, Any]:
    return {"e": "24hrMiniTicker", "s": symbol, "c": str(n), "i": n}


class Splitting(Multiplexer):
    """Splits array frames; rotates each time the test sets ``rotate``."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.rotate = anyio.Event()

    def _parse_raw_data(self, raw: str | bytes) -> Any:
        msg = orjson.loads(raw)
        return Messages(msg) if isinstance(msg, list) else msg

    async def _when2create_new_ws(self) -> None:
        await self.rotate.wait()
        self.rotate = anyio.Event()


class SplittingWithIds(Splitting):
    def _message_id(self, msg: Any) -> Any:
        return msg.get("i")


def buffered(stream: wsmux.Stream) -> list[Any]:
    return [stream.receive_nowait() for _ in range(stream.statistics().buffered)]


async def wait_for(stream: wsmux.Stream, last: Any, seconds: float = 15.0) -> list[Any]:
    """Read a stream until ``last`` arrives (under a deadline)."""
    got: list[Any] = []
    with anyio.fail_after(seconds):
        while not got or got[-1] != last:
            got.append(await stream.receive())
    return got


async def test_each_element_reaches_filtered_streams_in_order() -> None:
    with FeedServer() as srv:
        mux = Splitting(srv.url, **FAST)
        everything = mux.stream_filter(maxsize=1000)
        btc = mux.stream_filter({"s": "BTCUSDT"}, maxsize=1000)
        majors = mux.stream_filter({"s": {"BTCUSDT", "ETHUSDT"}}, maxsize=1000)
        async with mux:
            frames = [[ticker(s, n) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")] for n in range(5)]
            for frame in frames:
                srv.broadcast(frame)
            srv.broadcast({"e": "done"})
            got = await wait_for(everything, {"e": "done"})
            assert got == [t for frame in frames for t in frame] + [{"e": "done"}]
            assert buffered(btc) == [ticker("BTCUSDT", n) for n in range(5)]
            assert buffered(majors) == [
                ticker(s, n) for n in range(5) for s in ("BTCUSDT", "ETHUSDT")
            ]
            assert mux.stats().messages == 6  # frames read


async def test_a_list_without_the_wrapper_is_one_message() -> None:
    class Plain(Multiplexer):
        def _parse_raw_data(self, raw: str | bytes) -> Any:
            return orjson.loads(raw)

    with FeedServer() as srv:
        for mux in (Plain(srv.url, **FAST), Multiplexer(srv.url, **FAST)):
            everything = mux.stream_filter()
            btc = mux.stream_filter({"s": {"BTCUSDT"}})
            async with mux:
                frame = [ticker("BTCUSDT", 1), ticker("ETHUSDT", 1)]
                srv.broadcast(frame)
                srv.broadcast({"e": "done"})
                assert await wait_for(everything, {"e": "done"}) == [frame, {"e": "done"}]
                assert buffered(btc) == []


async def test_none_elements_are_skipped_and_empty_frames_publish_nothing() -> None:
    class Sparse(Multiplexer):
        async def _parse_raw_data(self, raw: str | bytes) -> Any:  # an async hook too
            msg = orjson.loads(raw)
            if isinstance(msg, list):
                return Messages(t if t.get("s") != "SKIP" else None for t in msg)
            return msg

    with FeedServer() as srv:
        mux = Sparse(srv.url, **FAST)
        everything = mux.stream_filter()
        async with mux:
            srv.broadcast([ticker("SKIP", 0), ticker("BTCUSDT", 1), ticker("SKIP", 2)])
            srv.broadcast([])
            srv.broadcast({"e": "done"})
            assert await wait_for(everything, {"e": "done"}) == [
                ticker("BTCUSDT", 1),
                {"e": "done"},
            ]
        assert mux._hub.published == 2


async def test_backpressure_applies_between_elements() -> None:
    """A ``block`` stream that is full holds the reader inside a frame."""
    with FeedServer() as srv:
        mux = Splitting(srv.url, **FAST)
        slow = mux.stream_filter(maxsize=2, overflow="block")
        async with mux:
            srv.broadcast([ticker("BTCUSDT", n) for n in range(10)])
            got = []
            with anyio.fail_after(5):
                while len(got) < 10:
                    got.append(await slow.receive())
            assert [t["i"] for t in got] == list(range(10))
            assert slow.statistics().dropped == 0 and slow.statistics().peak <= 2


_ACCEPTS_INTERVAL = "rotation_interval" in inspect.signature(Multiplexer.__init__).parameters


@pytest.mark.parametrize("ids", [True, False])
async def test_rotation_sees_each_element(ids: bool) -> None:
    """Array frames broadcast to every connection through two rotations: with
    ``_message_id`` each element is published exactly once (the overlap's
    repeats dropped element by element); without, none is lost."""
    options = dict(FAST, rotation_interval=0.02) if _ACCEPTS_INTERVAL else FAST
    with FeedServer() as srv:
        mux = (SplittingWithIds if ids else Splitting)(srv.url, **options)
        stream = mux.stream_filter({"s": {"BTCUSDT", "ETHUSDT"}}, maxsize=100_000)
        sent = 0

        async def feed() -> None:
            nonlocal sent
            while True:
                frame = []
                for symbol in ("BTCUSDT", "SOLUSDT", "ETHUSDT"):
                    sent += 1
                    frame.append(ticker(symbol, sent))
                srv.broadcast(frame)
                await anyio.sleep(0.002)

        async with mux:
            with anyio.fail_after(8):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(feed)
                    for n in (1, 2):
                        await anyio.sleep(0.05)
                        mux.rotate.set()
                        while mux.stats().rotations < n:
                            await anyio.sleep(0.005)
                    await anyio.sleep(0.05)
                    tg.cancel_scope.cancel()
                last = sent  # an ETHUSDT ticker, the last of its frame
                got = [t["i"] for t in await wait_for(stream, ticker("ETHUSDT", last))]
            stats = mux.stats()
    assert stats.rotations == 2 and stats.reconnects == 0
    wanted = [i for i in range(1, last + 1) if i % 3 != 2]  # BTCUSDT and ETHUSDT
    first = wanted.index(got[0])
    if ids:
        assert got == wanted[first:]  # each once, in order
        assert stats.duplicates > 0  # the overlap was real
    else:
        assert set(wanted[first:]) <= set(got)  # repeats allowed, never a gap
