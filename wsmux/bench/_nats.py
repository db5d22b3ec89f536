"""``wsmux bench`` end to end through NATS: feed -> bridge -> nats-server -> consumers.

Runs when the ``nats`` extra and a ``nats-server`` binary are installed. In
one run, against a nats-server of its own (JetStream on, a temporary store):

* nats-py's bare loops, the yardsticks: ``publish`` -> ``subscribe`` in one
  process (core), and JetStream ``publish_async`` with ``Nats-Msg-Id``
  until every ack is in;
* the direct multiplexer: one catch-all stream on the bench feed's burst;
* the bridge, core and JetStream: a multiplexer reading the same burst, a
  ``wsmux.Bridge`` publishing it, and 1 then 4 consumer processes (each a
  ``wsmux.RemoteMultiplexer`` with a catch-all stream) reading it back.
  Throughput is the burst over the time from ``go`` to the last consumer's
  end marker (the clock is CLOCK_MONOTONIC, system-wide on Linux); latency
  (p50/p99, 1 consumer) is measured on the paced feed, frame sent -> remote
  consumer.

Each bridge rate is also given as a ratio to the bare loop of its mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import orjson

from .. import Bridge, JetStreamConfig, Multiplexer, RemoteMultiplexer, StreamLagged
from ..testing import NatsServer
from ._server import trade

__all__ = ["available", "format_nats", "run_nats"]

SUBJECT = "bench.{e}.{s}"
T = TypeVar("T")


def available() -> bool:
    """Tell whether nats-py and the nats-server binary are installed."""
    return importlib.util.find_spec("nats") is not None and shutil.which("nats-server") is not None


@contextlib.contextmanager
def _nats_server() -> Iterator[str]:
    with NatsServer() as server:
        yield server.url


# -- the yardsticks ------------------------------------------------------------


async def _bare_core(url: str, n: int) -> float:
    import nats

    payload = trade(1, 1)
    nc = await nats.connect(url)
    got = 0
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        nonlocal got
        orjson.loads(msg.data)
        got += 1
        if got == n:
            done.set()

    await nc.subscribe("bare.core", cb=cb, pending_msgs_limit=n + 1, pending_bytes_limit=-1)
    await nc.flush()
    start = time.perf_counter()
    for _ in range(n):
        await nc.publish("bare.core", payload)
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - start
    await nc.close()
    return n / elapsed


async def _bare_js(url: str, n: int) -> float:
    import nats

    payload = trade(1, 1)
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=8192)
    await js.add_stream(name="BARE", subjects=["bare.js"], max_bytes=1 << 30)
    start = time.perf_counter()
    for i in range(n):
        await js.publish_async("bare.js", payload, headers={"Nats-Msg-Id": str(i)})
    await asyncio.wait_for(js.publish_async_completed(), 120)
    elapsed = time.perf_counter() - start
    await nc.jsm().delete_stream("BARE")
    await nc.close()
    return n / elapsed


async def _direct(port: int, n: int) -> float:
    url = f"ws://127.0.0.1:{port}/?mode=burst&n={n}&symbols=100"
    async with Multiplexer(url) as mux:
        stream = mux.stream_filter(maxsize=n + 10)
        await mux.send("go")
        start = time.perf_counter()
        async for msg in stream:
            if msg["e"] == "end":
                break
        return n / (time.perf_counter() - start)


async def _latency_direct(url: str) -> list[int]:
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


def run_async(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function on a fresh asyncio loop (as the other scenarios do)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(fn())
    finally:
        loop.close()


# -- the bridge ----------------------------------------------------------------


async def _bridged(
    port: int, url: str, mode: str, consumers: int, query: str
) -> tuple[float, list[int], list[dict[str, Any]]]:
    """One bridge run; returns (seconds from go to the last end, go time, consumer reports)."""
    js = JetStreamConfig(f"BENCH{os.getpid()}{int(time.time() * 1000) % 100000}")
    if mode == "js":  # made before the consumers start; the bridge finds it
        import nats

        nc = await nats.connect(url)
        await nc.jsm().add_stream(
            name=js.name,
            subjects=["bench.*.*"],
            max_bytes=js.max_bytes,
            duplicate_window=js.duplicate_window,
        )
        await nc.close()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "wsmux.bench._nats",
            url,
            js.name if mode == "js" else "-",
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(consumers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if not line.startswith(b"READY"):
                raise RuntimeError(f"a bench consumer did not start: {line!r}")
        mux = Multiplexer(f"ws://127.0.0.1:{port}/?{query}")
        async with mux, Bridge(mux, url, subject=SUBJECT, jetstream=js if mode == "js" else None):
            go = time.monotonic_ns()
            await mux.send("go")
            reports = []
            for proc in procs:
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), 180)
                reports.append(orjson.loads(line))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        if mode == "js":
            import nats

            nc = await nats.connect(url)
            with contextlib.suppress(Exception):
                await nc.jsm().delete_stream(js.name)
            await nc.close()
    last = max(r["last_ns"] for r in reports)
    return (last - go) / 1e9, [go], reports


async def _consumer(url: str, stream_name: str) -> None:
    """A consumer process: count to the end marker, report as one JSON line."""
    jetstream = None if stream_name == "-" else stream_name
    count = lost = 0
    lat: list[int] = []
    async with RemoteMultiplexer(url, subject=SUBJECT, jetstream=jetstream) as remote:
        stream = remote.stream_filter(maxsize=1 << 20)
        await remote.subscribed()
        print("READY", flush=True)
        while True:
            try:
                msg = await stream.receive()
            except StreamLagged as exc:
                lost += exc.count
                continue
            now = time.monotonic_ns()
            if msg["e"] == "end":
                break
            count += 1
            ts = msg.get("ts")
            if ts is not None:
                lat.append(now - ts)
    lat.sort()
    k = len(lat)
    report = {
        "count": count,
        "lost": lost,
        "last_ns": now,
        "p50_us": lat[k // 2] / 1000 if k else None,
        "p99_us": lat[int(k * 0.99)] / 1000 if k else None,
    }
    print(orjson.dumps(report).decode(), flush=True)


def run_nats(
    port: int, messages: int = 50_000, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the NATS scenario against the bench feed server on ``port``.

    Args:
        port: The bench feed server's port.
        messages: Messages per burst.
        progress: Called with one line per step.

    Returns:
        Rates (msg/s), ratios, latencies (us) and completeness, as plain data.
    """

    out: dict[str, Any] = {"messages": messages}
    paced = f"mode=paced&n={min(messages, 4000)}&rate=2000"
    with _nats_server() as url:
        out["bare_core"] = run_async(lambda: _bare_core(url, messages))
        out["bare_js"] = run_async(lambda: _bare_js(url, messages))
        out["direct"] = run_async(lambda: _direct(port, messages))
        direct_lat = run_async(lambda: _latency_direct(f"ws://127.0.0.1:{port}/?{paced}"))
        direct_lat.sort()
        k = len(direct_lat)
        out["direct_latency"] = {
            "p50_us": direct_lat[k // 2] / 1000 if k else None,
            "p99_us": direct_lat[int(k * 0.99)] / 1000 if k else None,
        }
        progress(
            f"nats: bare core {out['bare_core']:,.0f}/s, bare JetStream {out['bare_js']:,.0f}/s,"
            f" direct mux {out['direct']:,.0f}/s"
        )
        burst = f"mode=burst&n={messages}&symbols=100"
        for mode in ("core", "js"):
            for consumers in (1, 4):
                seconds, _, reports = run_async(
                    functools.partial(_bridged, port, url, mode, consumers, burst)
                )
                key = f"{mode}_{consumers}"
                rate = messages / seconds
                out[key] = {
                    "rate": rate,
                    "ratio": rate / out["bare_core" if mode == "core" else "bare_js"],
                    "complete": all(r["count"] == messages for r in reports),
                    "received": [r["count"] for r in reports],
                }
                progress(f"nats: bridge {mode}, {consumers} consumer(s): {rate:,.0f}/s")
            _, _, reports = run_async(functools.partial(_bridged, port, url, mode, 1, paced))
            out[f"{mode}_latency"] = {
                "p50_us": reports[0]["p50_us"],
                "p99_us": reports[0]["p99_us"],
            }
    return out


def format_nats(result: dict[str, Any]) -> str:
    """Render the NATS scenario as lines of the bench table.

    Args:
        result: What :func:`run_nats` returned.

    Returns:
        The lines, joined.
    """
    lines = [
        f"end to end through NATS ({result['messages']:,} messages, feed -> bridge ->"
        " nats-server -> consumer processes):",
        f"  nats-py bare loops: publish->subscribe {result['bare_core']:>10,.0f}/s,"
        f" JetStream publish_async+ids {result['bare_js']:>10,.0f}/s",
        f"  direct multiplexer (1 stream)       {result['direct']:>10,.0f}/s",
    ]
    lat = result["direct_latency"]
    if lat["p50_us"] is not None:
        lines.append(
            f"  latency direct mux (paced 2,000/s)  p50 {lat['p50_us']:>7.0f} us"
            f"   p99 {lat['p99_us']:>7.0f} us"
        )
    for mode, name in (("core", "core NATS"), ("js", "JetStream")):
        for consumers in (1, 4):
            r = result[f"{mode}_{consumers}"]
            flag = "" if r["complete"] else f"  INCOMPLETE {r['received']}"
            lines.append(
                f"  bridge {name:<9}, {consumers} consumer(s) {r['rate']:>10,.0f}/s"
                f"  {r['ratio']:.2f}x bare{flag}"
            )
        lat = result[f"{mode}_latency"]
        if lat["p50_us"] is not None:
            lines.append(
                f"  latency {name:<9} (paced 2,000/s)  p50 {lat['p50_us']:>7.0f} us"
                f"   p99 {lat['p99_us']:>7.0f} us"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(_consumer(sys.argv[1], sys.argv[2]))
