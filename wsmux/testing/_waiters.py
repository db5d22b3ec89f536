"""Waiting on the feed server from any thread or event loop, without polling.

The server thread changes its state under one lock and then calls
:meth:`Waiters.notify`; blocking waiters sleep on a condition, async ones
(asyncio or trio) on an event that ``notify`` sets through their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

import anyio

__all__ = ["Waiters"]

logger = logging.getLogger("wsmux.testing")


def _make_waker(event: anyio.Event) -> Callable[[], None]:
    """Return a callable that sets ``event`` from any thread; call it in the waiting loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _trio_waker(event)

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:
            logger.debug("waiter's event loop is closed; wake-up not delivered")

    return wake


def _trio_waker(event: anyio.Event) -> Callable[[], None]:
    try:
        import trio

        token = trio.lowlevel.current_trio_token()
    except (ImportError, RuntimeError) as exc:
        raise RuntimeError("no running asyncio or trio event loop") from exc

    def wake() -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            logger.debug("waiter's trio run has finished; wake-up not delivered")

    return wake


class Waiters:
    """The server's lock, and everyone waiting for its state to change.

    Attributes:
        lock: Guards the state other threads read; re-entrant.
    """

    __slots__ = ("_async", "_cond", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._cond = threading.Condition(self.lock)
        self._async: list[Callable[[], None]] = []

    def notify(self) -> None:
        """Wake every waiter, sync and async, to re-check its condition."""
        with self._cond:
            self._cond.notify_all()
            wakers, self._async = self._async, []
        for wake in wakers:
            wake()

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until ``predicate()`` is true; it runs under :attr:`lock`.

        Raises:
            TimeoutError: If it is still false after ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"FeedServer: no {what or 'condition'} within {timeout} s")

    async def wait_until_async(self, predicate: Callable[[], bool]) -> None:
        """Wait, in asyncio or trio, until ``predicate()`` is true; no deadline of its own."""
        while True:
            event = anyio.Event()
            wake = _make_waker(event)
            with self._cond:
                if predicate():
                    return
                self._async.append(wake)
            try:
                await event.wait()
            finally:
                with self._cond, contextlib.suppress(ValueError):
                    self._async.remove(wake)  # already gone if it was woken
