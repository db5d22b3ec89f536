"""``wsmux bench``: wsmux against the loop a user would otherwise write.

One run, one machine: a feed server in another process (see
:mod:`wsmux.bench._server`) bursts pre-encoded trades; the baseline reads them
with websockets' asyncio client and orjson, no fan-out; the wsmux scenarios
read the same bursts through a multiplexer:

* ``a``: one catch-all stream;
* ``b`` and ``c``: 1,000 and 10,000 streams, each filtering its own symbol,
  each read by its own task (every message goes to exactly one consumer);
* ``d``: 100 catch-all streams on a tenth of the burst (true broadcast);
* ``e``: one async handler;
* ``f``: ``a`` on the picows transport (``wsmux[fast]``); only when asked
  for, with ``--scenarios``.

Repetitions are interleaved (baseline, a, b, ... then again) so that drift
of the machine hits every scenario alike; the median is reported, and the
spread of the repetitions says how noisy the run was. Latency (paced feed)
and memory (idle streams, a stalled consumer) are measured too, memory in a
fresh interpreter so that freed memory of earlier scenarios cannot hide it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import anyio
import orjson

from .._exceptions import StreamLagged
from .._mux import Multiplexer
from ..fanout._stream import Stream
from ._server import symbol

__all__ = ["BenchResult", "ScenarioResult", "Target", "add_parser", "print_table", "run_bench"]

_MB = 1024 * 1024

T = TypeVar("T")

#: (name, label, streams, symbols, fraction of the burst)
_SCENARIOS: list[tuple[str, str, int, int, int]] = [
    ("baseline", "baseline: websockets + orjson loop", 0, 1, 1),
    ("a", "(a) 1 catch-all stream", 1, 1, 1),
    ("b", "(b) 1,000 symbol streams", 1000, 1000, 1),
    ("c", "(c) 10,000 symbol streams", 10_000, 10_000, 1),
    ("d", "(d) 100 catch-all streams", 100, 1, 10),
    ("e", "(e) 1 async handler", 0, 1, 1),
    ("f", "(f) (a) with transport=picows", 1, 1, 1),
]

#: Scenarios run when none are named: ``f`` needs the optional picows.
_DEFAULT = ["baseline", "a", "b", "c", "d", "e"]


@dataclasses.dataclass
class ScenarioResult:
    """The measurements of one scenario.

    Attributes:
        name: Short name (``baseline``, ``a`` ... ``e``).
        label: What the scenario does.
        messages: Messages per repetition (end marker excluded).
        streams: Streams (or handlers) fed.
        rates: Messages per second of each timed repetition.
        median: The median of ``rates``.
        spread: (max - min) / median of ``rates``: how noisy it was.
        ratio: The median, over repetitions, of this rate over the
            baseline's rate in the same repetition (each repetition runs
            the baseline and every scenario back to back, so a machine that
            slows down for a while slows both sides of each pair).
        deliveries_per_s: Messages handed to consumers per second (median).
        peak_rss_mb: The process's peak RSS during the scenario, in MiB.
        complete: Every consumer got every message it should have, in
            every repetition, and nothing was dropped.
    """

    name: str
    label: str
    messages: int
    streams: int
    rates: list[float] = dataclasses.field(default_factory=list)
    median: float = 0.0
    spread: float = 0.0
    ratio: float = 0.0
    deliveries_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    complete: bool = True


@dataclasses.dataclass
class Target:
    """One target of issue 5 and whether this run met it.

    Attributes:
        name: What is measured.
        goal: The target, in words.
        measured: The measured value, in words.
        met: True when met; None when it could not be measured.
    """

    name: str
    goal: str
    measured: str
    met: bool | None


@dataclasses.dataclass
class BenchResult:
    """Everything one ``wsmux bench`` run measured.

    Attributes:
        machine: CPU, core count, Python and library versions.
        messages: Messages per burst.
        repeat: Timed repetitions per scenario.
        scenarios: The throughput scenarios, baseline first.
        latency: Paced-feed latency, in microseconds, per reader.
        memory: The memory measurements, in MiB.
        targets: The issue's targets, met or missed.
        noise: The largest spread of any scenario.
        seconds: Wall time of the whole run.
    """

    machine: dict[str, Any]
    messages: int
    repeat: int
    scenarios: list[ScenarioResult]
    latency: dict[str, dict[str, float]]
    memory: dict[str, float]
    targets: list[Target]
    noise: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready data.

        Returns:
            A dict of lists, numbers and strings.
        """
        return dataclasses.asdict(self)


# -- memory ------------------------------------------------------------------


