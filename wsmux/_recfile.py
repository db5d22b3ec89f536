"""The recording file format: JSON lines, zstd-compressed when the name ends in ``.zst``.

Written by :class:`wsmux.Recorder` (``wsmux record``, ``wsmux demo --record``)
and read by :meth:`wsmux.testing.FeedServer.replay` (``wsmux replay``). This
module knows the format and nothing of the multiplexer: it imports only the
standard library and orjson (and zstandard, lazily, for ``.zst`` files).

Version 1. The first line is the header; every other line is a frame or an
event, in the order they happened, ``t`` being seconds since the header's
``start`` (a monotonic clock)::

    {"wsmux": "recording", "version": 1, "url": "wss://host:443", "start": 1764115200.5,
     "name": "wss://host/ws"}
    {"t": 0.0012, "ev": "connect", "conn": 1}
    {"t": 0.0150, "conn": 1, "data": "{\\"e\\":\\"trade\\",...}"}
    {"t": 0.0151, "conn": 1, "b64": "AAEC"}
    {"t": 9.5000, "ev": "gap", "conn": 1, "reason": "connection dropped without a close frame"}
    {"t": 9.5001, "ev": "close", "conn": 1, "reason": "..."}
    {"t": 9.6200, "ev": "connect", "conn": 2}
    {"t": 60.010, "ev": "rotation", "from": 2, "conn": 3}

``url`` shows scheme, host and port only (never a path, query or user info).
``data`` is a frame as text; ``b64`` a frame that is not UTF-8, base64-encoded
(a binary frame whose bytes are UTF-8 is stored, and replayed, as text).
``conn`` numbers the connections of one multiplexer from 1. Readers ignore
keys they do not know, so later versions may add some.
"""

from __future__ import annotations

import base64
import io
import os
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any, Final

import orjson

__all__ = [
    "FORMAT",
    "VERSION",
    "frame_payload",
    "open_read",
    "open_write",
    "read_recording",
    "served_frames",
]

#: The header's ``"wsmux"`` value and the format's version.
FORMAT: Final = "recording"
VERSION: Final = 1

_ZSTD_HINT: Final = "pip install 'wsmux[record]'"


def _zstandard(path: str) -> Any:
    try:
        import zstandard
    except ImportError:
        raise ImportError(
            f"{os.path.basename(path)}: a .zst recording needs the zstandard package:"
            f" {_ZSTD_HINT} (or use a name without .zst for plain JSON lines)"
        ) from None
    return zstandard


