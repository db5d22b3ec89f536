"""Server-side state of the feed server's connections, and its request answers.

A :class:`Live` is one open connection as the server thread sees it: its
record, its outgoing queue and writer, the topics it subscribed to. Each
queued frame carries the loop time it was queued at, so that a connection
given a delay (``FeedServer.delay``) sends it that long after it was queued,
in order, without holding back any other connection.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ._generator import Frame, normalize_topic
from ._limits import Limits
from ._records import ConnectionRecord

__all__ = ["HandshakeFaults", "Live", "answer", "split_path"]


class Live:
    """Server-side state of one open connection (server thread only)."""

    __slots__ = ("feed", "queue", "rec", "retimed", "topics", "writer", "ws")

    def __init__(self, ws: ServerConnection, rec: ConnectionRecord, queue_size: int) -> None:
        self.ws = ws
        self.rec = rec
        self.queue: asyncio.Queue[tuple[bytes, bool, float]] = asyncio.Queue(queue_size)
        self.topics = {normalize_topic(t) for t in rec.subscriptions}
        self.writer: asyncio.Task[None] | None = None
        self.feed: asyncio.Task[None] | None = None
        self.retimed = asyncio.Event()  # the delay changed: a held frame is timed again

    @property
    def muted(self) -> bool:
        return self.rec.silent or self.rec.half_open or self.rec.closed_at is not None

    def put_nowait(self, frame: Frame) -> None:
        """Queue ``frame``, stamped with the time (raises ``asyncio.QueueFull``)."""
        self.queue.put_nowait((*frame, self.ws.loop.time()))

    async def put(self, frame: Frame) -> None:
        """Queue ``frame``, waiting for room: the feed's backpressure."""
        await self.queue.put((*frame, self.ws.loop.time()))

    async def write(self, counts: Counter[str], rng: random.Random) -> None:
        """Write what is queued until the connection closes (the writer task)."""
        ws, queue, rec = self.ws, self.queue, self.rec
        try:
            while True:
                data, text, queued_at = await queue.get()
                try:
                    if rec.delay != (0.0, 0.0):
                        await self._hold(queued_at, rng)
                    if not (rec.silent or rec.half_open):
                        await ws.send(data, text=text)
                        rec.sent += 1
                        counts["frames_sent"] += 1
                finally:
                    queue.task_done()
        except ConnectionClosed:
            return  # the handler records how the connection ended

    async def _hold(self, queued_at: float, rng: random.Random) -> None:
        """Hold a frame until its delay from ``queued_at`` is over, or the delay is removed.

        One writer sends in queue order, so a frame held longer than the one
        behind it holds that one too: order is kept, and only this connection
        waits.
        """
        loop = self.ws.loop
        while self.rec.delay != (0.0, 0.0):
            fixed, jitter = self.rec.delay
            wait = queued_at + fixed + rng.uniform(0.0, jitter) - loop.time()
            if wait <= 0:
                return
            self.retimed.clear()
            try:
                async with asyncio.timeout(wait):
                    await self.retimed.wait()
            except TimeoutError:
                return


class HandshakeFaults:
    """Faults armed for the next handshakes; counts may be ``math.inf``."""

    __slots__ = ("delay", "drop_left", "refuse")

    def __init__(self) -> None:
        self.refuse: tuple[float, int, float | None] = (0, 503, None)  # left, status, retry
        self.delay: tuple[float, float] = (0, 0.0)  # left, seconds
        self.drop_left: float = 0


def split_path(path: str) -> tuple[str | None, set[str]]:
    """Return the listen key of ``/ws/<key>``, or the topics a market path names."""
    parts = urlsplit(path)
    segments = [s for s in parts.path.split("/") if s]
    topics = {t for v in parse_qs(parts.query).get("streams", []) for t in v.split("/") if t}
    if len(segments) == 2 and segments[0] == "ws":
        if "@" not in segments[1]:
            return segments[1], set()
        topics.add(segments[1])
    return None, topics


def answer(live: Live, msg: dict[str, Any], limits: Limits) -> dict[str, Any] | None:
    """The reply to a client request: (UN)SUBSCRIBE, LIST_SUBSCRIPTIONS, or an echo of ``id``.

    A SUBSCRIBE that would take the connection over ``limits.max_topics`` is
    refused whole: the answer is an error frame and no topic is added.
    """
    method, params, subs = msg.get("method"), msg.get("params"), live.rec.subscriptions
    result: Any = None
    if method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list):
        topics = {t for t in params if isinstance(t, str)}
        if method == "SUBSCRIBE" and limits.over_topics(subs, topics):
            return limits.over_limit_reply(msg.get("id"))
        if method == "SUBSCRIBE":
            subs |= topics
        else:
            subs -= topics
        live.topics = {normalize_topic(t) for t in subs}
    elif method == "LIST_SUBSCRIPTIONS":
        result = sorted(subs)
    elif "id" in msg:
        result = params
    else:
        return None
    return {"result": result, "id": msg.get("id")}
