"""``wsmux bench``: a tiny run has every scenario, full delivery, sane numbers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from wsmux.bench import BenchResult, format_table, run_bench


@pytest.mark.slow
def test_quick_run_is_complete() -> None:
    lines: list[str] = []
    result = run_bench(quick=True, progress=lines.append)
    assert isinstance(result, BenchResult)
    names = [s.name for s in result.scenarios]
    expected = ["baseline", "a", "b", "c", "d", "e"]
    if importlib.util.find_spec("picows") is not None:
        expected.append("f")  # the fast transport, when its extra is installed
    assert names == expected
    for s in result.scenarios:
        assert s.complete, f"{s.name}: a consumer missed messages"
        assert len(s.rates) == result.repeat == 1
        assert s.median > 0 and s.ratio > 0
        assert s.peak_rss_mb > 0
    d = next(s for s in result.scenarios if s.name == "d")
    assert d.deliveries_per_s == pytest.approx(d.median * 100)
    assert result.latency["baseline"]["samples"] > 0
    assert result.latency["wsmux"]["samples"] > 0
    assert result.memory["stalled_buffered"] == 1024  # the default maxsize: bounded
    assert result.memory["stalled_dropped"] > 0  # counted, never silent
    assert {t.met for t in result.targets} <= {True, False, None}
    assert len(result.targets) == 7
    assert any(line.startswith("repetition 1/1") for line in lines)
    table = format_table(result)
    assert "(c) 10,000 symbol streams" in table and "targets:" in table
    json.dumps(result.to_dict())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        run_bench(0)


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
    assert all(s["complete"] for s in data["scenarios"])
    assert "wsmux bench:" in done.stderr  # progress goes to stderr
