"""Serving a recording as a live feed: :class:`Replay`.

:meth:`wsmux.testing.FeedServer.replay` makes a feed server and hands its
core to a :class:`Replay`, which plays the recording's frames (see
:mod:`wsmux._recfile`: the frames of the recording's live connection) to
every market connection, on the recording's clock scaled by ``speed``. The
playback starts when the first market connection opens, so a test that
connects first misses nothing; it runs once per server start.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .._recfile import read_recording, served_frames
from ._core import FeedCore
from ._live import Live

__all__ = ["Replay", "check_speed"]

#: Sleep only when a frame is due this much later: a burst goes out at once.
_MIN_SLEEP = 0.0005


def check_speed(speed: float | str) -> float:
    """The speed as a factor; 0 for ``"max"``.

    Raises:
        ValueError: Not a number >= 0 or ``"max"``.
    """
    if speed == "max":
        return 0.0
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not speed >= 0:
        raise ValueError(f"speed must be a number >= 0 or 'max', not {speed!r}")
    if speed == float("inf"):
        return 0.0
    return float(speed)


class Replay:
    """The playback of one recording on a feed server (server thread only).

    Attributes:
        header: The recording's header line (``url``, ``start``, ``name``).
        frames: How many frames the replay serves.
        duration: Seconds between the first and last of them in the recording.
        speed: The speed factor; 0 is as fast as the sockets allow.
    """

    def __init__(self, core: FeedCore, path: str | os.PathLike[str], speed: float | str) -> None:
        self.speed = check_speed(speed)
        self.header, entries = read_recording(path)
        self._frames = list(served_frames(entries))
        self.frames = len(self._frames)
        self.duration = self._frames[-1][0] - self._frames[0][0] if self._frames else 0.0
        self._core = core
        self._played = 0
        self._elapsed: float | None = None
        self._task: asyncio.Task[None] | None = None
        opened, shutdown = core.on_open, core.on_shutdown

        def on_open(live: Live) -> None:
            opened(live)
            if self._task is None and live.rec.listen_key is None:
                self._task = core.spawn(self._play(), feed=True)

        def on_shutdown() -> None:
            shutdown()
            self._task = None  # cancelled by the shutdown; a restart plays again

        core.on_open = on_open
        core.on_shutdown = on_shutdown

    def __repr__(self) -> str:
        return (
            f"<Replay {self.frames} frames over {self.duration:.3f}s at"
            f" {'max' if not self.speed else f'{self.speed:g}x'} played={self.played}>"
        )

    @property
    def played(self) -> int:
        """Frames served so far."""
        return self._played

    @property
    def elapsed(self) -> float | None:
        """Seconds the playback took on the server's clock (None until it is done).

        From the first frame to the last one written: ``duration / speed``
        for a client that keeps up.
        """
        return self._elapsed

    @property
    def done(self) -> bool:
        """Whether every frame was served and written."""
        return self._elapsed is not None

    async def _play(self) -> None:
        core, speed = self._core, self.speed
        loop = asyncio.get_running_loop()
        start = loop.time()
        t0 = self._frames[0][0] if self._frames else 0.0
        targets: list[Live] = []
        for n, (t, data, text) in enumerate(self._frames):
            if speed:
                delay = start + (t - t0) / speed - loop.time()
                if delay > _MIN_SLEEP:
                    await asyncio.sleep(delay)
            targets = [lv for lv in core.live.values() if lv.rec.listen_key is None]
            frame = (data, text)
            for live in targets:
                await _put(core, live, frame)
            self._played += 1
            core.counts["feed_messages"] += 1
            if n % 64 == 63:
                await asyncio.sleep(0)  # let the writers run
        await _flush(targets)
        with core.waiters.lock:
            self._elapsed = loop.time() - start
        core.waiters.notify()


async def _put(core: FeedCore, live: Live, frame: Any) -> None:
    # A replay loses nothing: a client that does not keep up slows it down.
    if live.muted:
        return
    if live.queue.full():
        await live.queue.put(frame)
    else:
        core.enqueue(live, frame)


async def _flush(lives: list[Live]) -> None:
    waits = [asyncio.ensure_future(lv.queue.join()) for lv in lives if not lv.muted]
    if not waits:
        return
    try:
        await asyncio.wait(waits, timeout=5.0)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.wait(waits)
