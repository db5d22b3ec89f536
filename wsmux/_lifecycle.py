"""The Multiplexer's lifecycle: start, supervise, shut down, exit.

:class:`Lifecycle` is held by the ``Multiplexer``. It owns the task group
every wsmux task runs in, turns a fatal supervisor error into a failed state
that ends every stream, and makes ``exit()`` idempotent and safe from any
task, a handler or a callback included. Every task it starts runs in a
cancel scope of its own, so that shutting down never cancels the scope the
caller's ``async with`` body runs in.

A fatal error is reported once. When it is raised at once to a caller that
waits for it (``async with`` still starting, ``run()``, ``run_in_thread``),
it is logged at DEBUG only: the caller has it. When it strikes inside a
started ``async with`` block, it is held until the block ends (and ends every
stream), which may be much later, so it is logged at ERROR when it happens.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from ._exceptions import MultiplexerClosed
from ._log import log
from ._options import Options
from .connection._status import ENDED, State, Status
from .connection._supervisor import Supervisor
from .fanout import Hub

__all__ = ["IN_OWN_TASK", "Lifecycle"]

#: Set in the tasks wsmux runs user code in (async handlers), so that
#: ``exit()`` called from there does not wait for its own task.
IN_OWN_TASK: contextvars.ContextVar[bool] = contextvars.ContextVar("wsmux_own", default=False)


class Lifecycle:
    """Start, supervision and shutdown of one multiplexer.

    Args:
        hub: The hub the streams hang off.
        options: The validated options.
        status: The supervised connection's status.
        new_supervisor: Makes the supervisor, given the task group.
        callbacks: ``disconnect_fn`` and ``reconnect_fn``, called with ``owner``.
        owner: The front object, passed to the callbacks.
    """

    def __init__(
        self,
        hub: Hub,
        options: Options,
        status: Status,
        new_supervisor: Callable[[anyio.abc.TaskGroup], Supervisor],
        callbacks: dict[str, Callable[..., Any] | None],
        owner: object,
    ) -> None:
        self.hub = hub
        self.options = options
        self.status = status
        self._new_supervisor = new_supervisor
        self._callbacks = callbacks
        self._owner = owner
        self.tg: anyio.abc.TaskGroup | None = None
        self.sup: Supervisor | None = None
        self.error: BaseException | None = None
        self.exiting = False
        self._run_scope: anyio.CancelScope | None = None
        self._in_run = False  # run() raises a fatal error as soon as it happens
        self._background: set[anyio.CancelScope] = set()
        self._background_idle: anyio.Event | None = None  # set when none runs
        self._ready = anyio.Event()  # the first connection opened, or failed

    def background(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in a task of its own, cancelled at shutdown."""
        if self.tg is None or self.exiting:
            return

        scope = anyio.CancelScope()
        if not self._background:
            self._background_idle = anyio.Event()
        self._background.add(scope)

        async def run() -> None:
            try:
                with scope:
                    await fn(*args)
            except Exception as exc:
                log.warning("background %s failed: %r", getattr(fn, "__name__", fn), exc)
            finally:
                self._background.discard(scope)
                if not self._background and self._background_idle is not None:
                    self._background_idle.set()

        self.tg.start_soon(run)

    def call_back(self, name: str, args: tuple[Any, ...] = ()) -> None:
        """Call ``disconnect_fn`` or ``reconnect_fn`` in the background."""
        fn = self._callbacks[name]
        if fn is None:
            return

        async def call() -> None:
            try:
                result = fn(self._owner, *args)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.error("%s raised %r", name, exc, exc_info=exc)

        self.background(call)

    async def start(self) -> None:
        """Enter the task groups, start supervising, wait for the first connection.

        Raises:
            MultiplexerClosed: The multiplexer has exited.
            RuntimeError: It was started already.
            FatalConnectError: The first connection failed for good.
            RetriesExhausted: ``max_attempts`` attempts failed.
        """
        if self.exiting:
            raise MultiplexerClosed(f"{self._owner!r} has exited; create a new one")
        if self.status.state != State.IDLE:
            raise RuntimeError(f"{self._owner!r} was already started")
        # Bind the events to the loop that runs us, not the one that built us
        # (trio in the main thread, run_in_thread on asyncio, say).
        self.status.rebind()
        self._ready = anyio.Event()
        self.status.set(State.CONNECTING)  # from here on, exit() shuts down a start
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self.tg = tg
        try:
            await self.hub.__aenter__()
            self.sup = self._new_supervisor(tg)
            tg.start_soon(self._supervise, name="wsmux supervisor")
            await self._ready.wait()
        except BaseException as exc:
            await self.finish()
            raise exc from None
        if self.error is not None:
            await self.finish()
            raise self.error

    async def finish(self) -> None:
        """Shut down, then leave both task groups entered in :meth:`start`."""
        # Even when the caller is cancelled: shut down (bounded by the close
        # and drain timeouts), then leave the task groups, innermost first.
        try:
            with anyio.CancelScope(shield=True):
                await self.shutdown(wait=True)
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
                    self.status.set(State.FAILED if self.error is not None else State.CLOSED)

    async def _supervise(self) -> None:
        assert self.sup is not None
        with anyio.CancelScope() as self._run_scope:
            if self.exiting:  # exit() came before the supervisor's first step
                self._ready.set()
                return
            try:
                await self.sup.run(self._ready.set)
            except Exception as exc:
                if not self.exiting:
                    raised_now = self._in_run or not self._ready.is_set()
                    log.log(
                        logging.DEBUG if raised_now else logging.ERROR,
                        "%s failed: %s",
                        self.status.label,
                        exc,
                    )
                    self.error = exc
                    self.status.set(State.FAILED)
                    self.hub.close(exc)
                    if self._ready.is_set():
                        self.background(self.shutdown)
            finally:
                self._ready.set()

    async def shutdown(self, wait: bool = True) -> None:
        """Stop the supervisor, close every socket, end every stream.

        Args:
            wait: Also wait for async handlers to drain what they hold.
        """
        if not self.exiting:
            self.exiting = True
            if self.status.state != State.FAILED:
                self.status.set(State.CLOSING)
            if self._run_scope is not None:
                self._run_scope.cancel()
            for scope in list(self._background):
                scope.cancel()
            sup = self.sup
            # Streams end now, before any await: the caller may be a callback
            # whose own background scope was just cancelled.
            self.hub.close(self.error)
            if sup is not None:
                sup.stop_links()  # before any await, as above
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(self.options.close_timeout + 0.5):
                        await sup.wait_links_closed()
        if wait:
            await self.hub.wait_idle()
            idle = self._background_idle
            if self._background and idle is not None:
                with anyio.move_on_after(self.options.close_timeout + 0.5):
                    await idle.wait()

    async def run(self) -> None:
        """Run until exit, in the caller's task (see ``Multiplexer.run``)."""
        if self.exiting and self.tg is None:
            return  # exit() came first, maybe before this task got to run
        self._in_run = True
        await self.start()
        try:
            while not self.exiting and self.status.state not in ENDED:
                await self.status.wait_change(float("inf"))
        finally:
            await self.finish()
        if self.error is not None:
            raise self.error

    async def exit(self) -> None:
        """See ``Multiplexer.exit``."""
        if self.status.state == State.IDLE and self.tg is None:
            self.exiting = True
            self.hub.close()
            self.status.set(State.CLOSED)
            return
        await self.shutdown(wait=not IN_OWN_TASK.get())
