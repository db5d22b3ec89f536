"""The pool's lifecycle: start, failure, shutdown, exit.

:class:`PoolLife` is held by the pool. It owns the task group every
connection of the pool runs in, turns a connection's fatal error into a
failed pool that ends every stream, and makes ``exit()`` idempotent and safe
from any task, an async handler's included (as ``wsmux._lifecycle`` does for
one multiplexer). It is handed the hub and the :class:`~._members.Members`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from .._exceptions import MultiplexerClosed
from .._lifecycle import IN_OWN_TASK
from .._log import log
from ..connection._status import ENDED, State
from ..fanout import Hub
from ._members import Members

__all__ = ["PoolLife", "any_set"]


class PoolLife:
    """Start, failure and shutdown of one pool.

    Args:
        hub: The pool's hub.
        members: The pool's connections.
        name: The pool's name, for logs and errors.
    """

    def __init__(self, hub: Hub, members: Members, name: str) -> None:
        self.hub = hub
        self.members = members
        self.name = name
        self.state = State.IDLE
        self.error: BaseException | None = None
        self.exiting = False
        self.tg: anyio.abc.TaskGroup | None = None
        self.changed = anyio.Event()

    def signal(self) -> None:
        """Wake whoever waits for a change of the pool."""
        event, self.changed = self.changed, anyio.Event()
        event.set()

    def check_open(self) -> None:
        """Raise MultiplexerClosed once the pool exited or failed."""
        if self.state in ENDED or self.exiting:
            if self.error is not None:
                raise MultiplexerClosed(f"{self.name} failed: {self.error}") from self.error
            raise MultiplexerClosed(f"{self.name} has exited")

    async def wait_change(self, deadline: float) -> None:
        """Wait for a change of the pool or of one of its connections."""
        events = [self.changed] + [m.mux._state_changed for m in self.members.all]
        await any_set(events, deadline)

    def fail(self, error: BaseException) -> None:
        """A connection died for good: the pool fails with its error."""
        if self.exiting or self.error is not None:
            return
        log.error("%s: a connection failed: %s", self.name, error)
        self.error = error
        self.state = State.FAILED
        self.hub.close(error)
        self.signal()
        if self.tg is not None:
            self.tg.start_soon(self.shutdown, False, name="wsmux pool shutdown")

    async def start(self, sync: Callable[[], Awaitable[None]]) -> None:
        """Enter the task group and the hub, place the topics, wait for every connection.

        Raises:
            MultiplexerClosed: The pool has exited.
            RuntimeError: It was started already.
            FatalConnectError: A first connection failed for good.
        """
        if self.exiting:
            raise MultiplexerClosed(f"{self.name} has exited; create a new one")
        if self.state is not State.IDLE:
            raise RuntimeError(f"{self.name} was already started")
        self.changed = anyio.Event()  # bound to the loop that runs the pool
        self.state = State.CONNECTING
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self.tg = tg
        try:
            await self.hub.__aenter__()
            await sync()
            while self.error is None and not self.members.ready():
                await self.wait_change(math.inf)
        except BaseException:
            await self.finish()
            raise
        if self.error is not None:
            await self.finish()
            raise self.error
        self.state = State.OPEN
        self.signal()

    async def shutdown(self, wait: bool = True) -> None:
        """Close every connection and end every stream (once).

        Args:
            wait: Also wait for async handlers to drain what they hold.
        """
        if not self.exiting:
            self.exiting = True
            if self.state is not State.FAILED:
                self.state = State.CLOSING
            self.hub.close(self.error)
            self.signal()
            with anyio.CancelScope(shield=True):
                await self.members.exit_all()
        if wait:
            await self.hub.wait_idle()

    async def finish(self) -> None:
        """Shut down, then leave the hub and the task group entered in :meth:`start`."""
        try:
            with anyio.CancelScope(shield=True):
                await self.shutdown(wait=True)
                with anyio.move_on_after(10):
                    await self.members.wait_all_done()
        finally:
            tg, self.tg = self.tg, None
            try:
                await self.hub.__aexit__(None, None, None)
            finally:
                try:
                    if tg is not None:
                        tg.cancel_scope.cancel()
                        await tg.__aexit__(None, None, None)
                finally:
                    self.state = State.FAILED if self.error is not None else State.CLOSED

    async def run(self, sync: Callable[[], Awaitable[None]]) -> None:
        """Start, run until exit, finish (see ``Pool.run``)."""
        if self.exiting and self.tg is None:
            return  # exit() came first
        await self.start(sync)
        try:
            while not self.exiting and self.state not in ENDED:
                await any_set([self.changed], math.inf)
        finally:
            await self.finish()
        if self.error is not None:
            raise self.error

    async def exit(self) -> None:
        """See ``Pool.exit``."""
        if self.state is State.IDLE and self.tg is None:
            self.exiting = True
            self.hub.close()
            self.state = State.CLOSED
            return
        await self.shutdown(wait=not IN_OWN_TASK.get())


async def any_set(events: list[anyio.Event], deadline: float) -> None:
    """Wait until one of the events is set, or until ``deadline``."""
    with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
        async with anyio.create_task_group() as tg:

            async def wait(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            for event in events:
                tg.start_soon(wait, event)
