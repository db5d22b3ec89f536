"""Outbound traffic: send, request, and the remembered subscriptions.

:class:`Outbound` is held by the ``Multiplexer`` and handed what it needs:
the hub (to catch replies), the status (to wait for a live connection), a
way to reach the live connection and to report one whose ``send`` fails,
the adapter's subscribe-message hooks, and a way to run work in the
background. It keeps the topic set that is replayed on every new connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import anyio
import orjson

from ._exceptions import MultiplexerClosed, NotConnected, RequestTimeout
from ._log import log
from ._options import Options
from .connection._ratelimit import RateLimiter
from .connection._status import ENDED, LIVE, Status
from .fanout import Hub, Stream

__all__ = ["Outbound", "encode"]

#: Sends tried on failing connections before send() gives up early.
_MAX_SEND_ATTEMPTS = 3


class Outbound:
    """Sending, requests and subscriptions of one multiplexer.

    Args:
        hub: The hub, to capture request replies.
        options: The validated options.
        status: The supervised connection's status.
        live: Returns the live connection and what it was told, or None.
        lose: Reports a connection whose ``send`` failed, as lost.
        messages: ``(subscribe, unsubscribe)``: build the wire messages.
        background: Runs a coroutine function in the background.
        rate: The outbound rate limit, if any.
    """

    def __init__(
        self,
        hub: Hub,
        options: Options,
        status: Status,
        live: Callable[[], tuple[Any, set[str]] | None],
        lose: Callable[[Any, BaseException], None],
        messages: tuple[Callable[[list[str]], list[Any]], Callable[[list[str]], list[Any]]],
        background: Callable[[Callable[[], Awaitable[Any]]], None],
        rate: RateLimiter | None = None,
    ) -> None:
        self._hub = hub
        self._options = options
        self._status = status
        self._live = live
        self._lose = lose
        self._subscribe_messages, self._unsubscribe_messages = messages
        self._background = background
        self.rate = rate
        self.ids: Iterator[int] = itertools.count(1)
        self._explicit: dict[str, None] = {}  # subscribe()d topics, in order
        self._demand: dict[str, int] = {}  # topic -> open streams needing it
        self._lock: anyio.Lock | None = None

    def chunked(self, method: str, topics: list[str]) -> list[Any]:
        """Binance-style subscribe messages, ``subscribe_chunk`` topics each."""
        size = self._options.subscribe_chunk
        return [
            {"method": method, "params": topics[i : i + size], self._options.id_key: next(self.ids)}
            for i in range(0, len(topics), size)
        ]

    def _check_open(self) -> None:
        if self._status.state in ENDED:
            raise MultiplexerClosed("the multiplexer has exited")

    async def wait_live(self, deadline: float) -> Any:
        """Return the live connection, waiting for one until ``deadline``.

        Raises:
            MultiplexerClosed: The multiplexer has exited.
            NotConnected: No connection was open in time.
        """
        while True:
            self._check_open()
            live = self._live() if self._status.state in LIVE else None
            if live is not None:
                return live[0]
            if anyio.current_time() >= deadline:
                raise NotConnected(f"no open connection to {self._status.label} in time")
            await self._status.wait_change(deadline)

    async def send(self, msg: Any, *, timeout: float | None = None) -> None:
        """See :meth:`wsmux.Multiplexer.send`."""
        data = encode(msg)
        limit = self._options.send_timeout if timeout is None else timeout
        deadline = anyio.current_time() + limit
        if self.rate is not None:
            with anyio.move_on_after(limit):
                await self.rate.acquire()
            if anyio.current_time() >= deadline:
                self._check_open()
                raise NotConnected(f"the outbound rate limit allowed no send within {limit}s")
        failure: BaseException | None = None
        for _ in range(_MAX_SEND_ATTEMPTS):
            try:
                conn = await self.wait_live(deadline)
            except NotConnected as exc:
                if failure is not None:
                    raise exc from failure
                raise
            try:
                await conn.send(data)
                return
            except Exception as exc:
                self._check_open()
                failure = exc
                log.info(
                    "send failed on %s (%s): the connection is treated as lost",
                    self._status.label,
                    type(exc).__name__,
                )
                self._lose(conn, exc)
                # Wait for the supervisor to take the connection out of service.
                while self._live_conn() is conn and anyio.current_time() < deadline:
                    await self._status.wait_change(deadline)
        raise NotConnected(
            f"send to {self._status.label} failed {_MAX_SEND_ATTEMPTS} times"
        ) from failure

    def _live_conn(self) -> Any:
        live = self._live()
        return None if live is None else live[0]

    async def request(self, msg: dict[str, Any], *, timeout: float | None = None) -> Any:
        """See :meth:`wsmux.Multiplexer.request`."""
        if not isinstance(msg, dict):
            raise TypeError(f"request() takes a dict, not {type(msg).__name__}")
        key = self._options.id_key
        msg = dict(msg)
        msg.setdefault(key, next(self.ids))
        limit = self._options.request_timeout if timeout is None else timeout
        async with self._hub.open_stream({key: msg[key]}, maxsize=16) as replies:
            try:
                with anyio.fail_after(limit):
                    await self.send(msg, timeout=limit)
                    while True:
                        try:
                            return await replies.receive()
                        except Exception as exc:
                            if isinstance(exc, anyio.EndOfStream | anyio.ClosedResourceError):
                                raise MultiplexerClosed("the multiplexer has exited") from None
                            if type(exc).__name__ in ("StreamLagged", "ConnectionGap"):
                                continue
                            raise
            except TimeoutError:
                raise RequestTimeout(f"no reply with {key}={msg[key]!r} within {limit}s") from None

    async def subscribe(self, topics: tuple[Any, ...]) -> None:
        """See :meth:`wsmux.Multiplexer.subscribe`."""
        checked = check_topics(topics)
        self._check_open()
        for topic in checked:
            self._explicit[topic] = None
        await self.sync_topics()

    async def unsubscribe(self, topics: tuple[Any, ...]) -> None:
        """See :meth:`wsmux.Multiplexer.unsubscribe`."""
        checked = check_topics(topics)
        self._check_open()
        for topic in checked:
            self._explicit.pop(topic, None)
        await self.sync_topics()

    @property
    def topics(self) -> list[str]:
        """The topics subscribed to, replayed on every new connection."""
        return list(dict.fromkeys([*self._explicit, *self._demand]))

    async def sync_topics(self) -> None:
        """Tell the live connection the difference between wanted and told.

        One sync runs at a time and each computes the difference when it
        starts, so changes made in any order converge on :attr:`topics`.
        Unsubscribes go before subscribes.
        """
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            live = self._live() if self._status.state in LIVE else None
            if live is None:
                return  # replayed when the next connection opens
            told = live[1]
            wanted = self.topics
            add = [t for t in wanted if t not in told]
            drop = [t for t in told if t not in set(wanted)]
            # Drops first: a connection at its streams cap (a swap of topics)
            # never goes over it, which the exchange would refuse.
            if drop:
                for msg in self._unsubscribe_messages(drop):
                    await self.send(msg)
                told.difference_update(drop)
            if add:
                for msg in self._subscribe_messages(add):
                    await self.send(msg)
                told.update(add)

    def topics_changed(self) -> None:
        """Sync the topics in the background (after a change or a rotation)."""
        if self._status.state not in ENDED:
            self._background(self.sync_topics)

    async def replay(self, ws: Any) -> set[str]:
        """Subscribe a new connection to every topic; return what it was told."""
        topics = self.topics
        if topics:
            for msg in self._subscribe_messages(topics):
                if self.rate is not None:
                    await self.rate.acquire()
                await ws.send(encode(msg))
        return set(topics)

    def attach(self, stream: Stream, topics: Iterable[str]) -> None:
        """Subscribe the topics a stream needs, until it closes."""
        wanted = check_topics(tuple(topics))
        if not wanted:
            return
        for topic in wanted:
            self._demand[topic] = self._demand.get(topic, 0) + 1
        self.topics_changed()
        stream._on_close = lambda: self._release(wanted)

    def _release(self, topics: list[str]) -> None:
        for topic in topics:
            count = self._demand.get(topic, 0) - 1
            if count <= 0:
                self._demand.pop(topic, None)
            else:
                self._demand[topic] = count
        self.topics_changed()


def encode(msg: Any) -> str | bytes:
    """Encode an outbound message: dicts and lists as JSON text, str/bytes as given.

    Raises:
        TypeError: The message cannot be encoded as JSON.
    """
    if isinstance(msg, str | bytes):
        return msg
    try:
        return orjson.dumps(msg).decode()
    except TypeError as exc:
        raise TypeError(f"cannot encode message as JSON: {exc}") from None


def check_topics(topics: tuple[Any, ...]) -> list[str]:
    """Return the topics without repeats.

    Raises:
        TypeError: A topic is not a non-empty str.
    """
    for topic in topics:
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topics must be non-empty str, not {topic!r}")
    return list(dict.fromkeys(topics))
