"""Faults on command and on a schedule, applied on the server loop.

:data:`FAULTS` names every fault and the options it takes. :class:`Faults`
is handed the :class:`~._core.FeedCore`: connection faults act on its open
connections, handshake faults arm its :class:`~._core.HandshakeFaults`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ._core import FeedCore
from ._generator import garbage_frame
from ._live import Live

__all__ = ["CONN_FAULTS", "FAULTS", "Faults"]

#: Fault names for ``FeedServer.schedule``, with the options each accepts.
FAULTS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "close": frozenset({"code", "reason"}),
        "drop": frozenset(),
        "silence": frozenset({"seconds"}),
        "half_open": frozenset({"seconds"}),
        "garbage": frozenset({"kind", "size"}),
        "refuse": frozenset({"count", "status", "retry_after"}),
        "delay_handshake": frozenset({"seconds", "count"}),
        "accept_then_drop": frozenset({"count"}),
    }
)
#: The faults that act on open connections; the others arm the next handshakes.
CONN_FAULTS = frozenset({"close", "drop", "silence", "half_open", "garbage"})


class Faults:
    """The faults of :class:`wsmux.testing.FeedServer` (server thread only).

    Connection faults take a connection id (None: every open connection) and
    return how many connections they affected, counted in ``core.faults``.
    """

    def __init__(self, core: FeedCore) -> None:
        self._core = core
        self._schedule_ids = itertools.count(1)

    # ---------------------------------------------------------- connections

    def close(self, conn: int | None, code: int = 1000, reason: str = "") -> int:
        lives = self._core.targets(conn)
        for live in lives:
            self._core.close_one(live, code, reason)
        return self._core.count("close", lives)

    def drop(self, conn: int | None) -> int:
        lives = self._core.targets(conn)
        for live in lives:
            live.ws.transport.abort()
        return self._core.count("drop", lives)

    def silence(self, conn: int | None, seconds: float | None = None) -> int:
        core = self._core
        lives = core.targets(conn)
        for live in lives:
            live.rec.silent = True
            if seconds is not None:
                core.spawn(core.later(seconds, self._unmute, live))
        core.signal_changed()
        return core.count("silence", lives)

    def half_open(self, conn: int | None, seconds: float | None = None) -> int:
        core = self._core
        lives = core.targets(conn)
        for live in lives:
            live.ws.transport.pause_reading()
            live.rec.half_open = True
            if seconds is not None:
                core.spawn(core.later(seconds, live.ws.transport.abort))
        core.signal_changed()
        return core.count("half_open", lives)

    def _unmute(self, live: Live) -> bool:
        if not (live.rec.silent or live.rec.half_open):
            return False
        if live.rec.half_open:
            live.ws.transport.resume_reading()
        live.rec.silent = live.rec.half_open = False
        self._core.signal_changed()
        return True

    def resume(self, conn: int | None) -> int:
        return sum(self._unmute(live) for live in self._core.targets(conn))

    def garbage(self, conn: int | None, kind: str = "text", size: int = 2**20 + 1) -> int:
        core = self._core
        frame = garbage_frame(core.rng, kind, size)
        lives = [lv for lv in core.targets(conn) if core.enqueue(lv, frame)]
        for live in lives:
            live.rec.garbage += 1
        core.counts["garbage_sent"] += len(lives)
        return core.count("garbage", lives)

    def delay(self, conn: int | None, fixed: float = 0.0, jitter: float = 0.0) -> int:
        lives = self._core.targets(conn)
        with self._core.waiters.lock:
            for live in lives:
                live.rec.delay = (fixed, jitter)
        for live in lives:
            live.retimed.set()
        return self._core.count("delay", lives) if fixed or jitter else len(lives)

    # ----------------------------------------------------------- handshakes

    def arm_refuse(
        self, count: float = 1, status: int = 503, retry_after: float | None = None
    ) -> None:
        self._core.handshake_faults.refuse = (count, status, retry_after)

    def arm_delay(self, seconds: float = 1.0, count: float = 1) -> None:
        self._core.handshake_faults.delay = (count, seconds)

    def arm_drop(self, count: float = 1) -> None:
        self._core.handshake_faults.drop_left = count

    # ------------------------------------------------------------ schedules

    def add_schedule(
        self,
        names: tuple[str, ...],
        every: float,
        jitter: float,
        count: int | None,
        target: int | str,
        options: dict[str, Any],
    ) -> int:
        """Start a schedule; return its id.

        Raises:
            LookupError: If ``target`` is a connection id never seen.
        """
        core = self._core
        if isinstance(target, int):
            core.targets(target)  # raises LookupError for an id never seen
        sid = next(self._schedule_ids)
        task = core.spawn(self._run_schedule(names, every, jitter, count, target, options))
        with core.waiters.lock:
            core.schedules[sid] = task
        task.add_done_callback(lambda _: self._forget_schedule(sid))
        return sid

    def _forget_schedule(self, sid: int) -> None:
        with self._core.waiters.lock:
            self._core.schedules.pop(sid, None)
        self._core.waiters.notify()

    def cancel_schedules(self, sid: int | None) -> None:
        """Cancel schedule ``sid``, or every schedule."""
        core = self._core
        with core.waiters.lock:
            tasks = list(core.schedules.values()) if sid is None else [core.schedules.get(sid)]
        for task in tasks:
            if task is not None:
                task.cancel()

    async def _run_schedule(
        self,
        names: tuple[str, ...],
        every: float,
        jitter: float,
        count: int | None,
        target: int | str,
        options: dict[str, Any],
    ) -> None:
        rng, live, done = self._core.rng, self._core.live, 0
        while count is None or done < count:
            await asyncio.sleep(max(0.0, every + rng.uniform(-jitter, jitter)))
            name = rng.choice(names)
            opts = {k: v for k, v in options.items() if k in FAULTS[name]}
            if name not in CONN_FAULTS:
                arm: dict[str, Callable[..., None]] = {
                    "refuse": self.arm_refuse,
                    "delay_handshake": self.arm_delay,
                }
                arm.get(name, self.arm_drop)(**opts)
            else:
                if target == "random" and not live:
                    continue
                conn = rng.choice(list(live)) if target == "random" else target
                do: dict[str, Callable[..., int]] = {
                    "close": self.close,
                    "drop": self.drop,
                    "silence": self.silence,
                    "half_open": self.half_open,
                    "garbage": self.garbage,
                }
                do[name](None if conn == "all" else conn, **opts)
            done += 1
