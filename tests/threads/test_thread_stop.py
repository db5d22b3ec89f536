"""Stopping a threaded multiplexer stops its plain handlers at once (issue 10, item 9).

A plain handler runs in a thread of its own and moves every message already
buffered to that thread in one trip. Leaving ``run_in_thread`` (or calling
``stop()``) must drop that batch, let the call in progress finish, and join
the thread: no handler call after ``stop()`` returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest

from wsmux import Multiplexer, MuxThread, ThreadStream, run_in_thread
from wsmux.testing import FeedServer

FAST: dict[str, Any] = {
    "backoff_base": 0.02,
    "backoff_cap": 0.1,
    "open_timeout": 2.0,
    "close_timeout": 0.5,
}
COUNT = 30  # messages fed; all but two end up in the handler thread's batch
WORK = 0.05  # seconds each later call takes: 28 of them would be 1.4 s


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(symbols=4) as srv:
        yield srv


class Slow:
    """A slow plain handler whose thread holds a batch when the test stops it.

    The first call waits for ``go``, so that the whole feed piles up in the
    handler's stream meanwhile; the second call (``second`` is set) comes
    from the batch the thread then took, and it and every later one take
    ``WORK`` seconds, as a handler doing real work would.
    """

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.first = threading.Event()
        self.go = threading.Event()
        self.second = threading.Event()
        self.thread: threading.Thread | None = None

    def handler(self) -> Callable[[Any], None]:
        def slow(msg: Any) -> None:
            self.calls.append(msg["seq"])
            if len(self.calls) == 1:
                self.thread = threading.current_thread()
                self.first.set()
                self.go.wait(5)
            else:
                self.second.set()
                threading.Event().wait(WORK)  # the handler's own work

        return slow

    def fill_batch(self, server: FeedServer, everything: ThreadStream) -> None:
        """Feed COUNT messages and return once the handler thread holds the rest."""
        server.start_feed(count=COUNT)
        assert self.first.wait(5)
        # Each publish reaches every stream before any reader runs, so once
        # this stream has them all the handler's stream has them all too.
        got = [next(everything)["seq"] for _ in range(COUNT)]
        assert got == list(range(1, COUNT + 1))
        self.go.set()
        assert self.second.wait(5)

    def assert_stopped(self, calls_before: int) -> None:
        """At most the call in progress ran; the thread is gone, so no call comes later."""
        assert self.thread is not None
        assert not self.thread.is_alive()
        assert self.thread.name.startswith("wsmux-handler-")
        assert len(self.calls) - calls_before <= 1, self.calls
        assert len(self.calls) < COUNT


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("how", ["with", "ctrl_c", "stop"])
def test_stop_drops_what_handler_threads_hold(
    server: FeedServer, backend: Literal["asyncio", "trio"], how: str
) -> None:
    """Leaving the block, by its end, by Ctrl-C, or by ``stop()``, takes one call at most.

    Fails on the old code: the handler thread went on through its batch
    (``COUNT - 2`` more calls, ``WORK`` seconds each) while ``stop()`` waited,
    and ``stop()`` gave up on it after its timeout with the thread still alive.
    """
    slow = Slow()
    t = run_in_thread(Multiplexer(server.url, **FAST), backend=backend)
    try:
        t.add_handler(slow.handler())
        slow.fill_batch(server, t.stream_filter(timeout=5))
        calls_before = len(slow.calls)
        started = time.monotonic()
        if how == "with":
            with t:
                pass
        elif how == "ctrl_c":
            with pytest.raises(KeyboardInterrupt), t:
                raise KeyboardInterrupt
        else:
            t.stop()
        elapsed = time.monotonic() - started
    finally:
        t.stop()
    slow.assert_stopped(calls_before)
    assert not t.running
    assert elapsed < (COUNT - 2) * WORK / 2


def test_stop_from_another_handler_thread(server: FeedServer) -> None:
    """``stop()`` in one handler's thread stops the others too; ``join()`` waits for them.

    Fails on the old code, as above: ``join()`` waited while the slow
    handler worked through its batch.
    """
    slow = Slow()
    holder: list[MuxThread] = []
    t = run_in_thread(Multiplexer(server.url, **FAST))
    holder.append(t)
    t.add_handler(slow.handler(), {"seq": lambda _: True})
    t.add_handler(lambda msg: holder[0].stop(), {"stop": True})
    slow.fill_batch(server, t.stream_filter(timeout=5))
    calls_before = len(slow.calls)
    server.send({"stop": True})
    t.join(5)
    slow.assert_stopped(calls_before)
    assert not t.running


def test_remove_handler_drops_its_batch(server: FeedServer) -> None:
    """Removing a handler ends its thread after the call in progress; the rest go on."""
    slow = Slow()
    with run_in_thread(Multiplexer(server.url, **FAST)) as t:
        fn = slow.handler()
        t.add_handler(fn)
        slow.fill_batch(server, t.stream_filter(timeout=5))
        calls_before = len(slow.calls)
        t.remove_handler(fn)
        slow.assert_stopped(calls_before)
        probe = t.stream_filter(timeout=5)
        server.send({"probe": 1})
        assert probe.receive() == {"probe": 1}
    assert len(slow.calls) - calls_before <= 1


def test_handler_added_while_stopping_is_stopped(server: FeedServer) -> None:
    """A handler added after ``stop()`` began is never left running."""
    t = run_in_thread(Multiplexer(server.url, **FAST))
    t.stop()
    calls: list[Any] = []
    t.add_handler(calls.append)
    t.stop()
    assert calls == []
