"""One websocket connection as the supervisor holds it: a :class:`Link`.

A holder task owns the socket (so that trio's nursery-bound client works and
closing never blocks the reader); a reader task parses frames and publishes
them, asking the current rotation what to do whenever its link is not simply
live (:class:`Role`).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import anyio

from ._transport import describe

__all__ = ["CountingRecv", "Link", "Role", "describe_close"]


class Role(Enum):
    """What a link's reader does with what it reads."""

    NEW = "new"  # a rotation's next connection: hold until the cutover
    LIVE = "live"  # publish
    OLD = "old"  # a rotation's old connection: publish up to its fence
    TAIL = "tail"  # live, still checked against the overlap's ids
    STOPPED = "stopped"  # drop


class Link:
    """One websocket connection and the state of its reader."""

    __slots__ = (
        "closed",
        "conn",
        "consumed_early",
        "done",
        "due",
        "due_scope",
        "error",
        "fence",
        "holder_scope",
        "id",
        "mark",
        "nbytes",
        "opened_at",
        "reached",
        "reader_scope",
        "received",
        "release",
        "role",
        "scope",
        "stale",
        "tail_done",
        "tail_scope",
        "topics",
    )

    def __init__(self, link_id: int) -> None:
        self.id = link_id
        self.conn: Any = None
        self.role = Role.NEW
        self.received = 0  # frames the reader has read
        self.consumed_early = 0  # frames read by _on_connect before the reader
        self.nbytes = 0
        self.opened_at = 0.0
        self.error: BaseException | None = None
        self.stale = False
        self.fence: Any = None  # the connection's fence, if it has one
        self.topics: set[str] = set()  # what this connection was subscribed to
        self.mark: int | None = None  # set ``reached`` once received gets here
        self.reached = anyio.Event()
        self.due = anyio.Event()  # its _when2create_new_ws() returned
        self.release = anyio.Event()  # tells the holder to close the socket
        self.done = anyio.Event()  # the reader has ended
        self.closed = anyio.Event()  # the holder has closed the socket
        self.scope = anyio.CancelScope()  # the stale watch
        self.due_scope = anyio.CancelScope()  # the rotation trigger
        self.tail_scope = anyio.CancelScope()  # the check after its rotation
        self.tail_done = anyio.Event()  # set once that check is over
        self.reader_scope = anyio.CancelScope()
        self.holder_scope = anyio.CancelScope()  # cancels a connect in progress

    def __repr__(self) -> str:
        return f"<link {self.id} {self.role.value} received={self.received}>"

    def watch(self, mark: int) -> anyio.Event:
        """Return an event set once the reader has read ``mark`` frames."""
        self.reached = anyio.Event()
        self.mark = mark
        if self.received >= mark:
            self.reached.set()
        return self.reached

    def stop(self) -> None:
        """Stop the reader and the helper tasks; tell the holder to close."""
        self.release.set()
        self.reader_scope.cancel()
        self.scope.cancel()
        self.due_scope.cancel()
        self.tail_scope.cancel()

    def lose(self, error: BaseException) -> None:
        """Treat the connection as lost (say, a send failed on it)."""
        if self.error is None:
            self.error = error
        self.reader_scope.cancel()


class CountingRecv:
    """Counts the frames a hook reads with ``recv()`` before the reader starts."""

    __slots__ = ("_link", "_recv")

    def __init__(self, link: Link, recv: Any) -> None:
        self._link = link
        self._recv = recv

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raw = await self._recv(*args, **kwargs)
        self._link.consumed_early += 1
        return raw


def describe_close(exc: BaseException | None) -> str:
    """Say why a connection ended, in words fit for a log line.

    Args:
        exc: The error its reader ended with, or None for a clean close.

    Returns:
        For example ``"close code 1001 (going away) from the server"``.
    """
    if exc is None:
        return "closed by the server"
    for attr, who in (("rcvd", "server"), ("sent", "client")):
        frame = getattr(exc, attr, None)
        if frame is not None:
            reason = f" ({frame.reason})" if frame.reason else ""
            return f"close code {frame.code}{reason} from the {who}"
    if type(exc).__name__.startswith("ConnectionClosed"):
        return "connection dropped without a close frame"
    return describe(exc)  # never an empty reason
