"""Every example runs against the embedded FeedServer for a few seconds and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: What each example must print, as a sign it did its job.
EXPECTED = {
    "binance_user_data.py": "order BTCUSDT FILLED",
    "order_book.py": "resyncs",
    "typed_messages.py": "vwap",
    "handlers_subscriptions.py": "subscribed to",
    "threaded.py": "done after",
}


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--seconds", "2.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert EXPECTED[name] in done.stdout


@pytest.mark.slow
def test_binance_example_rotates() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "binance_user_data.py"), "--seconds", "4.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("rotations:") and not last.startswith("rotations: 0")
    events = [int(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines() if "event" in line]
    assert len(events) == len(set(events))  # no duplicate across rotations
