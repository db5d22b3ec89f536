"""The throughput scenarios of ``wsmux bench``: the registry, and how each reads.

Each scenario reads the same bursts from the feed server in another process
(:mod:`wsmux.bench._server`). The reference is ``baseline``: the best loop a
user could write with websockets alone (``recv(decode=False)`` and orjson,
with the ``max_queue`` and compression wsmux itself uses); ``default`` is the
loop most people write (``async for raw in ws``, websockets' defaults). Every
ratio is against ``baseline``. Repetitions are interleaved so that a machine
slowing down hits every scenario alike.

A scenario is one :class:`Scenario` in :data:`SCENARIOS`: a name, a label,
and a coroutine function ``run(url, n)`` that times one burst of ``n``
messages and returns an :data:`Outcome`. Adding one is one line here (its
``run`` may live in a module of its own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import anyio
import orjson

from .. import Multiplexer, Stream, StreamLagged
from ._memory import MB, peak_rss, reset_peak
from ._report import ScenarioResult
from ._server import symbol

__all__ = ["SCENARIOS", "Outcome", "Scenario", "default_names", "run_async", "run_throughput"]

T = TypeVar("T")

#: What one timed burst gives: seconds, messages delivered, the transport used.
Outcome = tuple[float, int, str]

#: wsmux's own websockets settings (``Multiplexer._create_ws``), for the baseline.
WS_TUNED: dict[str, Any] = {"max_queue": 1024, "compression": None}


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One row of the throughput table.

    Attributes:
        name: Short name, for ``--scenarios``.
        label: What the row measures, as the table shows it.
        run: ``run(url, n)``: time one burst of ``n`` messages.
        streams: Streams (or handlers) fed, for the table.
        symbols: Symbols the burst is spread over (the server's ``symbols``).
        fraction: The burst is ``messages // fraction`` messages.
        fanout: Each message is delivered this many times (broadcast).
        default: Run when no scenario is named.
    """

    name: str
    label: str
    run: Callable[[str, int], Awaitable[Outcome]]
    streams: int = 1
    symbols: int = 1
    fraction: int = 1
    fanout: int = 1
    default: bool = True


def run_async(fn: Callable[[], Coroutine[Any, Any, T]], loop: str = "asyncio") -> T:
    """Run a coroutine function on a fresh event loop.

    Not ``anyio.run``: asyncio's runner turns Ctrl-C into a cancellation that
    a task may absorb; on a bare loop it raises KeyboardInterrupt at once, so
    the bench stops and its ``finally`` stops the feed server.

    Args:
        fn: The coroutine function.
        loop: ``"asyncio"`` or ``"uvloop"`` (both sides of every ratio run on it).

    Returns:
        What ``fn`` returned.
    """
    ev: asyncio.AbstractEventLoop
    if loop == "uvloop":
        import uvloop

        ev = uvloop.new_event_loop()
    else:
        ev = asyncio.new_event_loop()
    try:
        return ev.run_until_complete(fn())
    finally:
        ev.close()


# -- the plain websockets loops -------------------------------------------------


async def _websockets_loop(url: str, n: int, *, tuned: bool) -> Outcome:
    """A loop on websockets alone: orjson, no fan-out."""
    from websockets.asyncio.client import connect

    total = n + 1
    count = 0
    async with connect(url, **(WS_TUNED if tuned else {})) as ws:
        gc.collect()  # as the others do, right before the timer
        start = time.perf_counter()
        await ws.send("go")
        if tuned:
            recv = ws.recv
            while count < total:
                orjson.loads(await recv(decode=False))
                count += 1
        else:
            async for raw in ws:
                orjson.loads(raw)
                count += 1
                if count == total:
                    break
        elapsed = time.perf_counter() - start
    return elapsed, count - 1, "websockets"


# -- wsmux ----------------------------------------------------------------------


