"""Reading a stream in batches: everything buffered, handed over in one step.

A mixin of :class:`~wsmux.fanout._stream.Stream` (its own module for size):
``receive_batch_nowait``, ``receive_batch`` and ``batches()`` keep the
single reads' contract (a lag or a gap is never inside a batch) while one
wake-up of the reading task takes a whole burst.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import ConnectionGap, StreamClosed
from ._marks import _AGAIN, _OPEN, CHECKPOINT_EVERY, GAP, StreamState
from ._readers import Batches

__all__ = ["BatchReads"]

_Deque = collections.deque


class BatchReads:
    """The batch reads of a stream.

    Its state lives in the slots of :class:`~wsmux.fanout._stream.Stream`
    (declared here for the type checker, which cannot see that; hence the
    ``type: ignore[misc]`` on assignments).
    """

    __slots__ = ()

    _buf: Any
    _lost: int
    _gap_pending: bool
    _state: StreamState
    _delivered: int
    _space: anyio.Event | None
    _maxsize: int
    _reads: int
    gaps: str

    if TYPE_CHECKING:

        def receive_nowait(self) -> Any: ...

        async def _next_wake(self) -> Any: ...

        async def _checkpoint(self) -> None: ...

    def receive_batch_nowait(self, limit: int | None = None) -> list[Any]:
        """Return every buffered message (at most ``limit``) without waiting.

        The same contract as :meth:`receive_nowait`, for many messages at
        once: a lag or a gap is never inside a batch. Messages lost before
        the buffered ones raise StreamLagged first; a gap ends the batch
        before it and is raised by the next call.

        Args:
            limit: The most messages to return (default: all buffered).

        Returns:
            One message or more, oldest first.

        Raises:
            ValueError: ``limit`` is not an int >= 1.
            StreamLagged: Messages were lost to overflow since the last read.
            ConnectionGap: The connection was replaced here (``gaps="raise"``).
            anyio.WouldBlock: Nothing is buffered.
            anyio.EndOfStream: The multiplexer exited cleanly and the buffer
                is drained.
            StreamClosed: The stream was closed.
            Exception: The error the multiplexer died of, once drained.
        """
        buf = self._buf
        if limit is not None and (limit.__class__ is not int or limit < 1):
            raise ValueError(f"limit must be an int >= 1 or None, not {limit!r}")
        if not buf or self._lost or self._gap_pending:
            return [self.receive_nowait()]  # raises: nothing to give, or a report first
        if (
            buf.__class__ is _Deque
            and self.gaps != "raise"
            and (limit is None or limit >= len(buf))
        ):
            batch = list(buf)  # a plain buffer with no gap marker: all of it
            buf.clear()
        else:
            # One at a time (a timed or keyed buffer records or unkeys each).
            batch = []
            take = len(buf) if limit is None else limit
            popleft = buf.popleft
            while buf and take:
                msg = popleft()
                if msg is GAP:
                    if not batch:
                        raise ConnectionGap(
                            "the connection was lost and replaced; messages may be missing"
                        )
                    buf.appendleft(msg)  # ends the batch; the next call raises it
                    break
                batch.append(msg)
                take -= 1
        self._delivered += len(batch)  # type: ignore[misc]
        if self._space is not None and len(buf) < self._maxsize:
            self._space.set()
            self._space = None  # type: ignore[misc]
        return batch

    async def receive_batch(self, limit: int | None = None) -> list[Any]:
        """Wait for a message, then return every one buffered (at most ``limit``).

        One wake-up of the reading task hands over a whole burst. Lag, gaps
        and the end are reported as by :meth:`receive_batch_nowait`.

        Args:
            limit: The most messages to return (default: all buffered).

        Returns:
            One message or more, oldest first.

        Raises:
            ValueError: ``limit`` is not an int >= 1.
            StreamLagged: Messages were lost to overflow since the last read.
            ConnectionGap: The connection was replaced here (``gaps="raise"``).
            anyio.EndOfStream: The multiplexer exited cleanly and the buffer
                is drained.
            StreamClosed: The stream was closed.
            Exception: The error the multiplexer died of, once drained.
        """
        return await self._batch(limit, False)

    async def _batch(self, limit: int | None, stop: bool) -> list[Any]:
        """``receive_batch``; with ``stop``, the end raises StopAsyncIteration."""
        if limit is not None and (limit.__class__ is not int or limit < 1):
            raise ValueError(f"limit must be an int >= 1 or None, not {limit!r}")
        if self._reads >= CHECKPOINT_EVERY:
            await self._checkpoint()
        while not self._buf and self._state is _OPEN and not self._lost and not self._gap_pending:
            try:
                msg = await self._next_wake()
            except StopAsyncIteration:
                break  # the end: receive_batch_nowait says which
            if msg is not _AGAIN:
                # Handed over: with what was buffered since, unless a report
                # (a lag, a gap) comes first.
                buf = self._buf
                if limit == 1 or not buf or self._lost or self._gap_pending or buf[0] is GAP:
                    batch = [msg]
                else:
                    batch = [msg]
                    batch += self.receive_batch_nowait(None if limit is None else limit - 1)
                self._reads += len(batch)  # type: ignore[misc]
                return batch
        try:
            batch = self.receive_batch_nowait(limit)
        except (anyio.EndOfStream, StreamClosed):
            if stop:
                raise StopAsyncIteration from None
            raise
        self._reads += len(batch)  # type: ignore[misc]
        return batch

    def batches(self, limit: int | None = None) -> AsyncIterator[list[Any]]:
        """Iterate over batches: ``async for batch in stream.batches():``.

        Each batch is every message buffered when the reader got to it (at
        most ``limit``), never empty. Iteration ends as ``async for msg in
        stream`` does; StreamLagged and ConnectionGap are raised between
        batches, and iterating again goes on after them.

        Args:
            limit: The most messages per batch (default: all buffered).

        Returns:
            An async iterator of lists.

        Raises:
            ValueError: ``limit`` is not an int >= 1.
        """
        if limit is not None and (limit.__class__ is not int or limit < 1):
            raise ValueError(f"limit must be an int >= 1 or None, not {limit!r}")
        return Batches(self, limit)