def _rss() -> int:
    """Return the current resident set size in bytes."""
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux); True when it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    """Return the peak RSS since the last reset, in bytes (current if unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _rss()


def _run_async(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
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


# -- the feed server ---------------------------------------------------------


@contextlib.contextmanager
def _feed_server() -> Iterator[int]:
    """Run the feed server in a child process; always stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsmux.bench._server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the bench feed server did not start: {line!r}")
        yield int(line.split()[1])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


# -- throughput scenarios ------------------------------------------------------


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


def _run_throughput(
    port: int, messages: int, repeat: int, names: list[str], progress: Callable[[str], None]
) -> list[ScenarioResult]:
    results: dict[str, ScenarioResult] = {}
    for name, label, streams, _symbols, fraction in _SCENARIOS:
        if name in names:
            results[name] = ScenarioResult(
                name, label, max(1, messages // fraction), max(streams, 1 if name == "e" else 0)
            )
    peaks = dict.fromkeys(results, 0)

    async def one(name: str, record: bool) -> None:
        res = results[name]
        spec = next(s for s in _SCENARIOS if s[0] == name)
        n = res.messages
        url = f"ws://127.0.0.1:{port}/?mode=burst&n={n}&symbols={spec[3]}"
        # Collect what the previous scenario left (10,000 tasks, say) so that
        # no run pays for another's garbage.
        gc.collect()
        _reset_peak()
        if name == "baseline":
            elapsed, delivered = await _baseline(url, n)
            expected = n
        else:
            elapsed, delivered = await _wsmux(url, name, n, spec[2])
            expected = n * (spec[2] if name == "d" else 1)
        peaks[name] = max(peaks[name], _peak_rss())
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

    _run_async(main)
    base = results["baseline"]
    for res in results.values():
        res.median = statistics.median(res.rates)
        res.spread = (max(res.rates) - min(res.rates)) / res.median if res.median else 0.0
        res.peak_rss_mb = peaks[res.name] / _MB
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


def _run_latency(
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

    _run_async(main)
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


# -- memory (in a fresh interpreter) -----------------------------------------------


async def _memory_probe(idle: int, stalled: int) -> dict[str, float]:
    """Measure idle streams and a stalled consumer, publishing to a Hub directly."""
    import gc

    from ..fanout._hub import Hub

    # Symbols none of the idle streams selects: only the stalled stream fills.
    raw = [
        orjson.dumps({"e": "trade", "E": i, "s": f"X{i % 100}", "t": i, "p": "1.0", "q": "2"})
        for i in range(1000)
    ]
    out: dict[str, float] = {}
    async with Hub() as hub, anyio.create_task_group() as tg:
        gc.collect()
        before = _rss()
        streams = [hub.open_stream({"s": f"SYM{k}"}) for k in range(idle)]

        async def wait_on(stream: Stream) -> None:
            with contextlib.suppress(Exception):
                await stream.receive()

        gc.collect()
        out["idle_streams"] = float(idle)
        out["idle_streams_mb"] = (_rss() - before) / _MB
        # Then a consumer task waiting on each, and for scale as many tasks
        # that merely sleep: most of a waiting consumer's cost is its task.
        before = _rss()
        for stream in streams:
            tg.start_soon(wait_on, stream)
        await anyio.sleep(0.1)
        gc.collect()
        out["waiting_consumers_mb"] = (_rss() - before) / _MB
        before = _rss()
        async with anyio.create_task_group() as control:
            for _ in range(idle):
                control.start_soon(anyio.sleep, 3600)
            await anyio.sleep(0.1)
            gc.collect()
            out["sleeping_tasks_mb"] = (_rss() - before) / _MB
            control.cancel_scope.cancel()

        stuck = hub.open_stream()  # never read: default maxsize and policy
        checkpoint = stalled // 10
        for i in range(stalled):
            if hub.publish(orjson.loads(raw[i % 1000])):
                await hub.relieve()
            if i + 1 == checkpoint:
                gc.collect()
                out["stalled_rss_at_10pct_mb"] = _rss() / _MB
        gc.collect()
        out["stalled_messages"] = float(stalled)
        out["stalled_rss_end_mb"] = _rss() / _MB
        out["stalled_growth_mb"] = out["stalled_rss_end_mb"] - out["stalled_rss_at_10pct_mb"]
        stats = stuck.statistics()
        out["stalled_buffered"] = float(stats.buffered)
        out["stalled_dropped"] = float(stats.dropped)
        hub.close()
        tg.cancel_scope.cancel()
    return out


def _memory_child() -> None:
    """Entry point of the memory subprocess: print the probe's JSON."""
    idle, stalled = (int(x) for x in sys.argv[1:3])
    result = anyio.run(_memory_probe, idle, stalled, backend="asyncio")
    sys.stdout.write(json.dumps(result) + "\n")


def _run_memory(idle: int, stalled: int) -> dict[str, float]:
    code = "from wsmux.bench._run import _memory_child; _memory_child()"
    done = subprocess.run(
        [sys.executable, "-c", code, str(idle), str(stalled)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the whole run -------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    from websockets.version import version as websockets_version

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "websockets": websockets_version,
        "orjson": orjson.__version__,
    }


def _targets(
    scen: dict[str, ScenarioResult], latency: dict[str, dict[str, float]], memory: dict[str, float]
) -> list[Target]:
    out = []

    def ratio(name: str, goal: float, what: str) -> None:
        res = scen.get(name)
        if res is None:
            out.append(Target(what, f">= {goal:.2f}x baseline", "not run", None))
            return
        met = res.ratio >= goal and res.complete
        note = "" if res.complete else " (INCOMPLETE delivery)"
        out.append(Target(what, f">= {goal:.2f}x baseline", f"{res.ratio:.2f}x{note}", met))

    ratio("a", 0.90, "(a) 1 stream vs baseline")
    ratio("c", 0.80, "(c) 10,000 streams vs baseline")
    d = scen.get("d")
    if d is not None:
        out.append(
            Target(
                "(d) broadcast deliveries/s",
                ">= 1,000,000/s",
                f"{d.deliveries_per_s:,.0f}/s",
                d.deliveries_per_s >= 1_000_000 and d.complete,
            )
        )
    if memory:
        idle = memory["idle_streams_mb"]
        out.append(
            Target(
                f"{int(memory['idle_streams']):,} idle streams",
                "<= 20 MB RSS added",
                f"{idle:.1f} MB (a waiting consumer task each adds"
                f" {memory['waiting_consumers_mb']:.0f} MB more; as many bare sleeping"
                f" tasks: {memory['sleeping_tasks_mb']:.0f} MB)",
                idle <= 20,
            )
        )
        growth = memory["stalled_growth_mb"]
        out.append(
            Target(
                f"stalled consumer, {int(memory['stalled_messages']):,} msgs",
                "RSS flat (<= 2 MB growth after the first 10%)",
                f"{growth:+.1f} MB, {int(memory['stalled_dropped']):,} lagged (counted)",
                growth <= 2,
            )
        )
    if latency:
        delta = latency["wsmux"]["median_us"] - latency["baseline"]["median_us"]
        out.append(
            Target(
                "added latency at 10k msg/s",
                "median <= baseline + 50 us",
                f"{delta:+.0f} us ({latency['wsmux']['median_us']:.0f} vs "
                f"{latency['baseline']['median_us']:.0f} us)",
                delta <= 50,
            )
        )
    if "f" in scen:
        ratio("f", 2.50, "stretch: (a) on picows vs baseline")
    else:
        out.append(
            Target(
                "stretch: (a) on picows vs baseline",
                ">= 2.50x baseline",
                "not run (add f to --scenarios; needs wsmux[fast])",
                None,
            )
        )
    return out


def _have_picows() -> bool:
    import importlib.util

    return importlib.util.find_spec("picows") is not None


def run_bench(
    messages: int = 200_000,
    repeat: int = 5,
    *,
    quick: bool = False,
    scenarios: list[str] | None = None,
    latency: bool = True,
    memory: bool = True,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Run the benchmark and return its measurements.

    Args:
        messages: Messages per burst (scenario ``d`` uses a tenth).
        repeat: Timed repetitions per scenario, after one warm-up.
        quick: A tiny run for tests: few messages, one repetition, small
            latency and memory probes. Overrides ``messages`` and ``repeat``.
        scenarios: Names to run (default: ``a`` to ``e``, and ``f`` when
            picows is installed). The baseline always runs.
        latency: Measure the paced-feed latency.
        memory: Measure idle streams and a stalled consumer.
        progress: Called with one line per step (default: stderr).

    Returns:
        The measurements and the targets, met or missed.

    Raises:
        ValueError: ``messages`` or ``repeat`` is below 1, or a scenario is
            unknown.
        ImportError: ``f`` was asked for and picows is not installed.
        RuntimeError: The feed server could not start.
    """
    if messages < 1 or repeat < 1:
        raise ValueError("messages and repeat must be >= 1")
    if progress is None:

        def progress(line: str) -> None:
            sys.stderr.write(f"wsmux bench: {line}\n")
            sys.stderr.flush()

    began = time.perf_counter()
    if quick:
        messages, repeat = 2000, 1
    names = scenarios or ([*_DEFAULT, "f"] if _have_picows() else _DEFAULT)
    unknown = sorted(set(names) - {s[0] for s in _SCENARIOS})
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}")
    names = ["baseline", *[x for x in names if x != "baseline"]]
    lat: dict[str, dict[str, float]] = {}
    with _feed_server() as port:
        scen = _run_throughput(port, messages, repeat, names, progress)
        if latency:
            lat = _run_latency(port, 500 if quick else 6000, progress)
    mem: dict[str, float] = {}
    if memory:
        mem = _run_memory(1000 if quick else 10_000, 20_000 if quick else 1_000_000)
        progress(
            f"memory: idle streams +{mem['idle_streams_mb']:.1f} MB,"
            f" stalled consumer {mem['stalled_growth_mb']:+.1f} MB"
        )
    by_name = {r.name: r for r in scen}
    return BenchResult(
        machine=_machine(),
        messages=messages,
        repeat=repeat,
        scenarios=scen,
        latency=lat,
        memory=mem,
        targets=_targets(by_name, lat, mem),
        noise=max((r.spread for r in scen), default=0.0),
        seconds=time.perf_counter() - began,
    )


# -- output ----------------------------------------------------------------------------


def format_table(result: BenchResult) -> str:
    """Render a result as the text table ``wsmux bench`` prints.

    Args:
        result: What :func:`run_bench` returned.

    Returns:
        The table, several lines.
    """
    m = result.machine
    lines = [
        f"wsmux bench: {result.messages:,} messages per burst, median of {result.repeat}"
        f" after a warm-up; {m['cpu']}, {m['cores']} cores, Python {m['python']},"
        f" websockets {m['websockets']}",
        "",
        f"{'scenario':<36} {'msg/s':>10} {'x base':>7} {'deliv/s':>11} {'spread':>7}"
        f" {'peak RSS':>9}",
    ]
    for r in result.scenarios:
        flag = "" if r.complete else "  INCOMPLETE"
        lines.append(
            f"{r.label:<36} {r.median:>10,.0f} {r.ratio:>7.2f} {r.deliveries_per_s:>11,.0f}"
            f" {r.spread:>6.0%} {r.peak_rss_mb:>6.0f} MB{flag}"
        )
    if result.latency:
        lines.append("")
        lines.append("latency, frame sent -> consumer, paced 10,000 msg/s (us):")
        for name, v in result.latency.items():
            lines.append(
                f"  {name:<10} median {v['median_us']:>7.0f}   p90 {v['p90_us']:>7.0f}"
                f"   p99 {v['p99_us']:>7.0f}   ({int(v['samples'])} samples)"
            )
    noise = result.noise
    word = "quiet" if noise < 0.05 else "moderately noisy" if noise < 0.15 else "noisy"
    lines += [
        "",
        f"noise: the largest spread (max-min)/median of any scenario was {noise:.0%} ({word})",
        "",
        "targets:",
    ]
    for t in result.targets:
        status = {True: "met", False: "MISSED", None: "n/a"}[t.met]
        lines.append(f"  [{status:>6}] {t.name:<38} goal {t.goal}; measured {t.measured}")
    lines.append(f"\n({result.seconds:.0f} s)")
    return "\n".join(lines)


def print_table(result: BenchResult) -> None:
    """Print a result as a table on standard output.

    Args:
        result: What :func:`run_bench` returned.
    """
    sys.stdout.write(format_table(result) + "\n")


def _main(args: argparse.Namespace) -> int:
    try:
        result = run_bench(
            args.messages,
            args.repeat,
            quick=args.quick,
            scenarios=args.scenarios.split(",") if args.scenarios else None,
            latency=not args.no_latency,
            memory=not args.no_memory,
        )
    except KeyboardInterrupt:
        sys.stderr.write("wsmux bench: interrupted\n")
        return 130
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        print_table(result)
    return 0


def add_parser(sub: Any) -> None:
    """Add the ``bench`` subcommand to the CLI's subparsers.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    parser = sub.add_parser(
        "bench",
        help="measure wsmux against a plain websockets loop",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--messages", type=int, default=200_000, help="messages per burst")
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions")
    parser.add_argument("--quick", action="store_true", help="a tiny run (for tests)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--scenarios", help="comma-separated subset of a,b,c,d,e,f (f: picows)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency probe")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probe")
    parser.set_defaults(func=_main)
