"""The book and its sync state, with no I/O: :class:`BookSync`.

Fed by hand (``load`` a snapshot, ``push`` diffs) it is a complete, testable
order book; :class:`~wsmux.book.OrderBook` feeds it from a stream and a
snapshot fetcher. States::

    buffering --load(snapshot)--> bridging --first diff applied--> synced
        ^   (diffs are kept)         |  (the snapshot is the book)     |
        |                            | a diff starts past it: "stale"  |
        +-------- reset(), or a broken sequence, a crossed book or a --+
                  checksum mismatch (OutOfSync)

A book that is out of sync is empty: nothing crossed, stale or half-applied
is ever visible.
"""

from __future__ import annotations

import collections
import decimal
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple, NoReturn

import anyio

from .._exceptions import WsmuxError
from ._levels import Level, Side, to_decimal
from ._rules import BinanceSpotRule, SyncRule

__all__ = ["BookStatistics", "BookSync", "OutOfSync"]

_MALFORMED = (KeyError, IndexError, TypeError, ValueError, decimal.InvalidOperation)


class OutOfSync(WsmuxError):
    """The book lost sync (a gap in the ids, a crossed book, a checksum mismatch).

    Raised by :meth:`BookSync.push` and :meth:`BookSync.load` after the book
    has emptied itself; :class:`~wsmux.book.OrderBook` catches it and resyncs.

    Attributes:
        reason: What broke, for logs (``"gap"``, ``"crossed"``, ``"checksum"``, ...).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"order book out of sync: {reason}")
        self.reason = reason


class BookStatistics(NamedTuple):
    """Counters of one book, as :meth:`BookSync.statistics` returns them."""

    snapshots: int
    """Snapshots loaded (refetches of a stale snapshot included)."""
    resyncs: int
    """Times the book was thrown away and rebuilt (not counting the first sync)."""
    applied: int
    """Diffs applied."""
    dropped: int
    """Diffs dropped: older than the snapshot, duplicates, or past the buffer's size."""
    buffered: int
    """Diffs waiting for a snapshot now."""
    last_reason: str | None
    """Why the last resync happened."""


#: A checksum callback: given the book (with the diff applied) and the diff,
#: True when the diff's checksum matches the book.
Checksum = Callable[["BookSync", Any], bool]


