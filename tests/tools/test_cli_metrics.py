"""--stats, --event-time and --metrics-port of tap and demo, as real subprocesses."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import IO

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsmux.__main__ import main
from wsmux.testing import FeedServer

CLI = [sys.executable, "-m", "wsmux"]


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metrics_url(err: IO[str]) -> str:
    for _ in range(20):
        line = err.readline()
        if "metrics at " in line:
            url = line.split("metrics at ")[1].strip()
            assert url.startswith("http://127.0.0.1:")  # only this machine, by default
            return url
    raise AssertionError("no metrics URL on stderr")


def test_tap_stats_shows_both_latencies() -> None:
    with FeedServer(symbols=3) as srv:
        srv.start_feed(rate=2000)
        done = subprocess.run(
            [*CLI, "tap", srv.url, "--count", "300", "--stats", "--event-time", "E"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 300
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("wsmux: stats: ") and "drops 0" in last
    assert "exchange->receipt p50 " in last and "receipt->tap p50 " in last


def test_tap_serves_metrics_while_it_runs() -> None:
    with FeedServer(symbols=3) as srv:
        srv.start_feed(rate=500)
        proc = subprocess.Popen(
            [*CLI, "tap", srv.url, "--metrics-port", "0", "--event-time", "E"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            url = metrics_url(proc.stderr)
            name = f"[('mux', 'ws://127.0.0.1:{srv.port}')]"
            deadline = time.monotonic() + 15
            samples = scrape(url)
            while samples.get(f"wsmux_frames_total{name}", 0) < 10:  # connected, reading
                assert time.monotonic() < deadline
                time.sleep(0.05)
                samples = scrape(url)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert samples[f"wsmux_up{name}"] == 1
    assert f"wsmux_exchange_to_receipt_seconds_count{name}" in samples
    assert any(key.startswith("wsmux_stream_delivered_total") and "tap" in key for key in samples)


@pytest.mark.slow
def test_demo_serves_metrics_of_both_multiplexers() -> None:
    proc = subprocess.Popen(
        [*CLI, "demo", "--seconds", "3", "--metrics-port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        samples = scrape(metrics_url(proc.stderr))
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert samples["wsmux_up[('mux', 'market')]"] == 1
    assert samples["wsmux_up[('mux', 'user')]"] == 1
    assert "exchange->receipt p50" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["tap", "demo"])
def test_help_says_where_the_metrics_bind(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--metrics-port" in out and "Binds 127.0.0.1 only" in out
    assert "--metrics-host" in out


def test_a_taken_metrics_port_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with FeedServer(symbols=1) as srv, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        with pytest.raises(SystemExit) as info:
            main(["tap", srv.url, "--metrics-port", port, "--count", "1"])
        assert info.value.code == 1
        assert f"cannot serve metrics on 127.0.0.1:{port}" in capsys.readouterr().err
        assert main(["demo", "--seconds", "1", "--metrics-port", port]) == 1
        assert "cannot serve metrics" in capsys.readouterr().err
