"""Reliability suite (issue 4): real sockets, injected faults, exact outcomes.

Every case runs a :class:`~wsmux.Multiplexer` against a local
:class:`~wsmux.testing.FeedServer` on both anyio backends and asserts counts,
not just survival: reconnects per fault, gaps per reconnect, sequence numbers
per connection, attempts per second, counters against each other. Cases that
take more than a couple of seconds are marked ``slow`` (the soak and the
memory test live in ``test_soak.py``).
"""

from __future__ import annotations

import gc
import itertools
import random
import time
import warnings
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import orjson
import pytest
from fanout._reference import reference_match
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsmux import ConnectionGap, FatalConnectError, RetriesExhausted, StreamLagged
from wsmux._mux import Multiplexer
from wsmux.connection._backoff import Backoff
from wsmux.fanout._hub import Hub
from wsmux.fanout._stream import Stream
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

#: Small delays everywhere: faults are detected and repaired in milliseconds.
FAST: dict[str, Any] = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "reset_after": 0.5,
    "close_timeout": 0.2,
    "open_timeout": 2.0,
}


# -- helpers -------------------------------------------------------------------


def live_tasks() -> int:
    """Count the tasks alive in the running event loop (either backend)."""
    from wsmux.connection._transport import current_backend

    if current_backend() == "trio":
        import trio

        count, stack = 0, [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            count += 1
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
        return count
    import asyncio

    return len(asyncio.all_tasks())


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    """Poll a client-side condition every 5 ms, failing after ``timeout``."""
    try:
        with anyio.fail_after(timeout):
            while not predicate():
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what or predicate}"
        ) from None


async def settle_tasks(baseline: int, timeout: float = 2.0) -> int:
    """Wait until at most ``baseline`` tasks are alive; return the final count."""
    with anyio.move_on_after(timeout):
        while live_tasks() > baseline:
            await anyio.sleep(0.005)
    return live_tasks()


class Recorder:
    """Reads one stream in a task and records what it saw.

    ``segments`` splits the ``seq`` numbers at each ``ConnectionGap``;
    ``lagged`` adds up ``StreamLagged`` counts; ``ended`` is set when the
    stream ended cleanly, ``end`` holds the error it ended with otherwise
    (check both with :meth:`assert_ended`). With ``keep=False`` only counts,
    the last ``seq`` and whether the numbers kept increasing are kept (for
    runs of a million messages).
    """

    def __init__(
        self, stream: Stream, *, delay: float = 0.0, name: str = "", keep: bool = True
    ) -> None:
        self.stream = stream
        self.keep = keep
        self.latest = 0
        self.increasing = True
        self.delay = delay
        self.name = name
        self.segments: list[list[int]] = [[]]
        self.symbols: list[str] = []
        self.count = 0
        self.gaps = 0
        self.lag_events = 0
        self.lagged = 0
        self.end: BaseException | None = None
        self.ended = False

    @property
    def seqs(self) -> list[int]:
        return [s for seg in self.segments for s in seg]

    @property
    def last(self) -> int:
        return self.latest

    async def run(self) -> None:
        while True:
            try:
                msg = await self.stream.receive()
            except ConnectionGap:
                self.gaps += 1
                self.segments.append([])
                continue
            except StreamLagged as exc:
                self.lag_events += 1
                self.lagged += exc.count
                continue
            except anyio.EndOfStream:
                self.ended = True
                return
            except Exception as exc:
                self.end = exc
                return
            self.count += 1
            if isinstance(msg, dict) and "seq" in msg:
                seq = msg["seq"]
                if seq <= self.latest:
                    self.increasing = False
                self.latest = seq
                if self.keep:
                    self.segments[-1].append(seq)
                    self.symbols.append(msg.get("s", ""))
            if self.delay:
                await anyio.sleep(self.delay)

    def assert_ended(self, error: type[BaseException] | None = None) -> None:
        """Assert that iteration is over: cleanly, or with an ``error`` instance."""
        label = self.name or repr(self.stream)
        if error is None:
            assert self.end is None, f"{label} ended with {self.end!r}, not cleanly"
            assert self.ended, f"{label} has not ended"
        else:
            assert isinstance(self.end, error), f"{label} ended with {self.end!r}, not {error}"


def contiguous(seqs: list[int]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(seqs))


class RecordingBackoff(Backoff):
    """A seeded Backoff that remembers every delay it handed out."""

    seed = 7
    made: list[RecordingBackoff] = []  # noqa: RUF012 - reset by the fixture

    def __init__(self, base: float, cap: float) -> None:
        super().__init__(base, cap, rng=random.Random(self.seed))
        self.delays: list[float] = []
        self.resets = 0
        RecordingBackoff.made.append(self)

    def next(self) -> float:
        delay = super().next()
        self.delays.append(delay)
        return delay

    def reset(self) -> None:
        self.resets += 1
        super().reset()


