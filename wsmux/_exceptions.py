"""Exceptions raised by wsmux.

Every exception wsmux raises on purpose derives from :class:`WsmuxError`::

    WsmuxError
    ├── StreamLagged          a stream lost messages to overflow ("lag" policy)
    ├── ConnectionGap         the connection was lost and replaced (gaps="raise")
    ├── StreamClosed          the stream was closed by its owner
    ├── ConnectError          opening a connection failed
    │   ├── FatalConnectError     retrying cannot help (401/403, bad URL)
    │   └── RetriesExhausted      max_attempts connection attempts failed
    ├── NotConnected          no open connection within the send timeout
    ├── RequestTimeout        no reply to a request within its timeout
    └── MultiplexerClosed     the multiplexer has exited

Filters that cannot be understood raise the built-in :class:`TypeError` or
:class:`ValueError` when the stream is created, never later in the reader.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "ConnectionGap",
    "FatalConnectError",
    "MultiplexerClosed",
    "NotConnected",
    "RequestTimeout",
    "RetriesExhausted",
    "StreamClosed",
    "StreamLagged",
    "WsmuxError",
]


class WsmuxError(Exception):
    """Base class of every exception raised by wsmux."""


class StreamLagged(WsmuxError):
    """The stream overflowed and lost its oldest messages.

    Raised once by the read that follows the loss; the stream then goes on
    with the messages it still holds.

    Attributes:
        count: How many messages were lost since the previous read.
    """

    def __init__(self, count: int) -> None:
        super().__init__(f"stream lagged: {count} message(s) lost to overflow")
        self.count = count


class ConnectionGap(WsmuxError):
    """The connection was lost and replaced; messages may have been missed.

    Raised, for streams created with ``gaps="raise"``, at the point in the
    stream where the unplanned reconnect happened. Planned rotation is not a
    gap. The stream goes on after it.
    """


class StreamClosed(WsmuxError):
    """The stream was closed by its owner and can no longer be read."""


class ConnectError(WsmuxError):
    """Opening a websocket connection failed.

    Attributes:
        url: The redacted URL (scheme, host and port only).
        status: The HTTP status of a refused handshake, if any.
    """

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class FatalConnectError(ConnectError):
    """Opening the connection failed in a way retrying cannot fix.

    For example HTTP 401 or 403 on the handshake, or an invalid URL.
    """


class RetriesExhausted(ConnectError):
    """``max_attempts`` connection attempts in a row failed."""


class NotConnected(WsmuxError):
    """No connection became open within the send timeout."""


class RequestTimeout(WsmuxError):
    """No reply carrying the request's id arrived within the timeout."""


class MultiplexerClosed(WsmuxError):
    """The multiplexer has exited; it can no longer send or open streams."""
