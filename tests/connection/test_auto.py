"""``transport="auto"`` (the default): picows on asyncio when it is installed,
websockets otherwise, chosen at connect time and shown where users look."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import anyio
import pytest

from wsmux import Multiplexer
from wsmux.connection._auto import choose_transport
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

HAVE_PICOWS = importlib.util.find_spec("picows") is not None
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "close_timeout": 0.2}


async def _read_one(mux: Multiplexer, srv: FeedServer) -> None:
    stream = mux.stream_filter()
    async with mux:
        srv.broadcast({"ok": 1})
        with anyio.fail_after(10):
            assert await stream.receive() == {"ok": 1}
        assert mux.stats().transport in repr(mux)


async def test_auto_is_the_default_and_says_what_it_chose(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsmux")
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, **FAST)
        assert mux.stats().transport == "auto" and "auto" in repr(mux)  # not chosen yet
        await _read_one(mux, srv)
    expected = "picows" if anyio_backend == "asyncio" and HAVE_PICOWS else "websockets"
    assert mux.stats().transport == expected
    lines = [r.getMessage() for r in caplog.records if "transport" in r.getMessage()]
    assert len(lines) == 1 and f"transport {expected} (auto:" in lines[0], lines
    if anyio_backend == "trio":
        assert "trio" in lines[0]


needs_picows = pytest.mark.skipif(not HAVE_PICOWS, reason="picows is not installed")
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio: websockets anyway


@needs_picows
@asyncio_only
@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"connect_options": {"user_agent_header": "me"}}, "user_agent_header"),
        ({"ping_interval": 0.5, "ping_timeout": 1.0}, "pong"),
    ],
)
async def test_auto_falls_back_to_websockets_for_what_picows_cannot_do(
    options: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsmux")
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, **FAST, **options)
        await _read_one(mux, srv)
    assert mux.stats().transport == "websockets"
    assert any(why in r.getMessage() for r in caplog.records), why


async def test_a_pinned_transport_is_reported_as_such() -> None:
    # Only "auto" is resolved; a pinned transport is kept whatever the options.
    assert choose_transport("websockets", None, {"x": 1})[0] == "websockets"
    assert choose_transport("picows", None, {"x": 1})[0] == "picows"
    with FeedServer() as srv:
        mux = Multiplexer(srv.url, transport="websockets", **FAST)
        assert mux.stats().transport == "websockets"
        await _read_one(mux, srv)
    assert mux.stats().transport == "websockets"