@pytest.fixture
def backoff() -> Callable[[], RecordingBackoff]:
    """A seeded, observable backoff, passed with ``backoff=`` to one multiplexer."""
    RecordingBackoff.made = []

    def only() -> RecordingBackoff:
        assert len(RecordingBackoff.made) == 1
        return RecordingBackoff.made[0]

    return only


@asynccontextmanager
async def server(**options: Any) -> AsyncIterator[FeedServer]:
    options.setdefault("symbols", 3)
    options.setdefault("kinds", ("trade",))
    async with FeedServer(**options) as srv:
        yield srv


def intervals(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- abrupt drops ----------------------------------------------------------------


@pytest.mark.slow
async def test_fifty_abrupt_drops_under_a_steady_feed() -> None:
    drops = 50
    calls = {"disconnect": 0, "reconnect": 0}
    reconnect_args: list[tuple[Any, ...]] = []

    def on_disconnect(mux: Multiplexer) -> None:
        calls["disconnect"] += 1

    async def on_reconnect(mux: Multiplexer, *args: Any) -> None:
        calls["reconnect"] += 1
        reconnect_args.append(args)

    async with server() as srv:
        mux = Multiplexer(
            srv.url,
            **(FAST | {"backoff_base": 0.005, "backoff_cap": 0.03}),
            disconnect_fn=on_disconnect,
            reconnect_fn=on_reconnect,
            reconnect_args=("resync", 1),
        )
        gap_rec = Recorder(mux.stream_filter(gaps="raise", maxsize=100_000))
        plain = Recorder(mux.stream_filter(maxsize=100_000))
        sym0 = Recorder(mux.stream_filter({"s": "SYM0"}, gaps="raise", maxsize=100_000))
        sync_seen: list[int] = []
        async_seen: list[int] = []
        mux.add_handler(lambda m: sync_seen.append(m["seq"]))

        async def on_message(msg: dict[str, Any]) -> None:
            async_seen.append(msg["seq"])

        mux.add_handler(on_message, maxsize=100_000)
        async with mux, anyio.create_task_group() as tg:
            for rec in (gap_rec, plain, sym0):
                tg.start_soon(rec.run)
            srv.start_feed(rate=4000, min_clients=1)
            await wait_for(lambda: len(gap_rec.segments[-1]) >= 5, what="first messages")
            tasks_when_up = live_tasks()
            for i in range(drops):
                # Consumers keep receiving: messages arrived on this connection.
                await wait_for(lambda: len(gap_rec.segments[-1]) >= 3, what=f"data after {i}")
                assert srv.drop() == 1
                await wait_for(lambda i=i: mux.stats().reconnects == i + 1, what=f"reconnect {i}")
            await wait_for(lambda: len(gap_rec.segments[-1]) >= 3, what="data after the last")
            srv.stop_feed()
            with anyio.fail_after(5):
                await srv.wait_feed_done_async()
            last = srv.last_seq
            await wait_for(lambda: gap_rec.last == plain.last == last, what="the last message")
            await wait_for(lambda: calls["reconnect"] == drops, what="reconnect callbacks")
            tasks_at_end = await settle_tasks(tasks_when_up)
            stats = mux.stats()
            await mux.exit()

        server_stats = srv.stats()
    for rec in (gap_rec, plain, sym0):
        rec.assert_ended()  # exit() ends every stream cleanly, after 50 drops
    # One reconnect per drop, and nothing else.
    assert server_stats.faults["drop"] == drops
    assert server_stats.handshakes == server_stats.accepted == drops + 1
    assert (stats.disconnects, stats.reconnects, stats.connects) == (drops, drops, drops + 1)
    assert (stats.connect_errors, stats.stale, stats.rotations, stats.drops) == (0, 0, 0, 0)
    assert stats.last_disconnect == "connection dropped without a close frame"
    assert calls == {"disconnect": drops, "reconnect": drops}
    assert set(reconnect_args) == {("resync", 1)}
    # gaps="raise": exactly one ConnectionGap per drop, data between every two.
    assert gap_rec.gaps == drops and len(gap_rec.segments) == drops + 1
    for seg in gap_rec.segments:
        assert seg, "a connection delivered nothing"
        assert contiguous(seg), "a message was lost on a live connection"
    firsts = [seg[0] for seg in gap_rec.segments]
    assert firsts == sorted(set(firsts))
    # Every subscriber saw the same messages, in order.
    assert plain.gaps == 0 and plain.seqs == gap_rec.seqs
    assert sync_seen == async_seen == gap_rec.seqs
    assert stats.messages == len(gap_rec.seqs) and stats.parse_errors == 0
    assert sym0.gaps == drops
    assert sym0.seqs == [
        s for s, sym in zip(gap_rec.seqs, gap_rec.symbols, strict=True) if sym == "SYM0"
    ]
    # The per-connection tasks of 50 dead connections are all gone.
    assert tasks_at_end <= tasks_when_up


# -- dead connections: half-open and silent --------------------------------------


@pytest.mark.parametrize(
    ("fault", "detector"),
    [("half_open", "ping"), ("half_open", "stale"), ("silence", "stale")],
)
async def test_dead_connection_is_detected_and_replaced_in_time(fault: str, detector: str) -> None:
    if detector == "ping":
        options = {"ping_interval": 0.1, "ping_timeout": 0.1, "stale_after": None}
        budget = 0.1 + 0.1  # a ping is due, then its pong is overdue
    else:
        options = {"ping_interval": 0.1 if fault == "silence" else None, "stale_after": 0.3}
        budget = 0.3 + 0.3 / 4  # the stale watch looks every quarter period
    budget += FAST["backoff_cap"] + 0.25  # backoff, reconnection, scheduling slack
    async with server() as srv:
        mux = Multiplexer(srv.url, **(FAST | options))
        rec = Recorder(mux.stream_filter(gaps="raise"))
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(rec.run)
            srv.start_feed(rate=2000)
            await wait_for(lambda: rec.count >= 10, what="first messages")
            assert getattr(srv, fault)() == 1
            start = time.monotonic()
            await wait_for(lambda: len(rec.segments[-1]) >= 10 and rec.gaps == 1, what="recovery")
            took = time.monotonic() - start
            stats = mux.stats()
            first = srv.record(1)
            await mux.exit()
    rec.assert_ended()
    assert (stats.disconnects, stats.reconnects, stats.connects) == (1, 1, 2)
    assert stats.stale == (1 if detector == "stale" else 0)
    if detector == "stale":
        assert stats.last_disconnect == "stale"
        assert took >= 0.3 - 0.05, f"declared stale after {took:.3f}s, before stale_after"
    else:
        # websockets says "keepalive ping timeout", picows "not replied to ping".
        reason = str(stats.last_disconnect)
        assert "keepalive" in reason or "ping" in reason, reason
    assert took < budget, f"replaced after {took:.3f}s, budget {budget:.3f}s"
    assert contiguous(rec.segments[0]) and contiguous(rec.segments[1])
    assert first.closed_at is not None  # the dead socket was not left open


# -- refusals and backoff ----------------------------------------------------------


async def test_503_five_times_then_success(backoff: Callable[[], RecordingBackoff]) -> None:
    base, cap = 0.02, 0.15
    async with server() as srv:
        srv.refuse(5, status=503)
        mux = Multiplexer(srv.url, backoff=RecordingBackoff(base, cap), **FAST)
        async with mux:
            stats = mux.stats()
            assert mux.state == "open"
            times = srv.handshake_times()
            await mux.exit()
    delays = backoff().delays
    assert len(times) == 6 and srv.stats().refused == 5
    assert (stats.connect_errors, stats.connects, stats.disconnects) == (5, 1, 0)
    assert len(delays) == 5
    # Decorrelated jitter: each delay in [base, min(cap, 3 * previous)].
    previous = base
    for delay in delays:
        assert base <= delay <= min(cap, 3 * previous) + 1e-9
        previous = delay
    assert len(set(delays)) == len(delays), "no jitter"
    assert max(delays[2:]) > 2 * delays[0], f"delays do not grow: {delays}"
    assert max(delays) <= cap
    # ... and the client really waited that long between attempts.
    for waited, delay in zip(intervals(times), delays, strict=True):
        assert delay - 0.005 <= waited <= delay + 0.1, (waited, delay)


async def test_accept_then_drop_is_backed_off_not_hammered(
    backoff: Callable[[], RecordingBackoff],
) -> None:
    base, cap = 0.01, 0.1
    async with server() as srv:
        srv.accept_then_drop(None)
        mux = Multiplexer(srv.url, backoff=RecordingBackoff(base, cap), **FAST)
        async with anyio.create_task_group() as tg:
            tg.start_soon(mux.run)
            with anyio.fail_after(5):
                await srv.wait_until_async(lambda: len(srv.handshake_times()) >= 10)
            times = srv.handshake_times()[:10]
            srv.accept_then_drop(0)
            await mux.wait_connected(5)
            await mux.exit()
    rb = backoff()
    waited = intervals(times)
    assert rb.resets == 0, "the backoff was reset by connections that died at once"
    assert all(w >= base - 0.005 for w in waited)
    for w, delay in zip(waited, rb.delays, strict=False):
        assert w >= delay - 0.005, (w, delay)
    # Attempts per second: never faster than one per base delay, and the total
    # time is at least the sum of the delays (a reset-on-connect client would
    # retry after base every time; a hammering one, in a millisecond).
    rate = len(waited) / (times[-1] - times[0])
    assert rate <= 1 / base, f"{rate:.0f} attempts per second"
    assert times[-1] - times[0] >= sum(rb.delays[: len(waited)]) - 0.005
    assert len(set(rb.delays)) == len(rb.delays)


async def test_401_is_fatal_at_once_with_one_attempt() -> None:
    async with server() as srv:
        srv.refuse(None, status=401)
        mux = Multiplexer(srv.url, **(FAST | {"backoff_base": 1.0, "backoff_cap": 2.0}))
        stream = mux.stream_filter()
        start = time.monotonic()
        with pytest.raises(FatalConnectError) as info:
            async with mux:
                pytest.fail("connected despite 401")
        took = time.monotonic() - start
        assert info.value.status == 401
        assert srv.stats().handshakes == 1
        assert took < 0.5
        assert mux.state == "failed" and mux.stats().connect_errors == 1
        with pytest.raises(FatalConnectError):
            await stream.receive()


async def test_401_on_reconnect_ends_streams_with_the_error() -> None:
    async with server() as srv:
        mux = Multiplexer(srv.url, **FAST)
        stream = mux.stream_filter()
        with pytest.raises(FatalConnectError):
            async with mux:
                srv.refuse(None, status=401)
                srv.drop()
                with anyio.fail_after(2), pytest.raises(FatalConnectError):
                    await stream.receive()
        assert srv.stats().handshakes == 2
        assert mux.state == "failed"


async def test_max_attempts_bounds_retries() -> None:
    async with server() as srv:
        srv.refuse(None, status=503)
        mux = Multiplexer(srv.url, **(FAST | {"max_attempts": 3}))
        with pytest.raises(RetriesExhausted):
            async with mux:
                pass
        assert srv.stats().handshakes == 3


@pytest.mark.parametrize(
    ("retry_after", "cap", "expected"), [(0.3, 300.0, 0.3), (30.0, 0.25, 0.25)]
)
async def test_429_honours_retry_after(retry_after: float, cap: float, expected: float) -> None:
    async with server() as srv:
        srv.refuse(1, status=429, retry_after=retry_after)
        mux = Multiplexer(srv.url, **(FAST | {"retry_after_cap": cap}))
        async with mux:
            times = srv.handshake_times()
            await mux.exit()
    assert len(times) == 2
    waited = times[1] - times[0]
    assert expected - 0.005 <= waited <= expected + 0.15, waited


async def test_429_without_retry_after_backs_off_longer_and_is_retried(
    backoff: Callable[[], RecordingBackoff],
) -> None:
    base, cap = 0.02, 1.0
    async with server() as srv:
        srv.refuse(1, status=429)
        opts = FAST | {"backoff_base": base, "backoff_cap": cap}
        mux = Multiplexer(srv.url, backoff=RecordingBackoff(base, cap), **opts)
        with anyio.fail_after(3):
            async with mux:
                times = srv.handshake_times()
                stats = mux.stats()
                await mux.exit()
    delays = backoff().delays
    assert len(times) == 2 and len(delays) == 1
    assert (stats.connect_errors, stats.connects) == (1, 1)
    # A 503 would wait delays[0] (in [base, 3 * base]); a 429 waits longer.
    waited = times[1] - times[0]
    assert waited >= 2 * delays[0], (waited, delays)
    assert waited >= 2 * base


@pytest.mark.parametrize("status", [400, 404])
async def test_other_4xx_are_fatal_at_once_with_one_attempt(status: int) -> None:
    async with server() as srv:
        srv.refuse(None, status=status)
        mux = Multiplexer(srv.url, **(FAST | {"backoff_base": 1.0, "backoff_cap": 2.0}))
        stream = mux.stream_filter()
        with anyio.fail_after(2), pytest.raises(FatalConnectError) as info:
            async with mux:
                pytest.fail(f"connected despite {status}")
        assert info.value.status == status
        assert srv.stats().handshakes == 1
        assert mux.state == "failed" and mux.stats().connect_errors == 1
        with pytest.raises(FatalConnectError):
            await stream.receive()


async def test_backoff_resets_only_after_reset_after_of_uptime(
    backoff: Callable[[], RecordingBackoff],
) -> None:
    reset_after = 0.3
    opts = FAST | {"backoff_base": 0.02, "backoff_cap": 0.1, "reset_after": reset_after}
    async with server() as srv:
        mux = Multiplexer(srv.url, backoff=RecordingBackoff(0.02, 0.1), **opts)
        async with mux:
            rb = backoff()

            async def drop_after(uptime: float, n: int) -> None:
                await anyio.sleep(uptime)  # the uptime under test, not a wait for an event
                assert srv.drop() == 1
                await wait_for(lambda: mux.stats().reconnects == n, what=f"reconnect {n}")

            await drop_after(0.0, 1)  # dropped at once: backed off
            assert (rb.resets, len(rb.delays)) == (0, 1)
            await drop_after(reset_after / 2, 2)  # up for half of reset_after: still backed off
            assert (rb.resets, len(rb.delays)) == (0, 2)
            await drop_after(reset_after + 0.1, 3)  # up long enough: reset, reconnect at once
            assert (rb.resets, len(rb.delays)) == (1, 2)
            await mux.exit()


async def test_send_waits_for_an_open_connection() -> None:
    async with server() as srv:
        mux = Multiplexer(srv.url, **FAST)
        async with mux:
            srv.refuse(None, status=503)
            assert srv.drop() == 1
            await wait_for(lambda: mux.state == "reconnecting")
            refused = srv.stats().refused
            sent = anyio.Event()

            async def send() -> None:
                await mux.send({"op": "hello"}, timeout=5)
                sent.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                with anyio.fail_after(5):
                    # Two more refusals while send() is waiting ...
                    await srv.wait_until_async(lambda: srv.stats().refused >= refused + 2)
                assert not sent.is_set() and srv.client_messages() == []
                srv.refuse(0)  # ... then the server lets it in
                with anyio.fail_after(5):
                    await sent.wait()
                    await srv.wait_for_messages_async(1)
            live = srv.open_connections()
            await mux.exit()
    assert srv.client_messages() == [{"op": "hello"}]
    assert len(live) == 1 and live[0].id > 1 and live[0].messages == [{"op": "hello"}]


async def test_a_stalled_stream_does_not_delay_another() -> None:
    total = 2000
    async with server() as srv:
        mux = Multiplexer(srv.url, **FAST)
        fast = Recorder(mux.stream_filter(), name="fast")
        stalled = mux.stream_filter(maxsize=8)  # never read until the end
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(fast.run)
            srv.start_feed(count=total, min_clients=1)
            # Had the stalled stream any hold on the reader, this would never happen.
            await wait_for(lambda: fast.last == total, 5, "the fast consumer")
            stalled_stats = stalled.statistics()
            await mux.exit()
    fast.assert_ended()
    assert fast.seqs == list(range(1, total + 1)) and fast.lag_events == 0
    # The stalled stream kept its newest 8 and counted the rest as dropped.
    assert stalled_stats == (0, total - 8, 8, 8)


# -- planned rotation --------------------------------------------------------------


class Rotating(Multiplexer):
    """Rotates its connection every 200 ms."""

    async def _when2create_new_ws(self) -> None:
        await anyio.sleep(0.2)


class RotatingExactlyOnce(Rotating):
    """... and drops the repeats of the overlap by ``seq``."""

    def _message_id(self, msg: Any) -> Hashable | None:
        return msg.get("seq") if isinstance(msg, dict) else None


@pytest.mark.slow
@pytest.mark.parametrize("dedupe", [True, False], ids=["message_id", "no_message_id"])
async def test_rotation_every_200ms_under_a_broadcast(dedupe: bool) -> None:
    rotations = 12
    cls = RotatingExactlyOnce if dedupe else Rotating
    async with server() as srv:
        mux = cls(srv.url, **FAST, rotation_interval=0.05)
        everything = Recorder(mux.stream_filter(gaps="raise", maxsize=100_000))
        sym1 = Recorder(mux.stream_filter({"s": "SYM1"}, gaps="raise", maxsize=100_000))
        sync_seen: list[int] = []
        async_seen: list[int] = []
        mux.add_handler(lambda m: sync_seen.append(m["seq"]) if "seq" in m else None)

        async def on_message(msg: dict[str, Any]) -> None:
            if "seq" in msg:
                async_seen.append(msg["seq"])

        mux.add_handler(on_message, maxsize=100_000)
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(everything.run)
            tg.start_soon(sym1.run)
            await mux.subscribe("sym0@trade")  # replayed on each connection: replies have no seq
            srv.start_feed(rate=3000, min_clients=1)
            await wait_for(lambda: mux.stats().rotations >= rotations, 30, "rotations")
            srv.stop_feed()
            with anyio.fail_after(5):
                last = await srv.wait_feed_done_async()
            assert last == srv.last_seq

            def complete() -> bool:
                return all(len(set(seen)) == last for seen in (everything.seqs, async_seen))

            await wait_for(complete, what="every message")
            stats = mux.stats()
            await mux.exit()
    everything.assert_ended()
    sym1.assert_ended()
    assert last > 3000 * 0.2 * rotations * 0.8
    assert (stats.disconnects, stats.reconnects, stats.stale) == (0, 0, 0)
    assert stats.connects - stats.rotations in (1, 2)  # 2: the next rotation had begun
    everyone = (everything.seqs, sync_seen, async_seen)
    assert everything.gaps == sym1.gaps == 0, "a planned rotation raised ConnectionGap"
    expected = list(range(1, last + 1))
    syms = dict(zip(everything.seqs, everything.symbols, strict=True))
    if dedupe:
        # Exactly once, in order, for every consumer.
        for seen in everyone:
            assert seen == expected
        assert sym1.seqs == [s for s in expected if syms[s] == "SYM1"]
        assert stats.duplicates > 0  # the overlap was real, and dropped
    else:
        # None missing; the fence bounds the repeats to about one round trip
        # per rotation (here at most 50 ms of a 3,000 msg/s feed).
        for seen in everyone:
            assert set(seen) == set(expected)
            assert len(seen) - len(set(seen)) <= stats.rotations * 150
        assert set(sym1.seqs) == {s for s in expected if syms[s] == "SYM1"}


# -- a slow consumer beside a fast one ------------------------------------------------


async def test_slow_consumer_lags_alone() -> None:
    total = 20_000
    async with server() as srv:
        mux = Multiplexer(srv.url, **FAST)
        fast = Recorder(mux.stream_filter(), name="fast")
        slow = Recorder(mux.stream_filter(maxsize=100, overflow="lag"), delay=0.001, name="slow")
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(fast.run)
            tg.start_soon(slow.run)
            srv.start_feed(count=total, min_clients=1)
            await wait_for(lambda: fast.last == total, 10, "the fast consumer")
            slow.delay = 0.0
            await wait_for(lambda: slow.last == total, 2, "the slow consumer")
            stats = mux.stats()
            slow_stats = slow.stream.statistics()
            fast_stats = fast.stream.statistics()
            await mux.exit()
    fast.assert_ended()
    slow.assert_ended()
    assert fast.seqs == list(range(1, total + 1)) and fast.lag_events == 0
    assert fast_stats.dropped == 0 and fast_stats.delivered == total
    # The slow one lost messages, was told how many, and the counts add up.
    assert slow.lag_events > 0
    assert slow.lagged == slow_stats.dropped == stats.drops
    assert slow.count + slow.lagged == total
    assert slow_stats.delivered == slow.count and slow_stats.buffered == 0
    assert slow_stats.peak == 100
    seqs = slow.seqs
    assert seqs == sorted(set(seqs)) and seqs[-1] == total  # in order, no repeats


# -- bad input ----------------------------------------------------------------------


async def test_garbage_frames_are_counted_and_skipped() -> None:
    total = 5000
    async with server(seed=3) as srv:
        mux = Multiplexer(srv.url, **FAST)
        rec = Recorder(mux.stream_filter(gaps="raise", maxsize=10_000))
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(rec.run)
            srv.start_feed(count=total, garbage_ratio=0.1, min_clients=1)
            with anyio.fail_after(5):
                await srv.wait_feed_done_async()
            await wait_for(lambda: rec.last == total, what="the last message")
            stats = mux.stats()
            garbage = srv.stats().garbage_sent
            await mux.exit()
    rec.assert_ended()
    assert 0.07 * total < garbage < 0.13 * total
    assert rec.seqs == list(range(1, total + 1)) and rec.gaps == 0
    assert stats.parse_errors == garbage
    assert stats.messages == total + garbage
    assert (stats.disconnects, stats.reconnects) == (0, 0)


async def test_oversized_frame_triggers_one_counted_reconnect() -> None:
    async with server() as srv:
        mux = Multiplexer(srv.url, **(FAST | {"max_size": 4096}))
        rec = Recorder(mux.stream_filter(gaps="raise"))
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(rec.run)
            srv.start_feed(rate=2000, min_clients=1)
            await wait_for(lambda: rec.count >= 10, what="first messages")
            srv.send_garbage("oversize", size=4097)
            await wait_for(lambda: rec.gaps == 1 and len(rec.segments[-1]) >= 10, what="recovery")
            stats = mux.stats()
            await mux.exit()
    rec.assert_ended()
    assert (stats.disconnects, stats.reconnects, stats.connects) == (1, 1, 2)
    assert stats.parse_errors == 0
    assert "1009" in str(stats.last_disconnect), stats.last_disconnect
    assert srv.record(1).close_code == 1009
    assert all(contiguous(seg) for seg in rec.segments)


async def test_a_handler_raising_on_every_message_disturbs_nobody() -> None:
    total = 2000
    async with server() as srv:
        mux = Multiplexer(srv.url, **FAST)
        rec = Recorder(mux.stream_filter())
        calls = {"sync": 0, "async": 0}

        def bad_sync(msg: Any) -> None:
            calls["sync"] += 1
            raise ValueError("sync handler bug")

        async def bad_async(msg: Any) -> None:
            calls["async"] += 1
            raise RuntimeError("async handler bug")

        good: list[int] = []
        mux.add_handler(bad_sync)
        mux.add_handler(bad_async, maxsize=10_000)
        mux.add_handler(lambda m: good.append(m["seq"]))
        async with mux, anyio.create_task_group() as tg:
            tg.start_soon(rec.run)
            srv.start_feed(count=total, min_clients=1)
            await wait_for(lambda: rec.last == total and calls["async"] == total, what="all")
            stats = mux.stats()
            await mux.exit()
    rec.assert_ended()
    assert rec.seqs == good == list(range(1, total + 1))
    assert calls == {"sync": total, "async": total}
    assert stats.handler_errors == 2 * total
    assert (stats.disconnects, stats.drops, mux.state) == (0, 0, "closed")


# -- exit() from anywhere ---------------------------------------------------------------


class RotateOnce(Multiplexer):
    """Asks for a rotation 50 ms after the first connection opens."""

    rotated = False

    async def _when2create_new_ws(self) -> None:
        if self.rotated:
            await anyio.sleep_forever()
        self.rotated = True
        await anyio.sleep(0.05)


@pytest.mark.parametrize(
    "when", ["connecting", "backoff", "reconnect_backoff", "rotating", "handler"]
)
async def test_exit_returns_promptly_and_leaves_nothing(when: str) -> None:
    baseline = live_tasks()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with server() as srv:
            slow_backoff = {"backoff_base": 5.0, "backoff_cap": 10.0}
            cls = RotateOnce if when == "rotating" else Multiplexer
            mux = cls(srv.url, **(FAST | slow_backoff))
            stream = mux.stream_filter()
            exited = anyio.Event()
            took: list[float] = []
            errors: list[BaseException] = []

            async def exit_from_handler(msg: Any) -> None:
                if msg.get("seq") == 5:
                    start = time.monotonic()
                    await mux.exit()
                    took.append(time.monotonic() - start)
                    exited.set()

            if when == "handler":
                mux.add_handler(exit_from_handler)
            if when == "connecting":
                srv.delay_handshake(5.0)
            elif when == "backoff":
                srv.refuse(None, status=503)

            async def run() -> None:
                try:
                    await mux.run()
                except Exception as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                with anyio.fail_after(5):
                    if when in ("connecting", "backoff"):
                        await srv.wait_until_async(lambda: srv.stats().faults)
                        await wait_for(lambda: mux.state == "connecting")
                    elif when == "reconnect_backoff":
                        await mux.wait_connected()
                        srv.drop()  # the first delay is a backoff: uptime < reset_after
                        await wait_for(lambda: mux.state == "reconnecting")
                    elif when == "rotating":
                        await mux.wait_connected()
                        srv.delay_handshake(5.0)
                        await wait_for(lambda: mux.state == "rotating")
                        await srv.wait_until_async(lambda: srv.stats().handshakes == 2)
                    else:
                        srv.start_feed(rate=1000, min_clients=1)
                        await exited.wait()
                if when != "handler":
                    start = time.monotonic()
                    await mux.exit()
                    took.append(time.monotonic() - start)
            assert took[0] < 1.0, f"exit() took {took[0]:.2f}s"
            assert errors == [] and mux.state == "closed"
            with anyio.fail_after(1), pytest.raises(StopAsyncIteration):
                while True:  # the stream ends (after what it buffered)
                    await stream.__anext__()
            await wait_for(
                lambda: srv.stats().open == 0, 2, "the server to see every socket closed"
            )
        assert await settle_tasks(baseline) == baseline
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks, [str(w.message) for w in leaks]


# -- fuzz: parse (the real reader) + match + deliver ------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 2.5]),
    st.sampled_from(["a", "b", "BTC", ""]),
)
keys = st.sampled_from(["e", "s", "p", "x", "o"])
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=6,
)
messages = st.dictionaries(keys, values, max_size=5)
any_message = st.one_of(messages, st.lists(scalars, max_size=3))
filter_values = st.one_of(scalars, st.dictionaries(keys, scalars, min_size=1, max_size=2))
filters = st.one_of(
    st.none(),
    st.just([]),
    st.dictionaries(keys, filter_values, min_size=1, max_size=3),
    st.lists(st.dictionaries(keys, filter_values, min_size=1, max_size=2), min_size=1, max_size=3),
)
garbage = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b"not json", b'{"e":', b"]]", b"\xff\xfe", b"", b"{'e': 1}", b"nul", b"null"]),
)
# (payload, what the reader should make of it). Well-formed JSON goes as a text
# or a binary frame; garbage (which may happen to be valid JSON) as binary.
frames = st.one_of(
    st.tuples(any_message, st.booleans()).map(
        lambda mt: (orjson.dumps(mt[0]).decode() if mt[1] else orjson.dumps(mt[0]), "json")
    ),
    garbage.map(lambda raw: (raw, "raw")),
)
policies = st.sampled_from(["lag", "drop_oldest", "drop_newest", "block"])
subscribers = st.lists(st.tuples(filters, st.integers(1, 8), policies), min_size=1, max_size=5)
lossy = st.sampled_from(["lag", "drop_oldest", "drop_newest"])


