"""The pool front object: several supervised connections feeding one hub.

:class:`Pool` holds the hub its streams and handlers hang off, the wanted
topics and their :class:`~._placement.Placement` on shards, and
:class:`~._members.Members` (the connections). It offers the stream API of
a ``Multiplexer``; what is about connections it delegates to its members.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.abc

from .._exceptions import NotConnected
from .._front import StreamSource
from .._log import log
from .._mux import Multiplexer, MultiplexerStats
from ..connection._budget import ConnectBudget
from ..connection._status import State
from ..fanout import (
    Filters,
    Hub,
    Stream,
)
from ._life import PoolLife
from ._members import Member, Members, PoolConnection
from ._placement import Placement, Wanted, check_topics

__all__ = ["Pool"]


class Pool(StreamSource):
    """Several supervised connections, made by one adapter, feeding one hub.

    Topics are placed on connections with room (at most ``max_topics``
    each): a new connection opens when every one is full, and one left with
    no topic closes. Streams, handlers, ``subscribe``, demand-driven
    ``topics=`` and ``stats()`` work as on one :class:`~wsmux.Multiplexer`.
    Every connection attempt of the pool (first, reconnection, rotation)
    takes one from a shared budget, and each connection paces its outbound
    messages (subscribes, unsubscribes, application pings), so that even
    every connection dropping at once reconnects within both limits.

    With ``redundancy=2`` every shard is carried by two connections (to
    ``urls[0]`` and ``urls[1]`` if given) and merged by the adapter's
    ``_message_id``: the first copy of a message is delivered, the second
    counted (``stats().duplicates``) and dropped. Losing one copy is not a
    gap; ``gaps="raise"`` streams get ConnectionGap only when every copy of
    a shard was lost at once. A copy that fails for good (a 401, say) is
    logged and shown as failed in :attr:`connections`; the pool fails only
    when the last copy of a shard does, and starts once every shard has an
    open copy.

    Args:
        factory: Makes one connection: any Multiplexer subclass, called as
            ``factory()``, or ``factory(url)`` when ``urls`` is given.

    Keyword Args:
        max_topics: The most topics one connection carries (Binance: 1024,
            200 on options).
        redundancy: Connections per shard (1 or more).
        urls: Endpoints: copy ``i`` of each shard uses ``urls[i % len(urls)]``.
        connect_budget: ``(attempts, seconds)``, or a :class:`ConnectBudget`
            shared with other pools; None for no budget. Default: Binance's
            300 attempts per 5 minutes.
        send_rate: ``(count, seconds)`` outbound messages per connection
            (Binance spot: 5 per second; one of them is left for pings);
            None for no limit. A rate set by the factory is kept.
        dedup_window: Ids remembered per redundant shard; a copy lagging by
            more messages than this is delivered again.
        name: What the pool is called in logs and ``stats().name``.
        drain_timeout: On exit, how long async handlers may take to finish
            what is buffered for them.

    Raises:
        TypeError: ``factory`` is not callable, or with ``redundancy`` above
            1 its connections do not define ``_message_id``.
        ValueError: An option is out of range.
    """

    def __init__(
        self,
        factory: Callable[..., Multiplexer],
        *,
        max_topics: int = 1024,
        redundancy: int = 1,
        urls: Sequence[str] | None = None,
        connect_budget: tuple[int, float] | ConnectBudget | None = (300, 300.0),
        send_rate: tuple[int, float] | None = (5, 1.0),
        dedup_window: int = 10_000,
        name: str = "pool",
        drain_timeout: float = 5.0,
    ) -> None:
        if not callable(factory):
            raise TypeError(f"factory must be callable, not {factory!r}")
        for option, value in (
            ("max_topics", max_topics),
            ("redundancy", redundancy),
            ("dedup_window", dedup_window),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{option} must be an int >= 1, not {value!r}")
        if urls is not None:
            urls = list(urls)
            if not urls or not all(isinstance(u, str) and u for u in urls):
                raise ValueError("urls must be a non-empty list of URLs, or None")
        if isinstance(connect_budget, tuple):
            connect_budget = ConnectBudget(*connect_budget)
        elif connect_budget is not None and not isinstance(connect_budget, ConnectBudget):
            raise TypeError(
                f"connect_budget must be a pair or a ConnectBudget, not {connect_budget!r}"
            )
        if send_rate is not None:
            count, per = send_rate
            if isinstance(count, bool) or not isinstance(count, int) or count < 1 or not per > 0:
                raise ValueError(f"send_rate must be (count >= 1, seconds > 0), not {send_rate!r}")
        self._name = name
        self._hub = Hub(drain_timeout=drain_timeout)
        self.max_topics = max_topics
        self.redundancy = redundancy
        self.budget = connect_budget
        self._wanted = Wanted(self._topics_changed)
        self._placement = Placement(max_topics)
        self._members = Members(
            factory,
            urls,
            redundancy,
            self._hub,
            connect_budget,
            send_rate,
            dedup_window,
            self._failed,
        )
        if redundancy > 1:
            probe = self._members.make(0)
            if type(probe)._message_id is Multiplexer._message_id:
                raise TypeError(
                    f"redundancy={redundancy} merges copies by _message_id, which"
                    f" {type(probe).__name__} does not define: override it to return"
                    " each message's unique id"
                )
            self._members.spare = probe  # the first connection it makes
        self._life = PoolLife(self._hub, self._members, name)
        self._lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"<Pool {self._name!r} {self.state} connections={len(self._members.all)}>"

    # -- streams and handlers: those of every source (wsmux._front) -----------

    def _attach(self, stream: Stream, filters: Filters, topics: Iterable[str]) -> None:
        self._wanted.attach(stream, topics)  # placed on the pool's connections

    # -- topics ----------------------------------------------------------------

    async def subscribe(self, *topics: str) -> None:
        """Subscribe to topics, placing each on a connection with room.

        Returns once the open connections that carry them were told; a new
        connection opened for them subscribes as soon as it is up (see
        :meth:`wait_connected`).

        Raises:
            TypeError: A topic is not a non-empty str.
            NotConnected: A connection could not send in time.
            MultiplexerClosed: The pool has exited.
        """
        checked = check_topics(topics)
        self._life.check_open()
        self._wanted.add(checked)
        await self._sync()

    async def unsubscribe(self, *topics: str) -> None:
        """Drop topics; a connection left with none closes.

        A topic an open stream still needs (``topics=``) stays.

        Raises:
            TypeError: A topic is not a non-empty str.
            MultiplexerClosed: The pool has exited.
        """
        checked = check_topics(topics)
        self._life.check_open()
        self._wanted.remove(checked)
        await self._sync()

    @property
    def topics(self) -> list[str]:
        """Every topic subscribed to or needed by an open stream."""
        return self._wanted.topics

    def _topics_changed(self) -> None:
        life = self._life
        if life.tg is not None and not life.exiting:
            life.tg.start_soon(self._sync_logged, name="wsmux pool topics")

    async def _sync_logged(self) -> None:
        try:
            await self._sync()
        except Exception as exc:
            log.warning("%s: placing topics failed: %r", self._name, exc)

    async def _sync(self) -> None:
        """Bring the connections in line with the wanted topics."""
        life = self._life
        if life.tg is None or life.exiting:
            return  # placed when the pool starts
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            tg = life.tg
            plan = self._placement.apply(self._wanted.topics)
            if not plan or tg is None or life.exiting:
                return
            try:
                await self._members.apply(plan, tg, self._placement.discard)
            finally:
                life.signal()

    # -- connections -------------------------------------------------------------

    @property
    def connections(self) -> list[PoolConnection]:
        """Every open connection: its shard, copy, state, topics and counters."""
        return [member.record() for member in self._members.all]

    @property
    def state(self) -> State:
        """The pool's state: open when every connection is, reconnecting while one is not."""
        if self._life.state is not State.OPEN:
            return self._life.state
        if self._members.all_live():
            return State.OPEN
        return State.RECONNECTING

    async def send(self, msg: Any, *, timeout: float | None = None) -> None:
        """Send a message on one open connection of the pool.

        See :meth:`wsmux.Multiplexer.send`.

        Raises:
            NotConnected: The pool has no connection (no topic), or none took
                the message in time.
            MultiplexerClosed: The pool has exited.
            TypeError: The message cannot be encoded.
        """
        self._life.check_open()
        await self._members.pick(self._name).mux.send(msg, timeout=timeout)

    async def request(self, msg: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send a request on one connection and return the reply that carries its id.

        See :meth:`wsmux.Multiplexer.request`; ids are unique over the pool.

        Returns:
            The reply message.

        Raises:
            TypeError: ``msg`` is not a dict.
            RequestTimeout: No reply in time.
            NotConnected: No connection was open in time.
            MultiplexerClosed: The pool has exited.
        """
        if not isinstance(msg, dict):
            raise TypeError(f"request() takes a dict, not {type(msg).__name__}")
        self._life.check_open()
        return await self._members.request(self._hub, msg, timeout, self._name)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until every connection of the pool is open.

        Raises:
            NotConnected: Not all were open within ``timeout``.
            MultiplexerClosed: The pool exited or failed.
        """
        deadline = anyio.current_time() + (math.inf if timeout is None else timeout)
        while True:
            self._life.check_open()
            if self._life.state is State.OPEN and self.state is State.OPEN:
                return
            if anyio.current_time() >= deadline:
                raise NotConnected(f"not every connection of {self._name} was open in time")
            await self._life.wait_change(deadline)

    def stats(self) -> MultiplexerStats:
        """Return the counters of every connection, open and closed, added up.

        ``duplicates`` counts both the repeats dropped during rotations and
        the copies dropped by redundancy; ``last_disconnect`` is the latest
        seen on any connection. ``latency`` (exchange to receipt) is kept
        per connection: see ``connections[i].stats.latency``.

        Returns:
            The pool's counters, with its state and open streams.
        """
        totals = self._members.totals()
        hub = self._hub
        return MultiplexerStats(
            state=self.state.value,
            handler_errors=hub.handler_errors,
            filter_errors=hub.filter_errors,
            drops=hub.dropped(),
            streams=hub.stream_count(),
            name=self._name,
            conflated=hub.conflated(),
            named_streams=hub.named_statistics(),
            **totals,
        )

    # -- lifecycle --------------------------------------------------------------------

    def _failed(self, member: Member, error: BaseException) -> None:
        """A connection failed for good: the pool fails, unless it was a
        redundant copy and another copy of its shard still runs."""
        running = sum(m.error is None for m in member.shard.members)
        if not running or self._life.exiting:
            self._life.fail(error)
            return
        log.error(
            "%s: %s (copy %d of shard %d) failed for good: %s; the shard goes on"
            " with %d of %d copies",
            self._name,
            member.mux.stats().name,
            member.copy,
            member.shard.id,
            error,
            running,
            self.redundancy,
        )
        self._life.signal()

    async def __aenter__(self) -> Pool:
        await self._life.start(self._sync)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self._life.finish()
        if self._life.error is not None and exc is None:
            raise self._life.error

    async def run(self) -> None:
        """Run until :meth:`exit` is called (for use in a task).

        Raises:
            FatalConnectError: A connection failed for good.
            RetriesExhausted: A connection ran out of ``max_attempts``.
        """
        await self._life.run(self._sync)

    async def exit(self) -> None:
        """Close every connection, end every stream, and wait until done.

        Idempotent and safe from any task, an async handler's included.
        """
        await self._life.exit()
