"""``Multiplexer(url, proxy=...)`` through a real HTTP CONNECT proxy on 127.0.0.1.

Both transports (picows on asyncio only), both backends; the proxy is
:class:`wsmux.testing.ConnectProxy`, which records each CONNECT it saw.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import anyio
import pytest

from wsmux import FatalConnectError, Multiplexer
from wsmux.testing import ConnectProxy, ConnectRequest, FeedServer

USER, PASSWORD = "proxy-user", "pr0xy-s3cret-9"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "open_timeout": 5.0}


@pytest.fixture(params=["websockets", "picows"])
def transport(request: pytest.FixtureRequest, anyio_backend: str) -> str:
    if request.param == "picows" and anyio_backend == "trio":
        pytest.skip("picows runs on asyncio only")
    return str(request.param)


def _leaks(records: list[logging.LogRecord], *secrets: str) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if any(s in r.getMessage() or s in repr(r.args) for s in secrets)
    ]


async def _take(mux: Multiplexer, srv: FeedServer, n: int) -> list[Any]:
    stream = mux.stream_filter(maxsize=n)
    got: list[Any] = []
    async with mux:
        srv.start_feed(count=n)
        with anyio.fail_after(15):
            async for msg in stream:
                got.append(msg)
                if len(got) == n:
                    break
    return got


@pytest.mark.anyio
async def test_the_feed_goes_through_the_proxy(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FeedServer(symbols=2) as srv, ConnectProxy(auth=(USER, PASSWORD)) as proxy:
        mux = Multiplexer(
            f"{srv.url}/ws", proxy=proxy.url_with(USER, PASSWORD), transport=transport, **FAST
        )
        got = await _take(mux, srv, 50)
        assert [m["seq"] for m in got] == list(range(1, 51))
        assert proxy.requests == [ConnectRequest(f"127.0.0.1:{srv.port}", 200, USER)]
        assert PASSWORD not in repr(mux) and PASSWORD not in repr(mux._options)
    assert not _leaks(caplog.records, PASSWORD, BASIC)


@pytest.mark.anyio
async def test_a_wrong_proxy_password_fails_at_once_and_clearly(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FeedServer() as srv, ConnectProxy(auth=(USER, PASSWORD)) as proxy:
        wrong = "wr0ng-s3cret"
        mux = Multiplexer(f"{srv.url}/ws", proxy=proxy.url_with(USER, wrong), transport=transport)
        with anyio.fail_after(10), pytest.raises(FatalConnectError) as caught:
            async with mux:
                pass
        text = str(caught.value)
        assert "proxy" in text and "407" in text and "authentication" in text
        assert wrong not in text and caught.value.status == 407
        assert [r.status for r in proxy.requests] == [407]  # not retried
        assert srv.records() == []  # the feed server never saw the client
    assert not _leaks(caplog.records, wrong, PASSWORD)


@pytest.mark.anyio
async def test_the_default_proxy_comes_from_the_environment_and_none_bypasses_it(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    async with FeedServer() as srv, ConnectProxy() as proxy:
        for name in ("ws_proxy", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        await _take(Multiplexer(f"{srv.url}/ws", transport=transport, **FAST), srv, 3)
        assert len(proxy.requests) == 1
        direct = Multiplexer(f"{srv.url}/ws", transport=transport, proxy=None, **FAST)
        await _take(direct, srv, 3)
        assert len(proxy.requests) == 1  # proxy=None went around it


@pytest.mark.parametrize(
    ("proxy", "error"),
    [
        ("ftp://u:pr0xy-s3cret-9@127.0.0.1:1", ValueError),
        ("http://u:pr0xy-s3cret-9@127.0.0.1:1/path", ValueError),
        (1234, TypeError),
    ],
)
def test_bad_proxy_options_are_refused_at_construction(proxy: Any, error: type) -> None:
    with pytest.raises(error) as caught:
        Multiplexer("ws://127.0.0.1:1/ws", proxy=proxy)
    assert PASSWORD not in str(caught.value)


def test_the_proxy_only_tunnels_to_loopback_and_needs_connect() -> None:
    import socket

    with ConnectProxy() as proxy:
        for line, status in (
            (b"CONNECT 10.1.2.3:443 HTTP/1.1\r\n\r\n", 403),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n", 502),
        ):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(line)
                assert sock.recv(100).startswith(f"HTTP/1.1 {status}".encode())
        assert [r.status for r in proxy.wait_for_requests(3)] == [403, 400, 502]
