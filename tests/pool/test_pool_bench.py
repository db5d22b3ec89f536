"""The ``pool`` scenario of ``wsmux bench`` runs and reports all three readers."""

from __future__ import annotations

from wsmux.bench._pool import run_pool_latency


def test_pool_latency_scenario_reports_three_readers() -> None:
    lines: list[str] = []
    result = run_pool_latency(count=150, progress=lines.append)
    assert set(result) == {"single", "single jittered", "pair"}
    for values in result.values():
        assert values["samples"] > 100
        assert 0 < values["median_us"] <= values["p90_us"] <= values["p99_us"]
    assert lines and lines[0].startswith("pool latency p99")
