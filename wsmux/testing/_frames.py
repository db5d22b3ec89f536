"""Private parts of :mod:`wsmux.testing`: the feed's messages and the records kept.

Nothing here does I/O: :class:`FeedGenerator` builds the frames the server
sends, :class:`ConnectionRecord` and :class:`FeedServerStats` are what it keeps.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

__all__ = [
    "FAULTS",
    "KINDS",
    "ConnectionRecord",
    "FeedGenerator",
    "FeedServerStats",
    "FeedSpec",
    "Frame",
    "encode",
    "garbage_frame",
    "normalize_topic",
]


KINDS = frozenset({"trade", "depth"})

#: Fault names for ``FeedServer.schedule``, with the options each accepts.
FAULTS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "close": frozenset({"code", "reason"}),
        "drop": frozenset(),
        "silence": frozenset({"seconds"}),
        "half_open": frozenset({"seconds"}),
        "garbage": frozenset({"kind", "size"}),
        "refuse": frozenset({"count", "status", "retry_after"}),
        "delay_handshake": frozenset({"seconds", "count"}),
        "accept_then_drop": frozenset({"count"}),
    }
)
_CONN_FAULTS = frozenset({"close", "drop", "silence", "half_open", "garbage"})
_API_ENDPOINTS = frozenset({"listenKey", "userDataStream"})
_NO_KEY = '{"code":-1125,"msg":"This listenKey does not exist."}'

#: A frame ready for the wire: payload and whether it goes out as a text frame.
Frame = tuple[bytes, bool]

_TEXT_GARBAGE = (
    "not json",
    '{"e":"trade","s":',
    "]]]",
    "\x00\x01garbage\x7f",
    "undefined",
    "<html>502 Bad Gateway</html>",
)


def encode(msg: Any) -> Frame:
    """Encode one outgoing message.

    Args:
        msg: A str (sent as text), bytes-like (sent as binary), or anything
            orjson can serialize (sent as JSON text).

    Returns:
        The frame payload and its text flag.

    Raises:
        TypeError: If ``msg`` is not serializable by orjson.
    """
    if isinstance(msg, bytes | bytearray | memoryview):
        return bytes(msg), False
    if isinstance(msg, str):
        return msg.encode(), True
    return orjson.dumps(msg), True


def garbage_frame(rng: random.Random, kind: str, size: int = 2**20 + 1) -> Frame:
    """Build one frame a feed consumer must survive.

    Args:
        rng: Source of randomness (seeded by the server, so runs repeat).
        kind: ``"text"`` (valid UTF-8 that is not JSON), ``"binary"`` (random
            bytes in a binary frame) or ``"oversize"`` (a valid JSON object of
            exactly ``size`` bytes, to trip a client's ``max_size``).
        size: Frame size for ``"oversize"``.

    Returns:
        The frame.

    Raises:
        ValueError: If ``kind`` is unknown or ``size`` is too small to hold JSON.
    """
    if kind == "text":
        return rng.choice(_TEXT_GARBAGE).encode(), True
    if kind == "binary":
        return rng.randbytes(rng.randint(8, 64)), False
    if kind == "oversize":
        head, tail = b'{"e":"oversize","pad":"', b'"}'
        pad = size - len(head) - len(tail)
        if pad < 0:
            raise ValueError(f"oversize frames need at least {len(head) + len(tail)} bytes")
        return head + b"x" * pad + tail, True
    raise ValueError(f"unknown garbage kind {kind!r}; expected text, binary or oversize")


def normalize_topic(topic: str) -> str:
    """Reduce a subscription topic to ``symbol@kind``, dropping options like ``@100ms``."""
    return "@".join(topic.lower().split("@")[:2])


class FeedGenerator:
    """Binance-style trades and depth diffs, pre-encoded with orjson.

    Every message carries a ``seq`` that grows by one per message. Trade ids
    grow by one per symbol; depth diffs chain per symbol (``U == pu + 1``,
    ``u >= U``, the next ``pu`` is this ``u``), so an order-book consumer can
    check its sequence.
    """

    __slots__ = (
        "_depth_ids",
        "_kinds",
        "_prices",
        "_rng",
        "_symbols",
        "_topics",
        "_trade_ids",
        "seq",
    )

    def __init__(self, symbols: Sequence[str], kinds: Sequence[str], seed: int) -> None:
        """Create a generator.

        Args:
            symbols: Symbol names, as they appear in ``"s"``.
            kinds: Message kinds to mix, a subset of ``{"trade", "depth"}``.
            seed: Seed for prices, quantities and the order of messages.
        """
        self._symbols = tuple(symbols)
        self._kinds = tuple(kinds)
        self._rng = random.Random(seed)
        self._trade_ids = [0] * len(self._symbols)
        self._depth_ids = [1000 * (i + 1) for i in range(len(self._symbols))]
        self._prices = [27000.0 / (i + 1) for i in range(len(self._symbols))]
        self._topics = [{k: f"{s.lower()}@{k}" for k in self._kinds} for s in self._symbols]
        self.seq = 0

    def next(self, now_ms: int) -> tuple[bytes, str]:
        """Produce the next message.

        Args:
            now_ms: Event time in milliseconds, for ``"E"`` and ``"T"``.

        Returns:
            The JSON payload and its topic (``"sym0@trade"``, ``"sym3@depth"``).
        """
        rng = self._rng
        i = rng.randrange(len(self._symbols))
        kind = self._kinds[0] if len(self._kinds) == 1 else rng.choice(self._kinds)
        self.seq += 1
        price = self._prices[i] = max(0.01, self._prices[i] * (1.0 + rng.uniform(-1e-3, 1e-3)))
        msg: dict[str, Any]
        if kind == "trade":
            self._trade_ids[i] += 1
            msg = {
                "e": "trade",
                "E": now_ms,
                "s": self._symbols[i],
                "t": self._trade_ids[i],
                "p": f"{price:.2f}",
                "q": f"{rng.uniform(0.001, 2.0):.3f}",
                "T": now_ms,
                "m": rng.random() < 0.5,
                "seq": self.seq,
            }
        else:
            prev = self._depth_ids[i]
            last = self._depth_ids[i] = prev + rng.randint(1, 3)
            qty = f"{rng.uniform(0.0, 5.0):.3f}"
            msg = {
                "e": "depthUpdate",
                "E": now_ms,
                "s": self._symbols[i],
                "U": prev + 1,
                "u": last,
                "pu": prev,
                "b": [[f"{price * 0.9995:.2f}", qty]],
                "a": [[f"{price * 1.0005:.2f}", qty]],
                "seq": self.seq,
            }
        return orjson.dumps(msg), self._topics[i][kind]


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
        subscriptions: Topics subscribed, as the client wrote them.
        sent: Frames written to this connection.
        garbage: Garbage frames among them.
        dropped: Frames dropped because the client did not read fast enough.
        last_seq: ``seq`` of the last feed message queued for this connection.
        silent: The connection is silenced (no data, pings still answered).
        half_open: The server stopped reading (pings go unanswered, no data).
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


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """How ``FeedServer.start_feed`` was asked to run."""

    rate: float | None
    count: int | None
    broadcast: bool
    batch: int
    garbage_ratio: float
    min_clients: int
