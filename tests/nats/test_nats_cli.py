"""``wsmux bridge`` and ``wsmux tap nats://...`` as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from _natsserver import NatsServer

from wsmux.__main__ import main
from wsmux.testing import FeedServer

CLI = [sys.executable, "-m", "wsmux"]


def wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        if text in line:
            return
    raise AssertionError(f"{text!r} never said; exit code {proc.wait(10)}")


def test_bridge_then_tap_from_the_broker(nats_server: NatsServer) -> None:
    with FeedServer(symbols=2) as srv:
        bridge = subprocess.Popen(
            [*CLI, "bridge", srv.url + "/ws", "--nats", nats_server.url, "--subject",
             "md.{e}.{s}", "--jetstream", "MD"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for_line(bridge, "bridging")
            srv.start_feed(count=200)
            tap = subprocess.run(
                [*CLI, "tap", f"{nats_server.url}/md.{{e}}.{{s}}", "--jetstream", "MD",
                 "--deliver", "all", "-f", "e=trade", "-f", "s=SYM1", "--count", "3"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert tap.returncode == 0, tap.stderr
            lines = [json.loads(line) for line in tap.stdout.splitlines()]
            assert len(lines) == 3
            assert all(m["e"] == "trade" and m["s"] == "SYM1" for m in lines)
        finally:
            bridge.send_signal(signal.SIGINT)
            try:
                assert bridge.wait(10) == 0
            finally:
                if bridge.poll() is None:
                    bridge.kill()
                    bridge.wait()
                if bridge.stderr is not None:
                    bridge.stderr.close()


@pytest.mark.parametrize(
    "argv",
    [
        ["tap", "nats://127.0.0.1:4222"],
        ["tap", "nats://127.0.0.1:4222/md.{e}.{e}"],
        ["bridge", "ws://127.0.0.1:1"],
        ["bridge", "ws://127.0.0.1:1", "--nats", "http://x"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
