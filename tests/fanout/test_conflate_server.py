"""Conflation against a real feed on 127.0.0.1, on both backends and from a thread."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import wsmux
from wsmux import Multiplexer, run_in_thread
from wsmux.testing import FeedServer

FAST = {"backoff_base": 0.02, "backoff_cap": 0.1, "open_timeout": 2.0, "close_timeout": 0.5}
N = 3000


def latest_by_symbol(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last message of each symbol, in the order of those last messages."""
    last = {m["s"]: m for m in sent}
    return sorted(last.values(), key=lambda m: m["seq"])


@pytest.mark.anyio
async def test_a_stalled_conflating_stream_resumes_with_the_latest_per_symbol() -> None:
    with FeedServer(symbols=8, kinds=("trade",)) as srv:
        mux = Multiplexer(srv.url, **FAST)
        everything = mux.stream_filter(maxsize=N + 10)
        tickers = mux.stream_filter(overflow="conflate", key="s", maxsize=8, name="tickers")
        srv.start_feed(count=N, min_clients=1)
        async with mux:
            sent: list[Any] = []
            with anyio.fail_after(20):
                async for msg in everything:  # tickers is not read meanwhile
                    sent.append(msg)
                    if len(sent) == N:
                        break
            got = [tickers.receive_nowait() for _ in range(tickers.statistics().buffered)]
            stats = mux.stats()
        assert got == latest_by_symbol(sent)
        counts = tickers.statistics()
        assert counts.conflated == N - 8 and counts.dropped == 0 and counts.peak == 8
        assert stats.conflated == N - 8 and stats.drops == 0


def test_a_thread_stream_conflates_too() -> None:
    with FeedServer(symbols=5, kinds=("trade",)) as srv:
        with run_in_thread(Multiplexer(srv.url, **FAST)) as t:
            everything = t.stream_filter(maxsize=N + 10, timeout=10)
            tickers = t.stream_filter(overflow="conflate", key="s", timeout=10)
            srv.start_feed(count=N)
            sent = [everything.receive() for _ in range(N)]
            got = [tickers.receive() for _ in range(5)]
            assert tickers.statistics().conflated == N - 5
            with pytest.raises(ValueError, match="needs key="):
                t.stream_filter(overflow="conflate")
        assert got == latest_by_symbol(sent)
        assert isinstance(tickers, wsmux.ThreadStream)
