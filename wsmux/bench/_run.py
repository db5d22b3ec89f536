"""``wsmux bench``: wsmux against the best loop a user could write without it.

One run, one machine: a feed server in another process (see
:mod:`wsmux.bench._server`) bursts pre-encoded trades; the baseline reads them
with websockets' asyncio client (``recv(decode=False)``, wsmux's own
``max_queue`` and compression) and orjson, no fan-out; ``default`` is the
same with websockets' defaults and ``async for``. The wsmux scenarios read
the same bursts through a multiplexer, on the websockets transport unless
said otherwise (every row names its transport):

* ``a``: one catch-all stream (``ab``: read in batches);
* ``b`` and ``c``: 1,000 and 10,000 streams, each filtering its own symbol,
  each read by its own task (every message goes to exactly one consumer;
  ``cb``: read in batches);
* ``d``: 100 catch-all streams on a tenth of the burst (true broadcast);
* ``e``: one async handler;
* ``f``: the transport swap: ``a`` with ``transport="auto"`` (picows when
  ``wsmux[fast]`` is installed, else websockets; the row says which);
* ``pool`` (only when named): p50/p99 latency of one link, one link with
  2 ms of jitter, and ``Pool(redundancy=2)`` over both (:mod:`._pool`).

Repetitions are interleaved (baseline, a, b, ... then again) so that drift
of the machine hits every scenario alike; the median is reported, and the
spread of the repetitions says how noisy the run was. Latency (paced feed)
and memory (idle streams, a stalled consumer) are measured too, memory in a
fresh interpreter so that freed memory of earlier scenarios cannot hide it.

The scenarios are in :mod:`wsmux.bench._scenarios` and
:mod:`wsmux.bench._memory`, the targets and the table in
:mod:`wsmux.bench._report`; this module runs them in order.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._latency import run_latency
from ._memory import run_memory
from ._pool import run_pool_latency
from ._report import BenchResult, check_targets, machine, print_table
from ._scenarios import SCENARIOS, default_names, run_throughput

__all__ = ["add_parser", "run_bench"]


# -- the feed server ---------------------------------------------------------


@contextlib.contextmanager
def _feed_server() -> Iterator[int]:
    """Run the feed server in a child process; always stop it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from wsmux.bench._server import main; sys.exit(main())",
        ],
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


def run_bench(
    messages: int = 200_000,
    repeat: int = 5,
    *,
    quick: bool = False,
    scenarios: list[str] | None = None,
    latency: bool = True,
    memory: bool = True,
    progress: Callable[[str], None] | None = None,
    loop: str = "asyncio",
) -> BenchResult:
    """Run the benchmark and return its measurements.

    Args:
        messages: Messages per burst (scenario ``d`` uses a tenth).
        repeat: Timed repetitions per scenario, after one warm-up.
        quick: A tiny run for tests: few messages, one repetition and no
            warm-up, small latency and memory probes. Overrides ``messages``
            and ``repeat``.
        scenarios: Names to run (default: every scenario of
            :data:`~wsmux.bench._scenarios.SCENARIOS`). And ``nats`` (end to end through a local
            nats-server, not in a quick run) when nats-py and nats-server
            are. The baseline always runs.
        latency: Measure the paced-feed latency.
        memory: Measure idle streams and a stalled consumer.
        progress: Called with one line per step (default: stderr).
        loop: ``"asyncio"`` or ``"uvloop"``: the event loop of both sides.

    Returns:
        The measurements and the targets, met or missed.

    Raises:
        ValueError: ``messages`` or ``repeat`` is below 1, or a scenario or
            the loop is unknown.
        ImportError: ``loop="uvloop"`` and uvloop is not installed.
        RuntimeError: The feed server could not start.
    """
    if messages < 1 or repeat < 1:
        raise ValueError("messages and repeat must be >= 1")
    if loop not in ("asyncio", "uvloop"):
        raise ValueError(f"loop must be 'asyncio' or 'uvloop', not {loop!r}")
    if loop == "uvloop":
        import uvloop  # noqa: F401 - fail early with ImportError
    if progress is None:

        def progress(line: str) -> None:
            sys.stderr.write(f"wsmux bench: {line}\n")
            sys.stderr.flush()

    began = time.perf_counter()
    if quick:
        messages, repeat = 2000, 1
    names = scenarios or default_names()
    from ._nats import available as have_nats

    with_nats = "nats" in names or (scenarios is None and not quick and have_nats())
    names = [x for x in names if x != "nats"]
    unknown = sorted(set(names) - {s.name for s in SCENARIOS} - {"pool"})
    if unknown:
        raise ValueError(f"unknown scenario(s): {', '.join(unknown)}")
    pool = "pool" in names  # latency of a redundant pair: wsmux.bench._pool
    names = ["baseline", *[x for x in names if x not in ("baseline", "pool")]]
    lat: dict[str, dict[str, float]] = {}
    with _feed_server() as port:
        scen = run_throughput(port, messages, repeat, names, progress, loop, warmup=not quick)
        if latency:
            auto = any(r.name == "f" and r.transport == "picows" for r in scen)
            lat = run_latency(
                port, 500 if quick else 2000, progress, loop, rounds=1 if quick else 6, auto=auto
            )
        nats: dict[str, Any] = {}
        if with_nats:  # feed -> bridge -> nats-server -> consumer processes
            from ._nats import run_nats

            nats = run_nats(port, 2000 if quick else 50_000, progress)
    if pool:
        for key, value in run_pool_latency(300 if quick else 3000, progress=progress).items():
            lat[f"pool {key}"] = value
    mem: dict[str, float] = {}
    if memory:
        mem = run_memory(1000 if quick else 10_000, 20_000 if quick else 1_000_000)
        progress(
            f"memory: idle streams +{mem['idle_streams_mb']:.1f} MB,"
            f" stalled consumer {mem['stalled_growth_mb']:+.1f} MB"
        )
    by_name = {r.name: r for r in scen}
    return BenchResult(
        machine={**machine(), "loop": loop},
        messages=messages,
        repeat=repeat,
        scenarios=scen,
        latency=lat,
        memory=mem,
        targets=check_targets(by_name, lat, mem),
        noise=max((r.spread for r in scen), default=0.0),
        seconds=time.perf_counter() - began,
        nats=nats,
    )


def _main(args: argparse.Namespace) -> int:
    try:
        result = run_bench(
            args.messages,
            args.repeat,
            quick=args.quick,
            scenarios=args.scenarios.split(",") if args.scenarios else None,
            latency=not args.no_latency,
            memory=not args.no_memory,
            loop=args.loop,
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
    names = ",".join(s.name for s in SCENARIOS)
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated subset of {names}, nats (the nats extra), pool (redundancy latency)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop of both sides (uvloop: installed by the test extra)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency probe")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probe")
    parser.set_defaults(func=_main)
