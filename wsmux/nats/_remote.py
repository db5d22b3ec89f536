"""Remote streams: the messages of a bridge, read from NATS on another machine.

:class:`RemoteMultiplexer` offers the consumer half of a ``Multiplexer``
(``stream_filter``, ``listen``, ``add_handler``, ``on``, ``stats``) over the
same :class:`~wsmux.fanout.Hub`, so streams, overflow policies,
``StreamLagged`` and ``ConnectionGap`` behave exactly as they do locally.
Each filter is compiled to the narrowest subjects that cover it; the hub's
matcher then applies the whole filter, so a remote stream selects exactly
what a local one would.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.abc
import orjson

from .._log import RateLimitedLog, log, redact_url
from .._mux import _TypedStream
from ..fanout import Filters, Handler, Hub, Overflow, Stream, compile_filters, is_async_callable
from ..fanout._handlers import decorator
from ._conn import connect, require_asyncio, scrub
from ._feed import Wanted, run_core, run_jetstream
from ._stats import RemoteStats
from ._subject import SubjectTemplate, covering

__all__ = ["RemoteMultiplexer"]


class RemoteMultiplexer:
    """Streams and handlers fed by a bridge's NATS subjects.

    Use it as ``async with RemoteMultiplexer("nats://host:4222") as remote:``;
    streams opened before it starts miss nothing that arrives once it has
    subscribed. asyncio only (nats-py): under trio, starting raises
    RuntimeError at once.

    Args:
        nats_url: ``nats://[user:password@]host:port``; credentials never logged.

    Keyword Args:
        subject: The bridge's subject template.
        jetstream: None for core NATS, else the JetStream stream's name.
        deliver: JetStream: ``"new"`` (default), ``"all"``, or a stream
            sequence to start at.
        heartbeat: JetStream: the consumer's idle heartbeat, in seconds; three
            missed heartbeats make the consumer be replaced.
        pending_limit: Core NATS: messages nats-py buffers per subscription
            before dropping (a drop is reported as a gap).
        connect_options: Extra keyword arguments for ``nats.connect``.
        open_timeout: Seconds allowed to reach NATS at start (ConnectionError
            after that, or at once for refused credentials).
        drain_timeout: On exit, how long async handlers may take to finish.
        name: Label for logs, the repr and ``stats()``.

    Raises:
        ValueError: The template is invalid.
    """

    def __init__(
        self,
        nats_url: str,
        *,
        subject: str | SubjectTemplate = "md.{e}.{s}",
        jetstream: str | None = None,
        deliver: Literal["new", "all"] | int = "new",
        heartbeat: float = 1.0,
        pending_limit: int = 1 << 16,
        connect_options: dict[str, Any] | None = None,
        open_timeout: float = 10.0,
        drain_timeout: float = 5.0,
        name: str | None = None,
    ) -> None:
        if not isinstance(nats_url, str):
            raise TypeError(f"nats_url must be a str, not {type(nats_url).__name__}")
        self._url = nats_url
        self._template = (
            subject if isinstance(subject, SubjectTemplate) else SubjectTemplate(subject)
        )
        self._jetstream = jetstream
        self._deliver = deliver
        self._heartbeat = heartbeat
        self._pending_limit = pending_limit
        self._options = dict(connect_options or {})
        self._open_timeout = open_timeout
        self.label = name or f"remote {redact_url(nats_url)}"
        self._hub = Hub(drain_timeout=drain_timeout)
        self._wants: dict[int, set[tuple[str, ...]]] = {}
        self._wanted = Wanted()
        self._nc: Any = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._state = "idle"
        self._parse_log = RateLimitedLog(logging.WARNING)
        self._parse: Callable[[bytes], Any] | None = None
        self._async_parse: Any = None
        self.messages = self.bytes = self.gaps = self.resumes = self.parse_errors = 0
        self.last_sequence = 0
        self._gap_armed = True
        self._hub_entered = False

    def __repr__(self) -> str:
        return f"<RemoteMultiplexer {self.label!r} {self._template.template!r} {self._state}>"

    # -- hooks -------------------------------------------------------------------

    async def _parse_raw_data(self, raw: bytes) -> Any:
        """Turn a payload into a message; None skips it (hook).

        The default parses JSON with orjson; override it (sync or async) to
        build typed models for :meth:`listen`.

        Args:
            raw: The payload the bridge published.

        Returns:
            The message, or None to skip it.
        """
        return orjson.loads(raw)

    # -- streams and handlers ----------------------------------------------------

    def _want(self, key: object, filters: Filters) -> None:
        self._wants[id(key)] = self._template.patterns(filters)
        self._update_subjects()

    def _unwant(self, key: object) -> None:
        if self._wants.pop(id(key), None) is not None:
            self._update_subjects()

    def _update_subjects(self) -> None:
        patterns: set[tuple[str, ...]] = set()
        for p in self._wants.values():
            patterns |= p
        if patterns:
            patterns.add(tuple(self._template.gap_subject.split(".")))
        self._wanted.set(covering(patterns))

    def _track(self, stream: Stream, filters: Filters) -> Stream:
        if stream.closed:
            return stream
        self._want(stream, filters)
        stream._on_close = lambda: self._unwant(stream)
        return stream

    def stream_filter(
        self,
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        gaps: Literal["raise", "ignore"] = "ignore",
        name: str | None = None,
    ) -> Stream:
        """Open a stream of the messages the filter selects.

        Args:
            filters: As for ``Multiplexer.stream_filter``.
            maxsize: The most messages buffered for this stream.
            overflow: ``"lag"``, ``"drop_oldest"``, ``"drop_newest"`` or ``"block"``.
            gaps: ``"raise"`` to get ConnectionGap where messages may be missing.
            name: A label for the stream's repr.

        Returns:
            The stream, already receiving (see :meth:`subscribed`).

        Raises:
            TypeError: The filter is malformed.
            ValueError: An option is out of range.
        """
        stream = self._hub.open_stream(
            filters, maxsize=maxsize, overflow=overflow, gaps=gaps, name=name
        )
        return self._track(stream, filters)

    def listen(
        self, cls: type | tuple[type, ...], filters: Filters = None, **options: Any
    ) -> Stream:
        """Open a stream of parsed messages that are instances of ``cls``.

        For a ``_parse_raw_data`` that returns typed models.

        Args:
            cls: A class or tuple of classes.
            filters: Further filters, matched by attribute.
            **options: As for :meth:`stream_filter`.

        Returns:
            The stream.

        Raises:
            TypeError: ``cls`` is not a class or tuple of classes.
        """
        if not (isinstance(cls, type) or (isinstance(cls, tuple) and cls)):
            raise TypeError(f"listen() needs a class, not {cls!r}")
        hub = self._hub
        stream = _TypedStream(hub, **options)
        stream._kind = cls
        clauses = compile_filters(filters)
        if hub.closed:
            stream._end(hub._error)
            return stream
        hub._register(stream, clauses)
        return self._track(stream, filters)

    def add_handler(
        self,
        fn: Handler,
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
    ) -> None:
        """Call ``fn(msg)`` for each message the filter selects.

        Args:
            fn: A plain function (runs inline, must be quick) or a coroutine
                function (its own stream and task).
            filters: As for :meth:`stream_filter`.
            maxsize: Buffer size for an async handler.
            overflow: Overflow policy for an async handler.

        Raises:
            TypeError: ``fn`` is not callable or the filter is malformed.
            ValueError: ``fn`` is already a handler.
        """
        self._hub.add_handler(fn, filters, maxsize=maxsize, overflow=overflow)
        self._want(fn, filters)

    def remove_handler(self, fn: Handler) -> None:
        """Stop calling a handler.

        Args:
            fn: A handler added before.

        Raises:
            KeyError: ``fn`` is not a handler.
        """
        self._hub.remove_handler(fn)
        self._unwant(fn)

    def on(self, filters: Filters = None, **options: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_handler`.

        Args:
            filters: As for :meth:`stream_filter`.
            **options: ``maxsize`` and ``overflow`` for async handlers.

        Returns:
            A decorator that adds the function and returns it unchanged.
        """
        return decorator(self.add_handler, filters, options)

    async def subscribed(self) -> None:
        """Wait until NATS delivers what every open stream and handler needs.

        In JetStream mode this includes waiting for the stream to exist (the
        bridge creates it); put a deadline around it.

        Raises:
            RuntimeError: The remote multiplexer is not running.
        """
        if self._state != "open":
            raise RuntimeError(f"{self!r} is not running")
        await self._wanted.wait_synced()

    # -- receiving (called by the feed) ------------------------------------------

    async def deliver(self, data: bytes) -> None:
        """Parse one payload and publish it to the hub (called by the feed)."""
        self.messages += 1
        self.bytes += len(data)
        try:
            if self._parse is not None:
                msg = self._parse(data)
            else:
                msg = await self._async_parse(data)
        except Exception as exc:
            self.parse_errors += 1
            self._parse_log("%s: cannot parse a message: %r", self.label, exc)
            return
        if msg is None:
            return
        self._gap_armed = True
        if self._hub.publish(msg):
            await self._hub.relieve()

    def scrub(self, text: str) -> str:
        """Mask the NATS URL's credentials in a text (for log lines)."""
        return scrub(text, self._url)

    def gap(self) -> None:
        """Report that messages may be missing here (called by the feed)."""
        if self._gap_armed:  # one ConnectionGap per interruption, not one per hint
            self._gap_armed = False
            self.gaps += 1
            self._hub.mark_gap()

    async def on_reconnect(self) -> None:
        """Called by the NATS client once reconnected."""
        if self._jetstream is None:
            self.gap()  # core NATS: what was published meanwhile is gone
        self._wanted.poke()

    async def on_error(self, exc: Exception) -> None:
        """Called by the NATS client with an asynchronous error."""
        if type(exc).__name__ == "SlowConsumerError" and self._jetstream is None:
            self.gap()  # nats-py dropped a message of ours

    async def on_closed(self) -> None:
        """Called by the NATS client when it gives up for good."""
        if self._state == "open":
            self._state = "failed"
            self._hub.close(ConnectionError(f"{self.label}: the NATS connection was closed"))

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> RemoteMultiplexer:
        require_asyncio("wsmux RemoteMultiplexer")
        parse = self._parse_raw_data
        if type(self)._parse_raw_data is RemoteMultiplexer._parse_raw_data:
            self._parse = orjson.loads
        elif is_async_callable(parse):
            self._async_parse = parse
        else:
            self._parse = parse
        self._nc = await connect(
            self._url, self.label, self._options, self, open_timeout=self._open_timeout
        )
        await self._hub.__aenter__()
        self._hub_entered = True
        self._state = "open"
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        if self._jetstream is None:
            feed = run_core(self._nc, self._wanted, self, self._pending_limit)
        else:
            feed = run_jetstream(
                self._nc, self._jetstream, self._wanted, self, self._deliver, self._heartbeat
            )
        self._tg.start_soon(self._guard, feed, name=f"wsmux {self.label} feed")
        return self

    async def _guard(self, feed: Any) -> None:
        try:
            await feed
        except Exception as exc:
            log.error("%s: the NATS feed failed: %s", self.label, self.scrub(repr(exc)))
            self._state = "failed"
            self._hub.close(exc)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.exit()

    async def exit(self) -> None:
        """Unsubscribe, end every stream and close the NATS connection."""
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        if self._state == "open":
            self._state = "closed"
        nc, self._nc = self._nc, None
        if nc is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await nc.close()
        if self._hub_entered:
            self._hub_entered = False
            await self._hub.__aexit__(None, None, None)

    async def run(self) -> None:
        """Run until :meth:`exit` is called (for use in a task).

        Raises:
            RuntimeError: Under trio (nats-py is asyncio-only).
            ConnectionError: NATS could not be reached.
        """
        async with self:
            await anyio.sleep_forever()

    # -- state -----------------------------------------------------------------

    @property
    def state(self) -> str:
        """``idle``, ``open``, ``closed`` or ``failed``."""
        return self._state

    def stats(self) -> RemoteStats:
        """Return a snapshot of the counters.

        Returns:
            The counters.
        """
        hub = self._hub
        return RemoteStats(
            self._state,
            self.messages,
            self.bytes,
            self.gaps,
            self.resumes,
            self.last_sequence,
            self.parse_errors,
            hub.handler_errors,
            hub.filter_errors,
            hub.dropped(),
            hub.stream_count(),
            tuple(self._wanted.subjects),
        )
