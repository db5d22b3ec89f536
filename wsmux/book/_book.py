"""The live order book: :class:`OrderBook` keeps a :class:`BookSync` from a stream.

One task (``await book.run()``, or ``async with book:``) reads the diffs from
a stream opened with ``gaps="raise"`` and fetches snapshots with the
caller's coroutine. The sync procedure, each time::

    wait until connected -> fetch a snapshot while buffering diffs -> load it
        -> stale (a buffered diff starts past it)? fetch again, keep the buffer
        -> apply diffs as they come, each checked by the rule
    ConnectionGap, StreamLagged, OutOfSync -> empty the book, start over

Fetching only once connected matters: a snapshot taken while disconnected is
older than the first diff the new connection brings, with updates in between
that nobody will ever send.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import anyio
import anyio.abc

from .._exceptions import ConnectionGap, MultiplexerClosed, StreamLagged
from ..fanout._stream import Stream
from ._rules import SyncRule
from ._sync import BookSync, Checksum, OutOfSync

__all__ = ["BookSource", "OrderBook", "SnapshotFetcher"]

log = logging.getLogger("wsmux.book")

#: ``fetch_snapshot(symbol)``: ``{"lastUpdateId": n, "bids": [[p, q], ...], "asks": [...]}``.
SnapshotFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]


class BookSource(Protocol):
    """What an :class:`OrderBook` needs of a multiplexer (or a pool)."""

    def stream_filter(
        self,
        filters: Any = ...,
        *,
        maxsize: int = ...,
        gaps: Literal["raise", "ignore"] = ...,
        topics: Iterable[str] = ...,
    ) -> Stream:
        """Open a stream of the messages ``filters`` selects."""
        ...

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a connection is open."""
        ...