class BookSync:
    """An L2 order book kept from a snapshot plus diffs, under a :class:`SyncRule`.

    Prices and quantities are :class:`~decimal.Decimal` (exact, parsed from
    the exchange's strings). A level whose quantity is zero is removed.
    Readers see either a book in sync or an empty one (:attr:`synced` False).
    """

    def __init__(
        self,
        rule: SyncRule | None = None,
        *,
        checksum: Checksum | None = None,
        max_buffer: int = 10_000,
        on_update: Callable[[BookSync], object] | None = None,
    ) -> None:
        """Create an empty book, waiting for a snapshot.

        Args:
            rule: How diffs chain; default :class:`BinanceSpotRule`.
            checksum: Called after each applied diff with the book and the
                diff; False means the book is wrong: it resyncs.
            max_buffer: Diffs kept while waiting for a snapshot; past it the
                oldest are dropped (a snapshot newer than them needs none).
            on_update: Called with the book each time it changes while in
                sync (the snapshot loaded, a diff applied). Keep it quick.

        Raises:
            ValueError: If ``max_buffer`` is below 1.
        """
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.rule = rule if rule is not None else BinanceSpotRule()
        self._checksum, self._on_update = checksum, on_update
        self._bids, self._asks = Side(bids=True), Side(bids=False)
        self._buffer: collections.deque[Any] = collections.deque(maxlen=max_buffer)
        self._state: Literal["buffering", "bridging", "synced"] = "buffering"
        self._last_id: int | None = None
        self._in_sync = anyio.Event()
        self._snapshots = self._resyncs = self._applied = self._dropped = 0
        self._last_reason: str | None = None

    # -- reading -------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether the book holds a snapshot (plus the diffs after it) right now."""
        return self._state != "buffering"

    @property
    def last_update_id(self) -> int | None:
        """The id the book is at (the snapshot's, then each applied diff's); None out of sync."""
        return self._last_id

    def bids(self, depth: int | None = None) -> list[Level]:
        """The bid levels, best (highest) first, as ``(price, qty)``; None depth: all."""
        return self._bids.levels(depth)

    def asks(self, depth: int | None = None) -> list[Level]:
        """The ask levels, best (lowest) first, as ``(price, qty)``; None depth: all."""
        return self._asks.levels(depth)

    def best_bid(self) -> Level | None:
        """The highest bid, or None."""
        return self._bids.best()

    def best_ask(self) -> Level | None:
        """The lowest ask, or None."""
        return self._asks.best()

    async def wait_synced(self) -> None:
        """Wait until the book is in sync (at once if it is)."""
        await self._in_sync.wait()

    def statistics(self) -> BookStatistics:
        """A snapshot of the counters."""
        return BookStatistics(
            self._snapshots,
            self._resyncs,
            self._applied,
            self._dropped,
            len(self._buffer),
            self._last_reason,
        )

    def __repr__(self) -> str:
        bid, ask = self.best_bid(), self.best_ask()
        top = f"{bid[0] if bid else '-'}/{ask[0] if ask else '-'}"
        return (
            f"<{type(self).__name__} {self._state} id={self._last_id} {top} "
            f"levels={len(self._bids)}/{len(self._asks)} resyncs={self._resyncs}>"
        )

    # -- feeding -------------------------------------------------------------

    def reset(self, reason: str) -> None:
        """Throw the book and the buffered diffs away; wait for a new snapshot.

        Args:
            reason: Why, kept in :meth:`statistics` (``"connection gap"``, ...).
        """
        self._buffer.clear()
        self._unsync()
        self._resyncs += 1
        self._last_reason = reason

    def load(self, snapshot: Mapping[str, Any]) -> bool:
        """Load a snapshot, then the buffered diffs that follow it.

        Args:
            snapshot: ``{"lastUpdateId": n, "bids": [[p, q], ...], "asks": [...]}``.

        Returns:
            True when the book is in sync; False when the snapshot is older
            than the first buffered diff it needs (fetch a newer one: the
            diffs stay buffered).

        Raises:
            OutOfSync: If the snapshot is malformed or crossed, or a buffered
                diff breaks the sequence (the book has been reset).
        """
        self._snapshots += 1
        self._bids.clear()
        self._asks.clear()
        try:
            snapshot_id = int(snapshot["lastUpdateId"])
            self._set_levels(snapshot["bids"], snapshot["asks"])
        except _MALFORMED as exc:
            self._fail(f"malformed snapshot ({exc!r})")
        self._check_crossed()
        self._last_id = snapshot_id
        self._state = "bridging"
        pending = list(self._buffer)
        self._buffer.clear()
        for i, diff in enumerate(pending):
            if not self.push(diff):
                self._buffer.extend(pending[i + 1 :])
                return False
        self._in_sync.set()
        if self._state == "bridging" and self._on_update is not None:
            self._on_update(self)  # (an applied diff has told it already)
        return True

    def push(self, diff: Any) -> bool:
        """Take one diff: buffer it, apply it or drop it, as the rule says.

        Returns:
            False when the snapshot turned out stale (this diff starts past
            it): the book is empty again and keeps this diff buffered; fetch
            a newer snapshot and :meth:`load` it. True otherwise.

        Raises:
            OutOfSync: If the diff breaks the sequence, is malformed, crosses
                the book or fails the checksum (the book has been reset).
        """
        state = self._state
        if state == "buffering":
            if len(self._buffer) == self._buffer.maxlen:
                self._dropped += 1
            self._buffer.append(diff)
            return True
        last = self._last_id
        if last is None:  # pragma: no cover - bridging and synced always have an id
            raise RuntimeError("book in sync without an id")
        try:
            rule = self.rule
            step = rule.first(last, diff) if state == "bridging" else rule.next(last, diff)
        except _MALFORMED as exc:
            self._fail(f"malformed diff ({exc!r})")
        if step == "drop":
            self._dropped += 1
            return True
        if step == "stale":
            self._unsync()
            self._buffer.append(diff)
            return False
        if step != "apply":
            self._fail(f"gap before {diff!r:.120}")
        self._apply(diff)
        return True

    # -- inside ----------------------------------------------------------------

    def _apply(self, diff: Any) -> None:
        try:
            bids, asks = self.rule.levels(diff)
            self._set_levels(bids, asks)
            last = self.rule.last_id(diff)
        except _MALFORMED as exc:
            self._fail(f"malformed diff ({exc!r})")
        self._check_crossed()
        if self._checksum is not None and not self._checksum(self, diff):
            self._fail("checksum mismatch")
        self._last_id = last
        self._applied += 1
        self._state = "synced"
        if self._on_update is not None:
            self._on_update(self)

    def _set_levels(self, bids: Iterable[Any], asks: Iterable[Any]) -> None:
        for side, levels in ((self._bids, bids), (self._asks, asks)):
            for price, qty in levels:
                side.set(to_decimal(price), to_decimal(qty))

    def _check_crossed(self) -> None:
        bid, ask = self._bids.best(), self._asks.best()
        if bid is not None and ask is not None and bid[0] >= ask[0]:
            self._fail(f"crossed book (bid {bid[0]} >= ask {ask[0]})")

    def _unsync(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._state, self._last_id = "buffering", None
        if self._in_sync.is_set():
            self._in_sync = anyio.Event()

    def _fail(self, reason: str) -> NoReturn:
        self.reset(reason)
        raise OutOfSync(reason)
