"""Latency of ``wsmux bench``: frame sent to consumer, at a paced 10,000 msg/s.

The server stamps each message with ``time.monotonic_ns()`` (CLOCK_MONOTONIC
is system-wide on Linux) and the consumer subtracts on receipt. The readers
run in interleaved rounds (six short ones by default, so that a noisy
stretch of the machine falls on every reader alike), the first quarter of
each round dropped as warm-up; the result gives the median and the tail
(p90, p99, p99.9) of each.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import orjson

from .. import Multiplexer
from ._scenarios import WS_TUNED, run_async

__all__ = ["percentiles", "run_latency"]


async def _baseline(url: str) -> tuple[list[int], str]:
    """The baseline reader: websockets, recv(decode=False), orjson."""
    from websockets.asyncio.client import connect

    out: list[int] = []
    async with connect(url, **WS_TUNED) as ws:
        await ws.send("go")
        while True:
            msg = orjson.loads(await ws.recv(decode=False))
            now = time.monotonic_ns()
            if msg["e"] == "end":
                break
            out.append(now - msg["ts"])
    return out, "websockets"


async def _wsmux(url: str, transport: str) -> tuple[list[int], str]:
    out: list[int] = []
    async with Multiplexer(url, transport=transport) as mux:  # type: ignore[arg-type]
        stream = mux.stream_filter()
        await mux.send("go")
        async for msg in stream:
            now = time.monotonic_ns()
            if msg["e"] == "end":
                break
            out.append(now - msg["ts"])
        used = mux.stats().transport
    return out, used


def percentiles(values: list[int]) -> dict[str, float]:
    """Summarise latencies (ns) as microseconds: median, p90, p99, p99.9.

    Args:
        values: The samples, in nanoseconds (sorted in place).

    Returns:
        ``samples``, ``median_us``, ``p90_us``, ``p99_us`` and ``p999_us``.
    """
    values.sort()
    k = len(values)

    def at(q: float) -> float:
        return values[min(k - 1, int(k * q))] / 1000 if k else 0.0

    return {
        "samples": float(k),
        "median_us": at(0.5),
        "p90_us": at(0.9),
        "p99_us": at(0.99),
        "p999_us": at(0.999),
    }


def run_latency(
    port: int,
    count: int,
    progress: Callable[[str], None],
    loop: str = "asyncio",
    *,
    rounds: int = 2,
    auto: bool = False,
) -> dict[str, dict[str, Any]]:
    """Measure the baseline and wsmux (websockets transport; auto too if asked).

    Args:
        port: The feed server's port.
        count: Messages per round and reader.
        progress: Called with one summary line.
        loop: ``"asyncio"`` or ``"uvloop"``.
        rounds: Interleaved rounds per reader.
        auto: Also measure wsmux with ``transport="auto"``.

    Returns:
        Per reader: :func:`percentiles` and the ``transport`` it used.
    """
    url = f"ws://127.0.0.1:{port}/?mode=paced&n={count}&rate=10000"
    readers: dict[str, Callable[[str], Any]] = {
        "baseline": _baseline,
        "wsmux": lambda u: _wsmux(u, "websockets"),
    }
    if auto:
        readers["wsmux auto"] = lambda u: _wsmux(u, "auto")
    samples: dict[str, list[int]] = {name: [] for name in readers}
    used: dict[str, str] = {}

    async def main() -> None:
        for _ in range(rounds):
            for name, fn in readers.items():
                gc.collect()  # no reader pays for the garbage of the one before
                got, used[name] = await fn(url)
                samples[name].extend(got[len(got) // 4 :])

    run_async(main, loop)
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        out[name] = {**percentiles(values), "transport": used.get(name, "")}
    b, w = out["baseline"], out["wsmux"]
    progress(
        f"latency: median baseline {b['median_us']:.0f} us, wsmux {w['median_us']:.0f} us;"
        f" p99 {b['p99_us']:.0f} vs {w['p99_us']:.0f} us"
    )
    return out