class OrderBook(BookSync):
    """An L2 order book of one symbol, kept in sync from a multiplexer's depth diffs.

    Example::

        async def fetch(symbol):
            ...  # GET /api/v3/depth?symbol=... -> {"lastUpdateId", "bids", "asks"}

        async with Multiplexer(url) as mux, OrderBook(mux, "BTCUSDT", fetch) as book:
            await book.wait_synced()
            print(book.best_bid(), book.best_ask())

    The reading side (``bids()``, ``best_ask()``, ``statistics()``, ...) is
    :class:`BookSync`'s: the book is empty while out of sync, never crossed.
    """

    def __init__(
        self,
        source: BookSource,
        symbol: str,
        fetch_snapshot: SnapshotFetcher,
        *,
        rule: SyncRule | None = None,
        filters: Any = None,
        topics: Iterable[str] = (),
        checksum: Checksum | None = None,
        maxsize: int = 10_000,
        retry_delay: float = 0.5,
        on_update: Callable[[BookSync], object] | None = None,
    ) -> None:
        """Create the book; nothing is read until it runs.

        Args:
            source: The multiplexer (or pool) carrying the diffs.
            symbol: The symbol, passed to ``fetch_snapshot`` and, by default,
                matched against the diffs' ``"s"``.
            fetch_snapshot: Coroutine function returning the REST snapshot.
                An ``OSError`` (network, HTTP error from urllib) is logged and
                retried after ``retry_delay``; any other error ends :meth:`run`.
            rule: How diffs chain; default :class:`BinanceSpotRule`.
            filters: Which messages are this symbol's diffs; default
                ``{"e": "depthUpdate", "s": symbol}``.
            topics: Topics the stream needs subscribed (``["btcusdt@depth"]``).
            checksum: See :class:`BookSync`.
            maxsize: Size of the stream's buffer and of the diff buffer kept
                while a snapshot is fetched.
            retry_delay: Seconds between snapshot fetches after a stale
                snapshot or a failed fetch.
            on_update: See :class:`BookSync`.

        Raises:
            ValueError: If ``maxsize`` is below 1 or ``retry_delay`` negative.
        """
        super().__init__(rule, checksum=checksum, max_buffer=maxsize, on_update=on_update)
        if retry_delay < 0:
            raise ValueError("retry_delay must be >= 0")
        self.symbol = symbol
        self._source, self._fetch = source, fetch_snapshot
        self._filters = {"e": "depthUpdate", "s": symbol} if filters is None else filters
        self._topics, self._maxsize, self._retry_delay = tuple(topics), maxsize, retry_delay
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> Self:
        """Start :meth:`run` in a task of its own.

        Raises:
            RuntimeError: If the book is already running.
        """
        if self._tg is not None:
            raise RuntimeError(f"{self!r} is already running")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self.run, name=f"wsmux.book {self.symbol}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        """Stop the book; an error that ended :meth:`run` is raised here, unwrapped."""
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(et, e, tb)
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def run(self) -> None:
        """Keep the book in sync until the source ends cleanly.

        Raises:
            Exception: The error the multiplexer died of, or one that
                ``fetch_snapshot`` raised other than ``OSError``.
        """
        stream = self._source.stream_filter(
            self._filters, maxsize=self._maxsize, gaps="raise", topics=self._topics
        )
        async with stream:
            delay = 0.0
            while True:
                applied = self._applied
                try:
                    if not await self._sync(stream, delay):
                        return
                    async for diff in stream:
                        if not self.push(diff):
                            break
                    else:
                        return
                    log.debug("%s: snapshot older than the stream; fetching again", self.symbol)
                    delay = 0.0
                    continue
                except OutOfSync as exc:
                    log.info("%s: %s; resyncing", self.symbol, exc.reason)
                except (ConnectionGap, StreamLagged) as exc:
                    reason = "connection gap" if isinstance(exc, ConnectionGap) else str(exc)
                    log.info("%s: %s; resyncing", self.symbol, reason)
                    self.reset(reason)
                # A book that broke before applying anything waits before the next fetch.
                delay = self._retry_delay if self._applied == applied else 0.0

    async def _sync(self, stream: Stream, delay: float) -> bool:
        """Fetch and load snapshots until in sync; False if the stream ended."""
        while True:
            try:
                await self._source.wait_connected()
            except MultiplexerClosed:
                await _drain(stream)  # its end, or the error the multiplexer died of
                return False
            snapshot = await self._fetch_buffering(stream, delay)
            if snapshot is None:
                return False
            if self.load(snapshot):
                return True
            delay = self._retry_delay

    async def _fetch_buffering(self, stream: Stream, delay: float) -> Mapping[str, Any] | None:
        """Fetch a snapshot while the diffs that come meanwhile are buffered.

        Returns None if the stream ended first. Errors are kept out of the
        task group and raised as they are, not wrapped in an ExceptionGroup.
        """
        snapshot: Mapping[str, Any] | None = None
        error: BaseException | None = None
        async with anyio.create_task_group() as tg:

            async def fetch() -> None:
                nonlocal snapshot, error
                try:
                    snapshot = await self._fetch_retrying(delay)
                except Exception as exc:
                    error = exc
                tg.cancel_scope.cancel()

            tg.start_soon(fetch)
            try:
                async for diff in stream:
                    self.push(diff)  # buffering: kept until the snapshot is in
            except Exception as exc:
                error = exc
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        return snapshot

    async def _fetch_retrying(self, delay: float) -> Mapping[str, Any]:
        while True:
            if delay:
                await anyio.sleep(delay)
            try:
                return await self._fetch(self.symbol)
            except OSError as exc:
                log.warning("%s: snapshot fetch failed (%r); retrying", self.symbol, exc)
                delay = self._retry_delay or 0.1


async def _drain(stream: Stream) -> None:
    """Read a stream to its end, raising only the error it ends with."""
    while True:
        try:
            await stream.receive()
        except (ConnectionGap, StreamLagged):
            continue
        except anyio.EndOfStream:
            return
