"""Issue 14, "Clear words" and "Defaults for trading": what wsmux says, and when.

Errors show the user's URL with only its secrets masked and always carry a
reason; a fatal error is reported once; every multiplexer has a name that
tells it apart in logs, its repr and ``stats()``; a planned rotation logs one
INFO line; and the default keepalive detects a dead link within 15 s.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Callable, Hashable
from typing import Any

import anyio
import pytest

from wsmux import FatalConnectError, Multiplexer, MultiplexerStats, RetriesExhausted
from wsmux._log import default_name, show_url
from wsmux.connection._link import describe_close
from wsmux.connection._transport import classify, default_connect, describe
from wsmux.testing import FeedServer

KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
TOKEN = "tok3nV4lue"
PASSWORD = "hunter2pw"

#: Small delays: faults are repaired in milliseconds.
FAST: dict[str, Any] = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "reset_after": 0.5,
    "close_timeout": 0.2,
    "open_timeout": 2.0,
}


async def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.005)


def wsmux_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == level
        and (r.name == "wsmux" or r.name.startswith("wsmux."))
        and not r.name.startswith("wsmux.testing")  # the server's own lines
    ]


# -- errors show the user's URL, secrets masked -----------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("127.0.0.1:18001", "127.0.0.1:18001"),
        ("not a url", "not a url"),
        (f"wss://fstream.binance.com/ws/{KEY}", "wss://fstream.binance.com/ws/<redacted>"),
        (
            f"ws://user:{PASSWORD}@127.0.0.1:99999/ws?token={TOKEN}&debug",
            "ws://<redacted>@127.0.0.1:99999/ws?token=<redacted>&debug",
        ),
        (
            "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade",
            "wss://stream.binance.com:9443/stream?streams=<redacted>",
        ),
        (f"ws://h/v1/{TOKEN}/more/path#{TOKEN}", "ws://h/v1/<redacted>#<redacted>"),
        ("ws://[::1]:8080/stream", "ws://[::1]:8080/stream"),
    ],
)
def test_show_url_masks_only_the_secrets(url: str, shown: str) -> None:
    assert show_url(url) == shown


@pytest.mark.anyio
async def test_a_bad_url_error_shows_the_users_url_with_secrets_masked() -> None:
    url = f"http://user:{PASSWORD}@127.0.0.1:1/ws/{KEY}?token={TOKEN}"
    with anyio.fail_after(2), pytest.raises(FatalConnectError) as info:
        async with Multiplexer(url, **FAST):
            pass
    text = str(info.value)
    assert text.startswith(
        "cannot connect to http://<redacted>@127.0.0.1:1/ws/<redacted>?token=<redacted>:"
        " invalid URL: "
    ), text
    assert "(InvalidURI)" not in text  # the reason says what is wrong
    assert KEY not in text and TOKEN not in text and PASSWORD not in text


# -- every error has a reason -------------------------------------------------------


@pytest.mark.parametrize("exc", [TimeoutError(), EOFError(), OSError(), RuntimeError()])
def test_no_reason_is_ever_empty(exc: BaseException) -> None:
    for reason in (describe(exc), classify(exc).reason, describe_close(exc)):
        assert not reason.rstrip().endswith(":"), reason
        assert reason.startswith(type(exc).__name__), reason
        assert len(reason) > len(type(exc).__name__) + 2, reason


@pytest.mark.anyio
async def test_a_silent_port_gives_up_with_a_reason() -> None:
    """The old message ended with "the last with TimeoutError: " (no reason)."""
    async with FeedServer() as srv:
        srv.delay_handshake(10)
        mux = Multiplexer(srv.url, max_attempts=1, **(FAST | {"open_timeout": 0.2}))
        with anyio.fail_after(3), pytest.raises(RetriesExhausted) as info:
            async with mux:
                pass
    assert str(info.value) == (
        f"cannot connect to {srv.url}: 1 attempt failed, the last with"
        " TimeoutError: no handshake within 0.2s (open_timeout)"
    )
    assert mux.stats().connect_errors == 1


# -- a fatal error is reported once ----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["async with", "run"])
async def test_a_fatal_error_raised_to_the_caller_is_not_also_logged_as_an_error(
    how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsmux")
    async with FeedServer() as srv:
        srv.refuse(None, status=401)
        mux = Multiplexer(srv.url, **FAST)
        with anyio.fail_after(3), pytest.raises(FatalConnectError, match="HTTP 401"):
            if how == "run":
                await mux.run()
            else:
                async with mux:
                    pass
    assert wsmux_records(caplog, logging.ERROR) == []
    assert [r.getMessage() for r in wsmux_records(caplog, logging.DEBUG) if "failed:" in r.msg]


@pytest.mark.anyio
async def test_a_fatal_error_inside_a_started_block_is_logged_once_when_it_happens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Raised only when the block ends, so it is logged (once) when it strikes."""
    caplog.set_level(logging.DEBUG, logger="wsmux")
    async with FeedServer() as srv:
        mux = Multiplexer(srv.url, **FAST)
        with anyio.fail_after(3), pytest.raises(FatalConnectError, match="HTTP 401"):
            async with mux:
                srv.refuse(None, status=401)
                srv.drop()
                await wait_for(lambda: mux.state == "failed", what="failure")
                errors = [r.getMessage() for r in wsmux_records(caplog, logging.ERROR)]
    assert len(errors) == 1 and "HTTP 401" in errors[0], errors


