"""Handler mistakes that used to pass silently."""

from __future__ import annotations

import gc
import logging
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from wsmux import Multiplexer
from wsmux.fanout._hub import Hub
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio


async def test_sync_handler_returning_a_coroutine_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails on the old code: the coroutine was dropped ("never awaited",
    an error under -W error) and handler_errors stayed 0."""
    ran: list[Any] = []

    async def process(msg: Any) -> None:
        ran.append(msg)

    hub = Hub()
    caplog.set_level(logging.ERROR, logger="wsmux")
    async with hub:
        hub.add_handler(lambda m: process(m))
        for i in range(3):
            hub.publish({"i": i})
        gc.collect()  # an unclosed coroutine would warn here
    assert ran == []
    assert hub.handler_errors == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # rate-limited
    text = errors[0].getMessage()
    assert "returned a coroutine" in text and "pass the async function itself" in text
    assert "process" in text


async def test_sync_handler_returning_other_values_is_fine() -> None:
    hub = Hub()
    async with hub:
        hub.add_handler(lambda m: m["i"])
        hub.add_handler(lambda m: [m])
        hub.publish({"i": 1})
    assert hub.handler_errors == 0


async def test_multiplexer_counts_a_coroutine_returning_handler() -> None:
    """Fails on the old code: stats().handler_errors stayed 0."""

    async def process(msg: Any) -> None:
        raise AssertionError("never run")

    with FeedServer() as srv:
        mux = Multiplexer(srv.url, close_timeout=0.2)
        stream = mux.stream_filter()
        mux.add_handler(lambda m: process(m))
        async with mux:
            await srv.wait_for_connections_async(1)
            srv.broadcast({"e": "x"})
            with anyio.fail_after(3):
                await stream.receive()
            assert mux.stats().handler_errors == 1


async def test_no_sync_handler_runs_after_the_hub_closed() -> None:
    """Issue 10 item 12. Fails on 848e4a7: a sync handler stayed in the index
    and was called by every publish after ``close()``."""
    calls: list[Any] = []
    hub = Hub()
    hub.add_handler(lambda m: calls.append(m))
    hub.add_handler(lambda m: calls.append(m), {"k": 1})
    async with hub:
        hub.publish({"k": 1})
        hub.close()
        hub.publish({"k": 1})
        hub.publish({"k": 2})
    assert calls == [{"k": 1}, {"k": 1}]  # both handlers, once, before the close


async def test_no_handler_runs_after_exit_returns() -> None:
    """Issue 10 item 12: with a feed running, no sync or async handler is
    called once ``exit()`` has returned."""
    calls: list[int] = []
    after = False
    late: list[str] = []

    def sync(msg: Any) -> None:
        calls.append(1)
        if after:
            late.append("sync")

    async def slow(msg: Any) -> None:
        if after:
            late.append("async")

    with FeedServer() as srv:
        mux = Multiplexer(srv.url, close_timeout=0.5)
        mux.add_handler(sync)
        mux.add_handler(slow)
        async with mux:
            srv.start_feed(rate=2000)
            with anyio.fail_after(5):
                while len(calls) < 50:
                    await anyio.sleep(0.01)
            await mux.exit()
            after = True
            for _ in range(20):  # the loop runs on; nothing of wsmux's may call back
                await anyio.lowlevel.checkpoint()
        srv.stop_feed()
    assert late == []
