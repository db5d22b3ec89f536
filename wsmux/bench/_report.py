"""What ``wsmux bench`` reports: the result classes, the targets, the table.

No measuring here: :func:`check_targets` judges the numbers against the
issue's targets and :func:`format_table` renders a :class:`BenchResult`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
from typing import Any

import orjson

__all__ = [
    "BenchResult",
    "ScenarioResult",
    "Target",
    "check_targets",
    "format_table",
    "machine",
    "print_table",
]


@dataclasses.dataclass
class ScenarioResult:
    """The measurements of one scenario.

    Attributes:
        name: Short name (``baseline``, ``a`` ... ``f``).
        label: What the scenario does.
        transport: The transport that read the feed (``websockets``,
            ``picows``): what ``transport="auto"`` resolved to, for ``f``.
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
    transport: str = ""
    rates: list[float] = dataclasses.field(default_factory=list)
    median: float = 0.0
    spread: float = 0.0
    ratio: float = 0.0
    deliveries_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    complete: bool = True


@dataclasses.dataclass
class Target:
    """One target and whether this run met it.

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
        latency: Paced-feed latency, in microseconds, per reader (and the
            transport it used).
        memory: The memory measurements, in MiB.
        targets: The issue's targets, met or missed.
        noise: The largest spread of any scenario.
        seconds: Wall time of the whole run.
        nats: The end-to-end NATS scenario (:mod:`wsmux.bench._nats`), if run.
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
    nats: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready data.

        Returns:
            A dict of lists, numbers and strings.
        """
        return dataclasses.asdict(self)


def machine() -> dict[str, Any]:
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


def check_targets(
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

    ratio("a", 0.95, "(a) 1 stream vs baseline")
    ratio("ab", 1.00, "(a) in batches vs baseline")
    ratio("b", 0.70, "(b) 1,000 streams vs baseline")
    ratio("c", 0.60, "(c) 10,000 streams vs baseline")
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
        for key, word, goal in (("median_us", "median", 50), ("p99_us", "p99", 100)):
            w, b = latency["wsmux"][key], latency["baseline"][key]
            out.append(
                Target(
                    f"added latency at 10k msg/s, {word}",
                    f"{word} <= baseline + {goal} us",
                    f"{w - b:+.0f} us ({w:.0f} vs {b:.0f} us)",
                    w - b <= goal,
                )
            )
    f = scen.get("f")
    what = "(f) transport=auto with picows vs baseline"
    if f is not None and f.transport == "picows":
        ratio("f", 2.50, what)
    else:
        why = "not run" if f is None else f"auto chose {f.transport}: picows is not installed"
        out.append(Target(what, ">= 2.50x baseline", why, None))
    return out


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
        f" websockets {m['websockets']}, {m.get('loop', 'asyncio')} loop",
        "",
        f"{'scenario':<42} {'transport':<10} {'msg/s':>9} {'x base':>7} {'deliv/s':>10}"
        f" {'spread':>7} {'peak RSS':>9}",
    ]
    for r in result.scenarios:
        flag = "" if r.complete else "  INCOMPLETE"
        lines.append(
            f"{r.label:<42} {r.transport:<10} {r.median:>9,.0f} {r.ratio:>7.2f}"
            f" {r.deliveries_per_s:>10,.0f} {r.spread:>6.0%} {r.peak_rss_mb:>6.0f} MB{flag}"
        )
    if result.latency:
        lines.append("")
        lines.append("latency, frame sent -> consumer, paced 10,000 msg/s (us):")
        for name, v in result.latency.items():
            p999 = v.get("p999_us")  # the pool's probe has too few samples for it
            tail = "     -" if p999 is None else f"{p999:>6.0f}"
            lines.append(
                f"  {name:<11} {v.get('transport', ''):<10} median {v['median_us']:>5.0f}"
                f"  p90 {v['p90_us']:>5.0f}  p99 {v['p99_us']:>5.0f}"
                f"  p99.9 {tail}  ({int(v['samples'])} samples)"
            )
    if result.nats:
        from ._nats import format_nats

        lines += ["", format_nats(result.nats)]
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
        lines.append(f"  [{status:>6}] {t.name:<44} goal {t.goal}; measured {t.measured}")
    lines.append(f"\n({result.seconds:.0f} s)")
    return "\n".join(lines)


def print_table(result: BenchResult) -> None:
    """Print a result as a table on standard output.

    Args:
        result: What :func:`run_bench` returned.
    """
    sys.stdout.write(format_table(result) + "\n")