# -- every multiplexer has a name --------------------------------------------------------


class _Custom(Multiplexer):
    """An adapter whose _create_ws connects to a URL it keeps for itself."""

    def __init__(self, target: str, **kw: Any) -> None:
        super().__init__(None, **kw)
        self.target = target

    async def _create_ws(self) -> Any:
        made = default_connect(self.target, {"open_timeout": 2})
        return await made if hasattr(made, "__await__") else made


class _OtherCustom(_Custom):
    pass


def test_default_names_tell_adapters_apart_and_hold_no_secret() -> None:
    a, b = _Custom("ws://x"), _OtherCustom("ws://x")
    # The last word is the transport ("auto" until a connection chose one).
    assert repr(a) == "<_Custom '_Custom' idle auto>"
    assert repr(b) == "<_OtherCustom '_OtherCustom' idle auto>"
    assert (a.stats().name, b.stats().name) == ("_Custom", "_OtherCustom")
    user = Multiplexer(f"wss://u:{PASSWORD}@fstream.binance.com/ws/{KEY}?t={TOKEN}")
    market = Multiplexer("wss://fstream.binance.com/stream?streams=btcusdt@trade")
    assert user.stats().name == "wss://fstream.binance.com/ws"
    assert market.stats().name == "wss://fstream.binance.com/stream"
    for text in (repr(user), str(user.stats())):
        assert KEY not in text and TOKEN not in text and PASSWORD not in text
    assert default_name(None, a) == "_Custom"


def test_name_option_labels_repr_and_stats_and_keeps_its_stats_position() -> None:
    mux = _Custom("ws://x", name="binance user")
    assert repr(mux) == "<_Custom 'binance user' idle auto>"
    stats = mux.stats()
    # Fields added later come after it: positional users keep working.
    assert stats.name == "binance user" and stats[18] == "binance user"
    assert MultiplexerStats._fields[18] == "name"
    assert MultiplexerStats._fields[:2] == ("state", "connects")  # positional users
    with pytest.raises(TypeError):
        Multiplexer("ws://x", name="")


@pytest.mark.anyio
async def test_the_name_labels_the_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wsmux")
    async with FeedServer() as srv:
        one = _Custom(srv.url, name="feed one", **FAST)
        two = _OtherCustom(srv.url, **FAST)
        with anyio.fail_after(5):
            async with one, two:
                assert srv.drop() == 2
                await wait_for(lambda: one.stats().reconnects == two.stats().reconnects == 1)
    lost = sorted(r.getMessage() for r in wsmux_records(caplog, logging.WARNING))
    assert len(lost) == 2, lost
    assert lost[0].startswith("connection to _OtherCustom lost (")
    assert lost[1].startswith("connection to feed one lost (")


# -- a planned rotation logs one INFO line ------------------------------------------------


class _RotateOnce(Multiplexer):
    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(url, **kw)
        self.triggers = 0

    async def _when2create_new_ws(self) -> None:
        self.triggers += 1
        if self.triggers > 1:
            await anyio.sleep_forever()
        await anyio.sleep(0.1)  # the first connection is rotated once


