"""No secret reaches a log record: URL user info, listen keys, query tokens,
credential headers; wsmux's lines, websockets' and picows' alike."""

from __future__ import annotations

import base64
import logging
from typing import Any

import anyio
import pytest

from wsmux import FatalConnectError, Multiplexer
from wsmux.connection._transport import scrub, scrub_log
from wsmux.testing import FeedServer

USER, PASSWORD = "alice", "pw-s3cret-1"
TOKEN = "tok-query-2"
API_KEY = "apikey-mbx-3"
COOKIE = "sid-cookie-4"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

FAST: dict[str, Any] = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "close_timeout": 0.2,
    "open_timeout": 2.0,
}


def _secrets(listen_key: str) -> list[str]:
    return [PASSWORD, BASIC, TOKEN, API_KEY, COOKIE, listen_key]


def _leaks(records: list[logging.LogRecord], secrets: list[str]) -> list[str]:
    leaks = []
    for record in records:
        if record.name.startswith("wsmux.testing"):
            continue  # the feed server's side of the socket: it holds the secrets
        texts = [record.getMessage(), str(record.msg), repr(record.args)]
        for secret in secrets:
            if any(secret in text for text in texts):
                leaks.append(f"{record.name}: {record.getMessage()}")
    return leaks


async def _connect_and_read(srv: FeedServer, **options: Any) -> str:
    key = srv.create_listen_key()
    url = f"ws://{USER}:{PASSWORD}@127.0.0.1:{srv.port}/ws/{key}?token={TOKEN}&x=1"
    headers = {"X-MBX-APIKEY": API_KEY, "Cookie": f"session={COOKIE}"}
    mux = Multiplexer(url, connect_options={"additional_headers": headers}, **FAST, **options)
    stream = mux.stream_filter()
    async with mux:
        srv.send_user_event(key, {"e": "hello"})
        with anyio.fail_after(3):
            assert await stream.receive() == {"e": "hello"}
    [record] = srv.records()
    assert record.listen_key == key
    return key


@pytest.mark.anyio
async def test_websockets_debug_lines_hold_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """Fails on the old code: websockets' header lines showed the API key,
    the cookie and the Basic credentials, and a query-only path its token."""
    caplog.set_level(1)
    with FeedServer() as srv:
        key = await _connect_and_read(srv, transport="websockets")  # its own log lines
    assert _leaks(caplog.records, _secrets(key)) == []
    lines = [r.getMessage() for r in caplog.records if r.name == "wsmux.websockets"]
    # The headers were sent, and logged masked.
    assert "> X-MBX-APIKEY: <redacted>" in lines
    assert "> Cookie: <redacted>" in lines
    assert "> Authorization: <redacted>" in lines


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # picows runs on asyncio only
async def test_picows_lines_hold_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """Fails on the old code: ``additional_headers`` reached the socket layer
    (TypeError), and picows' logged handshake request showed the headers."""
    pytest.importorskip("picows")
    caplog.set_level(1)  # picows logs its handshake below DEBUG
    with FeedServer() as srv:
        key = await _connect_and_read(srv, transport="picows")
    assert _leaks(caplog.records, _secrets(key)) == []
    requests = [r.getMessage() for r in caplog.records if "upgrade request" in r.getMessage()]
    assert requests
    for masked in ("X-MBX-APIKEY: <redacted>", "Cookie: <redacted>", "Authorization: <redacted>"):
        assert masked in requests[0]


def test_scrub_log_masks_header_lines_and_urls() -> None:
    """Fails on the old code: only the exact URL and its path were masked."""
    url = f"wss://{USER}:{PASSWORD}@example.com/ws?token={TOKEN}"
    assert scrub_log(f"> x-api-key: {API_KEY}", url) == "> x-api-key: <redacted>"
    assert scrub_log(f"< Set-Cookie: a={COOKIE}; Path=/", url) == "< Set-Cookie: <redacted>"
    assert scrub_log(f"> Proxy-Authorization: Basic {BASIC}") == "> Proxy-Authorization: <redacted>"
    assert scrub_log("> X-Signature: abc\n> Host: h") == "> X-Signature: <redacted>\n> Host: h"
    assert scrub_log("> Host: example.com") == "> Host: example.com"
    assert scrub(f"redirect to wss://u:{PASSWORD}@other.com/p?k=v") == "redirect to wss://other.com"
    assert (
        scrub(f"> GET /?token={TOKEN}&a=1 HTTP/1.1")
        == "> GET /?token=<redacted>&a=<redacted> HTTP/1.1"
    )
    # An exception's name is not a header: the message stays readable.
    assert scrub_log("KeyError: 'topic'") == "KeyError: 'topic'"


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_port_out_of_range_is_fatal_at_once(
    transport: str, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Fails on the old code: urllib's ValueError was retried forever."""
    if transport == "picows" and anyio_backend != "asyncio":
        pytest.skip("picows runs on asyncio only")
    caplog.set_level(logging.DEBUG)
    url = f"ws://{USER}:{PASSWORD}@127.0.0.1:99999/ws?token={TOKEN}"
    mux = Multiplexer(url, transport=transport, **FAST)  # type: ignore[arg-type]
    with anyio.fail_after(1), pytest.raises(FatalConnectError, match="Port out of range") as info:
        async with mux:
            pass
    assert mux.stats().connect_errors == 1
    # The URL as written (issue 14), only its secrets masked.
    assert "ws://<redacted>@127.0.0.1:99999/ws?token=<redacted>" in str(info.value)
    assert PASSWORD not in str(info.value) and TOKEN not in str(info.value)
    assert _leaks(caplog.records, [PASSWORD, TOKEN]) == []