def matches_filter(f: Any, msg: Any) -> bool:
    """What a subscriber with filter ``f`` must receive (DESIGN.md's rules)."""
    return bool(reference_match(f, msg)) if isinstance(msg, dict) else f in (None, [])


_UNPARSABLE = object()


def expected_parse(payload: str | bytes) -> Any:
    """The documented default parse step is orjson.loads; None means skip."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return _UNPARSABLE


def drain_nowait(stream: Stream) -> tuple[list[Any], int]:
    """Read what a stream buffered; return it and the StreamLagged total."""
    got: list[Any] = []
    lagged = 0
    while True:
        try:
            got.append(stream.receive_nowait())
        except StreamLagged as exc:
            lagged += exc.count
        except (anyio.WouldBlock, anyio.EndOfStream):
            return got, lagged


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subs=st.lists(
        st.tuples(
            filters, st.integers(1, 8), st.sampled_from(["lag", "drop_oldest", "drop_newest"])
        ),
        min_size=1,
        max_size=4,
    ),
    wire=st.lists(frames, max_size=30),
)
async def test_fuzz_frames_through_the_real_reader(
    subs: list[tuple[Any, int, str]], wire: list[tuple[str | bytes, str]]
) -> None:
    """Fuzzed frames from a real server through a real Multiplexer's reader."""
    end = {"end": len(wire)}
    wire = [*wire, (orjson.dumps(end).decode(), "json")]
    parsed = [expected_parse(payload) for payload, _ in wire]
    errors = sum(p is _UNPARSABLE for p in parsed)
    published = [p for p in parsed if p is not _UNPARSABLE and p is not None]
    async with FeedServer() as srv:
        mux = Multiplexer(srv.url, **FAST)
        everything = mux.stream_filter(maxsize=1000)
        # Nobody reads these until the end: overflow is deterministic.
        streams = [mux.stream_filter(f, maxsize=n, overflow=p) for f, n, p in subs]  # type: ignore[arg-type]
        async with mux:
            with anyio.fail_after(5):
                await srv.wait_for_connections_async(1)
                for payload, _ in wire:
                    srv.send(payload)
                received = []
                while not received or received[-1] != end:
                    received.append(await everything.receive())
            stats = mux.stats()
            await mux.exit()
    # Valid frames all arrive, in order, as parsed; nothing else does.
    assert received == published
    assert stats.parse_errors == errors
    assert stats.messages == len(wire)
    assert (stats.disconnects, stats.connects) == (0, 1)
    for stream, (f, maxsize, policy) in zip(streams, subs, strict=True):
        n = sum(matches_filter(f, msg) for msg in published)
        got, lagged = drain_nowait(stream)
        st_ = stream.statistics()
        assert st_.delivered == len(got) and st_.delivered + st_.dropped == n
        assert len(got) == min(n, maxsize)
        expected = [m for m in published if matches_filter(f, m)]
        if policy == "drop_newest":
            assert got == expected[:maxsize]
        else:
            assert got == expected[len(expected) - len(got) :]
        assert lagged == (st_.dropped if policy == "lag" else 0)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subs=subscribers, wire=st.lists(st.one_of(messages, st.lists(scalars, max_size=3)), max_size=40)
)
async def test_fuzz_match_deliver_accounting(
    subs: list[tuple[Any, int, str]], wire: list[Any]
) -> None:
    """The hub alone (the block policy included: nothing reads while it publishes)."""
    hub = Hub()
    streams = [hub.open_stream(f, maxsize=n, overflow=p) for f, n, p in subs]  # type: ignore[arg-type]
    matched = [0] * len(streams)
    for msg in wire:
        hub.publish(msg)
        for i, (f, _, _) in enumerate(subs):
            matched[i] += matches_filter(f, msg)
    for stream, (_, maxsize, policy), n in zip(streams, subs, matched, strict=True):
        got, lagged = drain_nowait(stream)
        stats = stream.statistics()
        # The accounting invariant: every matched message delivered or dropped.
        assert stats.delivered + stats.dropped == n == len(got) + stats.dropped
        assert stats.buffered == 0 and stats.peak <= max(maxsize, n if policy == "block" else 0)
        if policy == "lag":
            assert lagged == stats.dropped
        else:
            assert lagged == 0
        if policy == "block":
            assert stats.dropped == 0
        else:
            assert len(got) == min(n, maxsize)
    assert hub.dropped() == sum(s.statistics().dropped for s in streams)


@pytest.mark.parametrize("when", ["connecting", "open", "reconnect_backoff"])
async def test_cancelling_the_task_that_runs_the_multiplexer(when: str) -> None:
    baseline = live_tasks()
    async with server() as srv:
        mux = Multiplexer(srv.url, **(FAST | {"backoff_base": 5.0, "backoff_cap": 10.0}))
        if when == "connecting":
            srv.delay_handshake(5.0)
        start = time.monotonic()
        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                tg.start_soon(mux.run)
                if when == "connecting":
                    await srv.wait_until_async(lambda: srv.stats().faults)
                else:
                    await mux.wait_connected()
                if when == "reconnect_backoff":
                    srv.drop()
                    await wait_for(lambda: mux.state == "reconnecting")
                tg.cancel_scope.cancel()
        assert time.monotonic() - start < 1.5
        assert mux.state == "closed"
        await wait_for(lambda: srv.stats().open == 0, 2, "every socket closed")
    assert await settle_tasks(baseline) == baseline
