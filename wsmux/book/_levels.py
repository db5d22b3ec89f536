"""One side of an L2 book: price levels kept sorted, best first on the way out.

Prices and quantities are :class:`~decimal.Decimal`, parsed from the strings
exchanges send (a float is parsed from its shortest ``repr``, so ``0.1`` is
``Decimal("0.1")``, not its binary expansion). No I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal
from typing import Any

__all__ = ["Level", "Side", "to_decimal"]

#: One price level: ``(price, quantity)``.
Level = tuple[Decimal, Decimal]


def to_decimal(value: Any) -> Decimal:
    """Parse a price or quantity as exchanges send it.

    Args:
        value: A decimal string (``"27000.10"``), an int or a float.

    Returns:
        The exact decimal value (a float through its shortest ``repr``).

    Raises:
        decimal.InvalidOperation: If ``value`` is a string that is not a number.
        TypeError: If ``value`` is of another type.
    """
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str | int) and not isinstance(value, bool):
        return Decimal(value)
    raise TypeError(f"a price or quantity must be a str, int or float, not {value!r}")


class Side:
    """The bids or the asks: price to quantity, with the prices kept sorted.

    The prices are held ascending in a list (``bisect``), so the best level is
    at one end: the last for bids, the first for asks. A quantity of zero
    removes its level.
    """

    __slots__ = ("_bids", "_prices", "_qty")

    def __init__(self, *, bids: bool) -> None:
        """Create an empty side.

        Args:
            bids: True for the bids (best = highest), False for the asks (best = lowest).
        """
        self._bids = bids
        self._prices: list[Decimal] = []
        self._qty: dict[Decimal, Decimal] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def __repr__(self) -> str:
        return f"<Side {'bids' if self._bids else 'asks'} levels={len(self)} best={self.best()}>"

    def clear(self) -> None:
        """Remove every level."""
        self._prices.clear()
        self._qty.clear()

    def set(self, price: Decimal, qty: Decimal) -> None:
        """Set the quantity at ``price``; zero removes the level."""
        qty_map, prices = self._qty, self._prices
        if not qty:
            if qty_map.pop(price, None) is not None:
                del prices[bisect_left(prices, price)]
            return
        if price not in qty_map:
            prices.insert(bisect_left(prices, price), price)
        qty_map[price] = qty

    def best(self) -> Level | None:
        """The best level, or None when the side is empty."""
        if not self._prices:
            return None
        price = self._prices[-1] if self._bids else self._prices[0]
        return price, self._qty[price]

    def levels(self, depth: int | None = None) -> list[Level]:
        """The levels, best first.

        Args:
            depth: How many levels; None gives them all.
        """
        prices = self._prices
        if self._bids:
            chosen = prices[::-1] if depth is None else prices[: -depth - 1 : -1] if depth else []
        else:
            chosen = prices if depth is None else prices[:depth]
        qty = self._qty
        return [(p, qty[p]) for p in chosen]
