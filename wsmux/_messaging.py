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
from ._hub import Hub
from ._log import log
from ._options import Options
from ._ratelimit import RateLimiter
from ._stream import Stream

__all__ = ["Messaging"]


class Messaging:
    """Sending, requests and subscriptions (a base of ``Multiplexer``)."""

    _options: Options
    _hub: Hub
    _rate: RateLimiter | None
    _topics: dict[str, int]
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
        new = [t for t in _check_topics(topics) if t not in self._topics]
        for topic in _check_topics(topics):
            self._topics[topic] = self._topics.get(topic, 0) + 1
        await self._send_topic_change(self._subscribe_messages, new)

    async def unsubscribe(self, *topics: str) -> None:
        """Unsubscribe from topics and stop replaying them.

        Args:
            *topics: Topic names; unknown ones are ignored.

        Raises:
            TypeError: A topic is not a non-empty str.
        """
        gone = [t for t in _check_topics(topics) if self._topics.pop(t, None) is not None]
        await self._send_topic_change(self._unsubscribe_messages, gone)

    @property
    def topics(self) -> list[str]:
        """The topics subscribed to, replayed on every new connection."""
        return list(self._topics)

    async def _send_topic_change(
        self, build: Callable[[list[str]], list[Any]], topics: list[str]
    ) -> None:
        if not topics or self.present_ws is None:
            return  # replayed by _on_connect's follow-up on the next connection
        for msg in build(topics):
            await self.send(msg)

    async def _replay_subscriptions(self, ws: Any) -> None:
        if not self._topics:
            return
        for msg in self._subscribe_messages(list(self._topics)):
            if self._rate is not None:
                await self._rate.acquire()
            await ws.send(_encode(msg))

    def _attach_topics(self, stream: Stream, topics: Iterable[str]) -> None:
        wanted = _check_topics(tuple(topics))
        if not wanted:
            return
        new = [t for t in wanted if t not in self._topics]
        for topic in wanted:
            self._topics[topic] = self._topics.get(topic, 0) + 1
        self._in_background(self._send_topic_change, self._subscribe_messages, new)
        stream._on_close = lambda: self._release_topics(wanted)

    def _release_topics(self, topics: list[str]) -> None:
        gone = []
        for topic in topics:
            count = self._topics.get(topic, 0) - 1
            if count <= 0:
                self._topics.pop(topic, None)
                gone.append(topic)
            else:
                self._topics[topic] = count
        if gone and not self._exiting:
            self._in_background(self._send_topic_change, self._unsubscribe_messages, gone)


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
