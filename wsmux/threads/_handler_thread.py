"""Plain (sync) handlers of a threaded multiplexer, each in a thread of its own.

A :class:`HandlerThread` reads its own :class:`ThreadStream` and calls the
handler for each message, so a slow handler delays nobody. Stopping it is
prompt: what it has buffered is dropped, the call in progress (if any) is
the last one, and once :meth:`HandlerThread.join` returns it is never
called again.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from .._exceptions import ConnectionGap, StreamLagged
from .._log import log
from ..fanout import handler_name as _name
from ._thread_stream import ThreadStream

__all__ = ["HandlerThread", "HandlerThreads"]


class HandlerThread:
    """Calls ``fn(msg)`` for each message of ``stream``, in a daemon thread.

    Args:
        fn: The handler.
        stream: Its own stream; the handler thread is its only reader.
        name: The thread's name.

    Attributes:
        errors: How many calls raised (each is logged).
    """

    __slots__ = ("_stopping", "errors", "fn", "stream", "thread")

    def __init__(self, fn: Callable[[Any], object], stream: ThreadStream, name: str) -> None:
        self.fn = fn
        self.stream = stream
        self.errors = 0
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __repr__(self) -> str:
        state = "stopping" if self._stopping else "running"
        return f"<HandlerThread {self.thread.name} {state} errors={self.errors}>"

    def start(self) -> None:
        """Start calling the handler."""
        self.thread.start()

    def stop(self) -> None:
        """Call the handler no more; drop what this thread has buffered.

        Does not block: the thread ends once the call in progress returns
        and its stream wakes it (when the stream is closed or the
        multiplexer exits). :meth:`join` waits for that.
        """
        self._stopping = True
        self.stream._discard()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (a no-op from the thread itself).

        Args:
            timeout: Seconds to wait; None waits as long as it takes.

        Returns:
            True once the thread has ended (or this is the thread).
        """
        if self.thread is threading.current_thread():
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        fn, stream = self.fn, self.stream
        while not self._stopping:
            try:
                msg = stream.receive()
            except StreamLagged as exc:
                log.warning("handler %s lagged: %d message(s) lost", _name(fn), exc.count)
                continue
            except ConnectionGap:
                continue
            except Exception:
                return  # end of stream, closed, or the multiplexer's fatal error
            if self._stopping:  # stop() came while this thread waited for msg
                return
            try:
                fn(msg)
            except Exception as exc:
                self.errors += 1
                log.error("handler %s raised %r", _name(fn), exc, exc_info=exc)


class HandlerThreads:
    """The handler threads of one multiplexer: start, remove, stop and join them."""

    __slots__ = ("_ids", "_stopping", "_threads")

    def __init__(self) -> None:
        self._threads: dict[Callable[..., Any], HandlerThread] = {}
        self._ids = itertools.count(1)
        self._stopping = False

    def __contains__(self, fn: object) -> bool:
        return fn in self._threads

    def __repr__(self) -> str:
        return f"<HandlerThreads {len(self._threads)} stopping={self._stopping}>"

    @property
    def errors(self) -> int:
        """How many calls raised, over every handler still registered."""
        return sum(h.errors for h in list(self._threads.values()))

    def add(self, fn: Callable[[Any], object], stream: ThreadStream) -> None:
        """Start calling ``fn`` with each message of ``stream`` in a new thread."""
        name = f"wsmux-handler-{next(self._ids)}-{_name(fn)}"
        handler = HandlerThread(fn, stream, name)
        self._threads[fn] = handler
        handler.start()
        if self._stopping:  # stop_all() ran meanwhile and did not see this one
            handler.stop()

    def remove(self, fn: Callable[..., Any]) -> None:
        """Stop one handler, close its stream, and wait for its thread.

        Raises:
            KeyError: ``fn`` is not one of these handlers.
        """
        handler = self._threads.pop(fn)
        handler.stop()
        handler.stream.close()
        handler.join()

    def stop_all(self) -> bool:
        """Stop every handler (see :meth:`HandlerThread.stop`); does not block.

        Returns:
            True when called from one of the handler threads.
        """
        self._stopping = True
        current = threading.current_thread()
        mine = False
        for handler in list(self._threads.values()):
            handler.stop()
            mine = mine or handler.thread is current
        return mine

    def join_all(self, deadline: float | None) -> None:
        """Wait for every handler thread but the caller's own.

        Args:
            deadline: ``time.monotonic()`` value to give up at; None: never.

        Raises:
            TimeoutError: A thread was still running at ``deadline``.
        """
        for handler in list(self._threads.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not handler.join(left):
                raise TimeoutError(f"{handler.thread.name} was still running a call")