class _RotateOnceWithIds(_RotateOnce):
    def _message_id(self, msg: Any) -> Hashable | None:
        return msg.get("seq")  # type: ignore[no-any-return]


@pytest.mark.anyio
@pytest.mark.parametrize("with_ids", [False, True])
async def test_a_rotation_logs_one_info_line(
    with_ids: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wsmux")
    async with FeedServer() as srv:
        kind = _RotateOnceWithIds if with_ids else _RotateOnce
        mux = kind(srv.url, name="rot", **FAST)
        srv.start_feed(rate=2000)

        def info_lines() -> list[str]:  # the rotation's; the first connect says its transport
            lines = [r.getMessage() for r in wsmux_records(caplog, logging.INFO)]
            return [line for line in lines if ": transport " not in line]

        async with mux:
            await wait_for(lambda: bool(info_lines()), what="INFO line")
            stats = mux.stats()
            await mux.exit()
    lines = info_lines()
    assert stats.rotations == 1 and len(lines) == 1, lines
    if with_ids:
        found = re.fullmatch(
            r"rot: rotated to connection 2 \(overlap \d+ ms, (\d+) duplicates? dropped\)",
            lines[0],
        )
        assert found is not None, lines[0]
        assert int(found[1]) == stats.duplicates  # the tail's repeats included
        assert ("duplicate dropped" in lines[0]) == (stats.duplicates == 1)
    else:
        expected = r"rot: rotated to connection 2 \(overlap \d+ ms, no _message_id: repeats"
        assert re.match(expected + r" were not dropped\)$", lines[0]), lines[0]


# -- defaults for trading: a dead link is detected within 15 s ------------------------------


def _defaults() -> dict[str, Any]:
    params = inspect.signature(Multiplexer).parameters
    return {name: p.default for name, p in params.items()}


def test_default_keepalive_detects_a_dead_link_within_15_seconds() -> None:
    """The worst case after the last pong: the next ping is due after
    ``ping_interval``, its pong is overdue after ``ping_timeout``, and the
    transport gives the closing handshake up to ``close_timeout``."""
    d = _defaults()
    assert d["ping_interval"] is not None and d["ping_timeout"] is not None
    assert d["ping_interval"] + d["ping_timeout"] + d["close_timeout"] <= 15
    # The stale watch is not what meets the budget: quiet feeds are normal.
    assert d["stale_after"] is None


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_keepalive_detection_time_is_interval_plus_timeout_plus_close(
    transport: str, anyio_backend: str
) -> None:
    """The mechanism behind the arithmetic above, scaled down 25 times, on
    every transport (picows' idle ping maps to the same bound)."""
    if transport == "picows" and anyio_backend != "asyncio":
        pytest.skip("picows runs on asyncio only")
    scale = 25
    d = _defaults()
    options = {
        "ping_interval": d["ping_interval"] / scale,
        "ping_timeout": d["ping_timeout"] / scale,
        "close_timeout": d["close_timeout"] / scale,
    }
    budget = sum(options.values())
    async with FeedServer() as srv:
        lost = anyio.Event()
        mux = Multiplexer(
            srv.url,
            transport=transport,  # type: ignore[arg-type]
            disconnect_fn=lambda _: lost.set(),
            **(FAST | options),
        )
        async with mux:
            srv.start_feed(rate=200)
            await wait_for(lambda: mux.stats().messages > 5)
            assert srv.half_open() == 1
            start = time.monotonic()
            with anyio.fail_after(budget + 1):
                await lost.wait()
            took = time.monotonic() - start
            await mux.exit()
    assert took <= budget + 0.1, f"detected after {took:.3f}s, budget {budget:.3f}s"


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_with_default_options_a_half_open_link_is_detected_within_15_seconds() -> None:
    async with FeedServer() as srv:
        lost = anyio.Event()
        mux = Multiplexer(srv.url, disconnect_fn=lambda _: lost.set())
        async with mux:
            srv.start_feed(rate=50)
            await wait_for(lambda: mux.stats().messages > 5)
            assert srv.half_open() == 1
            start = time.monotonic()
            with anyio.fail_after(16):
                await lost.wait()
            took = time.monotonic() - start
            await mux.exit()
    assert took <= 15, took
