"""Streams of a threaded multiplexer, read from other threads.

:class:`ThreadStream` wraps a :class:`~wsmux.Stream` that lives on the
multiplexer's own loop: each trip there takes every message already
buffered, so a reader that keeps up pays one cross-thread hop per burst.
Its owner lends it the loop thread (:class:`~._loop_thread.LoopOwner`).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.lowlevel

from .._exceptions import MultiplexerClosed, StreamClosed
from ..fanout._stream import Stream, StreamStatistics
from ._loop_thread import LoopOwner

__all__ = ["ThreadStream"]

_EMPTY: Final = object()


class _Raise:
    """A read outcome that is an exception, kept in order among messages."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ThreadStream:
    """A :class:`~wsmux.Stream` of a threaded multiplexer, read from any thread.

    Created by :meth:`MuxThread.stream_filter` or :meth:`MuxThread.listen`.
    Iterate it with ``for msg in stream`` (blocking) or ``async for`` (from
    an asyncio or trio loop, which keeps running meanwhile). Iteration ends
    when the multiplexer stops cleanly and raises its error when it died;
    ``StreamLagged`` and ``ConnectionGap`` are raised as by ``Stream``.

    One reader at a time: several threads may share a stream, but each
    message goes to one of them.

    Attributes:
        timeout: Default seconds a read waits before raising TimeoutError
            (None: wait as long as it takes).
    """

    __slots__ = ("_bridge", "_items", "_lock", "_stream", "timeout")

    def __init__(self, owner: LoopOwner, stream: Stream, timeout: float | None = None) -> None:
        self._bridge = owner._bridge
        self._stream = stream
        self._items: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"<ThreadStream {self._stream!r} local={len(self._items)}>"

    # -- the loop side --------------------------------------------------------

    async def _fetch(self, timeout: float | None) -> None:
        """Move every buffered message to the local queue (on the mux's loop).

        Nothing is taken before the first message is available and nothing
        awaited after, so a cancelled fetch loses no message.
        """
        stream = self._stream
        with anyio.move_on_after(timeout):
            try:
                batch: list[Any] = [await stream.receive()]
            except Exception as exc:
                self._items.append(_Raise(exc))
                return
            try:
                batch += stream.receive_batch_nowait()
            except anyio.WouldBlock:
                pass
            except Exception as exc:
                batch.append(_Raise(exc))
            self._items.extend(batch)

    def _local(self) -> Any:
        """Read the stream directly, once its loop has stopped."""
        try:
            return self._stream.receive_nowait()
        except anyio.WouldBlock:
            raise MultiplexerClosed("the multiplexer's thread has stopped") from None

    def _take(self) -> Any:
        try:
            item = self._items.popleft()
        except IndexError:
            return _EMPTY
        if isinstance(item, _Raise):
            raise item.exc
        return item

    # -- reading -------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> Any:
        """Block until the next message and return it.

        Args:
            timeout: Seconds to wait (default: the stream's ``timeout``).

        Returns:
            The message.

        Raises:
            TimeoutError: Nothing arrived in time.
            StreamLagged: Messages were lost to overflow since the last read.
            ConnectionGap: The connection was replaced here (``gaps="raise"``).
            anyio.EndOfStream: The multiplexer stopped and the stream is drained.
            StreamClosed: The stream was closed.
            RuntimeError: Called from the multiplexer's own thread.
            Exception: The error the multiplexer died of, once drained.
        """
        limit = self.timeout if timeout is None else timeout
        with self._lock:
            msg = self._take()
            if msg is not _EMPTY:
                return msg
            if not self._bridge.submit_wait(self._fetch, limit):
                return self._local()
            msg = self._take()
        if msg is _EMPTY:
            raise TimeoutError(f"no message within {limit}s")
        return msg

    def receive_nowait(self) -> Any:
        """Return a message already received, without waiting for the loop.

        Returns:
            The message.

        Raises:
            anyio.WouldBlock: Nothing is ready in this thread yet.
            StreamLagged: As for :meth:`receive`.
            ConnectionGap: As for :meth:`receive`.
        """
        msg = self._take()
        if msg is _EMPTY:
            if not self._bridge.running:
                return self._local()
            raise anyio.WouldBlock
        return msg

    async def areceive(self, timeout: float | None = None) -> Any:
        """Wait for the next message without blocking the calling event loop.

        For asyncio or trio code in another thread (the main one, say).

        Args:
            timeout: Seconds to wait (default: the stream's ``timeout``).

        Returns:
            The message.

        Raises:
            TimeoutError: Nothing arrived in time.
            StreamLagged: As for :meth:`receive`.
            ConnectionGap: As for :meth:`receive`.
            anyio.EndOfStream: As for :meth:`receive`.
            StreamClosed: As for :meth:`receive`.
        """
        limit = self.timeout if timeout is None else timeout
        msg = self._take()
        if msg is not _EMPTY:
            await anyio.lowlevel.checkpoint()
            return msg
        if not await self._bridge.asubmit_wait(self._fetch, limit):
            return self._local()
        msg = self._take()
        if msg is _EMPTY:
            raise TimeoutError(f"no message within {limit}s")
        return msg

    def receive_batch(self, limit: int | None = None, timeout: float | None = None) -> list[Any]:
        """Block until a message is there, then return every one received (at most ``limit``).

        One cross-thread trip takes a whole burst; lag, gaps and the end are
        reported as by :meth:`Stream.receive_batch`: never inside a batch.

        Args:
            limit: The most messages to return (default: all received).
            timeout: Seconds to wait (default: the stream's ``timeout``).

        Returns:
            One message or more, oldest first.

        Raises:
            ValueError: ``limit`` is not an int >= 1.
            TimeoutError: Nothing arrived in time.
            StreamLagged: As for :meth:`receive`.
            ConnectionGap: As for :meth:`receive`.
            anyio.EndOfStream: As for :meth:`receive`.
            StreamClosed: As for :meth:`receive`.
            RuntimeError: Called from the multiplexer's own thread.
        """
        if limit is not None and (limit.__class__ is not int or limit < 1):
            raise ValueError(f"limit must be an int >= 1 or None, not {limit!r}")
        wait = self.timeout if timeout is None else timeout
        with self._lock:
            if not self._items and not self._bridge.submit_wait(self._fetch, wait):
                try:
                    return self._stream.receive_batch_nowait(limit)
                except anyio.WouldBlock:
                    raise MultiplexerClosed("the multiplexer's thread has stopped") from None
            items = self._items
            if not items:
                raise TimeoutError(f"no message within {wait}s")
            if isinstance(items[0], _Raise):
                raise items.popleft().exc
            batch: list[Any] = []
            while items and (limit is None or len(batch) < limit):
                if isinstance(items[0], _Raise):
                    break  # raised by the next call
                batch.append(items.popleft())
        return batch

    def batches(self, limit: int | None = None) -> Iterator[list[Any]]:
        """Iterate over batches, blocking: ``for batch in stream.batches():``.

        Args:
            limit: The most messages per batch (default: all received).

        Yields:
            Lists of messages, never empty; iteration ends as ``for msg in
            stream`` does.

        Raises:
            ValueError: ``limit`` is not an int >= 1 (at the first batch).
        """
        while True:
            try:
                batch = self.receive_batch(limit)
            except (anyio.EndOfStream, StreamClosed):
                return
            yield batch

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return self.receive()
        except (anyio.EndOfStream, StreamClosed):
            raise StopIteration from None

    def __aiter__(self) -> ThreadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.areceive()
        except (anyio.EndOfStream, StreamClosed):
            raise StopAsyncIteration from None

    # -- closing -------------------------------------------------------------

    def _discard(self) -> None:
        """Drop what was already moved to this side; the stream stays open."""
        self._items.clear()

    def close(self) -> None:
        """Close the stream; what it still holds is dropped. Idempotent."""
        self._items.clear()
        self._bridge.run_sync(self._stream.close_nowait)

    def __enter__(self) -> ThreadStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> ThreadStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once the stream was closed or its multiplexer ended."""
        return self._stream.closed

    def statistics(self) -> StreamStatistics:
        """Return the stream's counters; messages moved to this thread count as buffered.

        Returns:
            delivered, dropped, buffered and peak.
        """
        stats = self._bridge.run_sync(self._stream.statistics)
        local = sum(1 for item in list(self._items) if not isinstance(item, _Raise))
        return stats._replace(delivered=stats.delivered - local, buffered=stats.buffered + local)
