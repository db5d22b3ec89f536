"""Set values against a real feed on 127.0.0.1, on both backends."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

import wsmux
from wsmux import Multiplexer
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST = {"backoff_base": 0.02, "backoff_cap": 0.1, "open_timeout": 2.0, "close_timeout": 0.5}


async def collect(stream: wsmux.Stream, n: int) -> list[Any]:
    out: list[Any] = []
    with anyio.fail_after(5):
        async for msg in stream:
            out.append(msg)
            if len(out) == n:
                break
    return out


async def test_any_of_streams_get_exactly_their_symbols_in_order() -> None:
    with FeedServer(symbols=6, kinds=("trade", "depth")) as srv:
        mux = Multiplexer(srv.url, **FAST)
        everything = mux.stream_filter(maxsize=10_000)
        pair = mux.stream_filter({"s": {"SYM1", "SYM4"}}, maxsize=10_000)
        trades = mux.stream_filter({"e": "trade", "s": frozenset({"SYM0", "SYM5"})}, maxsize=10_000)
        either = mux.stream_filter([{"s": {"SYM2"}}, {"e": {"depthUpdate"}}], maxsize=10_000)
        srv.start_feed(count=600, min_clients=1)
        async with mux:
            sent = await collect(everything, 600)
            # Every message of the feed reached the catch-all stream, so the
            # filtered ones hold all they ever will: read them without waiting.
            got = {
                name: [s.receive_nowait() for _ in range(s.statistics().buffered)]
                for name, s in [("pair", pair), ("trades", trades), ("either", either)]
            }
        assert got["pair"] == [m for m in sent if m["s"] in ("SYM1", "SYM4")]
        assert got["trades"] == [
            m for m in sent if m["e"] == "trade" and m["s"] in ("SYM0", "SYM5")
        ]
        assert got["either"] == [m for m in sent if m["s"] == "SYM2" or m["e"] == "depthUpdate"]
        assert got["pair"] and got["trades"] and got["either"]


async def test_unmatchable_values_are_refused_at_stream_filter() -> None:
    mux = Multiplexer("ws://127.0.0.1:9")  # never started
    with pytest.raises(TypeError, match="empty set"):
        mux.stream_filter({"s": set()})
    with pytest.raises(TypeError, match="bytes"):
        mux.stream_filter({"s": {b"BTCUSDT"}})
    with pytest.raises(TypeError, match="inside a list"):
        mux.add_handler(lambda m: None, {"s": [{"BTCUSDT"}]})
    assert mux._hub.stream_count() == 0


async def test_predicate_errors_name_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    def broken(price: Any) -> bool:
        raise ValueError("no price")

    with FeedServer(symbols=2) as srv:
        mux = Multiplexer(srv.url, **FAST)
        everything = mux.stream_filter(maxsize=10_000)
        mux.stream_filter({"s": {"SYM0", "SYM1"}, "p": broken}, name="big trades")
        srv.start_feed(count=20, min_clients=1)
        with caplog.at_level(logging.ERROR, logger="wsmux"):
            async with mux:
                await collect(everything, 20)
        assert mux.stats().filter_errors >= 1
    lines = [r.getMessage() for r in caplog.records if "filter predicate" in r.getMessage()]
    assert lines and "stream 'big trades'" in lines[0] and "no price" in lines[0]
