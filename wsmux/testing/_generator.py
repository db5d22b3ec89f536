"""The frames :class:`~wsmux.testing.FeedServer` sends: the feed and garbage.

Nothing here does I/O: :class:`FeedGenerator` builds Binance-style feed
messages, :func:`garbage_frame` the frames a consumer must survive, and
:func:`encode` turns what a test passes into a frame.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ._depth import DepthBook

__all__ = [
    "KINDS",
    "FeedGenerator",
    "FeedSpec",
    "Frame",
    "encode",
    "garbage_frame",
    "normalize_topic",
]


KINDS = frozenset({"trade", "depth"})

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
    check its sequence. They are made from a real book per symbol
    (:class:`~._depth.DepthBook`, never crossed), whose snapshot
    :meth:`snapshot` gives.
    """

    __slots__ = (
        "_books",
        "_depth_rng",
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
        self._prices = [27000.0 / (i + 1) for i in range(len(self._symbols))]
        # Depth draws from its own generator.
        self._depth_rng = random.Random(f"{seed}-depth")
        self._books = {
            s: DepthBook(self._prices[i], 1000 * (i + 1), self._depth_rng)
            for i, s in enumerate(self._symbols)
        }
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
            msg = {
                "e": "depthUpdate",
                "E": now_ms,
                "s": self._symbols[i],
                **self._books[self._symbols[i]].step(self._depth_rng),
                "seq": self.seq,
            }
        return orjson.dumps(msg), self._topics[i][kind]

    def snapshot(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        """The REST depth snapshot of ``symbol``'s book, as of its last diff.

        Args:
            symbol: A symbol of the feed.
            limit: Levels per side, best first; None gives them all.

        Returns:
            ``{"lastUpdateId": u, "bids": [[price, qty], ...], "asks": [...]}``.

        Raises:
            KeyError: If ``symbol`` is not one of the feed's.
        """
        return self._books[symbol].snapshot(limit)


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """How ``FeedServer.start_feed`` was asked to run."""

    rate: float | None
    count: int | None
    broadcast: bool
    batch: int
    garbage_ratio: float
    min_clients: int
