"""``wsmux bench``: a tiny run has every scenario, full delivery, sane numbers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from typing import Any

import pytest

import wsmux.bench._report as report
import wsmux.bench._scenarios as scenarios
from wsmux.bench import BenchResult, ScenarioResult, format_table, run_bench


@pytest.mark.slow
def test_quick_run_is_complete() -> None:
    lines: list[str] = []
    result = run_bench(quick=True, progress=lines.append)
    assert isinstance(result, BenchResult)
    names = [s.name for s in result.scenarios]
    assert names == ["baseline", "default", "a", "ab", "b", "c", "ca", "cb", "cg", "d", "e", "f"]
    transports = {s.name: s.transport for s in result.scenarios}
    fast = "picows" if importlib.util.find_spec("picows") is not None else "websockets"
    assert transports == {**dict.fromkeys(names, "websockets"), "f": fast}  # f: what auto chose
    for s in result.scenarios:
        assert s.complete, f"{s.name}: a consumer missed messages"
        assert len(s.rates) == result.repeat == 1
        assert s.median > 0 and s.ratio > 0
        assert s.peak_rss_mb > 0
    assert result.latency["baseline"]["samples"] > 0
    assert result.latency["wsmux"]["samples"] > 0
    assert result.latency["wsmux"]["transport"] == "websockets"
    lat = result.latency["wsmux"]
    assert lat["median_us"] <= lat["p90_us"] <= lat["p99_us"] <= lat["p999_us"]
    assert result.memory["stalled_buffered"] == 1024  # the default maxsize: bounded
    assert result.memory["stalled_dropped"] > 0  # counted, never silent
    assert len(result.targets) == 10
    # A target is met, missed, or (for what was not run) None; everything ran here.
    assert all(t.met is not None for t in result.targets[:9])
    assert any(line.startswith("repetition 1/1") for line in lines)
    table = format_table(result)
    assert "(c) 10,000 symbol streams" in table and "targets:" in table
    assert "p99.9" in table and "transport" in table
    json.dumps(result.to_dict())


def test_throughput_arithmetic_on_known_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fixed timings in, hand-computed rates, medians, spreads and ratios out."""
    # Seconds per burst: the warm-up first, then three timed repetitions.
    elapsed = {
        "baseline": [9.0, 1 / 100, 1 / 50, 1 / 100],  # 1000 msgs: 100k, 50k, 100k msg/s
        "a": [9.0, 1 / 80, 1 / 45, 1 / 40],  # 80k, 45k, 40k msg/s
        "d": [9.0, 1 / 1000, 1 / 500, 1 / 250],  # 100 msgs: 100k, 50k, 25k msg/s
    }
    calls = {name: 0 for name in elapsed}

    def fake(name: str, fanout: int) -> Any:
        async def run(url: str, n: int) -> tuple[float, int, str]:
            calls[name] += 1
            short = 1 if name == "a" and calls[name] == 2 else 0  # a misses one, once
            return elapsed[name][calls[name] - 1], n * fanout - short, f"t-{name}"

        return run

    fakes = [
        dataclasses.replace(s, run=fake(s.name, s.fanout))
        for s in scenarios.SCENARIOS
        if s.name in elapsed
    ]
    monkeypatch.setattr(scenarios, "SCENARIOS", fakes)
    got = scenarios.run_throughput(0, 1000, 3, ["baseline", "a", "d"], lambda line: None)
    res = {r.name: r for r in got}
    assert calls == {"baseline": 4, "a": 4, "d": 4}
    assert [r.messages for r in got] == [1000, 1000, 100]
    assert [r.transport for r in got] == ["t-baseline", "t-a", "t-d"]
    assert res["baseline"].rates == pytest.approx([100_000, 50_000, 100_000])
    assert res["baseline"].median == pytest.approx(100_000)
    assert res["baseline"].spread == pytest.approx(0.5)
    assert res["baseline"].ratio == pytest.approx(1.0)
    assert res["baseline"].complete
    # The median of per-repetition ratios (0.8, 0.9, 0.4), not 45k / 100k.
    assert res["a"].median == pytest.approx(45_000)
    assert res["a"].ratio == pytest.approx(0.8)
    assert res["a"].spread == pytest.approx(40_000 / 45_000)
    assert res["a"].deliveries_per_s == pytest.approx(45_000)
    assert not res["a"].complete
    # 100 streams: each message delivered 100 times; ratios 1.0, 1.0, 0.25.
    assert res["d"].median == pytest.approx(50_000)
    assert res["d"].deliveries_per_s == pytest.approx(5_000_000)
    assert res["d"].ratio == pytest.approx(1.0)
    assert res["d"].complete


def test_targets_on_known_results() -> None:
    def scenario(
        name: str, ratio: float, complete: bool = True, deliv: float = 0.0, transport: str = ""
    ) -> Any:
        return ScenarioResult(
            name,
            name,
            1000,
            1,
            transport=transport,
            ratio=ratio,
            complete=complete,
            deliveries_per_s=deliv,
        )

    scen = {
        "a": scenario("a", 0.95),
        "ab": scenario("ab", 0.99),
        "c": scenario("c", 0.95, complete=False),  # fast enough, but lost messages
        "d": scenario("d", 0.0, deliv=999_999.0),
        "f": scenario("f", 3.0, transport="websockets"),  # auto without picows
    }
    latency = {
        "baseline": {"median_us": 100.0, "p99_us": 200.0},
        "wsmux": {"median_us": 150.0, "p99_us": 301.0},
    }
    memory = {
        "idle_streams": 10_000.0,
        "idle_streams_mb": 20.0,
        "waiting_consumers_mb": 3.0,
        "sleeping_tasks_mb": 2.0,
        "stalled_messages": 1_000_000.0,
        "stalled_growth_mb": 2.5,
        "stalled_dropped": 5.0,
    }
    targets = report.check_targets(scen, latency, memory)
    assert [(t.measured, t.met) for t in targets] == [
        ("0.95x", True),
        ("0.99x", False),
        ("not run", None),
        ("0.95x (INCOMPLETE delivery)", False),
        ("999,999/s", False),
        (
            "20.0 MB (a waiting consumer task each adds 3 MB more;"
            " as many bare sleeping tasks: 2 MB)",
            True,
        ),
        ("+2.5 MB, 5 lagged (counted)", False),
        ("+50 us (150 vs 100 us)", True),
        ("+101 us (301 vs 200 us)", False),
        ("auto chose websockets: picows is not installed", None),
    ]
    scen["f"] = scenario("f", 2.5, transport="picows")
    assert report.check_targets(scen, {}, {})[-1].measured == "2.50x"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run_bench(0)
    with pytest.raises(ValueError):
        run_bench(loop="tokio")
    with pytest.raises(ValueError):
        run_bench(scenarios=["zz"])


@pytest.mark.slow
def test_cli_json() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wsmux",
            "bench",
            "--quick",
            "--json",
            "--scenarios",
            "a,d",
            "--no-memory",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data = json.loads(done.stdout)
    assert [s["name"] for s in data["scenarios"]] == ["baseline", "a", "d"]
    assert data["machine"]["loop"] == "asyncio"
    assert all(s["complete"] for s in data["scenarios"])
    assert "wsmux bench:" in done.stderr  # progress goes to stderr
