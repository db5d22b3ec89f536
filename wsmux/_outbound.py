"""Outbound traffic: send, request, and the remembered subscriptions.

:class:`Messaging` is a base class of ``Multiplexer``; it needs the live
connection (``_wait_live``) and the hub, and keeps the topic set that is
replayed on every new connection.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import anyio.lowlevel
import orjson

from ._exceptions import MultiplexerClosed, RequestTimeout
from ._log import log
from ._options import Options
from .connection._ratelimit import RateLimiter
from .fanout._hub import Hub
from .fanout._stream import Stream

__all__ = ["Messaging"]


class Messaging:
    """Sending, requests and subscriptions (a base of ``Multiplexer``)."""

    _options: Options
    _hub: Hub
    _rate: RateLimiter | None
    _explicit: dict[str, None]  # subscribe()d topics, in order
    _demand: dict[str, int]  # topic -> open streams needing it
    _topic_lock: anyio.Lock | None
    _ids: itertools.count[int]
    _exiting: bool
    _state: str

    @property
    def present_ws(self) -> Any:
        """The live connection, or None while there is none."""
        raise NotImplementedError

    async def _wait_live(self, deadline: float) -> Any:
        raise NotImplementedError

    async def _wait_state_change(self, deadline: float) -> None:
        raise NotImplementedError

    def _in_background(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        raise NotImplementedError

    def _subscribe_messages(self, topics: list[str]) -> list[Any]:
        """Build the wire messages that subscribe to topics (hook).

        The default is Binance style: ``{"method": "SUBSCRIBE", "params":
        [...], "id": n}``, ``subscribe_chunk`` topics per message.

        Args:
            topics: The topics to subscribe to.

        Returns:
            The messages to send, in order.
        """
        return self._chunked("SUBSCRIBE", topics)

    def _unsubscribe_messages(self, topics: list[str]) -> list[Any]:
        """Build the wire messages that unsubscribe from topics (hook).

        Args:
            topics: The topics to drop.

        Returns:
            The messages to send, in order.
        """
        return self._chunked("UNSUBSCRIBE", topics)

    def _chunked(self, method: str, topics: list[str]) -> list[Any]:
        size = self._options.subscribe_chunk
        return [
            {
                "method": method,
                "params": topics[i : i + size],
                self._options.id_key: next(self._ids),
            }
            for i in range(0, len(topics), size)
        ]

    async def send(self, msg: Any, *, timeout: float | None = None) -> None:
        """Send a message on the live connection.

        Dicts and lists are encoded as JSON text; str and bytes go as given.
        Waits for an open connection (through reconnections) and for the
        outbound rate limit.

        Args:
            msg: The message.
            timeout: Seconds to wait for an open connection (default:
                ``send_timeout``).

        Raises:
            NotConnected: No connection was open in time.
            MultiplexerClosed: The multiplexer has exited.
            TypeError: The message cannot be encoded.
        """
        data = _encode(msg)
        limit = self._options.send_timeout if timeout is None else timeout
        deadline = anyio.current_time() + limit
        if self._rate is not None:
            await self._rate.acquire()
        while True:
            conn = await self._wait_live(deadline)
            try:
                await conn.send(data)
                return
            except Exception as exc:
                if self._state in ("closing", "closed", "failed"):
                    raise MultiplexerClosed("the multiplexer has exited") from None
                log.info("send failed (%s); waiting for the next connection", type(exc).__name__)
                await anyio.lowlevel.checkpoint()
                if self.present_ws is conn:
                    await self._wait_state_change(deadline)

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
        """
        if not isinstance(msg, dict):
            raise TypeError(f"request() takes a dict, not {type(msg).__name__}")
        key = self._options.id_key
        msg = dict(msg)
        msg.setdefault(key, next(self._ids))
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

    async def subscribe(self, *topics: str) -> None:
        """Subscribe to topics; they are replayed on every new connection.

        Args:
            *topics: Topic names (e.g. ``"btcusdt@trade"``).

        Raises:
            TypeError: A topic is not a non-empty str.
            NotConnected: Connected, but the message could not be sent in time.
        """
        for topic in _check_topics(topics):
            self._explicit[topic] = None
        await self._sync_topics()

    async def unsubscribe(self, *topics: str) -> None:
        """Drop topics subscribed with :meth:`subscribe`; stop replaying them.

        A topic that an open stream still needs (``stream_filter(topics=...)``)
        stays subscribed until that stream closes.

        Args:
            *topics: Topic names; unknown ones are ignored.

        Raises:
            TypeError: A topic is not a non-empty str.
        """
        for topic in _check_topics(topics):
            self._explicit.pop(topic, None)
        await self._sync_topics()

    @property
    def topics(self) -> list[str]:
        """The topics subscribed to, replayed on every new connection."""
        return list(dict.fromkeys([*self._explicit, *self._demand]))

    def _live_topics(self) -> set[str] | None:
        """What the live connection was told, or None without one."""
        raise NotImplementedError

    async def _sync_topics(self) -> None:
        """Tell the live connection the difference between wanted and told.

        One sync runs at a time and each computes the difference when it
        starts, so changes made in any order converge on :attr:`topics`.
        """
        if self._topic_lock is None:
            self._topic_lock = anyio.Lock()
        async with self._topic_lock:
            told = self._live_topics()
            if told is None:
                return  # replayed when the next connection opens
            wanted = self.topics
            add = [t for t in wanted if t not in told]
            drop = [t for t in told if t not in set(wanted)]
            if add:
                for msg in self._subscribe_messages(add):
                    await self.send(msg)
                told.update(add)
            if drop:
                for msg in self._unsubscribe_messages(drop):
                    await self.send(msg)
                told.difference_update(drop)

    def _topics_changed(self) -> None:
        if not self._exiting:
            self._in_background(self._sync_topics)

    async def _replay_subscriptions(self, ws: Any) -> set[str]:
        """Subscribe a new connection to every topic; return what it was told."""
        topics = self.topics
        if topics:
            for msg in self._subscribe_messages(topics):
                if self._rate is not None:
                    await self._rate.acquire()
                await ws.send(_encode(msg))
        return set(topics)

    def _attach_topics(self, stream: Stream, topics: Iterable[str]) -> None:
        wanted = _check_topics(tuple(topics))
        if not wanted:
            return
        for topic in wanted:
            self._demand[topic] = self._demand.get(topic, 0) + 1
        self._topics_changed()
        stream._on_close = lambda: self._release_topics(wanted)

    def _release_topics(self, topics: list[str]) -> None:
        for topic in topics:
            count = self._demand.get(topic, 0) - 1
            if count <= 0:
                self._demand.pop(topic, None)
            else:
                self._demand[topic] = count
        self._topics_changed()


def _encode(msg: Any) -> str | bytes:
    if isinstance(msg, str | bytes):
        return msg
    try:
        return orjson.dumps(msg).decode()
    except TypeError as exc:
        raise TypeError(f"cannot encode message as JSON: {exc}") from None


def _check_topics(topics: tuple[Any, ...]) -> list[str]:
    for topic in topics:
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topics must be non-empty str, not {topic!r}")
    return list(dict.fromkeys(topics))
