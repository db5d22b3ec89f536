"""What :class:`~wsmux.testing.FeedServer` keeps: connection records and stats snapshots.

Plain data, no I/O. The server thread fills a :class:`ConnectionRecord` while
its connection lives; :class:`FeedServerStats` is a frozen copy of the counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ConnectionRecord", "FeedServerStats"]


@dataclass(eq=False, repr=False, slots=True)
class ConnectionRecord:
    """What the server saw of one websocket handshake attempt and connection.

    The server thread updates a record while the connection lives; treat it
    as read-only. Times are :func:`time.monotonic` values.

    Attributes:
        id: Connection id, from 1, in order of handshake attempts.
        path: Request path and query. May hold a listen key: never shown by repr.
        attempted_at: When the handshake request arrived.
        listen_key: The key of a user-data stream (``/ws/<key>``), else None.
        status: HTTP status answered (101 when accepted), None while pending.
        opened_at: When the connection opened, None if it never did.
        closed_at: When it closed, None while open or if it never opened.
        close_code: Close code seen by the server (1006 when the TCP link died).
        close_reason: Close reason seen by the server.
        messages: Messages from the client, parsed JSON when possible, else raw.
        subscriptions: Topics subscribed, as the client wrote them (a
            subscribe refused for ``max_topics_per_connection`` adds none).
        sent: Frames written to this connection.
        garbage: Garbage frames among them.
        dropped: Frames dropped because the client did not read fast enough.
        last_seq: ``seq`` of the last feed message queued for this connection.
        silent: The connection is silenced (no data, pings still answered).
        half_open: The server stopped reading (pings go unanswered, no data).
        delay: ``(fixed, jitter)`` seconds each frame waits before it is sent
            (see ``FeedServer.delay``); ``(0.0, 0.0)`` when not delayed.
        inbound: Messages from the client that count against an exchange's
            inbound rate: data frames, pings and pongs.
        max_inbound_per_window: Most of them seen within one window (the
            window of ``inbound_rate_limit``, else 1 s).
    """

    id: int
    path: str
    attempted_at: float
    listen_key: str | None = None
    status: int | None = None
    opened_at: float | None = None
    closed_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    messages: list[Any] = field(default_factory=list)
    subscriptions: set[str] = field(default_factory=set)
    sent: int = 0
    garbage: int = 0
    dropped: int = 0
    last_seq: int = 0
    silent: bool = False
    half_open: bool = False
    delay: tuple[float, float] = (0.0, 0.0)
    inbound: int = 0
    max_inbound_per_window: int = 0

    @property
    def accepted(self) -> bool:
        """Whether the handshake succeeded."""
        return self.status == 101

    @property
    def is_open(self) -> bool:
        """Whether the connection is open now."""
        return self.opened_at is not None and self.closed_at is None

    @property
    def user_stream(self) -> bool:
        """Whether this is a user-data stream (opened with a listen key)."""
        return self.listen_key is not None

    def __repr__(self) -> str:
        kind = "user" if self.user_stream else "market"
        if self.is_open:
            state = "open"
        elif self.closed_at is not None:
            state = f"closed({self.close_code})"
        else:
            state = "refused" if self.status is not None else "pending"
        return (
            f"<ConnectionRecord #{self.id} {kind} {state} status={self.status} "
            f"received={len(self.messages)} sent={self.sent}>"
        )


@dataclass(frozen=True, slots=True)
class FeedServerStats:
    """A snapshot of a :class:`~wsmux.testing.FeedServer`'s counters.

    Attributes:
        handshakes: Websocket handshake attempts (HTTP API calls excluded).
        accepted: Handshakes accepted.
        refused: Handshakes answered with an HTTP error.
        open: Connections open now.
        http_requests: Listen-key API calls.
        feed_messages: Feed messages produced (each ``seq`` once per sequence).
        last_seq: ``seq`` of the last broadcast feed message.
        frames_sent: Frames written to clients, all connections, all kinds.
        garbage_sent: Garbage frames among them.
        dropped: Frames dropped because a client did not read fast enough.
        client_messages: Messages received from clients.
        faults: Faults applied, by name (``"drop"``, ``"refuse"``, ...).
        connect_attempts: Websocket handshake attempts counted against
            ``connect_limit`` (every attempt, refused ones too).
        connect_rate_limited: Handshakes answered 429 (over ``connect_limit``).
        connect_banned: Handshakes answered 418 (no back-off after a 429).
        connect_window_max: Most attempts seen within one ``connect_limit``
            window (0 without a limit): at most the limit means the budget
            was never exceeded.
        over_limit_errors: Subscribes (or handshakes naming streams) refused
            for ``max_topics_per_connection``.
        inbound_rate_closes: Connections closed with 1008 for exceeding
            ``inbound_rate_limit``.
        max_inbound_per_window: Most inbound messages one connection sent
            within one window, over all connections so far.
    """

    handshakes: int
    accepted: int
    refused: int
    open: int
    http_requests: int
    feed_messages: int
    last_seq: int
    frames_sent: int
    garbage_sent: int
    dropped: int
    client_messages: int
    faults: Mapping[str, int]
    connect_attempts: int = 0
    connect_rate_limited: int = 0
    connect_banned: int = 0
    connect_window_max: int = 0
    over_limit_errors: int = 0
    inbound_rate_closes: int = 0
    max_inbound_per_window: int = 0
