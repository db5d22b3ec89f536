"""How consumers wait on a :class:`~wsmux.fanout._stream.Stream`, and its batch iterator.

A single asyncio reader waits on a bare future (the publisher's path stays
one ``set_result``); several readers of one stream wait in a
:class:`Readers` group, each on its own future; under trio a reader waits on
an ``anyio.Event``. :func:`set_waiter` wakes any of the three.
"""

from __future__ import annotations

import collections
from asyncio import Future
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ["REARM", "Batches", "Readers", "set_waiter"]


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

    A reader's cancellation cancels its own future only, so the others keep
    waiting (on one shared future it would cancel them all). ``set`` wakes
    one reader per message; while readers remain, the group puts itself back
    as the stream's waiter. A single reader waits on a bare future, so the
    publisher's path is unchanged when there is one reader.
    """

    __slots__ = ("_stream", "futures")

    def __init__(self, stream: Stream, futures: list[Future[None]]) -> None:
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

    def __init__(self, stream: Stream, limit: int | None) -> None:
        self._stream = stream
        self._limit = limit

    def __aiter__(self) -> Batches:
        return self

    def __anext__(self) -> Coroutine[Any, Any, list[Any]]:
        # The stream's own coroutine, not one wrapping it: a frame less per batch.
        return self._stream._batch(self._limit, True)
