"""What the supervisor is given and what it reports.

:class:`Hooks` is the adapter seen from the connection layer: the bound hook
methods of a ``Multiplexer`` subclass (or anything else that provides them).
:class:`Status` is where the supervisor reports: the state, the counters, the
last message and disconnect, and the callbacks to run on a loss or recovery.
The front object reads it for ``state`` and ``stats()``; the supervisor never
sees the front object itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from enum import StrEnum
from time import time as _wall
from typing import Any, Final, Protocol

import anyio

from .._log import log
from ..fanout._latency import LatencyHistogram

__all__ = ["ENDED", "Gate", "Hooks", "Sink", "State", "Status"]


class State(StrEnum):
    """A multiplexer's state, in lifecycle order (compares equal to its name)."""

    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    ROTATING = "rotating"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


#: The states after ``exit()`` began or a fatal error: nothing reopens.
ENDED: Final = frozenset({State.CLOSING, State.CLOSED, State.FAILED})
#: The states in which a live connection may be used.
LIVE: Final = frozenset({State.OPEN, State.ROTATING})


class Sink(Protocol):
    """Where messages go: the hub, seen from the connection layer."""

    def publish(self, msg: Any) -> bool:
        """Hand a message to every match; True when a reader should yield."""
        ...

    async def relieve(self) -> None:
        """Yield to consumers (and wait for room in ``block`` streams)."""
        ...

    def mark_gap(self) -> None:
        """Tell ``gaps="raise"`` streams that messages may be missing here."""
        ...


class Gate(Protocol):
    """What the supervisor asks before each connection attempt (a shared budget)."""

    async def acquire(self) -> None:
        """Wait until an attempt may be made, and count it."""
        ...

    def release(self) -> None:
        """Say that the attempt's handshake is over."""
        ...


@dataclass(frozen=True, slots=True)
class Hooks:
    """The adapter's hooks, as the supervisor calls them.

    Attributes:
        create_ws: Open a connection (or an async context manager of one).
        rotation_due: Return (or raise) when the connection should be rotated.
        on_connect: Prepare a new connection before it is used.
        replay: Subscribe a new connection; return the topics it was told.
        parse: A plain parser, or None for the default (orjson, bytes in).
        async_parse: A coroutine parser, or None.
        message_id: The message's unique id, or None without the hook.
        topics_changed: Called once a connection is live (after a
            connect or a rotation), to send topic changes made meanwhile.
        label: How the connection is named in logs (free of secrets).
        url: The URL (secret-bearing), only to scrub it from error texts.
    """

    create_ws: Callable[[], Awaitable[Any]]
    rotation_due: Callable[[], Awaitable[None]]
    on_connect: Callable[[Any], Awaitable[None]]
    replay: Callable[[Any], Awaitable[set[str]]]
    parse: Callable[[Any], Any] | None
    async_parse: Callable[[Any], Awaitable[Any]] | None
    message_id: Callable[[Any], Hashable | None] | None
    topics_changed: Callable[[], None]
    label: str
    url: str | None


_COUNTERS: Final = (
    "connects",
    "reconnects",
    "rotations",
    "disconnects",
    "connect_errors",
    "parse_errors",
    "duplicates",
    "stale",
    "rotation_gaps",
)


class Status:
    """State, counters and loss/recovery callbacks of one supervised connection.

    Args:
        label: How the connection is named in logs.
        on_disconnect: Called (without waiting) as soon as a connection is lost.
        on_reconnect: Called (without waiting) once a lost connection is replaced.

    Attributes:
        latency: Exchange-to-receipt latency of the messages read, when the
            multiplexer was given ``event_time``; else None.
    """

    def __init__(
        self,
        label: str,
        on_disconnect: Callable[[], None] = lambda: None,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self.label = label
        self.state = State.IDLE
        self.changed = anyio.Event()
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.last_message_at: float | None = None
        self.latency: LatencyHistogram | None = None
        self.last_disconnect: str | None = None
        self.on_disconnect = on_disconnect
        self.on_reconnect = on_reconnect

    def __repr__(self) -> str:
        return f"<Status {self.label} {self.state}>"

    def received_at(self) -> float:
        """The wall-clock time the reader took when the last frame arrived.

        The hub's clock: while a message is published, the time its frame
        came in.
        """
        at = self.last_message_at
        return _wall() if at is None else at

    def rebind(self) -> None:
        """Make a fresh change event in the running loop (called at start)."""
        before, self.changed = self.changed, anyio.Event()
        before.set()

    def set(self, state: State) -> None:
        """Move to ``state``; once ended, only closed or failed may follow."""
        if self.state in ENDED and state not in (State.CLOSED, State.FAILED):
            return
        if state != self.state:
            log.debug("%s: %s -> %s", self.label, self.state, state)
            self.state = state
            event, self.changed = self.changed, anyio.Event()
            event.set()

    async def wait_change(self, deadline: float) -> None:
        """Wait for the next state change, or until ``deadline`` (loop clock)."""
        with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
            await self.changed.wait()
