"""Sync rules: how depth diffs chain to a REST snapshot and to each other.

A rule only reads update ids; it never touches the book. It answers two
questions with a :data:`Step`:

* :meth:`SyncRule.first`: given the snapshot's ``lastUpdateId``, what to do
  with a diff while no diff has been applied on top of it yet: ``"drop"`` it
  (the snapshot already holds it), ``"apply"`` it (it bridges the snapshot and
  the stream) or report the snapshot ``"stale"`` (the diff starts past it:
  updates in between are missing, so fetch a newer snapshot);
* :meth:`SyncRule.next`: given the last applied id, ``"drop"`` (an old diff,
  a duplicate), ``"apply"`` (the next one) or ``"gap"`` (updates are missing:
  resync).

No I/O; the rules are plain objects, safe to share between books.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, TypeAlias

__all__ = ["BinanceFuturesRule", "BinanceSpotRule", "ContiguousRule", "Step", "SyncRule"]

#: What to do with a diff: see the module docstring.
Step: TypeAlias = Literal["apply", "drop", "stale", "gap"]


class SyncRule:
    """Base of the sync rules: Binance-style diffs (``"b"``/``"a"`` level lists).

    Subclass it for another venue: override :meth:`first`, :meth:`next` and
    :meth:`last_id`, and set :attr:`bids_key`/:attr:`asks_key` (or override
    :meth:`levels`) if the diffs name their levels differently.

    Attributes:
        bids_key: Key of a diff's bid levels, a list of ``[price, qty]``.
        asks_key: Key of a diff's ask levels.
    """

    bids_key = "b"
    asks_key = "a"

    def first(self, snapshot_id: int, diff: Any) -> Step:
        """Place the first diff after a snapshot.

        Args:
            snapshot_id: The snapshot's ``lastUpdateId``.
            diff: The diff.

        Returns:
            ``"drop"``, ``"apply"`` or ``"stale"``.

        Raises:
            KeyError: If the diff lacks an id field (the book resyncs).
        """
        raise NotImplementedError

    def next(self, last_id: int, diff: Any) -> Step:
        """Place a diff after the last applied one.

        Args:
            last_id: :meth:`last_id` of the last applied diff.
            diff: The diff.

        Returns:
            ``"drop"``, ``"apply"`` or ``"gap"``.

        Raises:
            KeyError: If the diff lacks an id field (the book resyncs).
        """
        raise NotImplementedError

    def last_id(self, diff: Any) -> int:
        """The id the book is at once ``diff`` is applied (Binance: ``u``).

        Raises:
            KeyError: If the diff lacks its id.
        """
        return int(diff["u"])

    def levels(self, diff: Any) -> tuple[Iterable[Any], Iterable[Any]]:
        """The bid and ask levels a diff sets, each a list of ``[price, qty]``."""
        return diff.get(self.bids_key, ()), diff.get(self.asks_key, ())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BinanceSpotRule(SyncRule):
    """Binance spot ``depthUpdate``: ``U`` (first id) and ``u`` (last id).

    After the snapshot, diffs with ``u <= lastUpdateId`` are dropped; the first
    applied diff must have ``U <= lastUpdateId + 1 <= u``; then each diff's
    ``U`` is the previous ``u + 1``. A diff with ``u`` at or below the last
    applied ``u`` is an old one (a duplicate) and is dropped.
    """

    def first(self, snapshot_id: int, diff: Any) -> Step:
        if int(diff["u"]) <= snapshot_id:
            return "drop"
        return "apply" if int(diff["U"]) <= snapshot_id + 1 else "stale"

    def next(self, last_id: int, diff: Any) -> Step:
        if int(diff["u"]) <= last_id:
            return "drop"
        return "apply" if int(diff["U"]) == last_id + 1 else "gap"


class BinanceFuturesRule(SyncRule):
    """Binance USD-M futures ``depthUpdate``: ``U``, ``u`` and ``pu`` (previous ``u``).

    After the snapshot, diffs with ``u < lastUpdateId`` are dropped; the first
    applied diff must have ``U <= lastUpdateId <= u``; then each diff's ``pu``
    is the previous ``u``. A diff with ``u`` at or below the last applied
    ``u`` is an old one (a duplicate) and is dropped.
    """

    def first(self, snapshot_id: int, diff: Any) -> Step:
        if int(diff["u"]) < snapshot_id:
            return "drop"
        return "apply" if int(diff["U"]) <= snapshot_id else "stale"

    def next(self, last_id: int, diff: Any) -> Step:
        if int(diff["pu"]) == last_id:
            return "apply"
        return "drop" if int(diff["u"]) <= last_id else "gap"


class ContiguousRule(SyncRule):
    """A plain sequence number per diff, one more than the last.

    Diffs numbered at or below the snapshot's id (or the last applied one)
    are dropped; the first applied diff is the snapshot's id + 1; then each
    diff is the previous one + 1.

    Attributes:
        field: Key of the sequence number in a diff.
    """

    def __init__(self, field: str = "sequence", *, bids: str = "b", asks: str = "a") -> None:
        """Create the rule.

        Args:
            field: Key of the sequence number in a diff.
            bids: Key of a diff's bid levels.
            asks: Key of a diff's ask levels.
        """
        self.field = field
        self.bids_key, self.asks_key = bids, asks

    def first(self, snapshot_id: int, diff: Any) -> Step:
        seq = int(diff[self.field])
        if seq <= snapshot_id:
            return "drop"
        return "apply" if seq == snapshot_id + 1 else "stale"

    def next(self, last_id: int, diff: Any) -> Step:
        seq = int(diff[self.field])
        if seq <= last_id:
            return "drop"
        return "apply" if seq == last_id + 1 else "gap"

    def last_id(self, diff: Any) -> int:
        return int(diff[self.field])

    def __repr__(self) -> str:
        return f"ContiguousRule({self.field!r})"
