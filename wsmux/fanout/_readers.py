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
from typing import Any

import anyio

from .._backend import current_backend
from ._wake import REARM, handoff_for

__all__ = ["Batches", "Readers", "forget", "set_waiter", "wait_for_put", "wake_one"]


def set_waiter(event: Any) -> None:
    """Wake every consumer waiting on a future, an anyio.Event, a Handoff or Readers."""
    if event.__class__ is Future:
        if not event.done():  # done: the wait was cancelled
            event.set_result(None)
    elif event.__class__ is Readers:
        event.set_all()
    else:
        event.set()


def wake_one(stream: Any) -> None:
    """Wake one reader of ``stream``, if one waits: a message is buffered for it."""
    event = stream._event
    if event is not None:
        stream._event = None
        if event.__class__ is Future:
            if not event.done():
                event.set_result(None)
        else:
            event.set()  # Readers wakes one and stays the stream's waiter


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
        """Wake the reader that has waited longest (called by ``_put``).

        A handoff (the stream's single reader of before, see ``_wake``) is
        resolved with the buffered message itself.
        """
        futures = self.futures
        while futures:
            fut = futures.popleft()
            if fut.done():
                continue
            if fut.__class__ is Future:
                fut.set_result(None)
                break
            if self._stream._resolve(fut):
                break
            futures.appendleft(fut)  # nothing to hand it: it waits on
            break
        if futures and self._stream._event is None:
            self._stream._event = self

    def set_all(self) -> None:
        """Wake every reader (the stream ended or closed)."""
        futures, self.futures = self.futures, collections.deque()
        for fut in futures:
            if not fut.done():
                if fut.__class__ is Future:
                    fut.set_result(None)
                else:
                    self._stream._resolve(fut)


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
    elif event.__class__ is Readers:
        event.futures.append(fut)
    elif event.done():
        stream._event = fut  # a handoff whose reader left
    else:
        # A reader waiting alone on the stream's handoff: the two form a
        # group (the handoff, first in line, is resolved with a message).
        stream._event = Readers(stream, [event, fut])
    try:
        await fut
    except BaseException:
        forget(stream, fut)
        raise
    if REARM and fut.__class__ is Future:
        stream._spare = fut  # awaited to the end: no one else holds it
    if stream._handoff is None and stream._buf.__class__ is collections.deque:
        # The one reader's later waits take the handoff (see _wake).
        stream._handoff = handoff_for(loop, stream)


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
        wake_one(stream)
