"""Order books kept from a REST snapshot plus depth diffs.

* :mod:`._levels`: one side of the book, sorted price levels (``Decimal``);
* :mod:`._rules`: the sync rules (Binance spot, Binance futures, a plain
  contiguous sequence), which only read update ids;
* :mod:`._sync`: :class:`BookSync`, the book and its sync state, no I/O;
* :mod:`._book`: :class:`OrderBook`, which feeds a ``BookSync`` from a
  ``gaps="raise"`` stream and a snapshot fetcher, and resyncs.

It imports the exceptions and the fan-out layer's ``Stream`` (for types);
the multiplexer is reached through the small :class:`BookSource` protocol.
"""

from ._book import BookSource, OrderBook, SnapshotFetcher
from ._levels import Level
from ._rules import BinanceFuturesRule, BinanceSpotRule, ContiguousRule, Step, SyncRule
from ._sync import BookStatistics, BookSync, Checksum, OutOfSync

__all__ = [
    "BinanceFuturesRule",
    "BinanceSpotRule",
    "BookSource",
    "BookStatistics",
    "BookSync",
    "Checksum",
    "ContiguousRule",
    "Level",
    "OrderBook",
    "OutOfSync",
    "SnapshotFetcher",
    "Step",
    "SyncRule",
]
