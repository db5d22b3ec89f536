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

    A replay is one feed, as the venue sent it: it serves the frames of the
    connection that was live when they arrived. That is the first one, then
    after a ``rotation`` line its new connection (whose frames from before the
    cutover, the overlap, are not served again), and after a loss the next
    connection that opens. Across a planned rotation without message ids,
    about one round trip of frames may be repeated or missing at the cutover.
    """
    live: int | None = None
    for entry in entries:
        event = entry.get("ev")
        if event is None:
            if entry.get("conn") != live:
                continue
            if "data" in entry:
                yield entry["t"], entry["data"].encode(), True
            elif "b64" in entry:
                yield entry["t"], base64.b64decode(entry["b64"]), False
        elif event == "connect":
            if live is None:
                live = entry.get("conn")
        elif event == "rotation":
            live = entry.get("conn")
        elif event == "gap" and entry.get("conn") == live:
            live = None