def open_write(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a recording for writing (zstd when the name ends in ``.zst``).

    Raises:
        ImportError: The name ends in ``.zst`` and zstandard is missing.
        OSError: The file cannot be created.
    """
    name = os.fspath(path)
    if name.endswith(".zst"):
        zstd = _zstandard(name)
        raw = open(name, "wb")  # noqa: SIM115 - owned by the writer returned
        try:
            writer: IO[bytes] = zstd.ZstdCompressor(level=3).stream_writer(raw, closefd=True)
        except BaseException:
            raw.close()
            raise
        return writer
    return open(name, "wb", buffering=1 << 16)


def open_read(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a recording for reading, line by line.

    Raises:
        ImportError: The name ends in ``.zst`` and zstandard is missing.
        OSError: The file cannot be opened.
    """
    name = os.fspath(path)
    if name.endswith(".zst"):
        zstd = _zstandard(name)
        raw = open(name, "rb")  # noqa: SIM115 - owned by the reader returned
        try:
            reader = zstd.ZstdDecompressor().stream_reader(raw, closefd=True)
        except BaseException:
            raw.close()
            raise
        return io.BufferedReader(reader, 1 << 16)
    return open(name, "rb")


def frame_payload(raw: str | bytes | bytearray | memoryview) -> tuple[str, str]:
    """The key (``"data"`` or ``"b64"``) and value a frame is stored under."""
    if isinstance(raw, str):
        return "data", raw
    data = bytes(raw)
    try:
        return "data", data.decode()
    except UnicodeDecodeError:
        return "b64", base64.b64encode(data).decode("ascii")


def read_recording(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a whole recording.

    Returns:
        The header and every later line, in order.

    Raises:
        ValueError: The file is not a wsmux recording (of a version this
            wsmux reads), or a line is not JSON.
        ImportError: The name ends in ``.zst`` and zstandard is missing.
        OSError: The file cannot be read.
    """
    name = os.path.basename(os.fspath(path))
    with open_read(path) as f:
        lines = iter(f)
        first = next(lines, b"")
        if not first.strip():
            raise ValueError(f"{name}: not a wsmux recording (empty)")
        header = _load(first, name, 1)
        if not isinstance(header, dict) or header.get("wsmux") != FORMAT:
            raise ValueError(f"{name}: not a wsmux recording (no header line)")
        if header.get("version") != VERSION:
            raise ValueError(
                f"{name}: recording version {header.get('version')!r}, this wsmux reads {VERSION}"
            )
        entries = []
        for number, line in enumerate(lines, 2):
            if line.strip():
                entry = _load(line, name, number)
                if not isinstance(entry, dict) or "t" not in entry:
                    raise ValueError(f"{name}, line {number}: not a frame or an event")
                entries.append(entry)
    return header, entries


def _load(line: bytes, name: str, number: int) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # A file cut short (the recorder was killed) ends in half a line.
        raise ValueError(f"{name}, line {number}: not JSON ({exc})") from None


def served_frames(entries: list[dict[str, Any]]) -> Iterator[tuple[float, bytes, bool]]:
    """The frames a replay serves: ``(t, payload, is_text)``, in order.

    A replay is one feed, as the venue sent it once: the frames of the
    connection that was live when they arrived. That is the first
    connection; after a loss (``gap``), the next one that opens. A
    connection opened while another is live (a planned rotation's next one)
    is held until its ``rotation`` line, and the old connection's frames
    after that line are dropped. The cut is where the new connection's
    stream repeats the old one's last served frame: its frames up to that
    one are the overlap (not served again), the rest follow. So a recording
    across a rotation replays with no repeat and no hole, unless the feed
    sends equal frames (no id, no timestamp) within one overlap.
    """
    streams: dict[Any, list[str]] = {}
    for entry in entries:
        if "ev" not in entry:
            streams.setdefault(entry.get("conn"), []).append(_key(entry))
    live: Any = None
    held: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    position: Counter[Any] = Counter()  # frames seen so far, per connection
    cut: dict[Any, int] = {}  # per connection: how many of its first frames are not served
    last: str | None = None  # the last frame served
    for entry in entries:
        event = entry.get("ev")
        conn = entry.get("conn")
        if event is None:
            n = position[conn]
            position[conn] += 1
            if conn == live:
                if n >= cut.get(conn, 0) and (served := _frame(entry)) is not None:
                    last = _key(entry)
                    yield served
            elif conn in held:
                held[conn].append((n, entry))
        elif event == "connect":
            if live is None:
                live = conn
            else:
                held[conn] = []
        elif event == "rotation":
            frames = held.pop(conn, [])
            cut[conn] = _cut(streams.get(conn, []), last)
            live = conn
            for n, frame in frames:
                if n >= cut[conn] and (served := _frame(frame)) is not None:
                    last = _key(frame)
                    yield served
        elif event == "gap" and conn == live:
            live = None
        elif event == "close":
            held.pop(conn, None)  # a rotation's next connection, lost before the cutover


def _cut(stream: list[str], last: str | None) -> int:
    """How many first frames of ``stream`` the old connection already served."""
    if last is None:
        return 0
    try:
        return stream.index(last) + 1
    except ValueError:
        return 0  # the new stream began after the old one's last frame: no overlap


def _key(entry: dict[str, Any]) -> str:
    return entry.get("data") or entry.get("b64") or ""


def _frame(entry: dict[str, Any]) -> tuple[float, bytes, bool] | None:
    if "data" in entry:
        return entry["t"], entry["data"].encode(), True
    if "b64" in entry:
        return entry["t"], base64.b64decode(entry["b64"]), False
    return None
