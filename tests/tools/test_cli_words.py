"""Issue 14 for the command line: what tap and demo say, and when tap gives up."""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time

import pytest

from wsmux.__main__ import main
from wsmux.cli import _demo, _tap
from wsmux.cli._common import key_value

CLI = [sys.executable, "-m", "wsmux"]


def tap_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _tap.add_parser(parser.add_subparsers())
    return parser.parse_args(["tap", *argv])


def test_a_url_without_scheme_is_shown_as_typed(capsys: pytest.CaptureFixture[str]) -> None:
    """The old message was "invalid URL '<invalid url>'"."""
    with pytest.raises(SystemExit) as exc:
        main(["tap", "127.0.0.1:18001"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid URL '127.0.0.1:18001'" in err, err
    assert "did you mean 'ws://127.0.0.1:18001'?" in err
    assert "<invalid url>" not in err


def test_a_bad_url_error_masks_only_the_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    key = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    with pytest.raises(SystemExit):
        main(["tap", f"https://user:pw@example.com/ws/{key}?token=t0ps3cret"])
    err = capsys.readouterr().err
    assert "invalid URL 'https://<redacted>@example.com/ws/<redacted>?token=<redacted>'" in err
    assert key not in err and "t0ps3cret" not in err and "pw@" not in err


def test_help_says_how_filter_values_are_typed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tap", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "read as JSON first, else taken as a string" in out
    assert "-f c=123 matches the number 123" in out
    assert "-f 'c=\"123\"'" in out
    # ... and the parser does what the help says.
    assert key_value("c=123") == ("c", 123)
    assert key_value('c="123"') == ("c", "123")
    assert key_value("s=BTCUSDT") == ("s", "BTCUSDT")


def test_tap_gives_up_after_a_bounded_number_of_attempts_by_default() -> None:
    assert tap_args("ws://127.0.0.1:1").retries == _tap.DEFAULT_RETRIES == 5
    assert tap_args("ws://127.0.0.1:1", "--retries", "0").retries == 0  # never give up
    with pytest.raises(SystemExit):
        tap_args("ws://127.0.0.1:1", "--retries", "-1")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connections are refused


@pytest.mark.slow
def test_tap_exits_1_when_the_connection_is_refused() -> None:
    url = f"ws://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    done = subprocess.run([*CLI, "tap", url], capture_output=True, text=True, timeout=90)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - start < 60  # about 10 s; bounded even on a loaded machine
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"wsmux: error: cannot connect to {url}: 5 attempts failed,"), last
    assert "ConnectionRefusedError" in last
    assert done.stderr.count("error:") == 1  # the fatal error is printed once
    assert "Traceback" not in done.stderr


SUMMARY = {
    "seconds": 2.0,
    "messages": 1,
    "trades": 1,
    "volume": 1.5,
    "big": 0,
    "user_events": 1,
    "rotations": 1,
    "reconnects": 1,
    "drops": 1,
    "resyncs": 1,
    "streams": 1,
}


def test_demo_summary_counts_agree_with_their_nouns() -> None:
    one = _demo.summary_line(SUMMARY)
    assert one == (
        "done in 2.0s: 1 message (0/s), 1 trade (volume 1.5, 0 big) on 1 stream,"
        " 1 user event, 1 rotation, 1 reconnect, 1 lag drop, 1 book resync"
    )
    many = _demo.summary_line(
        {k: v if k in ("seconds", "volume") else 3 for k, v in SUMMARY.items()}
    )
    for noun in ("messages", "trades", "streams", "user events", "rotations", "reconnects"):
        assert f"3 {noun}" in many
    assert "3 lag drops" in many and "3 book resyncs" in many


@pytest.mark.slow
def test_demo_summary_counts_the_streams_it_ran(capsys: pytest.CaptureFixture[str]) -> None:
    """The old summary read the count after exit: always "on 0 streams"."""
    assert main(["demo", "--seconds", "1.5", "--symbols", "3", "--rate", "200"]) == 0
    summary = capsys.readouterr().err.strip().splitlines()[-1]
    found = re.search(r" on (\d+) streams,", summary)
    # At least 3 trade streams, 3 book streams, and an async handler's own stream.
    assert found is not None and int(found[1]) >= 7, summary
