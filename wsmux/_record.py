"""Recording a multiplexer's raw frames: :class:`Recorder`.

A recorder is handed to ``Multiplexer(url, recorder=...)``; the supervisor
then wraps each connection's ``recv`` so that every frame is written with its
receive time and connection id, and reports connections, rotations, gaps and
closes as events. Without a recorder the reader runs exactly as before: the
hook costs nothing when unused. The file format is described in
:mod:`wsmux._recfile`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import IO, Any, Self

import orjson

from ._log import log, redact_url
from ._recfile import FORMAT, VERSION, frame_payload, open_write
from .fanout._match import Filters, compile_filters, matches

__all__ = ["Recorder"]

Recv = Callable[..., Awaitable[Any]]
RecvNowait = Callable[[], Any]


class Recorder:
    """Writes the frames of a multiplexer to a recording file.

    Example::

        with Recorder("feed.jsonl.zst") as rec:
            async with Multiplexer(url, recorder=rec) as mux:
                ...

    A recorder serves one multiplexer at a time. Writes are buffered; the
    file is complete once :meth:`close` returns (a recorder killed midway
    leaves a file whose last line may be cut, which the reader reports).

    Args:
        path: Where to write; a name ending in ``.zst`` is zstd-compressed.
        filters: Record only the frames that parse as JSON and match this
            filter (as in ``stream_filter``); the others are counted in
            :attr:`skipped`. None (default) records every frame. Events are
            always written.
        url: The URL to note in the header (shown as scheme, host and
            port); default: the multiplexer's, when it starts.

    Raises:
        ImportError: The name ends in ``.zst`` and zstandard is missing
            (``pip install 'wsmux[record]'``).
        TypeError: ``filters`` is not a valid filter.
        OSError: The file cannot be created.
    """

    __slots__ = ("_clock0", "_file", "_keep", "_url", "frames", "path", "skipped")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        filters: Filters = None,
        url: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        clauses = compile_filters(filters)
        self._keep = None if not clauses else functools.partial(_keep, clauses)
        self._url = url
        #: Frames written and frames ``keep`` turned away.
        self.frames = 0
        self.skipped = 0
        self._file: IO[bytes] | None = open_write(self.path)
        self._clock0: float | None = None

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"<Recorder {os.path.basename(self.path)!r} {state} frames={self.frames}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._file is None

    def close(self) -> None:
        """Flush and close the file; later frames and events are ignored. Idempotent."""
        if self._file is not None and self._clock0 is None:
            self.begin(None, "")  # never started: still a valid, empty recording
        f, self._file = self._file, None
        if f is not None:
            f.close()

    # -- what the supervisor calls ---------------------------------------------

    def begin(self, url: str | None, name: str) -> None:
        """Write the header, once (the multiplexer's start)."""
        if self._clock0 is not None:
            return
        self._clock0 = time.monotonic()
        header = {
            "wsmux": FORMAT,
            "version": VERSION,
            "url": redact_url(self._url or url) if (self._url or url) else None,
            "start": time.time(),
            "name": name,
        }
        self._write(header)

    def event(self, kind: str, conn: int, **fields: Any) -> None:
        """Write an event line (``connect``, ``rotation``, ``gap``, ``close``)."""
        self._write({"t": self._now(), "ev": kind, "conn": conn, **fields})

    def frame(self, conn: int, raw: str | bytes) -> None:
        """Write one frame received on connection ``conn``."""
        if self._file is None:
            return
        if self._keep is not None and not self._keep(raw):
            self.skipped += 1
            return
        key, value = frame_payload(raw)
        self.frames += 1
        self._write({"t": self._now(), "conn": conn, key: value})

    def wrap(
        self, conn: int, recv: Recv, recv_nowait: RecvNowait | None
    ) -> tuple[Recv, RecvNowait | None]:
        """Return ``recv`` (and ``recv_nowait``) that record what they return."""
        frame = self.frame

        async def recording_recv(*args: Any, **kwargs: Any) -> Any:
            raw = await recv(*args, **kwargs)
            frame(conn, raw)
            return raw

        if recv_nowait is None:
            return recording_recv, None

        def recording_recv_nowait() -> Any:
            raw = recv_nowait()
            if raw is not None:
                frame(conn, raw)
            return raw

        return recording_recv, recording_recv_nowait

    # -- internals ---------------------------------------------------------------

    def _now(self) -> float:
        if self._clock0 is None:
            self._clock0 = time.monotonic()
        return round(time.monotonic() - self._clock0, 6)

    def _write(self, obj: dict[str, Any]) -> None:
        f = self._file
        if f is None:
            return
        try:
            f.write(orjson.dumps(obj) + b"\n")
        except (OSError, ValueError) as exc:
            # A full disk must not take the feed down: say so once and stop recording.
            log.error("recording to %s failed (%r): recording stopped", self.path, exc)
            self._file = None
            with contextlib.suppress(OSError, ValueError):
                f.close()


def _keep(clauses: list[dict[str, Any]], raw: str | bytes) -> bool:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return any(matches(clause, msg) for clause in clauses)
