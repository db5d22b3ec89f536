"""Every example runs against the embedded FeedServer for a few seconds and exits 0."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest

from wsmux.testing import FeedServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: What each example must print, as a sign it did its job.
EXPECTED = {
    "binance_arrays.py": "miniTicker BTCUSDT",
    "binance_user_data.py": "order BTCUSDT FILLED",
    "fleet.py": "consumer 2:",  # a bridge, a local nats-server, three consumer processes
    "order_book.py": "resyncs",
    "typed_messages.py": "vwap",
    "handlers_subscriptions.py": "subscribed to",
    "threaded.py": "done after",
    "binance_many_symbols.py": "5000 topics on 5 connections",
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
    # (Its simulated account sends each event to one key only, so it cannot show a
    # duplicate: the exactly-once claim is checked below, with events that repeat.)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", EXAMPLES / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_binance_adapter_is_exactly_once_across_rotations() -> None:
    """Each account event goes to every open user stream, as it would to every
    connection on the account: during a rotation's overlap both connections
    carry it, and only the adapter's _message_id keeps it from repeating."""
    adapter = load_example("binance_user_data.py").BinanceFapiUserData
    async with FeedServer() as srv:  # keys never expire: rotation by period
        ws = adapter(srv.url, srv.http_url, period=0.15, rotation_interval=0.05)
        orders = ws.stream_filter({"e": "ORDER_TRADE_UPDATE"}, maxsize=10_000)
        seen: list[int] = []
        sent = 0

        async def account() -> None:
            nonlocal sent
            while True:
                sent += 1
                event = {"e": "ORDER_TRADE_UPDATE", "E": sent, "i": sent, "o": {"X": "FILLED"}}
                for key in srv.listen_keys:
                    srv.send_user_event(key, event)
                await anyio.sleep(0.002)

        async def consume() -> None:
            async for event in orders:
                seen.append(event["i"])

        async with ws, anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(5):
                async with anyio.create_task_group() as feed:
                    feed.start_soon(account)
                    while ws.stats().rotations < 3:
                        await anyio.sleep(0.01)
                    feed.cancel_scope.cancel()
                last = sent
                while not seen or seen[-1] < last:
                    await anyio.sleep(0.01)
            stats = ws.stats()
            await ws.exit()
    assert stats.rotations >= 3 and stats.reconnects == 0
    assert seen == list(range(seen[0], last + 1))  # no duplicate, no gap
    assert stats.duplicates > 0  # the overlap was real: repeats were there to drop
