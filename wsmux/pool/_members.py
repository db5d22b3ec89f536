"""The connections of a pool: made by the adapter factory, wired, run, closed.

:class:`Members` is held by the pool. It makes each connection with the
factory (any ``Multiplexer`` subclass, hooks unchanged) and hands it what it
needs to serve as one connection of the pool: the sink it publishes into
(the pool's hub, or a :class:`~._merge.CopySink` for a redundant shard), the
shared connection-attempt budget, a per-connection outbound rate and the
pool's request ids. Each runs in a task of the pool's task group; a fatal
error of one is reported to the pool through ``failed``. The counters of
closed connections are kept, so the pool's totals never go down.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio
import anyio.abc

from .._exceptions import (
    ConnectionGap,
    MultiplexerClosed,
    NotConnected,
    RequestTimeout,
    StreamLagged,
)
from .._mux import Multiplexer, MultiplexerStats
from ..connection._budget import ConnectBudget
from ..connection._ratelimit import RateLimiter
from ..connection._status import LIVE, Sink
from ..fanout import Hub
from ._merge import CopySink, Merger
from ._placement import Plan, Shard

__all__ = ["Member", "Members", "PoolConnection", "SUMMED"]

#: The counters of ``MultiplexerStats`` that add up over connections.
SUMMED = (
    "connects",
    "reconnects",
    "rotations",
    "disconnects",
    "connect_errors",
    "messages",
    "bytes",
    "parse_errors",
    "duplicates",
    "stale",
    "rotation_gaps",
)


class PoolConnection(NamedTuple):
    """One connection of a :class:`~wsmux.Pool`, as ``Pool.connections`` shows it.

    Attributes:
        id: The connection's number in the pool, from 1, never reused.
        shard: The number of the shard (the set of topics) it carries.
        copy: Which copy of the shard it is, from 0 (``redundancy`` copies).
        name: The connection's name in logs: its multiplexer's ``name``, then ``#id``.
        state: Its state: idle, connecting, open, rotating, reconnecting, ...
        topics: The topics it carries.
        stats: Its own counters.
        copies_dropped: Its messages dropped because another copy of the
            shard delivered them first (0 without redundancy).
        error: Why it failed for good (state ``"failed"``: a redundant copy
            whose shard goes on with its other copies), else None.
    """

    id: int
    shard: int
    copy: int
    name: str
    state: str
    topics: tuple[str, ...]
    stats: MultiplexerStats
    copies_dropped: int
    error: str | None = None


@dataclass(eq=False)
class Member:
    """One connection of the pool and what the pool knows of it."""

    id: int
    shard: Shard
    copy: int
    mux: Multiplexer
    sink: Sink
    done: anyio.Event = field(default_factory=anyio.Event)
    #: The error it failed with for good, if it did.
    error: BaseException | None = None

    @property
    def live(self) -> bool:
        """Whether it has an open connection now."""
        return self.mux.state in LIVE

    def record(self) -> PoolConnection:
        """Its row of ``Pool.connections``."""
        stats = self.mux.stats()
        return PoolConnection(
            id=self.id,
            shard=self.shard.id,
            copy=self.copy,
            name=stats.name,
            state=stats.state,
            topics=tuple(self.shard.topics),
            stats=stats,
            copies_dropped=self.sink.dropped if isinstance(self.sink, CopySink) else 0,
            error=None if self.error is None else str(self.error),
        )


class Members:
    """Makes, runs and closes the pool's connections.

    Args:
        factory: Makes one connection: ``factory()``, or ``factory(url)``
            when ``urls`` is given.
        urls: The endpoints copy ``i`` of each shard connects to
            (``urls[i % len(urls)]``), or None.
        redundancy: Connections per shard.
        hub: The pool's hub.
        budget: The shared connection-attempt budget, or None.
        send_rate: ``(count, seconds)`` per connection, or None.
        window: Ids remembered per redundant shard.
        failed: Called with a connection that failed for good and its error.
    """

    def __init__(
        self,
        factory: Callable[..., Multiplexer],
        urls: Sequence[str] | None,
        redundancy: int,
        hub: Sink,
        budget: ConnectBudget | None,
        send_rate: tuple[int, float] | None,
        window: int,
        failed: Callable[[Member, BaseException], None],
    ) -> None:
        self._factory = factory
        self._urls = urls
        self.redundancy = redundancy
        self._hub = hub
        self._budget = budget
        self._send_rate = send_rate
        self._window = window
        self._failed = failed
        self.ids = itertools.count(1)  # request and subscribe ids of every connection
        self._next_id = 0
        self.spare: Multiplexer | None = None  # made early to check the adapter
        self.all: list[Member] = []
        self.retired = dict.fromkeys(SUMMED, 0)
        self.retired_dropped = 0
        self.last_disconnect: str | None = None

    def make(self, copy: int) -> Multiplexer:
        """Make one connection with the factory.

        Raises:
            TypeError: The factory did not return a Multiplexer.
        """
        if copy == 0 and self.spare is not None:
            mux, self.spare = self.spare, None
            return mux
        urls = self._urls
        made = self._factory() if urls is None else self._factory(urls[copy % len(urls)])
        if not isinstance(made, Multiplexer):
            raise TypeError(f"the pool's factory must return a Multiplexer, not {made!r}")
        return made

    def rate(self) -> RateLimiter | None:
        """A fresh per-connection outbound rate limit.

        One message per window is left for the connection's own pings
        (keepalive, and the one that proves a subscription applied), which
        exchanges count too; and the window is a tenth longer, because the
        exchange counts messages when they arrive, and one granted early may
        leave (and arrive) a little later than the next.
        """
        if self._send_rate is None:
            return None
        count, per = self._send_rate
        return RateLimiter(max(1, count - 1), per * 1.1)

    async def open(self, shard: Shard, tg: anyio.abc.TaskGroup) -> None:
        """Make the shard's connections, subscribe them (recorded) and start them."""
        merger: Merger | None = None
        for copy in range(self.redundancy):
            mux = self.make(copy)
            sink: Sink = self._hub
            if self.redundancy > 1:
                if merger is None:
                    merger = Merger(self._hub, mux._message_id, self.redundancy, self._window)
                sink = merger.sink(_last_frame(mux))
            self._next_id += 1
            label = f"{mux.stats().name} #{self._next_id}"
            mux._join(sink, gate=self._budget, rate=self.rate(), ids=self.ids, name=label)
            member = Member(self._next_id, shard, copy, mux, sink)
            shard.members.append(member)
            self.all.append(member)
            await mux.subscribe(*shard.topics)  # not started: replayed once connected
            tg.start_soon(self._run, member, name=f"wsmux pool connection {member.id}")

    async def apply(
        self, plan: Plan, tg: anyio.abc.TaskGroup, discard: Callable[[Shard], None]
    ) -> None:
        """Tell the connections what changed: close, unsubscribe, subscribe, open.

        Every step is tried; the first error is raised at the end. A shard
        whose connections cannot all be made (the factory raised) is closed
        and ``discard``-ed, so that no half-made shard stays placed.
        """
        errors: list[Exception] = []

        async def each(fn: Callable[[], Awaitable[Any]]) -> None:
            try:
                await fn()
            except Exception as exc:
                errors.append(exc)

        changes: dict[Shard, tuple[list[str], list[str]]] = {}
        for shard, gone in plan.drop:
            changes[shard] = (gone, [])
        for shard, added in plan.add:
            changes[shard] = (changes.get(shard, ([], []))[0], added)

        async def change(mux: Multiplexer, gone: list[str], added: list[str]) -> None:
            # In this order: a connection at its cap must never go over it.
            # The subscribe is tried even if the unsubscribe failed.
            if gone:
                await each(lambda: mux.unsubscribe(*gone))
            if added:
                await each(lambda: mux.subscribe(*added))

        async with anyio.create_task_group() as work:
            for shard in plan.close:
                work.start_soon(each, lambda s=shard: self.close(s))
            for shard, (gone, added) in changes.items():
                for member in shard.members:
                    if member.error is None:  # a failed copy is told nothing
                        work.start_soon(change, member.mux, gone, added)
        for shard in plan.new:
            try:
                await self.open(shard, tg)
            except BaseException as exc:
                discard(shard)  # its topics are placed again at the next change
                with anyio.CancelScope(shield=True):
                    await self.close(shard)
                if not isinstance(exc, Exception):
                    raise
                errors.append(exc)
        if errors:
            raise errors[0]

    async def _run(self, member: Member) -> None:
        try:
            await member.mux.run()
        except Exception as exc:
            member.error = exc
            self._failed(member, exc)
        finally:
            member.done.set()

    async def close(self, shard: Shard) -> None:
        """Close the shard's connections and keep their counters."""
        members = list(shard.members)
        async with anyio.create_task_group() as tg:
            for member in members:
                tg.start_soon(member.mux.exit)
        for member in members:
            await member.done.wait()
            self._retire(member)

    def _retire(self, member: Member) -> None:
        if member not in self.all:
            return
        self.all.remove(member)
        stats = member.mux.stats()
        for name in SUMMED:
            self.retired[name] += getattr(stats, name)
        if isinstance(member.sink, CopySink):
            self.retired_dropped += member.sink.dropped
        if stats.last_disconnect is not None:
            self.last_disconnect = stats.last_disconnect

    async def exit_all(self) -> None:
        """Close every connection (at exit), without waiting for their tasks."""
        async with anyio.create_task_group() as tg:
            for member in list(self.all):
                tg.start_soon(member.mux.exit)

    async def wait_all_done(self) -> None:
        """Wait until every connection's task has ended."""
        for member in list(self.all):
            await member.done.wait()

    def ready(self) -> bool:
        """Whether every shard has an open copy (the pool may start)."""
        shards = {member.shard for member in self.all}
        return all(any(m.live for m in shard.members) for shard in shards)

    def all_live(self) -> bool:
        """Whether every connection that did not fail for good is open."""
        return all(member.live for member in self.all if member.error is None)

    def pick(self, name: str) -> Member:
        """An open connection of the pool (the oldest), else the oldest one.

        Raises:
            NotConnected: The pool has no connection (no topic).
        """
        members = self.all
        if not members:
            raise NotConnected(f"{name} has no connection: subscribe to a topic first")
        running = [m for m in members if m.error is None] or members
        return next((m for m in running if m.live), running[0])

    async def request(self, hub: Hub, msg: dict[str, Any], timeout: float | None, name: str) -> Any:
        """Send ``msg`` on one connection; return the reply carrying its id (see ``Pool.request``).

        Raises:
            NotConnected: No connection, or none open in time.
            RequestTimeout: No reply in time.
            MultiplexerClosed: The pool exited meanwhile.
        """
        mux = self.pick(name).mux
        options = mux._options
        key = options.id_key
        msg = dict(msg)
        msg.setdefault(key, next(self.ids))
        limit = options.request_timeout if timeout is None else timeout
        async with hub.open_stream({key: msg[key]}, maxsize=16) as replies:
            try:
                with anyio.fail_after(limit):
                    await mux.send(msg, timeout=limit)
                    while True:
                        try:
                            return await replies.receive()
                        except (StreamLagged, ConnectionGap):
                            continue
                        except (anyio.EndOfStream, anyio.ClosedResourceError):
                            raise MultiplexerClosed(f"{name} has exited") from None
            except TimeoutError:
                raise RequestTimeout(f"no reply with {key}={msg[key]!r} within {limit}s") from None

    def totals(self) -> dict[str, Any]:
        """The counters of every connection, open and closed, added up."""
        totals: dict[str, Any] = dict(self.retired)
        dropped = self.retired_dropped
        last_message_at: float | None = None
        last_disconnect = self.last_disconnect
        for member in self.all:
            stats = member.mux.stats()
            for name in SUMMED:
                totals[name] += getattr(stats, name)
            if isinstance(member.sink, CopySink):
                dropped += member.sink.dropped
            if stats.last_message_at is not None:
                last_message_at = max(last_message_at or 0.0, stats.last_message_at)
            if stats.last_disconnect is not None:
                last_disconnect = stats.last_disconnect
        totals["duplicates"] += dropped
        totals["last_message_at"] = last_message_at
        totals["last_disconnect"] = last_disconnect
        return totals


def _last_frame(mux: Multiplexer) -> Callable[[], float | None]:
    return lambda: mux.stats().last_message_at
