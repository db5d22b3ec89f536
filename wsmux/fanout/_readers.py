"""How consumers wait on a :class:`~wsmux.fanout._stream.Stream`, and its batch iterator.

A single asyncio reader waits on a bare future (the publisher's path stays
one ``set_result``); several readers of one stream wait in a
:class:`Readers` group, each on its own future; under trio a reader waits on
an ``anyio.Event``. :func:`set_waiter` wakes any of the three.
"""

from __future__ import annotations

import collections
from asyncio import Future, get_running_loop
from collections.abc import Coroutine
from typing import Any, Final

import anyio

from .._backend import current_backend

__all__ = ["REARM", "Batches", "Readers", "forget", "set_waiter", "wait_for_put"]


class _ProbeLoop:
    def get_debug(self) -> bool:
        return False


def _rearm_works() -> bool:
    """Whether ``Future.__init__`` makes a done future pending again.

    CPython's C future resets its whole state in ``__init__``; the pure
    Python one does not. A stream re-arms the future of its last wait
    instead of creating one per wait only where this holds: with 10,000
    waiting consumers, new futures would be promoted by the collector while
    they wait, and fill the oldest generation (a full collection every few
    thousand messages).
    """
    try:
        fut: Any = Future(loop=_ProbeLoop())  # type: ignore[arg-type]
        fut.set_result(None)
        fut.__init__(loop=_ProbeLoop())
        return not fut.done()
    except Exception:
        return False


#: True when a stream may re-arm the future of its last wait.
REARM: Final = _rearm_works()


def set_waiter(event: Any) -> None:
    """Wake every consumer waiting on a future, an anyio.Event or Readers."""
    if event.__class__ is Future:
        if not event.done():  # done: the wait was cancelled
            event.set_result(None)
    elif event.__class__ is Readers:
        event.set_all()
    else:
        event.set()


class Readers:
    """Several asyncio readers waiting on one stream, each on its own future.

    (Streams are typed ``Any`` here: this module is below ``_stream``.)

    A reader's cancellation cancels its own future only, so the others keep
    waiting (on one shared future it would cancel them all). ``set`` wakes
    one reader per message; while readers remain, the group puts itself back
    as the stream's waiter. A single reader waits on a bare future, so the
    publisher's path is unchanged when there is one reader.
    """

    __slots__ = ("_stream", "futures")

    def __init__(self, stream: Any, futures: list[Future[None]]) -> None:
        self._stream = stream
        self.futures = collections.deque(futures)

    def set(self) -> None:
        """Wake the reader that has waited longest (called by ``_put``)."""
        futures = self.futures
        while futures:
            fut = futures.popleft()
            if not fut.done():
                fut.set_result(None)
                break
        if futures and self._stream._event is None:
            self._stream._event = self

    def set_all(self) -> None:
        """Wake every reader (the stream ended or closed)."""
        futures, self.futures = self.futures, collections.deque()
        for fut in futures:
            if not fut.done():
                fut.set_result(None)


class Batches:
    """The iterator of :meth:`Stream.batches`."""

    __slots__ = ("_limit", "_stream")

    def __init__(self, stream: Any, limit: int | None) -> None:
        self._stream = stream
        self._limit = limit

    def __aiter__(self) -> Batches:
        return self

    def __anext__(self) -> Coroutine[Any, Any, list[Any]]:
        # The stream's own coroutine, not one wrapping it: a frame less per batch.
        batch: Coroutine[Any, Any, list[Any]] = self._stream._batch(self._limit, True)
        return batch


async def wait_for_put(stream: Any) -> None:
    """Wait until the stream's ``_put`` or ``_wake`` is called (or a spurious wake).

    The general case (trio, several readers, the first wait); the single
    asyncio reader of a stream waits inline in ``Stream.__anext__`` and
    ``Stream._batch`` on the future this leaves in ``stream._spare``.
    """
    stream._reads = 0  # a wait lets other tasks run: no checkpoint due
    loop = stream._loop
    if loop is None:
        loop = stream._loop = get_running_loop() if current_backend() == "asyncio" else False
    if loop is False:
        event = stream._event
        if event is None:
            event = stream._event = anyio.Event()
        await event.wait()
        return
    fut = stream._spare
    if fut is not None:
        stream._spare = None
        fut.__init__(loop=loop)
    else:
        fut = loop.create_future()
    event = stream._event
    if event is None or (event.__class__ is Future and event.done()):
        stream._event = fut
    elif event.__class__ is Future:
        stream._event = Readers(stream, [event, fut])
    else:
        event.futures.append(fut)
    try:
        await fut
    except BaseException:
        forget(stream, fut)
        raise
    if REARM and fut.__class__ is Future:
        stream._spare = fut  # awaited to the end: no one else holds it


def forget(stream: Any, fut: Future[None]) -> None:
    """Drop a leaving reader's future; pass on a wake-up it received."""
    event = stream._event
    if event is fut:
        stream._event = None
    elif event is not None and event.__class__ is Readers:
        if fut in event.futures:
            event.futures.remove(fut)
        if not event.futures:
            stream._event = None
    if fut.done() and not fut.cancelled():
        # Woken for a message, then cancelled before reading it: another
        # reader must take it, or it would wait with a message buffered.
        event = stream._event
        if event is not None:
            stream._event = None
            if event.__class__ is Readers:
                event.set()
            elif not event.done():
                event.set_result(None)
