"""The scenarios of ``wsmux bench``: throughput (baseline, a to f) and latency.

Each scenario reads the same bursts from the feed server in another process
(:mod:`wsmux.bench._server`): the baseline with websockets' client and orjson,
the others through a :class:`wsmux.Multiplexer`. Repetitions are interleaved
so that a machine slowing down hits every scenario alike.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import orjson

from .. import Multiplexer, Stream, StreamLagged
from ._memory import MB, peak_rss, reset_peak
from ._report import ScenarioResult
from ._server import symbol

__all__ = ["DEFAULT", "SCENARIOS", "run_async", "run_latency", "run_throughput"]

T = TypeVar("T")

#: (name, label, streams, symbols, fraction of the burst)
SCENARIOS: list[tuple[str, str, int, int, int]] = [
    ("baseline", "baseline: websockets + orjson loop", 0, 1, 1),
    ("a", "(a) 1 catch-all stream", 1, 1, 1),
    ("b", "(b) 1,000 symbol streams", 1000, 1000, 1),
    ("c", "(c) 10,000 symbol streams", 10_000, 10_000, 1),
    ("d", "(d) 100 catch-all streams", 100, 1, 10),
    ("e", "(e) 1 async handler", 0, 1, 1),
    ("f", "(f) (a) with transport=picows", 1, 1, 1),
]

#: Scenarios run when none are named: ``f`` needs the optional picows.
DEFAULT = ["baseline", "a", "b", "c", "d", "e"]


def run_async(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function on a fresh asyncio loop.

    Not ``anyio.run``: asyncio's runner turns Ctrl-C into a cancellation that
    a task may absorb; on a bare loop it raises KeyboardInterrupt at once, so
    the bench stops and its ``finally`` stops the feed server.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fn())
    finally:
        loop.close()


async def _baseline(url: str, n: int) -> tuple[float, int]:
    """The loop a user would write: websockets, orjson, no fan-out."""
    from websockets.asyncio.client import connect

    total = n + 1
    count = 0
    async with connect(url) as ws:
        start = time.perf_counter()
        await ws.send("go")
        async for raw in ws:
            orjson.loads(raw)
            count += 1
            if count == total:
                break
        elapsed = time.perf_counter() - start
    return elapsed, count - 1


async def _drain(stream: Stream, expected: int, lost: list[int]) -> int:
    """Read ``expected`` messages from a stream; count any lost to lag."""
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
    return count


async def _wsmux(url: str, name: str, n: int, streams: int) -> tuple[float, int]:
    """One repetition of a wsmux scenario; returns (seconds, deliveries)."""
    mux = Multiplexer(url, transport="picows" if name == "f" else "websockets")
    lost = [0]
    plan: list[tuple[Stream, int]] = []
    done = anyio.Event()
    handled = 0
    if name == "e":

        async def handler(msg: Any) -> None:
            nonlocal handled
            handled += 1
            if handled == n + 1:
                done.set()

        mux.add_handler(handler)
    elif name in ("b", "c"):
        per = [n // streams + (1 if k < n % streams else 0) for k in range(streams)]
        for k in range(streams):
            plan.append((mux.stream_filter({"s": symbol(k, streams)}), per[k]))
    else:
        plan = [(mux.stream_filter(), n + 1) for _ in range(streams)]
    counts: list[int] = []

    async def consume(stream: Stream, expected: int) -> None:
        counts.append(await _drain(stream, expected, lost))

    async with mux:
        async with anyio.create_task_group() as tg:
            for stream, expected in plan:
                tg.start_soon(consume, stream, expected)
            await anyio.sleep(0.05)  # let every consumer reach its first wait
            start = time.perf_counter()
            await mux.send("go")
            if name == "e":
                with anyio.fail_after(120):
                    await done.wait()
        elapsed = time.perf_counter() - start
        drops = mux.stats().drops
    if name == "e":
        return elapsed, handled - 1
    delivered = sum(counts) - lost[0] - drops
    if name not in ("b", "c"):
        delivered -= len(plan)  # the end markers
    return elapsed, delivered


def run_throughput(
    port: int, messages: int, repeat: int, names: list[str], progress: Callable[[str], None]
) -> list[ScenarioResult]:
    results: dict[str, ScenarioResult] = {}
    for name, label, streams, _symbols, fraction in SCENARIOS:
        if name in names:
            results[name] = ScenarioResult(
                name, label, max(1, messages // fraction), max(streams, 1 if name == "e" else 0)
            )
    peaks = dict.fromkeys(results, 0)

    async def one(name: str, record: bool) -> None:
        res = results[name]
        spec = next(s for s in SCENARIOS if s[0] == name)
        n = res.messages
        url = f"ws://127.0.0.1:{port}/?mode=burst&n={n}&symbols={spec[3]}"
        # Collect what the previous scenario left (10,000 tasks, say) so that
        # no run pays for another's garbage.
        gc.collect()
        reset_peak()
        if name == "baseline":
            elapsed, delivered = await _baseline(url, n)
            expected = n
        else:
            elapsed, delivered = await _wsmux(url, name, n, spec[2])
            expected = n * (spec[2] if name == "d" else 1)
        peaks[name] = max(peaks[name], peak_rss())
        if delivered != expected:
            res.complete = False
        if record:
            res.rates.append(n / elapsed)

    async def main() -> None:
        # Warm-up: build every burst on the server, warm caches and the allocator.
        progress("warm-up")
        for name in results:
            await one(name, record=False)
        for rep in range(repeat):
            for name in results:
                await one(name, record=True)
            progress(f"repetition {rep + 1}/{repeat}: " + _brief(results))

    run_async(main)
    base = results["baseline"]
    for res in results.values():
        res.median = statistics.median(res.rates)
        res.spread = (max(res.rates) - min(res.rates)) / res.median if res.median else 0.0
        res.peak_rss_mb = peaks[res.name] / MB
        res.deliveries_per_s = res.median * (res.streams if res.name == "d" else 1)
    for res in results.values():
        pairs = [r / b for r, b in zip(res.rates, base.rates, strict=True) if b]
        res.ratio = statistics.median(pairs) if pairs else 0.0
    return list(results.values())


def _brief(results: dict[str, ScenarioResult]) -> str:
    return ", ".join(f"{r.name} {r.rates[-1] / 1000:.0f}k/s" for r in results.values() if r.rates)


# -- latency -------------------------------------------------------------------


async def _latency_baseline(url: str) -> list[int]:
    from websockets.asyncio.client import connect

    out: list[int] = []
    async with connect(url) as ws:
        await ws.send("go")
        async for raw in ws:
            msg = orjson.loads(raw)
            now = time.monotonic_ns()
            if msg["e"] == "end":
                break
            out.append(now - msg["ts"])
    return out


async def _latency_wsmux(url: str) -> list[int]:
    out: list[int] = []
    async with Multiplexer(url) as mux:
        stream = mux.stream_filter()
        await mux.send("go")
        async for msg in stream:
            now = time.monotonic_ns()
            if msg["e"] == "end":
                break
            out.append(now - msg["ts"])
    return out


def run_latency(
    port: int, count: int, progress: Callable[[str], None]
) -> dict[str, dict[str, float]]:
    url = f"ws://127.0.0.1:{port}/?mode=paced&n={count}&rate=10000"
    samples: dict[str, list[int]] = {"baseline": [], "wsmux": []}

    async def main() -> None:
        # Two interleaved rounds each, the first quarter of each dropped as warm-up.
        for _ in range(2):
            for name, fn in (("baseline", _latency_baseline), ("wsmux", _latency_wsmux)):
                got = await fn(url)
                samples[name].extend(got[len(got) // 4 :])

    run_async(main)
    out: dict[str, dict[str, float]] = {}
    for name, values in samples.items():
        values.sort()
        k = len(values)
        out[name] = {
            "samples": float(k),
            "median_us": values[k // 2] / 1000 if k else 0.0,
            "p90_us": values[int(k * 0.9)] / 1000 if k else 0.0,
            "p99_us": values[int(k * 0.99)] / 1000 if k else 0.0,
        }
    progress(
        "latency: median baseline {:.0f} us, wsmux {:.0f} us".format(
            out["baseline"]["median_us"], out["wsmux"]["median_us"]
        )
    )
    return out
