"""Recording and replay: a recording of the demo's feed replays to the same messages.

The recording is made once per session (a module fixture): the demo's market
feed (its FeedServer, symbols, rate and random disconnects) read by a
multiplexer with a :class:`wsmux.Recorder`, for ``RECORD_SECONDS`` of feed
(30, as the issue asks; ``WSMUX_RECORD_SECONDS=3`` for a quick local run).
The tests that use it share one xdist worker (``xdist_group``), so the
recording is made once per run, not once per worker. Each backend then replays it at 10x and as
fast as possible, and must see exactly the messages the recording client saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from wsmux import Multiplexer, Recorder
from wsmux._recfile import read_recording, served_frames
from wsmux.testing import FeedServer

RECORD_SECONDS = float(os.environ.get("WSMUX_RECORD_SECONDS", "30"))
# `wsmux demo --rate 500`: replayed at 10x that is 5,000 msg/s, which a trio
# client sharing the GIL with the replay server's thread keeps up with even on
# a loaded machine (at the default 2,000 it reads about 10,000 msg/s at most,
# so a 10x replay would measure the client, not the replay's pacing).
RATE = 500.0
FAST = {"backoff_base": 0.05, "backoff_cap": 0.2, "close_timeout": 1.0, "proxy": None}


@dataclass
class Recording:
    path: Path
    published: list[Any]  # what the recording client's stream delivered
    reconnects: int
    disconnects: int


async def _record(path: Path) -> Recording:
    symbols = [f"SYM{i}" for i in range(12)]
    async with FeedServer(symbols=symbols, seed=7) as srv:
        srv.start_feed(rate=RATE)
        every = max(RECORD_SECONDS / 3, 0.5)  # a few random disconnects, as the demo has
        srv.schedule("drop", every=every, jitter=every / 3)
        with Recorder(path) as rec:
            mux = Multiplexer(f"{srv.url}/stream", recorder=rec, **FAST)
            stream = mux.stream_filter(maxsize=10_000_000)
            published: list[Any] = []
            async with mux:
                with anyio.move_on_after(RECORD_SECONDS):
                    async for msg in stream:
                        published.append(msg)
            async for msg in stream:  # what was buffered when the recording stopped
                published.append(msg)
            stats = mux.stats()
            return Recording(path, published, stats.reconnects, stats.disconnects)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recording]:
    path = tmp_path_factory.mktemp("rec") / "demo.jsonl.zst"
    yield anyio.run(_record, path)


@pytest.mark.xdist_group("demo-recording")
def test_the_recording_holds_frames_events_and_gaps(recording: Recording) -> None:
    header, entries = read_recording(recording.path)
    assert header["wsmux"] == "recording" and header["version"] == 1
    assert header["url"].startswith("ws://127.0.0.1:") and "/stream" not in header["url"]
    events = [e for e in entries if "ev" in e]
    frames = [e for e in entries if "ev" not in e]
    assert len(frames) >= RATE * RECORD_SECONDS * 0.5
    times = [e["t"] for e in entries]
    assert times == sorted(times)
    connects = [e for e in events if e["ev"] == "connect"]
    gaps = [e for e in events if e["ev"] == "gap"]
    assert len(connects) == recording.reconnects + 1
    assert len(gaps) == recording.disconnects >= 1, "the demo's drops make gaps"
    # Every recorded frame was delivered, in order: the served frames are the published ones.
    served = [orjson.loads(data) for _, data, _ in served_frames(entries)]
    assert served == recording.published


async def _replay(path: Path, speed: float | str) -> tuple[list[Any], FeedServer]:
    server = FeedServer.replay(path, speed)
    replay = server.replaying
    assert replay is not None
    async with server:
        mux = Multiplexer(f"{server.url}/ws", **FAST)
        stream = mux.stream_filter(maxsize=10_000_000)
        got: list[Any] = []
        async with mux:
            with anyio.fail_after(20 + replay.duration / (replay.speed or 1e9)):
                async for msg in stream:
                    got.append(msg)
                    if len(got) == replay.frames:
                        break
                await server.wait_until_async(lambda: replay.done)
        assert mux.stats().reconnects == 0
    return got, server


@pytest.mark.xdist_group("demo-recording")
@pytest.mark.anyio
async def test_replay_at_10x_gives_the_same_messages_in_a_tenth_of_the_time(
    recording: Recording,
) -> None:
    got, server = await _replay(recording.path, 10)
    replay = server.replaying
    assert replay is not None and replay.elapsed is not None
    assert got == recording.published  # same order, same content
    ratio = replay.elapsed / replay.duration
    assert 0.05 <= ratio <= 0.3, (replay.elapsed, replay.duration)


@pytest.mark.xdist_group("demo-recording")
@pytest.mark.anyio
async def test_replay_as_fast_as_possible(recording: Recording) -> None:
    got, server = await _replay(recording.path, "max")
    assert got == recording.published
    assert server.replaying is not None and server.replaying.played == len(got)


def test_replay_of_a_plain_file_with_rotation_and_binary_frames(tmp_path: Path) -> None:
    """The live connection rule: a rotation's overlap is served once, nothing is lost."""
    lines: list[dict[str, Any]] = [
        {"wsmux": "recording", "version": 1, "url": None, "start": 0.0, "name": "x"},
        {"t": 0.0, "ev": "connect", "conn": 1},
        {"t": 0.1, "conn": 1, "data": '{"n": 1}'},
        {"t": 0.2, "ev": "connect", "conn": 2},
        {"t": 0.25, "conn": 2, "data": '{"n": 2}'},  # overlap, on the new connection
        {"t": 0.3, "conn": 1, "data": '{"n": 2}'},
        {"t": 0.35, "conn": 1, "b64": "/w=="},
        {"t": 0.36, "conn": 2, "b64": "/w=="},  # overlap
        {"t": 0.37, "conn": 2, "data": '{"n": 3}'},  # after the old one's last: served
        {"t": 0.4, "ev": "rotation", "from": 1, "conn": 2},
        {"t": 0.45, "conn": 1, "data": '{"n": 4}'},  # the old one after the cutover
        {"t": 0.5, "conn": 2, "data": '{"n": 4}'},
        {"t": 0.6, "ev": "gap", "conn": 2, "reason": "lost"},
        {"t": 0.65, "conn": 2, "data": '{"n": 5}'},  # read after the loss: not served
        {"t": 0.7, "ev": "connect", "conn": 3},
        {"t": 0.8, "conn": 3, "data": '{"n": 6}'},
    ]
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    _, entries = read_recording(path)
    assert list(served_frames(entries)) == [
        (0.1, b'{"n": 1}', True),
        (0.3, b'{"n": 2}', True),
        (0.35, b"\xff", False),
        (0.37, b'{"n": 3}', True),
        (0.5, b'{"n": 4}', True),
        (0.8, b'{"n": 6}', True),
    ]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", "not a wsmux recording"),
        (b'{"wsmux": "recording", "version": 99}\n', "version 99"),
        (b'{"wsmux": "recording", "version": 1}\n{"t": 0.1, "conn"', "line 2: not JSON"),
    ],
)
def test_bad_recordings_are_refused_clearly(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=error):
        FeedServer.replay(path)


