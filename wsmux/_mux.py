"""The public base class: one supervised websocket, many filtered streams.

``Multiplexer`` is the front object: it holds the hub (:mod:`wsmux.fanout`),
a :class:`~wsmux._lifecycle.Lifecycle` (start, supervision, shutdown), an
:class:`~wsmux._outbound.Outbound` (send, request, topics) and the status
the supervisor reports to, and delegates to them. Its hook methods are what
adapters override; the supervisor sees them only as :class:`Hooks`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Literal

import anyio
import orjson
from websockets.uri import parse_uri

from ._exceptions import FatalConnectError, MultiplexerClosed
from ._front import StreamSource
from ._lifecycle import Lifecycle
from ._log import default_name
from ._options import MultiplexerStats, Options
from ._outbound import Outbound
from ._record import Recorder
from .connection._backoff import Backoff
from .connection._dial import Dialer
from .connection._proxy import check_proxy
from .connection._ratelimit import RateLimiter
from .connection._status import ENDED, LIVE, Gate, Hooks, Sink, State, Status
from .connection._supervisor import Supervisor
from .connection._transport import Connection
from .fanout import (
    Filters,
    Hub,
    Stream,
    is_async_callable,
)
from .fanout._latency import EventTime, LatencyHistogram, event_seconds

__all__ = ["Multiplexer", "MultiplexerStats", "State"]


class Multiplexer(StreamSource):
    """One supervised websocket connection feeding any number of streams.

    ``Multiplexer(url)`` works as it is; exchange adapters subclass it and
    override the hooks ``_create_ws``, ``_when2create_new_ws``,
    ``_parse_raw_data``, ``_on_connect``, ``_message_id`` and
    ``_subscribe_messages``/``_unsubscribe_messages``.

    Use it as ``async with mux:`` (returns once the first connection is
    open), or ``await mux.run()`` in a task. Streams and handlers may be
    created before it starts, so no early message is missed.

    Args:
        url: The websocket URL, used by the default ``_create_ws``.

    Keyword Args:
        name: What the multiplexer is called in logs, its repr and
            ``stats().name``. Default: the URL's scheme, host and port and
            its first path segment unless it looks like a credential
            (``"wss://fstream.binance.com/ws"``), or the class name when
            there is no URL. Name adapters that share a host or a class.
        transport: ``"auto"`` (default): picows when it is installed
            (``pip install 'wsmux[fast]'``) and the loop is asyncio,
            websockets otherwise (under trio, behind a proxy from the
            environment, or when ``connect_options`` has keys of websockets'
            own); chosen at each connect, shown in the repr, in
            ``stats().transport`` and logged at INFO. ``"websockets"``
            (asyncio and trio) or ``"picows"`` (asyncio only; under trio,
            starting fails with FatalConnectError) pin one.
        connect_options: Extra keyword arguments for websockets' ``connect``
            (for picows' ``ws_connect`` when picows is used).
        proxy: The proxy to connect through: ``True`` (default) takes it from
            the environment as websockets does (``wss_proxy``/``https_proxy``,
            ``ws_proxy``/``http_proxy``, ``all_proxy``, minus ``no_proxy``),
            None (or False) connects directly, a URL such as
            ``"http://user:pass@proxy:3128"`` (HTTP CONNECT) or
            ``"socks5h://proxy:1080"`` (SOCKS, ``pip install 'wsmux[socks]'``)
            uses that proxy. Both transports honour it; its credentials never
            appear in logs, reprs or errors.
        max_size: Largest inbound message in bytes; a larger one closes the
            connection (counted, then reconnected). None for no limit.
        ping_interval: Seconds between keepalive pings.
        ping_timeout: Seconds to wait for a pong before the connection is
            declared lost. With the defaults (5, 5, and ``close_timeout``
            2), a dead link (half-open, or a silent peer) is detected at
            most ``ping_interval + ping_timeout + close_timeout`` = 12 s
            after its last sign of life. ``ping_interval=None`` disables
            keepalive; ``ping_timeout=None`` pings but never gives up.
        open_timeout: Seconds allowed to open a connection and run
            ``_on_connect`` on it.
        close_timeout: Seconds allowed for a closing handshake.
        stale_after: Replace a connection that delivered no message for this
            many seconds (pings may still succeed). None to disable.
        backoff_base: Smallest delay between reconnection attempts.
        backoff_cap: Largest delay between reconnection attempts.
        reset_after: A connection must stay up this long before the backoff
            goes back to ``backoff_base``.
        max_attempts: Give up after this many failed attempts in a row
            (None: never give up).
        retry_after_cap: Longest ``Retry-After`` honoured, in seconds.
        rotation_drain: During a planned rotation, how long the old
            connection may go without progress (no message read, no pong)
            while it publishes what came before its fence; a reader held
            that long (by a full ``block`` stream, say) gets a cutover
            announced as a gap (ConnectionGap in ``gaps="raise"``
            streams). A slow reader that moves is waited for.
        rotation_interval: The least time between two planned rotations:
            one requested sooner waits, and the wait grows while requests
            keep coming early (logged at WARNING once).
        max_age: Rotate a connection once it has been open this many
            seconds: the same planned, gap-free rotation as
            ``_when2create_new_ws`` asks for, whichever comes first. Set it
            below an exchange's own cut-off (Binance closes connections at
            24 h: ``max_age=23.5 * 3600``). None (default): no age limit.
        backoff: The reconnection delays; default
            ``Backoff(backoff_base, backoff_cap)``.
        send_timeout: How long ``send`` waits for an open connection.
        send_rate: ``(count, seconds)``: at most ``count`` outbound messages
            per ``seconds``, shared by every sender; None for no limit.
        request_timeout: Default timeout of ``request``.
        id_key: The key that carries request ids.
        subscribe_chunk: Most topics per subscribe message.
        disconnect_fn: Called as ``fn(mux)`` as soon as a connection is lost.
        reconnect_fn: Called as ``fn(mux, *reconnect_args)`` once a lost
            connection is replaced.
        reconnect_args: Extra arguments for ``reconnect_fn``.
        drain_timeout: On exit, how long async handlers may take to finish
            what is buffered for them.
        event_time: Measure latency: the field that carries each message's
            exchange time in epoch milliseconds (Binance's ``"E"``), or a
            function returning epoch seconds (or None for a message without
            one). Gives the exchange-to-receipt histogram of
            ``stats().latency``, and makes every stream measure its
            receipt-to-consumer latency (``statistics().latency``). A time
            that cannot be used (not a number, or a day or more away: a
            unit mistake) is logged and not recorded; the message is
            published all the same. None (default): nothing is measured,
            at no cost.
        recorder: A :class:`wsmux.Recorder` that writes every raw frame with
            its receive time and connection id, and the connections,
            rotations and gaps (see ``wsmux record``); None (default) costs
            nothing.

    Raises:
        TypeError: ``event_time`` is neither a field name nor callable.
        ValueError: An option is out of range, ``transport`` is unknown, or
            ``proxy`` is not a valid proxy URL.
        TypeError: ``url``, ``name``, ``max_age`` or ``proxy`` has the wrong type.
        ImportError: ``transport="picows"`` and picows is not installed, or a
            SOCKS proxy and python-socks is not installed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        name: str | None = None,
        # connection
        transport: Literal["auto", "websockets", "picows"] = "auto",
        connect_options: dict[str, Any] | None = None,
        proxy: str | bool | None = True,
        max_size: int | None = 2**20,
        ping_interval: float | None = 5.0,
        ping_timeout: float | None = 5.0,
        open_timeout: float = 10.0,
        close_timeout: float = 2.0,
        stale_after: float | None = None,
        # reconnection
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        reset_after: float = 10.0,
        max_attempts: int | None = None,
        retry_after_cap: float = 300.0,
        rotation_drain: float = 5.0,
        rotation_interval: float = 1.0,
        max_age: float | None = None,
        backoff: Backoff | None = None,
        # sending
        send_timeout: float = 10.0,
        send_rate: tuple[int, float] | None = None,
        request_timeout: float = 10.0,
        id_key: str = "id",
        subscribe_chunk: int = 100,
        # callbacks
        disconnect_fn: Callable[..., Any] | None = None,
        reconnect_fn: Callable[..., Any] | None = None,
        reconnect_args: Iterable[Any] = (),
        drain_timeout: float = 5.0,
        # measuring
        event_time: EventTime | None = None,
        # recording
        recorder: Recorder | None = None,
    ) -> None:
        if url is not None and not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if name is not None and not (isinstance(name, str) and name):
            raise TypeError(f"name must be a non-empty str, not {name!r}")
        if transport == "picows":
            from .connection._picows import require_picows

            require_picows()
        elif transport not in ("auto", "websockets"):
            raise ValueError(
                f"transport must be 'auto', 'websockets' or 'picows', not {transport!r}"
            )
        check_proxy(proxy)
        self.url = url
        self._name = name if name is not None else default_name(url, self)
        self._redacted = self._name  # the label of logs and errors (kept for subclasses)
        self._options = Options(
            connect_options=dict(connect_options or {}),
            max_size=max_size,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            open_timeout=open_timeout,
            close_timeout=close_timeout,
            stale_after=stale_after,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            reset_after=reset_after,
            max_attempts=max_attempts,
            retry_after_cap=retry_after_cap,
            rotation_drain=rotation_drain,
            rotation_interval=rotation_interval,
            send_timeout=send_timeout,
            request_timeout=request_timeout,
            id_key=id_key,
            subscribe_chunk=subscribe_chunk,
            reconnect_args=tuple(reconnect_args),
            transport=transport,
            max_age=max_age,
            event_time=None if event_time is None else event_seconds(event_time),
            proxy=None if proxy is False else proxy,
        )
        self._dialer = Dialer(self._options, self._name)
        self._recorder = recorder
        self._backoff = backoff
        self._hub = Hub(drain_timeout=drain_timeout)
        self._sink: Sink = self._hub  # where the supervisor publishes (see _join)
        self._gate: Gate | None = None
        self._status = Status(
            self._name,
            on_disconnect=lambda: self._life.call_back("disconnect_fn"),
            on_reconnect=lambda: self._life.call_back("reconnect_fn", self._options.reconnect_args),
        )
        # Streams that measure latency read when the frame of the message
        # being published arrived: the time the reader already took.
        self._hub.clock = self._status.received_at
        if event_time is not None:
            self._status.latency = LatencyHistogram()
            self._hub.measure_streams = True
        self._life = Lifecycle(
            self._hub,
            self._options,
            self._status,
            self._new_supervisor,
            {"disconnect_fn": disconnect_fn, "reconnect_fn": reconnect_fn},
            self,
        )
        self._out = Outbound(
            self._hub,
            self._options,
            self._status,
            self._live,
            self._lose,
            (self._subscribe_messages, self._unsubscribe_messages),
            self._life.background,
            RateLimiter(*send_rate) if send_rate is not None else None,
        )

    def __repr__(self) -> str:
        state, transport = self._status.state, self._transport_name()
        return f"<{type(self).__name__} {self._name!r} {state} {transport}>"

    def _transport_name(self) -> str:
        """The transport of the live connection, else the last one chosen, else the option."""
        return self._dialer.transport_of(self.present_ws)

    # -- hooks (override in an adapter) -----------------------------------

    async def _create_ws(self) -> Any:
        """Open the websocket connection (hook).

        Returns:
            A connection (``recv``/``send``/``close``) or an async context
            manager yielding one. The default connects to ``self.url`` with
            websockets (its trio client under trio).

        Raises:
            FatalConnectError: No URL was given and the hook was not overridden.
            websockets.exceptions.InvalidURI: The URL is not a ws:// or wss:// URL.
        """
        if self.url is None:
            raise FatalConnectError("no url: pass one to Multiplexer() or override _create_ws")
        parse_uri(self.url)  # InvalidURI, fatal, for either transport
        return await self._dialer.dial(self.url)

    async def _when2create_new_ws(self) -> None:
        """Return (or raise) when the connection should be rotated (hook).

        Called for each new connection; the default waits forever.
        """
        await anyio.sleep_forever()

    async def _parse_raw_data(self, raw: str | bytes) -> Any:
        """Turn a frame into a message; None skips it (hook).

        The default parses JSON with orjson (wsmux then receives bytes and
        skips UTF-8 decoding). An override may be a plain function too.

        Args:
            raw: The frame.

        Returns:
            The message, or None to skip the frame.
        """
        return orjson.loads(raw)

    async def _on_connect(self, ws: Any) -> None:
        """Prepare a new connection before it is swapped in (hook).

        Authenticate here. Remembered subscriptions are replayed right after
        this returns. The connection is not being read yet, so
        ``await ws.recv()`` may be used for a handshake reply.

        Args:
            ws: The new connection.
        """

    def _message_id(self, msg: Any) -> Hashable | None:
        """Return a message's unique id, for exactly-once rotation (hook).

        Define it to drop messages seen on both connections during a planned
        rotation. The default is undefined (no deduplication).

        Args:
            msg: A parsed message.

        Returns:
            A hashable id, or None when the message has none.
        """
        return None

    def _attach(self, stream: Stream, filters: Filters, topics: Iterable[str]) -> None:
        self._out.attach(stream, topics)

    # -- outbound -----------------------------------------------------------

    def _subscribe_messages(self, topics: list[str]) -> list[Any]:
        """Build the wire messages that subscribe to topics (hook).

        The default is Binance style: ``{"method": "SUBSCRIBE", "params":
        [...], "id": n}``, ``subscribe_chunk`` topics per message.

        Args:
            topics: The topics to subscribe to.

        Returns:
            The messages to send, in order.
        """
        return self._out.chunked("SUBSCRIBE", topics)

    def _unsubscribe_messages(self, topics: list[str]) -> list[Any]:
        """Build the wire messages that unsubscribe from topics (hook).

        Args:
            topics: The topics to drop.

        Returns:
            The messages to send, in order.
        """
        return self._out.chunked("UNSUBSCRIBE", topics)

    async def send(self, msg: Any, *, timeout: float | None = None) -> None:
        """Send a message on the live connection.

        Dicts and lists are encoded as JSON text; str and bytes go as given.
        Waits for an open connection (through reconnections) and for the
        outbound rate limit. A connection whose ``send`` fails is treated as
        lost (and replaced); the message is tried on the next one, a few
        times at most.

        Args:
            msg: The message.
            timeout: Seconds to wait for an open connection (default:
                ``send_timeout``).

        Raises:
            NotConnected: No connection took the message in time (chained to
                the transport's error when sends failed).
            MultiplexerClosed: The multiplexer has exited.
            TypeError: The message cannot be encoded.
        """
        await self._out.send(msg, timeout=timeout)

    async def request(self, msg: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send a request and return the reply that carries its id.

        An id is assigned under ``id_key`` unless the message has one. The
        reply is captured by a stream opened before sending, so it cannot be
        missed; other streams still see it too.

        Args:
            msg: The request (a dict).
            timeout: Seconds to wait for the reply (default:
                ``request_timeout``).

        Returns:
            The reply message.

        Raises:
            TypeError: ``msg`` is not a dict.
            RequestTimeout: No reply in time.
            NotConnected: No connection was open in time.
            MultiplexerClosed: The multiplexer has exited.
        """
        return await self._out.request(msg, timeout=timeout)

    async def subscribe(self, *topics: str) -> None:
        """Subscribe to topics; they are replayed on every new connection.

        Args:
            *topics: Topic names (e.g. ``"btcusdt@trade"``).

        Raises:
            TypeError: A topic is not a non-empty str.
            NotConnected: Connected, but the message could not be sent in time.
            MultiplexerClosed: The multiplexer has exited.
        """
        await self._out.subscribe(topics)

    async def unsubscribe(self, *topics: str) -> None:
        """Drop topics subscribed with :meth:`subscribe`; stop replaying them.

        A topic that an open stream still needs (``stream_filter(topics=...)``)
        stays subscribed until that stream closes.

        Args:
            *topics: Topic names; unknown ones are ignored.

        Raises:
            TypeError: A topic is not a non-empty str.
            MultiplexerClosed: The multiplexer has exited.
        """
        await self._out.unsubscribe(topics)

    @property
    def topics(self) -> list[str]:
        """The topics subscribed to, replayed on every new connection."""
        return self._out.topics

    # -- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> Multiplexer:
        await self._life.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self._life.finish()
        if self._life.error is not None and exc is None:
            raise self._life.error

    async def run(self) -> None:
        """Run until :meth:`exit` is called (for use in a task).

        Returns at once when :meth:`exit` was called first (the task that
        runs it may start after the exit), so ``tg.start_soon(mux.run)``
        followed by ``await mux.exit()`` always ends cleanly.

        Raises:
            FatalConnectError: Connecting failed for good.
            RetriesExhausted: ``max_attempts`` attempts failed.
        """
        await self._life.run()

    async def exit(self) -> None:
        """Close the connection, end every stream, and wait until done.

        Idempotent, and safe from any task: called from inside an async
        handler it starts the shutdown and returns without waiting for the
        handler's own task. When the multiplexer died, the error is raised
        by ``async with`` (or :meth:`run`), not here.
        """
        await self._life.exit()

    # -- state -----------------------------------------------------------------

    @property
    def state(self) -> State:
        """One of idle, connecting, open, rotating, reconnecting, closing, closed, failed."""
        return self._status.state

    def _hooks(self) -> Hooks:
        parse: Any = None
        async_parse: Any = None
        if type(self)._parse_raw_data is not Multiplexer._parse_raw_data:
            if is_async_callable(self._parse_raw_data):
                async_parse = self._parse_raw_data
            else:
                parse = self._parse_raw_data
        has_id = type(self)._message_id is not Multiplexer._message_id
        return Hooks(
            create_ws=self._create_ws,
            rotation_due=self._when2create_new_ws,
            on_connect=self._on_connect,
            replay=self._out.replay,
            parse=parse,
            async_parse=async_parse,
            message_id=self._message_id if has_id else None,
            topics_changed=self._out.topics_changed,
            label=self._name,
            url=self.url,
        )

    def _new_supervisor(self, tg: Any) -> Supervisor:
        return Supervisor(
            self._hooks(),
            self._sink,
            self._options,
            self._status,
            tg,
            backoff=self._backoff,
            gate=self._gate,
            recorder=self._recorder,
        )

    def _join(
        self,
        sink: Sink,
        *,
        gate: Gate | None = None,
        rate: RateLimiter | None = None,
        ids: Iterator[int] | None = None,
        name: str | None = None,
    ) -> None:
        """Serve as one connection of a larger source (used by :class:`wsmux.Pool`).

        Messages go to ``sink`` instead of this multiplexer's own hub (whose
        streams then see none), each connection attempt first asks ``gate``,
        outbound messages wait for ``rate`` (unless an outbound rate was set
        here already), request and subscribe ids come from ``ids``, and
        ``name`` (if given) names it in logs and stats.

        Raises:
            RuntimeError: The multiplexer was started already.
        """
        if self._status.state != State.IDLE:
            raise RuntimeError(f"{self!r} was started already")
        self._sink = sink
        self._gate = gate
        if self._out.rate is None:
            self._out.rate = rate
        if ids is not None:
            self._out.ids = ids
        if name is not None:
            self._name = self._redacted = self._status.label = self._dialer.name = name

    def _live(self) -> tuple[Any, set[str]] | None:
        sup = self._life.sup
        if sup is None or sup.live is None:
            return None
        return sup.live.conn, sup.live.topics

    def _lose(self, conn: Any, error: BaseException) -> None:
        if self._life.sup is not None:
            self._life.sup.lose(conn, error)

    # Used by wsmux.compat, which builds on the front object.

    @property
    def _state_changed(self) -> anyio.Event:
        return self._status.changed

    @property
    def present_ws(self) -> Connection | None:
        """The live connection, or None while there is none."""
        live = self._live()
        if live is None or self._status.state not in LIVE:
            return None
        conn: Connection = live[0]
        return conn

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a connection is open.

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Raises:
            NotConnected: Not connected within ``timeout``.
            MultiplexerClosed: The multiplexer exited or failed.
        """
        deadline = anyio.current_time() + (timeout if timeout is not None else float("inf"))
        await self._out.wait_live(deadline)

    def _check_open(self) -> None:
        if self._status.state in ENDED:
            raise MultiplexerClosed(f"{self!r} has exited")

    def stats(self) -> MultiplexerStats:
        """Return a snapshot of the counters.

        Returns:
            The counters, with the state and the number of open streams.
        """
        c = self._status.counters
        hub = self._hub
        messages = nbytes = 0
        sup = self._life.sup
        if sup is not None:
            messages, nbytes = sup.reader.totals()
        return MultiplexerStats(
            state=self._status.state.value,
            connects=c["connects"],
            reconnects=c["reconnects"],
            rotations=c["rotations"],
            disconnects=c["disconnects"],
            connect_errors=c["connect_errors"],
            messages=messages,
            bytes=nbytes,
            parse_errors=c["parse_errors"],
            handler_errors=hub.handler_errors,
            filter_errors=hub.filter_errors,
            duplicates=c["duplicates"],
            stale=c["stale"],
            rotation_gaps=c["rotation_gaps"],
            drops=hub.dropped(),
            streams=hub.stream_count(),
            last_message_at=self._status.last_message_at,
            last_disconnect=self._status.last_disconnect,
            name=self._name,
            conflated=hub.conflated(),
            latency=None if self._status.latency is None else self._status.latency.snapshot(),
            named_streams=hub.named_statistics(),
            transport=self._transport_name(),
        )
