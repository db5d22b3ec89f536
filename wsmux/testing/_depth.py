"""The feed server's own order books, from which its depth diffs are made.

A :class:`DepthBook` is a real L2 book per symbol, in integer ticks of 0.01,
that never crosses: every diff moves a mid price, removes the levels the
move would cross (quantity ``"0"``), and sets a few levels on each side. The
diff carries Binance's update ids (``U``, ``u``, ``pu``); the REST snapshot
(``lastUpdateId``, ``bids``, ``asks``) is the book as of its last ``u``, so a
client following Binance's sync rules ends with exactly this book.
No I/O; it runs on the server loop only.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["DepthBook", "ticks_to_str"]

#: Levels kept on each side, at most (the farthest are removed as the mid moves).
_WIDTH = 40


def ticks_to_str(ticks: int) -> str:
    """Format a price in ticks of 0.01 as exchanges do (``270000`` -> ``"2700.00"``)."""
    return f"{ticks // 100}.{ticks % 100:02d}"


class DepthBook:
    """One symbol's book: bids below the mid, asks above it, in ticks.

    Attributes:
        last_id: The last update id (``u``) applied.
        mid: The mid price, in ticks; bids are below it, asks above.
    """

    __slots__ = ("_asks", "_bids", "last_id", "mid")

    def __init__(self, price: float, first_id: int, rng: random.Random) -> None:
        """Create a book around ``price`` with ``_WIDTH // 2`` levels a side.

        Args:
            price: The starting mid price.
            first_id: The snapshot id of the starting book.
            rng: Source of the quantities.
        """
        self.mid = max(2 * _WIDTH, round(price * 100))
        self.last_id = first_id
        self._bids: dict[int, str] = {}
        self._asks: dict[int, str] = {}
        for i in range(1, _WIDTH // 2 + 1):
            self._bids[self.mid - i] = _qty(rng)
            self._asks[self.mid + i] = _qty(rng)

    def step(self, rng: random.Random) -> dict[str, Any]:
        """Move the book by one diff and return the diff's fields.

        Returns:
            ``U``, ``u``, ``pu``, ``b`` and ``a``: each side sets at least one level.
        """
        mid = self.mid = max(2 * _WIDTH, self.mid + rng.randint(-3, 3))
        bids: dict[int, str] = {}
        asks: dict[int, str] = {}
        # What the move crossed, or left too far away, goes first.
        for p in self._bids:
            if p >= mid or p < mid - _WIDTH:
                bids[p] = "0"
        for p in self._asks:
            if p <= mid or p > mid + _WIDTH:
                asks[p] = "0"
        for side, sign in ((bids, -1), (asks, 1)):
            for _ in range(rng.randint(1, 3)):
                price = mid + sign * rng.randint(1, _WIDTH)
                side[price] = "0" if rng.random() < 0.2 else _qty(rng)
        for book, changes in ((self._bids, bids), (self._asks, asks)):
            for p, q in changes.items():
                if q == "0":
                    book.pop(p, None)
                else:
                    book[p] = q
        prev = self.last_id
        self.last_id = prev + rng.randint(1, 3)
        return {
            "U": prev + 1,
            "u": self.last_id,
            "pu": prev,
            "b": [[ticks_to_str(p), q] for p, q in sorted(bids.items(), reverse=True)],
            "a": [[ticks_to_str(p), q] for p, q in sorted(asks.items())],
        }

    def snapshot(self, limit: int | None = None) -> dict[str, Any]:
        """The book as Binance's ``GET /api/v3/depth`` returns it.

        Args:
            limit: Levels per side, best first; None gives them all.

        Returns:
            ``{"lastUpdateId": u, "bids": [[price, qty], ...], "asks": [...]}``.
        """
        bids = sorted(self._bids.items(), reverse=True)[:limit]
        asks = sorted(self._asks.items())[:limit]
        return {
            "lastUpdateId": self.last_id,
            "bids": [[ticks_to_str(p), q] for p, q in bids],
            "asks": [[ticks_to_str(p), q] for p, q in asks],
        }


def _qty(rng: random.Random) -> str:
    return f"{rng.uniform(0.001, 5.0):.3f}"
