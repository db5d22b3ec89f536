"""The stream and handler API every source of messages shares.

:class:`StreamSource` is the base of :class:`wsmux.Multiplexer`,
:class:`wsmux.Pool` and ``wsmux.RemoteMultiplexer``: each owns one
:class:`~wsmux.fanout.Hub` and offers the same ``stream_filter``, ``listen``,
``add_handler``, ``remove_handler`` and ``on`` over it, written once here. A
subclass says what an opened stream or an added handler needs from upstream
through three hooks (``_attach``, ``_handler_added``, ``_handler_removed``):
topics to subscribe on a multiplexer or a pool, subjects on a remote one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from ._lifecycle import IN_OWN_TASK
from .fanout import (
    Filters,
    Handler,
    Hub,
    Key,
    Overflow,
    Stream,
    handler_name,
    is_async_callable,
)
from .fanout._handlers import decorator

__all__ = ["StreamSource"]


class _TypedStream(Stream):
    __slots__ = ("_kind",)

    _kind: type | tuple[type, ...]

    def _put(self, msg: Any) -> None:
        if isinstance(msg, self._kind):
            Stream._put(self, msg)


class StreamSource:
    """Streams and handlers over one hub (the base of every message source).

    Subclasses set ``_hub`` before any stream opens and may override the
    hooks below; the defaults need nothing from upstream.
    """

    _hub: Hub

    # -- hooks ----------------------------------------------------------------

    def _attach(self, stream: Stream, filters: Filters, topics: Iterable[str]) -> None:
        """A stream opened: subscribe what it needs upstream (hook).

        Args:
            stream: The new stream (possibly ended already, if the source is).
            filters: Its filters, as given.
            topics: The topics it asked for (``topics=``).

        Raises:
            ValueError: ``topics`` were given to a source without topics.
        """
        if tuple(topics):
            raise ValueError(f"{type(self).__name__} has no topics to subscribe")

    def _handler_added(self, fn: Handler, filters: Filters) -> None:
        """A handler was added (hook); the default needs nothing upstream."""

    def _handler_removed(self, fn: Handler) -> None:
        """A handler was removed (hook)."""

    # -- streams and handlers -------------------------------------------------

    def stream_filter(
        self,
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        gaps: Literal["raise", "ignore"] = "ignore",
        topics: Iterable[str] = (),
        name: str | None = None,
        key: Key | None = None,
        latency: bool | None = None,
    ) -> Stream:
        """Open a stream of the messages the filter selects.

        Args:
            filters: ``None`` or ``[]`` for every message, a dict (AND over
                its items) or a list of dicts (OR over them). Values compare
                as JSON does; a dict value matches as a nested subset; a
                callable value is a predicate on the field.
            maxsize: The most messages buffered for this stream.
            overflow: ``"lag"`` (default: drop the oldest, the next read
                raises StreamLagged), ``"drop_oldest"``, ``"drop_newest"``
                (silent, counted), ``"block"`` (backpressure on everyone)
                or ``"conflate"`` (the latest message per ``key``: a newer
                one replaces the buffered one, keys are read in the order
                they were last updated; replaced ones are counted).
            gaps: ``"raise"`` to get ConnectionGap at an unplanned reconnect.
            topics: Topics this stream needs: subscribed when the first
                stream needing one opens, unsubscribed when the last closes.
            name: A label for the stream's repr and for metrics.
            key: With ``overflow="conflate"`` only: a field name (``"s"``)
                or a function of the message returning its key. A message
                without a key is kept as it is and counted
                (``statistics().unkeyed``).
            latency: Measure receipt-to-consumer latency (from the frame's
                arrival to the read) in ``statistics().latency``. None
                (default): measured when the multiplexer has ``event_time``.

        Returns:
            The stream, already receiving.

        Raises:
            TypeError: The filter is malformed, ``key`` is neither a
                field name nor callable, or ``name`` is not a str.
            ValueError: An option is out of range, ``"conflate"`` without a
                ``key``, or a ``key`` with another policy.
        """
        stream = self._hub.open_stream(
            filters,
            maxsize=maxsize,
            overflow=overflow,
            gaps=gaps,
            name=name,
            key=key,
            latency=latency,
        )
        self._attach(stream, filters, topics)
        return stream

    def listen(
        self,
        cls: type | tuple[type, ...],
        filters: Filters = None,
        **options: Any,
    ) -> Stream:
        """Open a stream of parsed messages that are instances of ``cls``.

        For adapters whose ``_parse_raw_data`` returns typed models.

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
        topics = options.pop("topics", ())
        hub = self._hub
        if options.get("latency") is None:
            options["latency"] = hub.measure_streams

        def make() -> _TypedStream:
            stream = _TypedStream(hub, **options)
            stream._kind = cls
            return stream

        stream = hub._open(filters, make)
        self._attach(stream, filters, topics)
        return stream

    def add_handler(
        self,
        fn: Handler,
        filters: Filters = None,
        *,
        maxsize: int = 1024,
        overflow: Overflow = "lag",
        key: Key | None = None,
    ) -> None:
        """Call ``fn(msg)`` for each message the filter selects.

        A plain function runs inline and must be quick; a coroutine function
        gets its own stream and task. Exceptions are logged and counted.

        Args:
            fn: The handler.
            filters: As for :meth:`stream_filter`.
            maxsize: Buffer size for an async handler.
            overflow: Overflow policy for an async handler.
            key: The conflation key of an async handler (``overflow="conflate"``).

        Raises:
            TypeError: ``fn`` is not callable or the filter is malformed.
            ValueError: ``fn`` is already a handler, or the options conflict.
        """
        wrapped = _OwnTask(fn) if is_async_callable(fn) else fn
        self._hub.add_handler(wrapped, filters, maxsize=maxsize, overflow=overflow, key=key)
        self._handler_added(fn, filters)

    def remove_handler(self, fn: Handler) -> None:
        """Stop calling a handler; safe from inside the handler.

        Args:
            fn: A handler added before.

        Raises:
            KeyError: ``fn`` is not a handler.
        """
        self._hub.remove_handler(_OwnTask(fn) if is_async_callable(fn) else fn)
        self._handler_removed(fn)

    def on(self, filters: Filters = None, **options: Any) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_handler`.

        Args:
            filters: As for :meth:`stream_filter`.
            **options: ``maxsize``, ``overflow`` and ``key`` for async handlers.

        Returns:
            A decorator that adds the function and returns it unchanged.
        """
        return decorator(self.add_handler, filters, options)


class _OwnTask:
    """Wraps an async handler so its task is known to be wsmux's own."""

    __slots__ = ("fn",)

    def __init__(self, fn: Handler) -> None:
        self.fn = fn

    async def __call__(self, msg: Any) -> Any:
        IN_OWN_TASK.set(True)
        return await self.fn(msg)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _OwnTask) and other.fn == self.fn

    def __hash__(self) -> int:
        return hash(self.fn)

    @property
    def __wrapped__(self) -> Handler:
        return self.fn

    def __repr__(self) -> str:
        return handler_name(self.fn)
