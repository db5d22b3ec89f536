"""The Multiplexer's lifecycle: start, supervise, shut down, exit.

:class:`Lifecycle` is a base class of ``Multiplexer``. It owns the task
group every wsmux task runs in, turns a fatal supervisor error into a failed
state that ends every stream, and makes ``exit()`` idempotent and safe from
any task, a handler or a callback included.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc

from ._exceptions import MultiplexerClosed
from ._log import log
from ._options import Options
from .fanout._hub import Hub

if TYPE_CHECKING:
    from .connection._supervisor import Supervisor

__all__ = ["Lifecycle"]

#: Set in the tasks wsmux runs user code in (async handlers), so that
#: ``exit()`` called from there does not wait for its own task.
_IN_OWN_TASK: contextvars.ContextVar[bool] = contextvars.ContextVar("wsmux_own", default=False)


class Lifecycle:
    """Start, supervision and shutdown (a base of ``Multiplexer``)."""

    _options: Options
    _hub: Hub
    _state: str
    _state_changed: anyio.Event
    _ready: anyio.Event
    _tg: anyio.abc.TaskGroup | None
    _sup: Supervisor | None
    _run_scope: anyio.CancelScope | None
    _error: BaseException | None
    _exiting: bool
    _background: set[anyio.CancelScope]
    _background_idle: anyio.Event | None
    _callbacks: dict[str, Callable[..., Any] | None]
    _redacted: str

    def _new_supervisor(self, tg: anyio.abc.TaskGroup) -> Supervisor:
        raise NotImplementedError

    def _set_state(self, state: Any) -> None:
        raise NotImplementedError

    async def _wait_state_change(self, deadline: float) -> None:
        raise NotImplementedError

    def _in_background(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._tg is None or self._exiting:
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

        self._tg.start_soon(run)

    async def _call_back(self, name: str, args: tuple[Any, ...]) -> None:
        fn = self._callbacks[name]
        if fn is None:
            return
        try:
            result = fn(self, *args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            log.error("%s raised %r", name, exc, exc_info=exc)

    async def __aenter__(self) -> Self:
        if self._exiting:
            raise MultiplexerClosed(f"{self!r} has exited; create a new one")
        if self._state != "idle":
            raise RuntimeError(f"{self!r} was already started")
        # Bind the events to the loop that runs us, not the one that built us
        # (trio in the main thread, run_in_thread on asyncio, say).
        before, self._state_changed = self._state_changed, anyio.Event()
        before.set()
        self._ready = anyio.Event()
        self._set_state("connecting")  # from here on, exit() shuts down a start
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await self._hub.__aenter__()
            self._sup = self._new_supervisor(tg)
            tg.start_soon(self._supervise, name="wsmux supervisor")
            await self._ready.wait()
        except BaseException as exc:
            await self._finish()
            raise exc from None
        if self._error is not None:
            await self._finish()
            raise self._error
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._finish()
        if self._error is not None and exc is None:
            raise self._error

    async def _finish(self) -> None:
        # Even when the caller is cancelled: shut down (bounded by the close
        # and drain timeouts), then leave both task groups entered in
        # __aenter__, innermost first, outside any scope opened here.
        try:
            with anyio.CancelScope(shield=True):
                await self._shutdown(wait=True)
        finally:
            tg, self._tg = self._tg, None
            try:
                await self._hub.__aexit__(None, None, None)
            finally:
                try:
                    if tg is not None:
                        tg.cancel_scope.cancel()
                        await tg.__aexit__(None, None, None)
                finally:
                    self._set_state("failed" if self._error is not None else "closed")

    async def _supervise(self) -> None:
        assert self._sup is not None
        with anyio.CancelScope() as self._run_scope:
            if self._exiting:  # exit() came before the supervisor's first step
                self._ready.set()
                return
            try:
                await self._sup.run(self._ready.set)
            except Exception as exc:
                if not self._exiting:
                    log.error("%s failed: %s", self._redacted, exc)
                    self._error = exc
                    self._set_state("failed")
                    self._hub.close(exc)
                    if self._ready.is_set():
                        self._in_background(self._shutdown)
            finally:
                self._ready.set()

    async def _shutdown(self, wait: bool = True) -> None:
        """Stop the supervisor, close every socket, end every stream.

        Args:
            wait: Also wait for async handlers to drain what they hold.
        """
        if not self._exiting:
            self._exiting = True
            if self._state != "failed":
                self._set_state("closing")
            if self._run_scope is not None:
                self._run_scope.cancel()
            for scope in list(self._background):
                scope.cancel()
            sup = self._sup
            # Streams end now, before any await: the caller may be a callback
            # whose own background scope was just cancelled.
            self._hub.close(self._error)
            if sup is not None:
                for link in list(sup.links):
                    link.release.set()
                    if link.conn is None:
                        link.holder_scope.cancel()  # still connecting
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(self._options.close_timeout + 0.5):
                        for link in list(sup.links):
                            await link.closed.wait()
        if wait:
            await self._hub.wait_idle()
            idle = self._background_idle
            if self._background and idle is not None:
                with anyio.move_on_after(self._options.close_timeout + 0.5):
                    await idle.wait()

    async def run(self) -> None:
        """Run until :meth:`exit` is called (for use in a task).

        Raises:
            FatalConnectError: Connecting failed for good.
            RetriesExhausted: ``max_attempts`` attempts failed.
        """
        if self._exiting and self._tg is None:
            return  # exit() came first
        async with self:
            while not self._exiting and self._state not in ("failed", "closed"):
                await self._wait_state_change(float("inf"))

    async def exit(self) -> None:
        """Close the connection, end every stream, and wait until done.

        Idempotent, and safe from any task: called from inside an async
        handler it starts the shutdown and returns without waiting for the
        handler's own task. When the multiplexer died, the error is raised
        by ``async with`` (or :meth:`run`), not here.
        """
        if self._state == "idle" and self._tg is None:
            self._exiting = True
            self._hub.close()
            self._set_state("closed")
            return
        await self._shutdown(wait=not _IN_OWN_TASK.get())
