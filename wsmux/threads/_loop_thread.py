"""The bridge: an event loop in a daemon thread, and calls into it from others.

:class:`LoopThread` runs one coroutine function (the body) under
``anyio.run`` in a thread of its own, with a
:class:`~anyio.from_thread.BlockingPortal` open around it. Other threads
start work there with :meth:`~LoopThread.spawn`, wait for it with
:meth:`~LoopThread.submit_wait` (or :meth:`~LoopThread.asubmit_wait` from
another event loop) and call quick sync functions with
:meth:`~LoopThread.run_sync`. Every helper says when the loop has stopped
instead of raising, so callers can fall back to reading state directly:
once the loop is done, nothing else touches it.

It knows nothing of multiplexers or streams; :class:`LoopOwner` is what a
stream needs from whoever owns the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import CancelledError, Future
from typing import Any, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
from anyio.from_thread import BlockingPortal

from .._exceptions import MultiplexerClosed
from .._log import log

__all__ = ["LoopOwner", "LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An event loop running ``body()`` in a daemon thread, reachable from others.

    Args:
        body: The coroutine function the loop runs; the thread ends when it
            returns and every task started here has finished.
        name: The thread's name.
        backend: ``"asyncio"`` or ``"trio"``.
        on_done: Called in the thread once its loop has ended, however it ended.
    """

    def __init__(
        self,
        body: Callable[[], Awaitable[object]],
        *,
        name: str,
        backend: str = "asyncio",
        on_done: Callable[[], object] | None = None,
    ) -> None:
        self.name = name
        self._body = body
        self._backend = backend
        self._on_done = on_done
        self._thread = threading.Thread(target=self._thread_main, name=name, daemon=True)
        self._portal: BlockingPortal | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._up = threading.Event()
        self._done = threading.Event()
        #: Why ``anyio.run`` itself failed (a bad backend, say), if it did.
        self.failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"<LoopThread {self.name} {'running' if self.running else 'stopped'}>"

    # -- the thread ----------------------------------------------------------

    def start(self) -> None:
        """Start the thread; return once its loop accepts calls (or has failed)."""
        self._thread.start()
        self._up.wait()

    def _thread_main(self) -> None:
        try:
            anyio.run(self._main, backend=self._backend)
        except BaseException as exc:
            self.failure = exc
            log.error("%s: event loop failed: %r", self.name, exc)
        finally:
            self._done.set()
            self._up.set()
            if self._on_done is not None:
                self._on_done()

    async def _main(self) -> None:
        # The portal outlives the body, so calls made while the body ends
        # (a reader's last fetch) still run; both end before the thread does.
        async with BlockingPortal() as portal, anyio.create_task_group() as tg:
            self._portal, self._tg = portal, tg
            self._up.set()
            await self._body()

    @property
    def running(self) -> bool:
        """True until the loop has ended."""
        return not self._done.is_set()

    def is_current(self) -> bool:
        """True when called from the loop's own thread."""
        return threading.current_thread() is self._thread

    def check_thread(self) -> None:
        """Refuse a blocking call from the loop's own thread, where it would deadlock.

        Raises:
            RuntimeError: Called from the loop's own thread.
        """
        if self.is_current():
            raise RuntimeError(
                f"a blocking call was made from {self.name}'s own thread (an inline or"
                " async handler); use the multiplexer's async methods there"
            )

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end.

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Returns:
            True once it has ended.
        """
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- calls from other threads --------------------------------------------

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> bool:
        """Start ``fn(*args)`` on the loop without waiting, from any thread.

        Returns:
            False when the loop no longer takes work.
        """
        if self.is_current():
            tg = self._tg
            if tg is None:
                return False
            try:
                tg.start_soon(fn, *args)
            except RuntimeError:  # the body has returned
                return False
            return True
        return self._spawn(fn, *args) is not None

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        """Start ``fn(*args)`` on the loop; None once the loop has stopped.

        Raises:
            RuntimeError: Called from the loop's own thread.
        """
        self.check_thread()
        return self._spawn(fn, *args)

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        portal = None if self._done.is_set() else self._portal
        if portal is None:
            return None
        try:
            return portal.start_task_soon(fn, *args)
        except RuntimeError:  # the portal stopped in between
            return None

    def wait(self, future: Future[T]) -> T:
        """Wait for a spawned call; an interrupt here (Ctrl-C) cancels it there too.

        Raises:
            Exception: What the call raised.
        """
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def submit_wait(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop and wait for it to finish.

        Returns:
            False when the loop had stopped (or stopped under the call).

        Raises:
            RuntimeError: Called from the loop's own thread.
            Exception: What ``fn`` raised.
        """
        future = self.spawn(fn, *args)
        if future is None:
            return False
        try:
            self.wait(future)
        except CancelledError:
            if self.running:
                raise
            return False
        return True

    async def asubmit_wait(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Like :meth:`submit_wait`, from another event loop, which keeps running.

        Cancelling the caller cancels the call on this loop. (A worker thread
        waits for the result: ``BlockingPortal.call_async`` would avoid it but
        needs anyio 4.16.)

        Returns:
            False when the loop had stopped (or stopped under the call).

        Raises:
            RuntimeError: Called from the loop's own thread.
            Exception: What ``fn`` raised.
        """
        future = self.spawn(fn, *args)
        if future is None:
            await anyio.lowlevel.checkpoint()
            return False
        try:
            await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
        except CancelledError:  # the future's, not the caller's: the loop stopped
            if self.running:
                raise
            return False
        finally:
            future.cancel()  # a no-op once done; else the caller was cancelled
        return True

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Call a quick sync function on the loop, or right here once it has stopped.

        Raises:
            Exception: What ``fn`` raised.
        """
        if self.is_current():
            return fn(*args)
        future = self._spawn(fn, *args)
        if future is None:
            return fn(*args)
        result: T = self.wait(future)
        return result

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the loop (awaited if a coroutine function) and return its result.

        Raises:
            MultiplexerClosed: The loop has stopped.
            RuntimeError: Called from the loop's own thread.
            Exception: What ``fn`` raised.
        """
        future = self.spawn(fn, *args)
        if future is None:
            raise MultiplexerClosed(f"{self.name} has stopped")
        return self.wait(future)


class LoopOwner(Protocol):
    """Whatever runs on a :class:`LoopThread` and lends it to streams (a ``MuxThread``)."""

    @property
    def _bridge(self) -> LoopThread: ...