@pytest.mark.parametrize("speed", [-1, "fast", float("nan")])
def test_bad_speeds_are_refused(tmp_path: Path, speed: Any) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"wsmux": "recording", "version": 1}\n')
    with pytest.raises(ValueError, match="speed"):
        FeedServer.replay(path, speed)


def test_a_missing_zstandard_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(ImportError, match=r"wsmux\[record\]"):
        Recorder(tmp_path / "x.jsonl.zst")
    assert not (tmp_path / "x.jsonl.zst").exists()


def test_the_recorder_stores_text_and_binary_frames(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    with Recorder(path, url="wss://user:pw@venue.example:9443/ws/listenKeySecret") as rec:
        rec.begin(None, "venue")
        rec.event("connect", 1)
        rec.frame(1, '{"a": 1}')
        rec.frame(1, b'{"b": 2}')
        rec.frame(1, b"\xff\x00")
    assert "frames=3" in repr(rec) and "closed" in repr(rec)
    rec.frame(1, "after close")  # ignored
    header, entries = read_recording(path)
    assert header["url"] == "wss://venue.example:9443"  # no user info, no listen key
    assert "listenKeySecret" not in path.read_text() and "pw" not in header["url"]
    assert [e.get("data", e.get("b64")) for e in entries[1:]] == ['{"a": 1}', '{"b": 2}', "/wA="]
    assert [f[1:] for f in served_frames(entries)] == [
        (b'{"a": 1}', True),
        (b'{"b": 2}', True),
        (b"\xff\x00", False),
    ]
