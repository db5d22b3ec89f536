"""Waking asyncio readers: a message handed over with the wake, many wakes per loop turn.

With 10,000 streams each read by its own task, every message wakes a
different task, and the wake-up is most of what a message costs. asyncio
wakes a task waiting on a future through ``loop.call_soon``: one ``Handle``
per wake, built and run by Python code in the event loop. A :class:`Handoff`
is the future a stream's single asyncio reader waits on; it differs from
``asyncio.Future`` in two ways:

* **The outcome rides on the wake.** ``Stream.__anext__`` hands the
  handoff itself to a reader that must wait (no coroutine, no future per
  wait), and the stream resolves it with the message, or with what the
  reader must be told instead (the end, a lag, a gap, the error).
* **Wakes are batched.** The task's wake-up callback is kept on the handoff
  instead of being scheduled with ``call_soon``; a :class:`Waker` (one per
  event loop) collects the resolved handoffs and runs all their callbacks
  from one ``call_soon`` callback, each in its task's context, in the order
  they were resolved. A burst of 1,000 messages to 1,000 tasks costs one
  handle instead of 1,000.

A task is resumed exactly as asyncio would resume it (the same wake-up
function, the same context, on the same loop, never from inside another
task), so cancellation, ``current_task()`` and context variables behave as
with any future. A reader cancelled after a message was handed to it gives
the message back to its stream (``Stream._take_back``): nothing is lost.
Only a stream's single asyncio reader of a plain buffer waits on a handoff;
several readers, trio, and latency or conflating buffers wait as before
(:mod:`wsmux.fanout._readers`).

Only CPython's C future can be re-armed and subclassed this way
(:data:`HANDOFF`); elsewhere streams wait on plain futures.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from contextvars import Context
from typing import Any, Final

__all__ = ["HANDOFF", "REARM", "Handoff", "Waker", "handoff_for"]


class _ProbeLoop:
    def get_debug(self) -> bool:
        return False


def _rearm_works() -> bool:
    """Whether ``asyncio.Future.__init__`` makes a done future pending again.

    CPython's C future resets its whole state in ``__init__``; the pure
    Python one does not. A stream re-arms the future of its last wait
    instead of creating one per wait only where this holds: with 10,000
    waiting consumers, new futures would be promoted by the collector while
    they wait, and fill the oldest generation (a full collection every few
    thousand messages).
    """
    try:
        fut: Any = asyncio.Future(loop=_ProbeLoop())  # type: ignore[arg-type]
        fut.set_result(None)
        fut.__init__(loop=_ProbeLoop())
        return not fut.done()
    except Exception:
        return False


#: True when a stream may re-arm the future of its last wait.
REARM: Final = _rearm_works()


class Waker:
    """Runs the wake-up callbacks of resolved handoffs, many per loop callback.

    One per event loop (see :func:`handoff_for`). It holds no reference to
    the loop: each handoff knows its own.
    """

    __slots__ = ("__weakref__", "context", "pending", "scheduled")

    def __init__(self) -> None:
        self.pending: list[Handoff] = []
        self.scheduled = False
        #: The flush's own context (each callback runs in its task's): one
        #: made here, not a copy of the publisher's for every flush.
        self.context = Context()

    def add(self, handoff: Handoff) -> None:
        """Queue a resolved handoff's callback; schedule a flush if none is."""
        self.pending.append(handoff)
        self._schedule(handoff)

    def _schedule(self, handoff: Handoff) -> None:
        if not self.scheduled:
            self.scheduled = True
            handoff.get_loop().call_soon(self.flush, context=self.context)

    def flush(self) -> None:
        """Run every queued callback, oldest first (a ``call_soon`` callback).

        Handoffs resolved while it runs wait for the next flush, so a pair
        of tasks waking each other cannot keep the loop in one callback.
        """
        pending, self.pending = self.pending, []
        self.scheduled = False
        for i in range(len(pending)):
            handoff = pending[i]
            if not handoff._waiting:
                continue
            # The task reads the outcome as it runs: the handoff is free
            # again for its next wait (which may come within this call).
            handoff._waiting = handoff._busy = False
            try:
                handoff._context.run(handoff._callback, handoff)  # type: ignore[union-attr,arg-type]
            except (SystemExit, KeyboardInterrupt):
                # As asyncio's Handle does: propagate, after putting the
                # callbacks not run yet back in front of the queue.
                rest = pending[i + 1 :]
                if rest:
                    self.pending[:0] = rest
                    self._schedule(rest[0])
                raise
            except BaseException as exc:
                handoff.get_loop().call_exception_handler(
                    {"message": "Exception in a wsmux wake-up", "exception": exc}
                )


