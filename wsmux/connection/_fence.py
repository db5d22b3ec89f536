"""The catch-up fence: a ping whose pong marks a position in the inbound stream.

A server answers a ping after everything it wrote before it, on the same TCP
stream. So when the pong arrives, the number of data messages that arrived
before it is exactly the part of the stream the server sent before it read
the ping. A rotation uses that number to cut the old connection at a point
the scheduler cannot move (see :mod:`wsmux.connection._rotation`).

websockets' asyncio and trio connections are fenced by wrapping their
``process_event`` (every frame passes through it, in stream order); any other
connection may offer ``fence()`` itself (the picows transport does).
Connections with neither have no fence: rotations then fall back to a timed
grace and say so once in the log.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.frames import Opcode

__all__ = ["fence_of"]


class _Counter:
    """Counts complete data messages and notes the count at each fence's pong."""

    __slots__ = ("marks", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.marks: dict[bytes, int] = {}

    def pong(self, data: bytes) -> None:
        """A pong acknowledges its ping and every earlier one."""
        marks = self.marks
        if data in marks:
            for key, value in marks.items():
                if value < 0:
                    marks[key] = self.messages
                if key == data:
                    break


def _counting(counter: _Counter, process: Callable[[Any], None]) -> Callable[[Any], None]:
    """``process_event``, counting first (a closure: called for every frame)."""
    text, binary, cont, pong = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG

    def process_event(event: Any) -> None:
        opcode = event.opcode
        if opcode is text or opcode is binary or opcode is cont:
            if event.fin:
                counter.messages += 1
        elif opcode is pong and counter.marks:
            counter.pong(bytes(event.data))
        process(event)

    return process_event


def _counter(conn: Any) -> _Counter | None:
    counter = getattr(conn, "_wsmux_counter", None)
    if counter is not None:
        return counter  # type: ignore[no-any-return]
    module = type(conn).__module__
    if not module.startswith(("websockets.asyncio", "websockets.trio")):
        return None
    process = getattr(conn, "process_event", None)
    if process is None:
        return None
    counter = _Counter()
    # Frames parsed with the handshake's last bytes are queued already.
    queued = getattr(getattr(getattr(conn, "recv_messages", None), "frames", None), "queue", ())
    counter.messages = sum(1 for frame in queued if getattr(frame, "fin", False))
    # An instance attribute overrides the method: websockets calls
    # self.process_event(event) for every frame it parses.
    conn.process_event = _counting(counter, process)
    conn._wsmux_counter = counter
    return counter


def fence_of(conn: Any) -> Callable[[], Awaitable[int]] | None:
    """The fence of a connection, installing the frame counter if needed.

    Call this before the connection is read, so that every message is counted.

    Args:
        conn: A connection.

    Returns:
        A coroutine function that pings and returns how many data messages
        arrived before the pong; None when the connection has no fence.
    """
    own = getattr(conn, "fence", None)
    if callable(own):
        return own  # type: ignore[no-any-return]
    counter = _counter(conn)
    if counter is None:
        return None

    async def fence() -> int:
        data = os.urandom(8)
        counter.marks[data] = -1
        try:
            pong = await conn.ping(data)
            wait = getattr(pong, "wait", None)  # trio's client gives an Event
            await (wait() if wait is not None else pong)
            return counter.marks[data]
        finally:
            counter.marks.pop(data, None)

    return fence
