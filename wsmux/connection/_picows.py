"""The optional fast transport: a :class:`Connection` on picows (asyncio only).

picows parses frames in C and hands each one to a listener callback, with no
task switch per frame. :class:`PicowsConnection` keeps complete messages in a
deque: ``recv()`` pops one at once while any are buffered, and otherwise waits
on a single future that the next batch of frames resolves. Reading is paused
while too many messages are buffered, as websockets' ``max_queue`` does.

Errors look like websockets' own, so that the supervisor treats both alike:
a lost connection raises :class:`websockets.exceptions.ConnectionClosed` with
the close frames that were exchanged, and a refused handshake raises
:class:`websockets.exceptions.InvalidStatus`. Install with
``pip install 'wsmux[fast]'``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import urllib.parse
from collections import deque
from collections.abc import Coroutine
from typing import Any

import anyio
import websockets.exceptions as wse
from websockets.datastructures import Headers
from websockets.frames import OK_CLOSE_CODES, Close
from websockets.headers import build_authorization_basic
from websockets.http11 import Response

from .._backend import current_backend
from .._exceptions import FatalConnectError
from ._transport import ScrubbingLogger, scrub

picows: Any
try:
    import picows
except ImportError:  # pragma: no cover - depends on the environment
    picows = None

__all__ = ["PicowsConnection", "picows_connect", "require_picows"]

_INSTALL_HINT = "the picows transport needs picows: pip install 'wsmux[fast]'"

#: Messages buffered before reading pauses, and the level at which it resumes.
_HIGH_WATER = 4096
_LOW_WATER = 1024

_MESSAGE_TOO_BIG = 1009


def require_picows() -> None:
    """Check that picows can be imported.

    Raises:
        ImportError: picows is not installed.
    """
    if picows is None:
        raise ImportError(_INSTALL_HINT)


class _PicowsLogger(ScrubbingLogger):
    """picows' log lines, scrubbed, under ``wsmux.picows``.

    picows logs every connect and disconnect at INFO, and a protocol error
    (an oversized frame, say) at ERROR; the supervisor already reports losses
    and reconnections, so INFO becomes DEBUG (as websockets' lines are) and
    nothing goes above WARNING.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.logger = logging.getLogger("wsmux.picows")

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log at the demoted level, with the URL scrubbed."""
        level = logging.DEBUG if level <= logging.INFO else min(level, logging.WARNING)
        super().log(level, msg, *args, **kwargs)


class PicowsConnection:
    """A websocket connection on picows, with websockets' ``recv`` contract.

    Made by :func:`picows_connect`; ``recv`` returns bytes (text frames
    included: wsmux parses bytes), ``send`` takes str (a text frame) or bytes
    (a binary frame).
    """

    __slots__ = (
        "_arrived",
        "_buf",
        "_close_timeout",
        "_closed",
        "_fences",
        "_fragments",
        "_fragments_size",
        "_limit",
        "_loop",
        "_max_size",
        "_paused",
        "_transport",
        "_waiter",
    )

    def __init__(self, max_size: int | None, close_timeout: float) -> None:
        self._buf: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._max_size = max_size
        self._limit = max_size if max_size is not None else sys.maxsize
        self._close_timeout = close_timeout
        self._closed = False
        self._paused = False
        self._loop = asyncio.get_running_loop()
        self._transport: Any = None
        self._arrived = 0  # complete data messages received (read or not)
        self._fences: dict[bytes, asyncio.Future[int]] = {}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PicowsConnection {state} buffered={len(self._buf)}>"

    # -- the listener side (called by picows, in the event loop) ---------------

    def _frame(self, transport: Any, frame: Any) -> None:
        kind = frame.msg_type
        if kind is _CONTINUATION or not frame.fin:
            self._fragment(transport, frame, kind)
            return
        if kind is _CLOSE:
            # Echo the peer's close code, as RFC 6455 asks, then hang up.
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if kind is not _TEXT and kind is not _BINARY:
            if kind is _PONG and self._fences:
                self._pong(frame.get_payload_as_bytes())
            return  # pings are answered by picows
        if frame.payload_size > self._limit:
            self._too_big(transport)  # picows hands the frame over all the same
            return
        self._arrived += 1
        buf = self._buf
        buf.append(frame.get_payload_as_bytes())
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(buf) >= _HIGH_WATER and not self._paused:
            self._paused = True
            transport.underlying_transport.pause_reading()

    def _fragment(self, transport: Any, frame: Any, kind: Any) -> None:
        if kind is not _CONTINUATION:
            if kind is not _TEXT and kind is not _BINARY:
                return
            self._fragments = []
            self._fragments_size = 0
        self._fragments_size += frame.payload_size
        if self._fragments_size > self._limit:
            self._fragments = []
            self._too_big(transport)
            return
        self._fragments.append(frame.get_payload_as_bytes())
        if frame.fin:
            parts, self._fragments = self._fragments, []
            self._fragments_size = 0
            # Deliver through the one-frame path's bookkeeping.
            self._arrived += 1
            self._buf.append(b"".join(parts))
            self._wake()

    def _too_big(self, transport: Any) -> None:
        """Close with 1009, as websockets does for a message over ``max_size``."""
        if not transport.is_close_frame_sent:
            transport.send_close(
                _close_code(_MESSAGE_TOO_BIG),
                f"message exceeds {self._max_size} bytes".encode(),
            )
        transport.disconnect()

    def _pong(self, data: bytes) -> None:
        fence = self._fences.get(data)
        if fence is not None and not fence.done():
            fence.set_result(self._arrived)

    def _disconnected(self) -> None:
        self._closed = True
        for fence in self._fences.values():
            if not fence.done():
                fence.set_exception(self._closed_error())
        self._wake()

    async def fence(self) -> int:
        """Ping; return how many data messages arrived before the pong.

        Raises:
            websockets.exceptions.ConnectionClosed: The connection was lost first.
        """
        if self._closed:
            raise self._closed_error()
        data = os.urandom(8)
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._fences[data] = waiter
        try:
            self._transport.send_ping(data)
            return await waiter
        finally:
            del self._fences[data]

    def is_fence_pong(self, frame: Any) -> bool:
        """Whether a pong answers one of :meth:`fence`'s pings."""
        return bool(self._fences) and frame.get_payload_as_bytes() in self._fences

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def messages_read(self) -> int:
        """Data messages returned by ``recv``/``recv_nowait`` so far."""
        return self._arrived - len(self._buf)

    # -- the Connection protocol -----------------------------------------------

    async def recv(self) -> bytes:
        """Return the next message's payload.

        Returns at once while messages are buffered: no event-loop round trip.

        Returns:
            The payload, as bytes (text frames included).

        Raises:
            websockets.exceptions.ConnectionClosed: The connection is closed
                and every message it delivered was returned.
        """
        buf = self._buf
        if buf:
            if self._paused and len(buf) <= _LOW_WATER:
                self._resume()
            return buf.popleft()
        return await self._wait()

    def recv_nowait(self) -> bytes | None:
        """Return the next buffered message's payload, or None if none is.

        The supervisor's reader drains a burst with this, with no coroutine
        per message; it awaits :meth:`recv` only when the buffer is empty.

        Returns:
            The payload, or None.
        """
        buf = self._buf
        if buf:
            if self._paused and len(buf) <= _LOW_WATER:
                self._resume()
            return buf.popleft()
        return None

    async def _wait(self) -> bytes:
        buf = self._buf
        while not buf:
            if self._closed:
                raise self._closed_error()
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        if self._paused and len(buf) <= _LOW_WATER:
            self._resume()
        return buf.popleft()

    def _resume(self) -> None:
        self._paused = False
        if not self._closed:
            self._transport.underlying_transport.resume_reading()

    def _closed_error(self) -> wse.ConnectionClosed:
        shake = self._transport.close_handshake
        rcvd = sent = None
        rcvd_then_sent = None
        if shake is not None:
            rcvd = _as_close(shake.recv)
            sent = _as_close(shake.sent)
            if rcvd is not None and sent is not None:
                rcvd_then_sent = bool(shake.recv_then_sent)
        ok = (
            rcvd is not None
            and sent is not None
            and rcvd.code in OK_CLOSE_CODES
            and sent.code in OK_CLOSE_CODES
        )
        kind = wse.ConnectionClosedOK if ok else wse.ConnectionClosedError
        return kind(rcvd, sent, rcvd_then_sent)

    async def send(self, message: str | bytes) -> None:
        """Send one message: str as a text frame, bytes as a binary one.

        Args:
            message: The message.

        Raises:
            websockets.exceptions.ConnectionClosed: The connection is closed.
            TypeError: ``message`` is neither str nor bytes.
        """
        if self._closed or self._transport.is_close_frame_sent:
            raise self._closed_error()
        if isinstance(message, str):
            self._transport.send(_TEXT, message.encode())
        elif isinstance(message, bytes | bytearray | memoryview):
            self._transport.send(_BINARY, message)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")

    async def close(self) -> None:
        """Send a close frame, wait for the peer to hang up, then disconnect.

        Waits at most the close timeout given to :func:`picows_connect`.
        """
        transport = self._transport
        if not transport.is_disconnected:
            transport.send_close(_close_code(1000))
        try:
            # Also when already disconnected: this retrieves the error picows
            # stored for a local failure, which asyncio would otherwise log.
            await asyncio.wait_for(transport.wait_disconnected(), self._close_timeout)
        except Exception as exc:
            logging.getLogger("wsmux").debug("picows close: %r", exc)
        finally:
            transport.disconnect(graceful=False)
            self._disconnected()


def _as_close(info: Any) -> Close | None:
    if info is None:
        return None
    code = info.code
    return Close(int(getattr(code, "value", code)), info.reason or "")


def _close_code(code: int) -> Any:
    assert picows is not None
    try:
        return picows.WSCloseCode(code)
    except ValueError:
        return code


if picows is not None:
    _TEXT = picows.WSMsgType.TEXT
    _BINARY = picows.WSMsgType.BINARY
    _CLOSE = picows.WSMsgType.CLOSE
    _CONTINUATION = picows.WSMsgType.CONTINUATION
    _PONG = picows.WSMsgType.PONG

    class _Listener(picows.WSListener):  # type: ignore[misc,unused-ignore]
        """Forwards picows' callbacks to a :class:`PicowsConnection`."""

        def __init__(self, conn: PicowsConnection) -> None:
            super().__init__()
            # An instance attribute overrides the cpdef method: one call per
            # frame, straight into the connection.
            self.on_ws_frame = conn._frame  # type: ignore[method-assign,unused-ignore]
            self._conn = conn

        def on_ws_disconnected(self, transport: Any) -> None:
            self._conn._disconnected()

        def is_user_specific_pong(self, frame: Any) -> bool:
            # A fence's pong goes to on_ws_frame; any other answers auto-ping.
            return frame.msg_type is _PONG and not self._conn.is_fence_pong(frame)


async def picows_connect(
    url: str,
    *,
    max_size: int | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    open_timeout: float,
    close_timeout: float,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    **options: Any,
) -> PicowsConnection:
    """Open a websocket connection with picows.

    Args:
        url: The websocket URL.
        max_size: Largest inbound message in bytes (a larger one closes the
            connection with code 1009); None for no limit.
        ping_interval: Ping after this many seconds without inbound data;
            None for no keepalive.
        ping_timeout: Seconds to wait for the pong before the connection is
            closed (code 1001); None waits forever.
        open_timeout: Seconds allowed for the opening handshake.
        close_timeout: Seconds :meth:`PicowsConnection.close` waits for the
            peer to hang up.
        logger: Where picows logs (default: ``wsmux.picows``, scrubbed).
        **options: Further keyword arguments for ``picows.ws_connect``
            (``extra_headers``, ``ssl_context``, ...). websockets'
            ``additional_headers`` is accepted too, so that one
            ``connect_options`` serves both transports; user info in the URL
            is sent as ``Authorization: Basic``, as websockets does.

    Returns:
        The open connection.

    Raises:
        ImportError: picows is not installed.
        FatalConnectError: Called under trio (picows runs on asyncio only).
        websockets.exceptions.InvalidStatus: The server refused the handshake
            (with its HTTP status and headers, for ``Retry-After``).
        websockets.exceptions.InvalidURI: The URL is not a websocket URL.
        OSError: The TCP connection failed.
    """
    require_picows()
    assert picows is not None
    if current_backend() != "asyncio":
        raise FatalConnectError(
            "the picows transport runs on asyncio only; use transport='websockets' under trio"
        )
    bare_url, headers = _headers(url, options.pop("additional_headers", None), options)
    if headers:
        options["extra_headers"] = headers
    conn = PicowsConnection(max_size, close_timeout)
    auto_ping = ping_interval is not None
    idle = ping_interval if ping_interval is not None else 10.0
    try:
        transport, _ = await _close_if_cancelled(
            picows.ws_connect(
                lambda: _Listener(conn),
                bare_url,
                websocket_handshake_timeout=open_timeout,
                logger_name=logger if logger is not None else _PicowsLogger(url),
                enable_auto_ping=auto_ping,
                auto_ping_idle_timeout=idle,
                auto_ping_reply_timeout=ping_timeout if ping_timeout is not None else sys.maxsize,
                max_frame_size=max_size if max_size is not None else sys.maxsize,
                **options,
            ),
            open_timeout,
        )
    except picows.WSInvalidStatusError as exc:
        raise _invalid_status(exc) from None
    except Exception as exc:
        if type(exc).__name__ != "ProxyError":  # python-socks', raised for every proxy
            raise
        raise _proxy_error(exc, url) from None
    except picows.WSInvalidURL as exc:
        raise wse.InvalidURI(scrub(url, url), scrub(str(exc), url)) from None
    except picows.WSError as exc:
        # A malformed handshake: retried, reported without the URL.
        raise wse.InvalidHandshake(scrub(f"{type(exc).__name__}: {exc}", url)) from None
    conn._transport = transport
    return conn


async def _close_if_cancelled(connect: Coroutine[Any, Any, Any], limit: float) -> Any:
    """Await picows' connect; if cancelled meanwhile, close what it opens.

    picows leaves the socket of a connect cancelled mid-handshake open (an
    exit right after start, say): the connect is let finish, for at most
    ``limit`` seconds (and a quarter of a second: an exit must stay
    prompt), and its connection closed, before the cancellation goes on.
    """
    task = asyncio.ensure_future(connect)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True), anyio.move_on_after(min(limit, 0.25)):
            try:
                transport, _ = await task
            except BaseException:
                pass  # it failed: nothing is open
            else:
                transport.disconnect(graceful=False)
        task.cancel()
        raise


