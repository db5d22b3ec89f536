"""The broadcast hub: match each message, hand it to every subscriber.

The hub knows nothing of sockets. The supervisor calls :meth:`Hub.publish`
for each parsed message and, when it returns True, awaits
:meth:`Hub.relieve` so that consumers can catch up (and ``block`` streams can
apply backpressure). Streams and handlers can be added before any message
flows, so none is missed.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel

from .._log import RateLimitedLog
from ._handlers import (
    Handler,
    HandlerErrors,
    SyncHandler,
    decorator,
    feed_handler,
    handler_name,
    is_async_callable,
)
from ._match import _MISSING, Clause, Filters, Index, compile_filters, matches
from ._stream import Key, Overflow, Stream, StreamStatistics

_S = TypeVar("_S", bound=Stream)

__all__ = ["Handler", "Hub"]

# The names the multiplexer and the threads front imported from here.


def _label(target: Stream | SyncHandler) -> str:
    """Name a subscriber in a log line: a stream by its name, else its repr."""
    name = getattr(target, "name", None)
    return f"stream {name!r}" if name else repr(target)


class Hub:
    """Fan one sequence of messages out to filtered streams and handlers.

    Use it as an async context manager (or let a ``Multiplexer`` do so): the
    context runs the tasks of async handlers and, on exit, ends every stream
    and lets the handlers drain.

    Args:
        drain_timeout: On exit, how long async handlers may take to finish
            the messages already buffered for them before they are cancelled.

    Attributes:
        clock: Returns the receipt time (epoch seconds) of the message being
            published; streams that measure latency read it. The default is
            ``time.time``; a multiplexer hands the time its reader took
            when the frame arrived.
        measure_streams: Whether streams opened without ``latency=`` measure
            receipt-to-consumer latency (a multiplexer with ``event_time``
            sets it).
    """

    def __init__(self, *, drain_timeout: float = 5.0) -> None:
        self.clock: Callable[[], float] = time.time
        self.measure_streams = False
        self._index: Index[Any] = Index()
        self._streams: set[Stream] = set()
        self._gap_streams: list[Stream] = []
        self._block_streams: list[Stream] = []
        self._handlers: dict[Handler, SyncHandler | Stream] = {}
        self._pending: list[tuple[Handler, Stream]] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._stamp = 0
        self._drain_timeout = drain_timeout
        self._handler_errors = HandlerErrors()
        self._filter_log = RateLimitedLog(logging.ERROR)
        #: Set by a stream that climbed to half full or a full ``block`` stream.
        self._pressure = False
        #: Messages published.
        self.published = 0
        #: Exceptions raised by filter predicates (the message did not match).
        self.filter_errors = 0
        self._dropped_closed = 0
        self._conflated_closed = 0
        self._running = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._scopes: set[anyio.CancelScope] = set()  # one per handler task

    @property
    def handler_errors(self) -> int:
        """Exceptions raised by handlers, and sync handlers that returned a coroutine."""
        return self._handler_errors.count

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<Hub {state} streams={len(self._streams)} handlers={len(self._handlers)}"
            f" published={self.published}>"
        )

    # -- subscribing ---------------------------------------------------------

    def open_stream(
        self,
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        gaps: Literal["raise", "ignore"] = "ignore",
        name: str | None = None,
        key: Key | None = None,
        latency: bool | None = None,
    ) -> Stream:
        """Open a stream of the messages the filter selects.

        Args:
            filters: ``None`` or ``[]`` for every message, a dict (AND over
                its items) or a list of dicts (OR over them).
            maxsize: The most messages buffered for this stream.
            overflow: What happens when the buffer is full: ``"lag"`` (drop
                the oldest; the next read raises StreamLagged), ``"drop_oldest"``,
                ``"drop_newest"`` (silent but counted), ``"block"`` (the
                publisher waits; slows every subscriber), or ``"conflate"``
                (one message per ``key``, the latest; replaced ones counted).
            gaps: ``"raise"`` to get ConnectionGap at an unplanned reconnect.
            name: A label shown in the stream's repr.
            key: With ``overflow="conflate"`` only: a field name or a
                function of the message naming what a newer message replaces.
            latency: Measure receipt-to-consumer latency
                (``statistics().latency``); None follows ``measure_streams``.

        Returns:
            The open stream; already receiving.

        Raises:
            TypeError: The filter is malformed, or ``name`` is not a str.
            ValueError: An option is out of range, ``"conflate"`` without a
                ``key``, or a ``key`` with another policy.
        """
        return self._open(
            filters,
            lambda: Stream(
                self,
                maxsize=maxsize,
                overflow=overflow,
                gaps=gaps,
                name=name,
                key=key,
                latency=self.measure_streams if latency is None else latency,
            ),
        )

    def _open(self, filters: Filters, make: Callable[[], _S]) -> _S:
        """Compile ``filters``, make the stream, register it (or end it, if closed)."""
        clauses = compile_filters(filters)
        stream = make()
        if self._closed:
            stream._end(self._error)
            return stream
        self._register(stream, clauses)
        return stream

    def _register(self, target: Stream | SyncHandler, clauses: list[dict[str, Any]] | None) -> None:
        target._multi = clauses is not None and len(clauses) > 1
        # One clause: where the index probe alone decides, publish calls
        # _put directly.
        self._index.add(target, clauses, None if target._multi else target._put)
        if isinstance(target, Stream):
            self._streams.add(target)
            if target.gaps == "raise":
                self._gap_streams = [*self._gap_streams, target]
            if target.overflow == "block":
                self._block_streams = [*self._block_streams, target]

    def _discard(self, stream: Stream, lost: int = 0) -> None:
        """Unregister a stream (called by the stream when it closes).

        ``lost`` is what it still held, counted as dropped: an open stream's
        counters are taken whole here; one the hub had ended was counted at
        :meth:`close`, all but these.
        """
        if stream not in self._streams:
            self._dropped_closed += lost
        else:
            self._streams.discard(stream)
            self._index.remove(stream)
            self._gap_streams = [s for s in self._gap_streams if s is not stream]
            self._block_streams = [s for s in self._block_streams if s is not stream]
            counts = stream.statistics()
            self._dropped_closed += counts.dropped
            self._conflated_closed += counts.conflated

    def add_handler(
        self,
        fn: Handler,
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        key: Key | None = None,
    ) -> None:
        """Call ``fn(msg)`` for every message the filter selects.

        A plain function runs inline in the reader and must be quick; one
        that returns a coroutine is an error (the coroutine is closed, logged
        and counted, never run). A coroutine function gets its own stream and
        task, so a slow one never delays the reader or other subscribers;
        ``maxsize`` and ``overflow`` apply to that stream (a lag is logged
        and counted). Exceptions are logged and counted, never propagated.

        Args:
            fn: The handler.
            filters: As for :meth:`open_stream`.
            maxsize: Buffer size for an async handler.
            overflow: Overflow policy for an async handler.
            key: The conflation key of an async handler's stream
                (``overflow="conflate"``).

        Raises:
            TypeError: ``fn`` is not callable, or the filter is malformed.
            ValueError: ``fn`` is already a handler, or the options conflict
                (conflation asked of a plain function).
        """
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        if fn in self._handlers:
            raise ValueError(f"{fn!r} is already a handler")
        if is_async_callable(fn):
            stream = self.open_stream(
                filters, maxsize=maxsize, overflow=overflow, name=handler_name(fn), key=key
            )
            self._handlers[fn] = stream
            if self._tg is not None:
                self._tg.start_soon(
                    self._run_handler, fn, stream, name=f"wsmux handler {handler_name(fn)}"
                )
            else:
                self._pending.append((fn, stream))
            return
        if key is not None or overflow == "conflate":
            # Nothing is buffered for a plain function: it sees every message.
            raise ValueError(
                'overflow="conflate" and key= are for async handlers; a plain function'
                " is called inline for every message"
            )
        clauses = compile_filters(filters)
        entry = SyncHandler(fn, self._handler_errors)
        self._handlers[fn] = entry
        self._register(entry, clauses)

    def remove_handler(self, fn: Handler) -> None:
        """Stop calling a handler; safe from inside the handler itself.

        Args:
            fn: A handler added before.

        Raises:
            KeyError: ``fn`` is not a handler.
        """
        entry = self._handlers.pop(fn, None)
        if entry is None:
            raise KeyError(f"{fn!r} is not a handler")
        if isinstance(entry, Stream):
            entry.close_nowait()
        else:
            self._index.remove(entry)

    def on(self, filters: Filters = None, **options: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_handler`.

        Args:
            filters: As for :meth:`open_stream`.
            **options: ``maxsize``, ``overflow`` and ``key`` for async handlers.

        Returns:
            A decorator that adds the function and returns it unchanged.
        """
        return decorator(self.add_handler, filters, options)

    async def _run_handler(self, fn: Handler, stream: Stream) -> None:
        # A scope of its own: cancelling the task group's scope would also
        # cancel the body of the ``async with`` that entered it.
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        self._running += 1
        if self._running == 1:
            self._idle = anyio.Event()
        try:
            with scope:
                await feed_handler(fn, stream, self._handler_errors)
        finally:
            self._scopes.discard(scope)
            self._running -= 1
            if not self._running:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until every async handler has finished (after :meth:`close`).

        Handlers still busy after ``drain_timeout`` are cancelled.
        """
        with anyio.move_on_after(self._drain_timeout):
            await self._idle.wait()
        if not self._idle.is_set():
            for scope in list(self._scopes):
                scope.cancel()
            await self._idle.wait()

    # -- publishing ----------------------------------------------------------

    def publish(self, msg: Any) -> bool:
        """Hand a message to every stream and handler whose filter selects it.

        Args:
            msg: The parsed message; subscribers share it, unchanged.

        Returns:
            True when the caller should ``await relieve()`` before the next
            publish: a consumer is falling behind or a ``block`` stream is full.
        """
        self.published += 1
        index = self._index
        for target in index.catch_all:
            target._put(msg)
        if not index.keys and not index.scan:
            return self._pressure
        get: Callable[[str, Any], Any]
        if msg.__class__ is dict or isinstance(msg, Mapping):
            get = msg.get
        elif isinstance(msg, list | tuple | str | bytes):
            return self._pressure
        else:
            get = functools.partial(getattr, msg)

        self._stamp = stamp = self._stamp + 1
        for key, values, bools in index.calls:
            value = get(key, _MISSING)
            if value is _MISSING:
                continue
            try:
                call = (bools if value.__class__ is bool else values).get(value)
            except TypeError:  # an unhashable value equals no scalar
                continue
            if call is not None:
                if call.__class__ is list:  # a bucket: check each clause
                    self._deliver(call, msg, stamp)
                else:
                    call(msg)  # the one subscriber's _put
        if index.scan:
            self._deliver(index.scan, msg, stamp)
        return self._pressure

    def _deliver(self, clauses: Sequence[Clause[Any]], msg: Any, stamp: int) -> None:
        for clause in clauses:
            rest = clause.rest
            if rest is not None:
                try:
                    if not matches(rest, msg):
                        continue
                except Exception as exc:
                    self.filter_errors += 1
                    self._filter_log(
                        "filter predicate of %s raised %r; message not matched",
                        _label(clause.target),
                        exc,
                    )
                    continue
            target = clause.target
            if target._multi:
                if target._stamp == stamp:
                    continue
                target._stamp = stamp
            target._put(msg)

    async def relieve(self) -> None:
        """Let consumers catch up; wait while a ``block`` stream is full."""
        self._pressure = False
        for stream in self._block_streams:
            await stream._wait_space()
        await anyio.lowlevel.checkpoint()

    def mark_gap(self) -> None:
        """Record an unplanned reconnect in every ``gaps="raise"`` stream."""
        for stream in self._gap_streams:
            stream._mark_gap()

    # -- lifecycle -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self, error: BaseException | None = None) -> None:
        """End every stream; iteration ends, or raises ``error`` if given.

        Buffered messages are still delivered first. Closing twice keeps the
        first outcome.

        Args:
            error: The fatal error the multiplexer died of, if any.
        """
        if self._closed:
            return
        self._closed = True
        self._error = error
        for stream in self._streams:
            stream._end(error)
            counts = stream.statistics()
            self._dropped_closed += counts.dropped
            self._conflated_closed += counts.conflated
        self._streams.clear()  # ended: no longer counted as open
        self._index = Index()  # nothing matches now: no handler runs after close

    async def __aenter__(self) -> Hub:
        self._idle = anyio.Event()  # bound to the loop that runs the hub
        self._idle.set()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._start_handlers()
        return self

    def _start_handlers(self) -> None:
        if self._tg is None:
            return
        for fn, stream in self._pending:
            self._tg.start_soon(
                self._run_handler, fn, stream, name=f"wsmux handler {handler_name(fn)}"
            )
        self._pending.clear()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.close()
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        tg.cancel_scope.deadline = anyio.current_time() + self._drain_timeout
        return await tg.__aexit__(exc_type, exc, tb)

    def stream_count(self) -> int:
        """Return how many streams are open (async handlers' included)."""
        return len(self._streams)

    def dropped(self) -> int:
        """Return the messages lost to overflow, over all streams ever opened."""
        return self._dropped_closed + sum(s._dropped for s in self._streams)

    def conflated(self) -> int:
        """Return the messages replaced in ``"conflate"`` streams, over all streams ever opened."""
        live: int = sum(s._buf.conflated for s in self._streams if s.overflow == "conflate")
        return self._conflated_closed + live

    def named_statistics(self) -> dict[str, StreamStatistics]:
        """Return the statistics of each open stream that has a name.

        Async handlers' streams are named after the function. A repeated
        name is numbered: ``"ticks"``, ``"ticks #2"``, ...
        """
        out: dict[str, StreamStatistics] = {}
        named = [s for s in self._streams if s.name]
        for stream in sorted(named, key=lambda s: (s.name or "", id(s))):
            name = stream.name or ""
            label, n = name, 1
            while label in out:
                n += 1
                label = f"{name} #{n}"
            out[label] = stream.statistics()
        return out
