"""The Recorder hook: rotations, the picows reader, a failing disk, filters."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from wsmux import Multiplexer, Recorder
from wsmux._recfile import read_recording, served_frames
from wsmux.testing import FeedServer

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"backoff_base": 0.01, "backoff_cap": 0.05, "close_timeout": 0.5}


async def _take(stream: Any, n: int) -> list[Any]:
    got: list[Any] = []
    with anyio.fail_after(15):
        async for msg in stream:
            got.append(msg)
            if len(got) == n:
                break
    return got


async def test_a_rotation_is_recorded_and_replays_without_repeats(tmp_path: Path) -> None:
    rotate = anyio.Event()

    class Rotating(Multiplexer):
        async def _when2create_new_ws(self) -> None:
            await rotate.wait()

        def _message_id(self, msg: Any) -> Any:
            return msg.get("seq")

    path = tmp_path / "rot.jsonl"
    async with FeedServer(symbols=2) as srv:
        with Recorder(path) as rec:
            mux = Rotating(f"{srv.url}/ws", recorder=rec, **FAST)
            stream = mux.stream_filter(maxsize=100_000)
            async with mux:
                srv.start_feed(rate=2000, count=3000)
                got = await _take(stream, 1000)
                rotate.set()
                got += await _take(stream, 2000)
                assert mux.stats().rotations >= 1
    _, entries = read_recording(path)
    rotations = [e for e in entries if e.get("ev") == "rotation"]
    assert rotations and rotations[0]["from"] == 1 and rotations[0]["conn"] == 2
    served = [orjson.loads(d)["seq"] for _, d, _ in served_frames(entries)]
    # The rotation's overlap is served once: the very sequence the client saw.
    assert [m["seq"] for m in got] == list(range(1, 3001))
    assert served == list(range(1, 3001))


async def test_picows_frames_are_recorded_too(tmp_path: Path, anyio_backend: str) -> None:
    pytest.importorskip("picows")
    if anyio_backend == "trio":
        pytest.skip("picows runs on asyncio only")
    path = tmp_path / "p.jsonl.zst"
    async with FeedServer(symbols=2) as srv:
        with Recorder(path) as rec:
            mux = Multiplexer(f"{srv.url}/ws", transport="picows", recorder=rec, **FAST)
            stream = mux.stream_filter(maxsize=10_000)
            async with mux:
                srv.start_feed(count=2000)  # bursts: the reader's recv_nowait path
                got = await _take(stream, 2000)
    _, entries = read_recording(path)
    assert [orjson.loads(d) for _, d, _ in served_frames(entries)] == got
    assert rec.frames == 2000


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_a_failing_disk_stops_the_recording_not_the_feed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FeedServer(symbols=2) as srv:
        with Recorder("/dev/full") as rec:
            mux = Multiplexer(f"{srv.url}/ws", recorder=rec, **FAST)
            stream = mux.stream_filter(maxsize=10_000)
            async with mux:
                srv.start_feed(count=3000)  # more than the 64 KiB buffer
                got = await _take(stream, 3000)
            assert rec.closed
    assert len(got) == 3000
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "recording stopped" in errors[0].getMessage()


async def test_filters_keep_only_matching_frames(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    async with FeedServer(symbols=3, kinds=["trade"]) as srv:
        with Recorder(path, filters={"s": "SYM2"}) as rec:
            mux = Multiplexer(f"{srv.url}/ws", recorder=rec, **FAST)
            stream = mux.stream_filter(maxsize=10_000)
            async with mux:
                srv.start_feed(count=300)
                await _take(stream, 300)
                srv.send("not json")
                srv.send({"s": "SYM2", "last": True})
                await _take(stream, 1)  # so "not json" was read too
    _, entries = read_recording(path)
    kept = [orjson.loads(d) for _, d, _ in served_frames(entries)]
    assert {m["s"] for m in kept} == {"SYM2"} and kept[-1] == {"s": "SYM2", "last": True}
    assert rec.frames == len(kept) and rec.frames + rec.skipped == 302
