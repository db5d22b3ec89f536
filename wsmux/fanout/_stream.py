"""Per-subscriber bounded buffers with an overflow policy.

A :class:`Stream` is filled by the hub (synchronously, from the reader) and
drained by a consumer task (or several). Reading a buffered message costs no event-loop
round trip; every :data:`CHECKPOINT_EVERY` reads the consumer still yields, so
a busy consumer lets other tasks run. The hub is told when a buffer climbs to
half full, so the reader can yield and let consumers catch up before a burst
overflows them.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Final, Literal, Protocol, TypeAlias

import anyio
import anyio.lowlevel

from .._exceptions import ConnectionGap, StreamClosed, StreamLagged
from ._batch import BatchReads
from ._conflate import Key, KeyedBuffer
from ._latency import LatencyHistogram, TimedBuffer
from ._marks import _AGAIN, _CLOSED, _ENDED, _OPEN, CHECKPOINT_EVERY, GAP, StreamState
from ._readers import set_waiter, wait_for_put, wake_one
from ._statistics import StreamStatistics
from ._wake import Handoff

__all__ = ["CHECKPOINT_EVERY", "GAP", "Key", "Overflow", "Stream", "StreamStatistics"]

Overflow: TypeAlias = Literal["lag", "drop_oldest", "drop_newest", "block", "conflate"]
_POLICIES: Final = ("lag", "drop_oldest", "drop_newest", "block", "conflate")

_Future = asyncio.Future
_Handoff = Handoff
_Deque = collections.deque


class _Owner(Protocol):
    _pressure: bool
    clock: Callable[[], float]

    def _discard(self, stream: Stream, lost: int) -> None: ...


class Stream(BatchReads):
    """An independent, filtered view of the messages of one multiplexer.

    Created by ``Multiplexer.stream_filter`` (or ``Hub.open_stream``), never
    directly. Iterate it with ``async for``; close it with ``await
    stream.close()`` or by leaving ``async with stream:``. Iteration ends
    when the multiplexer exits cleanly, and raises the multiplexer's error
    when it dies; messages already buffered are delivered first either way.

    Several tasks may read one stream at once, as workers of one queue: each
    message goes to exactly one of them, and a reader that is cancelled (a
    timeout around ``receive()``, say) leaves the others waiting, under
    asyncio as under trio.

    Under asyncio, ``anext(stream)`` may return the stream's own reusable
    future rather than a coroutine (see :mod:`wsmux.fanout._wake`): await it
    once, as ``async for`` does; a reference kept after that is re-armed by
    the next ``anext()``. ``asyncio.create_task``, ``wait_for`` and
    ``gather`` take it as they took the coroutine.

    With ``overflow="conflate"`` and a ``key`` (a field name or a function
    of the message), the stream holds at most one message per key: a newer
    one replaces the buffered one, keys are read in the order they were last
    updated, replaced messages are counted (``statistics().conflated``) and
    no read ever raises StreamLagged. See :mod:`wsmux.fanout._conflate`.

    Every subscriber sees the same message object: treat messages as
    read-only.
    """

    __slots__ = (
        "__weakref__",
        "_block_at",
        "_buf",
        "_delivered",
        "_dropped",
        "_error",
        "_event",
        "_full_at",
        "_gap_pending",
        "_handoff",
        "_high",
        "_hist",
        "_loop",
        "_lost",
        "_maxsize",
        "_multi",
        "_on_close",
        "_owner",
        "_peak",
        "_policy",
        "_reads",
        "_space",
        "_spare",
        "_stamp",
        "_state",
        "_step",
        "gaps",
        "name",
    )

    def __init__(
        self,
        owner: _Owner,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        gaps: Literal["raise", "ignore"] = "ignore",
        name: str | None = None,
        key: Key | None = None,
        latency: bool = False,
    ) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be an int >= 1, not {maxsize!r}")
        if overflow not in _POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(_POLICIES)}; got {overflow!r}")
        if gaps not in ("raise", "ignore"):
            raise ValueError(f"gaps must be 'raise' or 'ignore', not {gaps!r}")
        if name is not None and not isinstance(name, str):
            # A name is a metrics label and a sort key of stats().named_streams.
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        if (overflow == "conflate") != (key is not None):
            raise ValueError(
                'overflow="conflate" needs key= (a field name or a function of the message)'
                if key is None
                else f'key= is for overflow="conflate" only, not overflow={overflow!r}'
            )
        self.name = name
        self._owner = owner
        self._buf: Any = collections.deque()
        # A conflating buffer bounds itself (one message per key, at most
        # maxsize keys): the stream's own overflow check never fires.
        self._full_at = maxsize
        self._maxsize = maxsize
        self._policy = overflow
        # The reader is asked to yield when the buffer climbs through half
        # full, and again every `_step` more, a step smaller than what a
        # consumer drains per turn, so one that keeps up never overflows.
        self._high = max(1, maxsize // 2)
        self._step = max(1, min(CHECKPOINT_EVERY // 2, (maxsize - self._high) // 4))
        self._block_at = maxsize if overflow == "block" else sys.maxsize
        self._hist: LatencyHistogram | None = None
        timing = None
        if latency:
            self._hist = LatencyHistogram()
            timing = (owner.clock, self._hist)
            self._buf = TimedBuffer(owner.clock, self._hist, GAP)
        if key is not None:
            # Never over capacity, nothing to lose: no reason to make the
            # reader yield for this stream.
            self._buf = KeyedBuffer(self, key, maxsize, GAP, timing)
            self._full_at = self._high = sys.maxsize
        self._event: Any = None  # a future, a Handoff, Readers or an anyio.Event
        self._loop: Any = None  # the consumer's asyncio loop, False under trio
        # What the one asyncio reader of a plain buffer waits on once its
        # loop is known (see _wake): the message comes with the wake-up.
        self._handoff: Handoff | None = None
        self._space: anyio.Event | None = None
        # The future of the last wait, once awaited to the end: re-armed for
        # the next wait when the C future allows it (see _wake.REARM).
        self._spare: asyncio.Future[None] | None = None
        self._state: StreamState = _OPEN
        self._error: BaseException | None = None
        self._lost = 0
        self._gap_pending = False
        self._delivered = 0
        self._dropped = 0
        self._peak = 0
        self._reads = 0
        self._stamp = 0
        self._multi = False
        self._on_close: Callable[[], None] | None = None
        self.gaps = gaps

    def __repr__(self) -> str:
        state = self._state.value
        name = f" {self.name!r}" if self.name else ""
        return (
            f"<Stream{name} {state} {self._policy} buffered={len(self._buf)}/{self._maxsize}"
            f" delivered={self._delivered} dropped={self._dropped}>"
        )

    # -- filled by the hub -------------------------------------------------

    def _put(self, msg: Any) -> None:
        if self._state is not _OPEN:
            return
        event = self._event
        if event is not None and event.__class__ is _Handoff and not event.done():
            # The reader waits (so nothing is buffered): hand the message over.
            self._event = None
            self._delivered += 1
            event.set_result(msg)
            if event._waiting:  # Handoff.wake(), inlined: once per message
                waker = event._waker
                waker.pending.append(event)
                if not waker.scheduled:
                    waker.scheduled = True
                    event.get_loop().call_soon(waker.flush, context=waker.context)
            return
        buf = self._buf
        if len(buf) >= self._full_at:
            policy = self._policy
            if policy == "drop_newest":
                self._dropped += 1
                return
            if policy != "block":
                if (buf.evict() if buf.__class__ is TimedBuffer else buf.popleft()) is GAP:
                    self._gap_pending = True
                else:
                    self._dropped += 1
                    if policy == "lag":
                        self._lost += 1
        buf.append(msg)
        n = len(buf)
        if n > self._peak:
            self._peak = n
        if n >= self._high and (
            n >= self._block_at or (n < self._maxsize and not (n - self._high) % self._step)
        ):
            self._owner._pressure = True
        event = self._event
        if event is not None:
            self._event = None
            if event.__class__ is _Future:
                if not event.done():
                    event.set_result(None)
            else:
                event.set()

    def _mark_gap(self) -> None:
        if self._state is _OPEN and self.gaps == "raise":
            self._buf.append(GAP)
            self._wake()

    def _end(self, error: BaseException | None) -> None:
        if self._state is _OPEN:
            self._state = _ENDED
            self._error = error
            self._wake()

    def _wake(self) -> None:
        event, space = self._event, self._space
        self._event = self._space = None
        if event is not None:
            set_waiter(event)
        if space is not None:
            space.set()

    async def _wait_space(self) -> None:
        """Wait until a ``block`` stream is below its maxsize (or done)."""
        while self._state is _OPEN and len(self._buf) >= self._maxsize:
            if self._space is None:
                self._space = anyio.Event()
            await self._space.wait()

    # -- read by the consumer ----------------------------------------------

    def receive_nowait(self) -> Any:
        """Return the next buffered message without waiting.

        Returns:
            The message.

        Raises:
            StreamLagged: Messages were lost to overflow since the last read.
            ConnectionGap: The connection was replaced here (``gaps="raise"``).
            anyio.WouldBlock: Nothing is buffered.
            anyio.EndOfStream: The multiplexer exited cleanly and the buffer
                is drained.
            StreamClosed: The stream was closed.
            Exception: The error the multiplexer died of, once drained.
        """
        if self._lost:
            lost, self._lost = self._lost, 0
            raise StreamLagged(lost)
        if self._gap_pending:
            self._gap_pending = False
            raise ConnectionGap("the connection was lost and replaced; messages may be missing")
        buf = self._buf
        if buf:
            msg = buf.popleft()
            if self._space is not None and len(buf) < self._maxsize:
                self._space.set()
                self._space = None
            if msg is GAP:
                raise ConnectionGap("the connection was lost and replaced; messages may be missing")
            self._delivered += 1
            return msg
        if self._state is _OPEN:
            raise anyio.WouldBlock
        if self._state is _CLOSED:
            raise StreamClosed("the stream is closed")
        if self._error is not None:
            raise self._error
        raise anyio.EndOfStream

    async def receive(self) -> Any:
        """Wait for the next message and return it.

        Returns:
            The message.

        Raises:
            StreamLagged: Messages were lost to overflow since the last read.
            ConnectionGap: The connection was replaced here (``gaps="raise"``).
            anyio.EndOfStream: The multiplexer exited cleanly and the buffer
                is drained.
            StreamClosed: The stream was closed.
            Exception: The error the multiplexer died of, once drained.
        """
        self._reads += 1
        if self._reads >= CHECKPOINT_EVERY:
            await self._checkpoint()
        while not self._buf and self._state is _OPEN and not self._lost and not self._gap_pending:
            try:
                msg = await self._next_wake()
            except StopAsyncIteration:
                break  # the end: receive_nowait says which
            if msg is not _AGAIN:
                return msg
        return self.receive_nowait()

    async def _next_wake(self) -> Any:
        """Wait for a put or a wake.

        Returns:
            The message handed over, or ``_AGAIN`` (look at the stream again).

        Raises:
            StopAsyncIteration: The stream ended (or was closed) while it waited.
            Exception: What the next read must raise (a lag, a gap, the error).
        """
        handoff = self._handoff
        if handoff is None or self._event is not None or handoff._busy:
            await self._wait()
            return _AGAIN
        self._reads = 0
        handoff.__init__(loop=self._loop)  # type: ignore[misc]
        handoff._busy = True
        self._event = handoff
        try:
            return await handoff
        except BaseException as exc:
            if not handoff.done() or handoff.cancelled() or handoff.exception() is not exc:
                self._take_back(handoff)  # left with an outcome it never read
            raise

    def _resolve(self, handoff: Handoff) -> bool:
        """Resolve a waiting handoff with the next outcome; False if there is none."""
        try:
            msg = self.receive_nowait()
        except anyio.WouldBlock:
            return False
        except (anyio.EndOfStream, StreamClosed):
            handoff.set_exception(StopAsyncIteration())
        except BaseException as exc:
            handoff.set_exception(exc)
        else:
            handoff.set_result(msg)
        handoff._log_traceback = False  # its reader may be gone: nothing to warn about
        if self._event is handoff:
            self._event = None
        handoff.wake()
        return True

    def _take_back(self, handoff: Handoff, waiting: bool = False) -> None:
        """Its reader left (cancelled): give back an outcome it was handed, unread.

        A message goes back to the front of the buffer (or counts as dropped
        if the stream was closed meanwhile), a gap or a lag is reported to
        the next read; the end needs nothing, the stream keeps saying it.

        Args:
            handoff: The stream's handoff.
            waiting: Its task's wake-up is still queued (it stays so).
        """
        handoff._waiting = waiting
        if not waiting:
            handoff._busy = False
        if self._event is handoff:
            self._event = None
        if not handoff.done() or handoff.cancelled():
            return
        exc = handoff.exception()
        if exc is None:
            self._delivered -= 1
            if self._state is _CLOSED:
                self._dropped += 1
                self._owner._discard(self, 1)
                return
            self._buf.appendleft(handoff.result())
        elif self._state is _CLOSED:
            return
        elif exc.__class__ is ConnectionGap:
            self._buf.appendleft(GAP)
        elif exc.__class__ is StreamLagged:
            self._lost += exc.count
        else:
            return
        wake_one(self)  # a reader that arrived meanwhile takes it

    async def _checkpoint(self) -> None:
        """Yield to the event loop: a consumer that never waits lets others run."""
        self._reads = 0
        await anyio.lowlevel.checkpoint()

    async def _wait(self) -> None:
        """Wait until ``_put`` or ``_wake`` is called (or a spurious wake)."""
        await wait_for_put(self)

    def __aiter__(self) -> Stream:
        return self

    def __anext__(self) -> Awaitable[Any]:
        handoff = self._handoff
        if (
            handoff is not None
            and not self._buf
            and self._event is None
            and not handoff._busy
            and self._state is _OPEN
            and not self._lost
            and not self._gap_pending
        ):
            # The one asyncio reader must wait: it awaits the stream's own
            # handoff, re-armed, which brings the message (see _wake).
            self._reads = 0
            handoff.__init__(loop=self._loop)  # type: ignore[misc]
            handoff._busy = True
            self._event = handoff
            return handoff
        return self._anext()

    async def _anext(self) -> Any:
        buf = self._buf
        self._reads += 1
        if self._reads >= CHECKPOINT_EVERY:
            await self._checkpoint()
        while True:
            # Fast path: a buffered message and nothing to report.
            if buf:
                if not self._lost and not self._gap_pending and self._space is None:
                    msg = buf.popleft()
                    if msg is not GAP:
                        self._delivered += 1
                        return msg
                    buf.appendleft(msg)
                break
            if self._state is not _OPEN or self._lost or self._gap_pending:
                break
            await self._wait()
        try:
            return self.receive_nowait()
        except (anyio.EndOfStream, StreamClosed):
            raise StopAsyncIteration from None

    # -- closing and introspection -----------------------------------------

    def close_nowait(self) -> None:
        """Close the stream now: stop receiving, drop what is buffered.

        Closing twice is harmless. A reader waiting on the stream wakes and
        its iteration ends.
        """
        if self._state is _CLOSED:
            return
        handoff = self._handoff
        if (
            handoff is not None
            and handoff._waiting
            and handoff.done()
            and not handoff.cancelled()
            and handoff.exception() is None
        ):
            # A message handed to a reader that has not run yet goes back to
            # the buffer, dropped with it: the reader sees the end instead.
            handoff.reclaim()
            handoff.set_exception(StopAsyncIteration())
            handoff._log_traceback = False
        lost = self.statistics().buffered
        self._dropped += lost
        self._state = _CLOSED
        self._buf.clear()
        self._lost = 0
        self._gap_pending = False
        self._owner._discard(self, lost)
        self._wake()
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    async def close(self) -> None:
        """Close the stream (a coroutine, as in AsyncWebsocketStreamInterface).

        Unregisters it from the multiplexer at once; buffered messages are
        counted as dropped. Closing twice is harmless.
        """
        self.close_nowait()
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Close the stream; the same as :meth:`close`."""
        await self.close()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_nowait()

    @property
    def closed(self) -> bool:
        """True once the stream was closed or its multiplexer ended."""
        return self._state is not _OPEN

    @property
    def maxsize(self) -> int:
        """The most messages the stream buffers."""
        return self._maxsize

    @property
    def overflow(self) -> Overflow:
        """The overflow policy: lag, drop_oldest, drop_newest, block or conflate."""
        return self._policy

    def statistics(self) -> StreamStatistics:
        """Return the stream's counters.

        Returns:
            delivered, dropped, buffered (gap markers not counted), peak, and
            for ``"conflate"`` streams conflated and unkeyed.
        """
        buf = self._buf
        buffered = len(buf)
        if self.gaps == "raise" and buffered:
            buffered -= sum(1 for m in buf if m is GAP)
        latency = self._hist.snapshot() if self._hist is not None else None
        if buf.__class__ is KeyedBuffer:
            return StreamStatistics(
                self._delivered,
                self._dropped,
                buffered,
                self._peak,
                buf.conflated,
                buf.unkeyed,
                latency,
            )
        return StreamStatistics(
            self._delivered, self._dropped, buffered, self._peak, latency=latency
        )
