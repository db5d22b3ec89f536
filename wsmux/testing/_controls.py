"""The fault controls of :class:`~wsmux.testing.FeedServer`, and its per-connection delay.

:class:`FaultControls` is the base class of ``FeedServer`` that owns the
controls acting on connections and handshakes: it is handed the
:class:`~._core.FeedCore` and the :class:`~._faults.Faults` and checks
arguments before running each fault on the server loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Literal

from websockets.exceptions import ProtocolError
from websockets.frames import Close

from ._core import FeedCore
from ._faults import FAULTS, Faults

__all__ = ["FaultControls"]


class FaultControls:
    """Faults on command and on a schedule; the base of ``FeedServer``.

    Every control that acts on open connections takes ``conn=``, a connection
    id (find one with ``FeedServer.open_connections(topic=...)``); None means
    every open connection. They return how many connections they affected.
    """

    def __init__(self, core: FeedCore, faults: Faults) -> None:
        self._core = core
        self._faults = faults

    # --------------------------------------------------------------- faults

    def close_connections(self, code: int = 1000, reason: str = "", conn: int | None = None) -> int:
        """Close with a close frame, after the frames already queued (up to 1 s).

        Raises:
            ValueError: If ``code`` may not be sent in a close frame.
            LookupError: If ``conn`` was never seen.
        """
        try:
            Close(code, reason).check()
        except ProtocolError as exc:
            raise ValueError(f"close code {code} cannot be sent") from exc
        return self._core.call(self._faults.close, conn, code, reason)

    def drop(self, conn: int | None = None) -> int:
        """Drop the TCP connection without a close frame (``transport.abort()``).

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._core.call(self._faults.drop, conn)

    def silence(self, seconds: float | None = None, conn: int | None = None) -> int:
        """Send no data (pings are still answered) for ``seconds``, or until :meth:`resume`.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._core.call(self._faults.silence, conn, seconds)

    def half_open(self, seconds: float | None = None, conn: int | None = None) -> int:
        """Stop reading the socket: pings go unanswered and no data is sent.

        After ``seconds`` the TCP connection is aborted, as a NAT forgetting it
        would; None keeps it until :meth:`resume` or :meth:`stop`.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._core.call(self._faults.half_open, conn, seconds)

    def resume(self, conn: int | None = None) -> int:
        """Undo :meth:`silence` and :meth:`half_open`.

        Raises:
            LookupError: If ``conn`` was never seen.
        """
        return self._core.call(self._faults.resume, conn)

    def delay(self, fixed: float = 0.0, jitter: float = 0.0, conn: int | None = None) -> int:
        """Delay every frame sent to a connection by ``fixed + uniform(0, jitter)`` seconds.

        Each frame waits from when it was queued, and never overtakes the
        frame ahead of it: order is kept, and the frames of other connections
        are not held back. The delay stays until changed; ``delay()`` (both
        0) turns it off and sends what it held at once. It applies to
        connections open now, not later ones.
        In a feed without a ``rate``, a delayed connection that falls
        ``queue_size`` frames behind slows the feed down, as a slow reader does.

        Args:
            fixed: Seconds every frame waits.
            jitter: Up to this many more seconds, drawn per frame.
            conn: Connection id; None: every open connection.

        Returns:
            The number of connections affected.

        Raises:
            ValueError: If ``fixed`` or ``jitter`` is negative or not finite.
            LookupError: If ``conn`` was never seen.
        """
        if not (0.0 <= fixed < math.inf and 0.0 <= jitter < math.inf):
            raise ValueError(f"fixed and jitter must be finite and >= 0, not {fixed}, {jitter}")
        return self._core.call(self._faults.delay, conn, float(fixed), float(jitter))

    def send_garbage(
        self,
        kind: Literal["text", "binary", "oversize"] = "text",
        *,
        size: int = 2**20 + 1,
        conn: int | None = None,
    ) -> int:
        """Queue a garbage frame: non-JSON text, random binary, or ``size`` bytes of JSON.

        Raises:
            ValueError: If ``kind`` is unknown or ``size`` too small.
            LookupError: If ``conn`` was never seen.
        """
        return self._core.call(self._faults.garbage, conn, kind, size)

    def refuse(
        self, count: int | None = 1, status: int = 503, retry_after: float | None = None
    ) -> None:
        """Refuse the next ``count`` handshakes (None: all, 0: stop) with an HTTP status.

        Args:
            count: Handshakes to refuse.
            status: HTTP status, such as 503, 429, 401 or 403.
            retry_after: Value of a ``Retry-After`` header, in seconds.

        Raises:
            ValueError: If ``status`` is not an HTTP status a refusal can use.
        """
        if status < 300 or status not in HTTPStatus.__members__.values():
            raise ValueError(f"cannot refuse a handshake with HTTP status {status}")
        left = math.inf if count is None else count
        self._core.call(self._faults.arm_refuse, left, status, retry_after)

    def delay_handshake(self, seconds: float, count: int | None = None) -> None:
        """Hold the next ``count`` handshakes (None: all) for ``seconds``; 0 turns it off."""
        left = math.inf if count is None else count
        self._core.call(self._faults.arm_delay, seconds, left)

    def accept_then_drop(self, count: int | None = 1) -> None:
        """Accept the next ``count`` handshakes (None: all, 0: stop), then drop each at once."""
        self._core.call(self._faults.arm_drop, math.inf if count is None else count)

    def schedule(
        self,
        fault: str | Sequence[str],
        *,
        every: float,
        jitter: float = 0.0,
        count: int | None = None,
        target: int | Literal["all", "random"] = "random",
        **options: Any,
    ) -> int:
        """Apply a fault repeatedly, every ``every`` +/- ``jitter`` seconds.

        Args:
            fault: A name from :data:`FAULTS`, or several to pick one at random
                each time (a random-faults mode for soak tests).
            every: Mean interval in seconds.
            jitter: Uniform jitter added to each interval.
            count: Faults to apply before the schedule ends; None: until cancelled.
            target: A connection id, ``"all"`` open connections, or one at
                ``"random"`` (ticks with no open connection are skipped).
            **options: Passed to each fault that accepts them (``code``,
                ``seconds``, ``kind``, ``status``, ...).

        Returns:
            A schedule id for :meth:`cancel_schedule`.

        Raises:
            ValueError: If a fault or an option is unknown, or ``every <= 0``.
            RuntimeError: If the server is not running.
        """
        names = (fault,) if isinstance(fault, str) else tuple(fault)
        if not names or not set(names) <= FAULTS.keys():
            raise ValueError(f"faults must be from {sorted(FAULTS)}")
        if not set(options) <= set().union(*(FAULTS[n] for n in names)):
            raise ValueError(f"unexpected options for {names}: {sorted(options)}")
        if every <= 0 or jitter < 0:
            raise ValueError("every must be > 0 and jitter >= 0")
        if "seconds" not in options and any("seconds" in FAULTS[n] for n in names):
            options["seconds"] = every  # a silence lasts until about the next tick
        self._core.require_running()
        return self._core.call(
            self._faults.add_schedule, names, every, jitter, count, target, options
        )

    def chaos(self, *, every: float = 0.5, jitter: float = 0.25, count: int | None = None) -> int:
        """Random faults on random connections: close, drop, silence, garbage, half-open.

        Returns:
            A schedule id for :meth:`cancel_schedule`.
        """
        faults = ("close", "drop", "silence", "garbage", "half_open")
        return self.schedule(
            faults, every=every, jitter=jitter, count=count, code=1011, seconds=2 * every
        )

    def cancel_schedule(self, schedule_id: int | None = None) -> None:
        """Cancel one schedule, or all of them."""
        self._core.call(self._faults.cancel_schedules, schedule_id)

    def active_schedules(self) -> list[int]:
        """Ids of the schedules still running."""
        with self._core.waiters.lock:
            return list(self._core.schedules)
