"""Memory of ``wsmux bench``: RSS readings, and the probe run in a fresh interpreter.

The probe publishes to a :class:`wsmux.Hub` directly: idle streams, then a
consumer that never reads. It runs in a child process so that memory freed by
earlier scenarios cannot hide what it costs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import anyio
import orjson

from .. import Hub, Stream

__all__ = ["MB", "memory_child", "peak_rss", "reset_peak", "rss", "run_memory"]

MB = 1024 * 1024


def rss() -> int:
    """Return the current resident set size in bytes."""
    try:
        import psutil  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return int(psutil.Process().memory_info().rss)


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux); True when it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_rss() -> int:
    """Return the peak RSS since the last reset, in bytes (current if unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss()


async def _memory_probe(idle: int, stalled: int) -> dict[str, float]:
    """Measure idle streams and a stalled consumer, publishing to a Hub directly."""
    import gc

    # Symbols none of the idle streams selects: only the stalled stream fills.
    raw = [
        orjson.dumps({"e": "trade", "E": i, "s": f"X{i % 100}", "t": i, "p": "1.0", "q": "2"})
        for i in range(1000)
    ]
    out: dict[str, float] = {}
    async with Hub() as hub, anyio.create_task_group() as tg:
        gc.collect()
        before = rss()
        streams = [hub.open_stream({"s": f"SYM{k}"}) for k in range(idle)]

        async def wait_on(stream: Stream) -> None:
            with contextlib.suppress(Exception):
                await stream.receive()

        gc.collect()
        out["idle_streams"] = float(idle)
        out["idle_streams_mb"] = (rss() - before) / MB
        # Then a consumer task waiting on each, and for scale as many tasks
        # that merely sleep: most of a waiting consumer's cost is its task.
        before = rss()
        for stream in streams:
            tg.start_soon(wait_on, stream)
        await anyio.sleep(0.1)
        gc.collect()
        out["waiting_consumers_mb"] = (rss() - before) / MB
        before = rss()
        async with anyio.create_task_group() as control:
            for _ in range(idle):
                control.start_soon(anyio.sleep, 3600)
            await anyio.sleep(0.1)
            gc.collect()
            out["sleeping_tasks_mb"] = (rss() - before) / MB
            control.cancel_scope.cancel()

        stuck = hub.open_stream()  # never read: default maxsize and policy
        checkpoint = stalled // 10
        for i in range(stalled):
            if hub.publish(orjson.loads(raw[i % 1000])):
                await hub.relieve()
            if i + 1 == checkpoint:
                gc.collect()
                out["stalled_rss_at_10pct_mb"] = rss() / MB
        gc.collect()
        out["stalled_messages"] = float(stalled)
        out["stalled_rss_end_mb"] = rss() / MB
        out["stalled_growth_mb"] = out["stalled_rss_end_mb"] - out["stalled_rss_at_10pct_mb"]
        stats = stuck.statistics()
        out["stalled_buffered"] = float(stats.buffered)
        out["stalled_dropped"] = float(stats.dropped)
        hub.close()
        tg.cancel_scope.cancel()
    return out


def memory_child() -> None:
    """Entry point of the memory subprocess: print the probe's JSON."""
    idle, stalled = (int(x) for x in sys.argv[1:3])
    result = anyio.run(_memory_probe, idle, stalled, backend="asyncio")
    sys.stdout.write(json.dumps(result) + "\n")


def run_memory(idle: int, stalled: int) -> dict[str, float]:
    code = "from wsmux.bench._memory import memory_child; memory_child()"
    done = subprocess.run(
        [sys.executable, "-c", code, str(idle), str(stalled)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