def _headers(url: str, additional: Any, options: dict[str, Any]) -> tuple[str, list[Any]]:
    """Merge the handshake headers; move the URL's user info into them."""
    headers: list[Any] = []
    for given in (options.pop("extra_headers", None), additional):
        if given:
            headers.extend(given.items() if hasattr(given, "items") else given)
    try:
        parts = urllib.parse.urlsplit(url)
        username, password = parts.username, parts.password
    except ValueError:
        return url, headers  # picows reports the invalid URL
    if username is None:
        return url, headers
    if not any(str(name).lower() == "authorization" for name, _ in headers):
        user = urllib.parse.unquote(username)
        secret = urllib.parse.unquote(password or "")
        headers.append(("Authorization", build_authorization_basic(user, secret)))
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), headers


def _proxy_error(exc: BaseException, url: str) -> wse.ProxyError:
    """websockets' exception for a proxy failure reported by picows (python-socks)."""
    text = str(exc)
    refused = re.search(r"rejected connection with status (\d{3})", text)
    if refused is not None:
        return wse.InvalidProxyStatus(Response(int(refused[1]), "", Headers(), b""))
    return wse.ProxyError(scrub(f"proxy: {text}", url))


def _invalid_status(exc: Any) -> wse.InvalidStatus:
    response = exc.response
    status = int(response.status) if response is not None else 0
    headers = Headers()
    if response is not None:
        for name, value in response.headers.items():
            headers[name] = value
        body = response.body or b""
        phrase = getattr(response.status, "phrase", "")
    else:
        body, phrase = b"", ""
    return wse.InvalidStatus(Response(status, phrase, headers, body))