class Handoff(asyncio.Future):  # type: ignore[type-arg]
    """The future one asyncio reader of a stream waits on, re-armed for each wait.

    ``Stream.__anext__`` returns it to a reader that must wait, so the wait
    allocates nothing (no coroutine, no future). It is resolved with what the
    stream's ``receive_nowait()`` gives at that moment: the message, or the
    exception it raises (StreamLagged, ConnectionGap, the multiplexer's
    error), with the end of the stream as StopAsyncIteration. The waiting
    task's wake-up callback runs from its :class:`Waker`; other callbacks
    (a ``wait_for`` around ``anext()``, say) go through asyncio's usual
    ``call_soon``.

    Cancelling the task that waits gives back an outcome it was handed and
    has not read (the message goes back to the front of the buffer), so a
    timeout around a read never loses a message.

    The task's wake-up callback is kept from one wait to the next: a task
    makes a new one for every wait, equal to the last; keeping the first
    lets each new one be freed at once, instead of living (and being
    promoted by the collector) for as long as the task waits.
    """

    __slots__ = ("_busy", "_callback", "_context", "_stream", "_waiting", "_waker")

    #: Armed and not yet read: a second reader of the stream must not re-arm
    #: it (it waits the ordinary way). Cleared when the waker runs the
    #: waiting task (which reads it) or the outcome is given back; a handoff
    #: someone else awaits (``wait_for(anext(stream))``) stays busy, and the
    #: stream's reads go the ordinary way from then on.
    _busy: bool

    _callback: Callable[[Any], object] | None
    _context: Context | None
    #: The stream (typed Any: this module is below _stream).
    _stream: Any
    #: True while ``_callback`` is registered for the current wait.
    _waiting: bool
    _waker: Waker

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: Context | None = None
    ) -> None:
        """Keep a waiting task's callback for the waker; others as asyncio would.

        A task passes its context; other callers (``wait_for``, ``gather``)
        are served by asyncio's own machinery.
        """
        if context is None or self._waiting or self.done():
            super().add_done_callback(fn, context=context)
            return
        if self._callback != fn:
            self._callback = fn
        self._context = context
        self._waiting = True

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        """Remove a callback; return how many were removed."""
        removed = super().remove_done_callback(fn)
        if self._waiting and self._callback == fn:
            self._waiting = False
            removed += 1
        return removed

    def cancel(self, msg: Any | None = None) -> bool:
        """Cancel the wait and wake its task.

        A handoff resolved but not yet read by its task (the wake-up is
        queued) is cancelled too, after its outcome is given back to the
        stream.
        """
        if not self.done():
            super().cancel(msg)
            stream = self._stream
            if stream._event is self:
                stream._event = None
        elif self._waiting:
            self.reclaim()
            super().cancel(msg)
            return True  # its wake-up is queued already
        else:
            return False
        self.wake()
        return True

    def reclaim(self) -> None:
        """Give a resolved, unread outcome back to the stream; pending again.

        Its task's wake-up stays queued: the caller resolves it anew.
        """
        self._stream._take_back(self, waiting=True)
        self.__init__(loop=self.get_loop())  # type: ignore[misc]

    # Driven as a coroutine too: ``asyncio.create_task(anext(stream))``
    # takes any object with send, throw and close, as it took the coroutine
    # that __anext__ used to return.

    def send(self, value: Any) -> Any:
        """Step as a coroutine: yield to wait, else return the outcome."""
        if not self.done():
            self._asyncio_future_blocking = True
            return self
        raise StopIteration(self.result())

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Raise an exception thrown in (a cancellation), as a waiting coroutine would."""
        raise typ if val is None else val

    def close(self) -> None:
        """Nothing to clean up (the stream keeps its own state)."""

    def set(self) -> None:
        """Resolve with the stream's next outcome, if it has one (``_put``, ``_wake``).

        With none (a wake passed on by a reader that left), it stays the
        stream's waiter.
        """
        if not self.done():
            stream = self._stream
            if not stream._resolve(self) and stream._event is None:
                stream._event = self

    def wake(self) -> None:
        """Queue the wake-up of the task waiting on this resolved handoff."""
        if self._waiting:
            self._waker.add(self)


def _subclass_works() -> bool:
    """Whether a C future subclass can be re-armed (CPython's ``_asyncio``)."""
    try:
        import _asyncio

        return REARM and asyncio.Future is _asyncio.Future
    except ImportError:
        return False


#: True when streams wait on handoffs (else on plain futures).
HANDOFF: Final = _subclass_works()

_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Waker] = weakref.WeakKeyDictionary()


def handoff_for(loop: asyncio.AbstractEventLoop, stream: Any) -> Handoff | None:
    """A new handoff of ``stream`` on ``loop``, sharing the loop's waker.

    Returns:
        The handoff, or None where handoffs are not supported.
    """
    if not HANDOFF:
        return None
    waker = _wakers.get(loop)
    if waker is None:
        waker = _wakers[loop] = Waker()
    handoff = Handoff(loop=loop)
    handoff._callback = handoff._context = None
    handoff._stream = stream
    handoff._waiting = handoff._busy = False
    handoff._waker = waker
    return handoff