async def _drain(stream: Stream, expected: int, lost: list[int], counts: list[int]) -> None:
    """Read ``expected`` messages one at a time; count any lost to lag.

    The consumer task itself (one frame, as a user's loop would be).
    """
    count = 0
    while count < expected:
        try:
            async for _msg in stream:
                count += 1
                if count == expected:
                    break
            else:
                break
        except StreamLagged as exc:
            lost[0] += exc.count
            count += exc.count
    counts.append(count)


async def _drain_batches(stream: Stream, expected: int, lost: list[int], counts: list[int]) -> None:
    """Read ``expected`` messages a batch at a time; count any lost to lag."""
    count = 0
    while count < expected:
        try:
            async for batch in stream.batches():
                count += len(batch)
                if count >= expected:
                    break
            else:
                break
        except StreamLagged as exc:
            lost[0] += exc.count
            count += exc.count
    counts.append(count)


async def _streams(
    url: str,
    n: int,
    *,
    count: int,
    symbols: bool = False,
    batches: bool = False,
    transport: str = "websockets",
    freeze: bool = False,
    anyio_tasks: bool = False,
) -> Outcome:
    """Streams read by one task each: catch-all (every message to each) or by symbol.

    The consumer tasks are asyncio tasks (an ``asyncio.TaskGroup``), as an
    asyncio application's would be; ``anyio_tasks`` spawns them from an anyio
    task group instead (anyio 4.16 runs each task's coroutine inside one of
    its own: a frame more per wake-up).
    """
    mux = Multiplexer(url, transport=transport)  # type: ignore[arg-type]
    lost = [0]
    if symbols:
        per = [n // count + (1 if k < n % count else 0) for k in range(count)]
        plan = [(mux.stream_filter({"s": symbol(k, count)}), per[k]) for k in range(count)]
    else:
        plan = [(mux.stream_filter(), n + 1) for _ in range(count)]  # + the end marker
    counts: list[int] = []
    drain = _drain_batches if batches else _drain

    async with mux:
        group: Any = anyio.create_task_group() if anyio_tasks else asyncio.TaskGroup()
        async with group:
            for stream, expected in plan:
                if anyio_tasks:
                    group.start_soon(drain, stream, expected, lost, counts)
                else:
                    group.create_task(drain(stream, expected, lost, counts))
            await anyio.sleep(0.05)  # let every consumer reach its first wait
            gc.collect()  # the set-up's garbage is not the feed's
            if freeze:
                gc.freeze()  # what docs/performance.md suggests for many streams
            start = time.perf_counter()
            await mux.send("go")
        elapsed = time.perf_counter() - start
        gc.unfreeze()
        stats = mux.stats()
    delivered = sum(counts) - lost[0] - stats.drops
    if not symbols:
        delivered -= count  # the end markers
    return elapsed, delivered, stats.transport


async def _handler(url: str, n: int, *, transport: str = "websockets") -> Outcome:
    """One async handler counts the burst."""
    mux = Multiplexer(url, transport=transport)  # type: ignore[arg-type]
    done = anyio.Event()
    handled = 0

    async def handler(msg: Any) -> None:
        nonlocal handled
        handled += 1
        if handled == n + 1:
            done.set()

    mux.add_handler(handler)
    async with mux:
        await anyio.sleep(0.05)
        gc.collect()
        start = time.perf_counter()
        await mux.send("go")
        with anyio.fail_after(120):
            await done.wait()
        elapsed = time.perf_counter() - start
        used = mux.stats().transport
    return elapsed, handled - 1, used


_p = functools.partial

#: Every scenario, in table order. ``baseline`` always runs and must stay first.
SCENARIOS: list[Scenario] = [
    Scenario(
        "baseline", "baseline: websockets recv(decode=False)", _p(_websockets_loop, tuned=True), 0
    ),
    Scenario(
        "default", "websockets default loop (async for)", _p(_websockets_loop, tuned=False), 0
    ),
    Scenario("a", "(a) 1 catch-all stream", _p(_streams, count=1)),
    Scenario("ab", "(a) 1 catch-all stream, batches", _p(_streams, count=1, batches=True)),
    Scenario("b", "(b) 1,000 symbol streams", _p(_streams, count=1000, symbols=True), 1000, 1000),
    Scenario(
        "c", "(c) 10,000 symbol streams", _p(_streams, count=10_000, symbols=True), 10_000, 10_000
    ),
    Scenario(
        "ca",
        "(c) 10,000 symbol streams, anyio tasks",
        _p(_streams, count=10_000, symbols=True, anyio_tasks=True),
        10_000,
        10_000,
    ),
    Scenario(
        "cb",
        "(c) 10,000 symbol streams, batches",
        _p(_streams, count=10_000, symbols=True, batches=True),
        10_000,
        10_000,
    ),
    Scenario(
        "cg",
        "(c) 10,000 symbol streams, gc.freeze()",
        _p(_streams, count=10_000, symbols=True, freeze=True),
        10_000,
        10_000,
    ),
    Scenario("d", "(d) 100 catch-all streams", _p(_streams, count=100), 100, 1, 10, 100),
    Scenario("e", "(e) 1 async handler", _handler),
    Scenario(
        "f", "(f) transport swap: (a), transport=auto", _p(_streams, count=1, transport="auto")
    ),
]


def default_names() -> list[str]:
    """Return the names of the scenarios run when none are named."""
    return [s.name for s in SCENARIOS if s.default]


def run_throughput(
    port: int,
    messages: int,
    repeat: int,
    names: list[str],
    progress: Callable[[str], None],
    loop: str = "asyncio",
    warmup: bool = True,
) -> list[ScenarioResult]:
    """Run the named scenarios (the baseline always), interleaved, and summarise.

    Args:
        port: The feed server's port.
        messages: Messages per burst.
        repeat: Timed repetitions, after one warm-up.
        names: The scenarios to run.
        progress: Called with one line per repetition.
        loop: The event loop: ``"asyncio"`` or ``"uvloop"``.
        warmup: Run each scenario once, untimed, first.

    Returns:
        One result per scenario, the baseline first.
    """
    specs = {s.name: s for s in SCENARIOS if s.name in names or s.name == "baseline"}
    results = {
        name: ScenarioResult(name, s.label, max(1, messages // s.fraction), s.streams)
        for name, s in specs.items()
    }
    peaks = dict.fromkeys(results, 0)

    async def one(name: str, record: bool) -> None:
        res, spec = results[name], specs[name]
        n = res.messages
        url = f"ws://127.0.0.1:{port}/?mode=burst&n={n}&symbols={spec.symbols}"
        # Collect what the previous scenario left (10,000 tasks, say) so that
        # no run pays for another's garbage.
        gc.collect()
        reset_peak()
        elapsed, delivered, transport = await spec.run(url, n)
        res.transport = transport
        peaks[name] = max(peaks[name], peak_rss())
        if delivered != n * spec.fanout:
            res.complete = False
        if record:
            res.rates.append(n / elapsed)

    async def main() -> None:
        # Warm-up: build every burst on the server, warm caches and the allocator.
        if warmup:
            progress("warm-up")
            for name in results:
                await one(name, record=False)
        for rep in range(repeat):
            for name in results:
                await one(name, record=True)
            progress(f"repetition {rep + 1}/{repeat}: " + _brief(results))

    run_async(main, loop)
    base = results["baseline"]
    for res in results.values():
        res.median = statistics.median(res.rates)
        res.spread = (max(res.rates) - min(res.rates)) / res.median if res.median else 0.0
        res.peak_rss_mb = peaks[res.name] / MB
        res.deliveries_per_s = res.median * specs[res.name].fanout
        pairs = [r / b for r, b in zip(res.rates, base.rates, strict=True) if b]
        res.ratio = statistics.median(pairs) if pairs else 0.0
    return list(results.values())


def _brief(results: dict[str, ScenarioResult]) -> str:
    return ", ".join(f"{r.name} {r.rates[-1] / 1000:.0f}k/s" for r in results.values() if r.rates)
