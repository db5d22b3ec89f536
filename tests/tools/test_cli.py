"""The wsmux command line: tap and demo, in process and as real subprocesses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from wsmux.__main__ import main
from wsmux.testing import FeedServer

CLI = [sys.executable, "-m", "wsmux"]


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer(symbols=3) as srv:
        yield srv


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "argv",
    [
        ["tap", "http://example.com"],
        ["tap", "not a url"],
        ["tap", "ws://127.0.0.1:1", "--filter", "{bad"],
        ["tap", "ws://127.0.0.1:1", "--filter", "[1, 2]"],
        ["tap", "ws://127.0.0.1:1", "-f", "novalue"],
        ["tap", "ws://127.0.0.1:1", "--send", "not json"],
        ["tap", "ws://127.0.0.1:1", "--count", "0"],
        ["demo", "--seconds", "-1"],
        ["nosuchcommand"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "tap" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["tap", "demo"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: wsmux " + command in capsys.readouterr().out


def test_tap_in_process(server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.start_feed(rate=2000)
    sub = '{"method": "SUBSCRIBE", "params": ["sym1@trade"], "id": 1}'
    code = main(["tap", server.url, "-f", "e=trade", "-f", "s=SYM1", "--send", sub, "--count", "5"])
    assert code == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 5
    assert all(m["e"] == "trade" and m["s"] == "SYM1" for m in lines)
    assert "connected to ws://127.0.0.1" in err
    assert server.client_messages()[0]["params"] == ["sym1@trade"]


def test_tap_or_filter_and_refusal(server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.start_feed(rate=2000)
    flt = '[{"s": "SYM0"}, {"s": "SYM2"}]'
    assert main(["tap", server.url, "--filter", flt, "-f", "e=depthUpdate", "--count", "4"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4  # --count 4: exactly four matching lines, not none
    assert all(m["s"] in ("SYM0", "SYM2") and m["e"] == "depthUpdate" for m in lines)
    server.refuse(None, status=403)
    assert main(["tap", server.url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"wsmux: error: cannot connect to {server.url}: handshake refused with HTTP 403"]


@pytest.mark.slow
def test_tap_subprocess_count_and_rotation(server: FeedServer) -> None:
    server.start_feed(rate=500)
    done = run("tap", server.url, "--count", "300", "--rotate-every", "0.2")
    assert done.returncode == 0, done.stderr
    seqs = [json.loads(line)["seq"] for line in done.stdout.splitlines()]
    assert len(seqs) == 300
    assert seqs == list(range(seqs[0], seqs[0] + 300))  # rotation: no gap, no duplicate
    assert "rotated to a new connection" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_tap_subprocess_refused_and_bad_url(server: FeedServer) -> None:
    server.refuse(None, status=401)
    done = run("tap", server.url)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"wsmux: error: cannot connect to {server.url}: handshake refused with HTTP 401"
    ]
    done = run("tap", "https://example.com/ws")
    assert done.returncode == 2
    assert "invalid URL" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_tap_ctrl_c_exits_0(server: FeedServer) -> None:
    server.start_feed(rate=200)
    proc = subprocess.Popen(
        [*CLI, "tap", server.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert json.loads(first)["e"] in ("trade", "depthUpdate")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in err


@pytest.mark.slow
def test_demo_runs_for_seconds_and_exits_0() -> None:
    started = time.monotonic()
    done = run("demo", "--seconds", "2.5", "--key-ttl", "1", "--drop-every", "1")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    err = done.stderr
    assert "Traceback" not in err
    status = [line for line in err.splitlines() if "msg/s" in line]
    assert len(status) >= 2  # one line per second (plain lines: stderr is not a TTY)
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("wsmux: done in")
    assert " 0 rotations" not in summary  # the listen key expired every second


@pytest.mark.slow
def test_demo_ctrl_c_exits_0() -> None:
    proc = subprocess.Popen(
        [*CLI, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        assert "demo" in proc.stderr.readline()
        assert "msg/s" in proc.stderr.readline()  # the first status line
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "wsmux: done in" in err
