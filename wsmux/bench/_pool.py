"""The ``pool`` scenario of ``wsmux bench``: two copies of a feed beat one jittery link.

A :class:`~wsmux.testing.FeedServer` in this process (its own thread) sends
``count`` ticks at about 1 kHz to every connection, each stamped with
:func:`time.monotonic_ns` as it is queued. Three readers measure the time
from that stamp to the consumer, one after the other:

* ``single``: one connection, clean;
* ``single jittered``: one connection whose every frame the server holds
  for a random 0 to ``jitter`` seconds (order kept);
* ``pair``: ``Pool(redundancy=2)``, one copy clean and one jittered, merged
  by id: each tick is delivered by whichever copy brings it first.

The pair's p99 should be close to the clean link's, far below the jittered
one's. Only wsmux's public names and its testing kit are used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import anyio

from .. import Multiplexer, Pool
from ..testing import FeedServer

__all__ = ["run_pool_latency"]


class _Ticks(Multiplexer):
    """Ticks carry their id."""

    def _message_id(self, msg: Any) -> Hashable | None:
        return msg.get("i") if isinstance(msg, dict) else None


async def _measure(
    srv: FeedServer, reader: Multiplexer | Pool, count: int, jittered: str | None, jitter: float
) -> list[int]:
    """Send ``count`` ticks through ``reader``; return each one's latency in ns."""
    out: list[int] = []
    stream = reader.stream_filter({"e": "tick"}, maxsize=count + 16)
    async with reader:
        if isinstance(reader, Pool):
            await reader.subscribe("tick")
            await reader.wait_connected(timeout=10)
        with anyio.fail_after(10):
            await srv.wait_until_async(lambda: bool(srv.open_connections()))
        if jittered is not None:
            (rec,) = srv.open_connections(path=jittered)
            srv.delay(jitter=jitter, conn=rec.id)

        async def produce() -> None:
            for i in range(count):
                srv.broadcast({"e": "tick", "i": i, "ts": time.monotonic_ns()})
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            with anyio.move_on_after(10 + count / 500):
                while len(out) < count:
                    msg = await stream.receive()
                    out.append(time.monotonic_ns() - msg["ts"])
            tg.cancel_scope.cancel()
        srv.delay()
    return out


def _summary(values: list[int]) -> dict[str, float]:
    values = sorted(values[len(values) // 10 :])  # the first tenth is warm-up
    k = len(values)
    return {
        "samples": float(k),
        "median_us": values[k // 2] / 1000 if k else 0.0,  # p50
        "p90_us": values[min(k - 1, int(k * 0.9))] / 1000 if k else 0.0,
        "p99_us": values[min(k - 1, int(k * 0.99))] / 1000 if k else 0.0,
    }


def run_pool_latency(
    count: int = 3000, jitter: float = 0.002, progress: Callable[[str], None] | None = None
) -> dict[str, dict[str, float]]:
    """Measure frame-to-consumer latency: one link, one jittered link, a redundant pair.

    Args:
        count: Ticks per reader (sent at about 1 kHz).
        jitter: The most delay added to a frame of the jittered link, in seconds.
        progress: Called with one summary line.

    Returns:
        ``{"single": {...}, "single jittered": {...}, "pair": {...}}``, each with
        ``samples``, ``median_us`` (p50), ``p90_us`` and ``p99_us``.
    """
    results: dict[str, dict[str, float]] = {}
    fast: dict[str, Any] = {"backoff_base": 0.05, "close_timeout": 0.5}

    async def main() -> None:
        with FeedServer(symbols=1) as srv:
            url = srv.url
            results["single"] = _summary(
                await _measure(srv, _Ticks(url + "/a", **fast), count, None, jitter)
            )
            results["single jittered"] = _summary(
                await _measure(srv, _Ticks(url + "/b", **fast), count, "/b", jitter)
            )
            pool = Pool(
                lambda u: _Ticks(u, **fast),
                redundancy=2,
                urls=[url + "/a", url + "/b"],
                send_rate=None,
            )
            results["pair"] = _summary(await _measure(srv, pool, count, "/b", jitter))

    anyio.run(main)
    if progress is not None:
        progress(
            "pool latency p99: single {:.0f} us, jittered {:.0f} us, pair {:.0f} us".format(
                results["single"]["p99_us"],
                results["single jittered"]["p99_us"],
                results["pair"]["p99_us"],
            )
        )
    return results
