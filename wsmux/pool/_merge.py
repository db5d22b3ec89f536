"""Redundant copies of a shard merged into one exactly-once stream.

Each connection of a shard publishes through its own :class:`CopySink` (the
:class:`~wsmux.connection._status.Sink` its supervisor is given). The sinks
of a shard share one :class:`Merger`: the first copy of a message (by the
adapter's ``_message_id``) is handed to the hub, later copies are counted and
dropped, and the ids remembered are bounded (the last ``window`` ids). An id
is remembered until it leaves the window, not only until every copy brought
it: a copy that repeats a message (a venue replaying its last one after a
reconnect, say) is dropped too.

Losing one copy is not a gap. When a copy's supervisor reports a loss
(``mark_gap``), the hub is told only if no other copy covered the time since
the lost copy's last frame: another copy that is up and has received a frame
of its own since before then.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from .._log import RateLimitedLog
from ..connection._status import Sink

__all__ = ["CopySink", "Merger"]

#: Replies to subscribes have no id as a rule: said once a minute, at INFO.
_no_id = RateLimitedLog(logging.INFO, 60.0)


class Merger:
    """The ids seen on one shard, shared by the sinks of its copies.

    Args:
        hub: Where first copies are published.
        message_id: The adapter's ``_message_id``.
        copies: How many connections carry the shard.
        window: The most ids remembered (the oldest are forgotten first).
    """

    __slots__ = (
        "_errors",
        "_order",
        "_seen",
        "copies",
        "duplicates",
        "gaps",
        "hub",
        "message_id",
        "sinks",
        "window",
    )

    def __init__(
        self,
        hub: Sink,
        message_id: Callable[[Any], Hashable | None],
        copies: int,
        window: int,
    ) -> None:
        self.hub = hub
        self.message_id = message_id
        self.copies = copies
        self.window = window
        self.sinks: list[CopySink] = []
        self._seen: dict[Hashable, int] = {}  # id -> the copies that brought it (bits)
        self._order: deque[Hashable] = deque()  # ids in the order first seen
        #: Later copies dropped, over all copies.
        self.duplicates = 0
        #: Losses that left no copy covering the shard (gaps published).
        self.gaps = 0
        self._errors = RateLimitedLog(logging.ERROR)

    def __repr__(self) -> str:
        return (
            f"<Merger copies={self.copies} remembered={len(self._seen)}"
            f" duplicates={self.duplicates} gaps={self.gaps}>"
        )

    def sink(self, last_frame: Callable[[], float | None]) -> CopySink:
        """Return the sink of one more copy.

        Args:
            last_frame: Wall-clock time of that copy's last frame, or None.
        """
        sink = CopySink(self, last_frame, 1 << len(self.sinks))
        self.sinks.append(sink)
        return sink

    def first(self, msg: Any, bit: int = 1) -> bool:
        """Whether ``msg`` is the first copy to arrive (or carries no usable id).

        Args:
            msg: The message.
            bit: The bit of the copy that brought it.
        """
        try:
            key = self.message_id(msg)
        except Exception as exc:
            self._errors("_message_id raised %r; the message is delivered from every copy", exc)
            return True
        if key is None:
            _no_id("a message without an id (%.80r) is delivered from every copy", msg)
            return True
        seen = self._seen
        try:
            copies = seen.get(key)
        except TypeError:
            self._errors("_message_id returned an unhashable %s", type(key).__name__)
            return True
        if copies is None:
            # Kept until it leaves the window, even once every copy brought
            # it: each id is in the order once, so the window bounds both.
            seen[key] = bit
            order = self._order
            order.append(key)
            if len(order) > self.window:
                del seen[order.popleft()]
            return True
        self.duplicates += 1
        seen[key] = copies | bit
        return False


class CopySink:
    """The sink one connection of a redundant shard publishes into."""

    __slots__ = ("_bit", "_last_frame", "_merger", "dropped", "up_since")

    def __init__(
        self, merger: Merger, last_frame: Callable[[], float | None], bit: int = 1
    ) -> None:
        self._merger = merger
        self._bit = bit
        self._last_frame = last_frame
        #: Wall-clock time of this copy's first frame since it was last lost.
        self.up_since: float | None = None
        #: Messages of this copy dropped as already delivered by another.
        self.dropped = 0

    def publish(self, msg: Any) -> bool:
        """Publish the first copy of ``msg``; count and drop a later one."""
        if self.up_since is None:
            self.up_since = time.time()
        merger = self._merger
        if merger.first(msg, self._bit):
            return merger.hub.publish(msg)
        self.dropped += 1
        return False

    async def relieve(self) -> None:
        """Yield to consumers, as the hub does."""
        await self._merger.hub.relieve()

    def mark_gap(self) -> None:
        """This copy was lost: a gap only if no other copy covered for it."""
        lost_from = self._last_frame()
        self.up_since = None
        merger = self._merger
        for other in merger.sinks:
            since = other.up_since
            covered = since is not None and (lost_from is None or since <= lost_from)
            if other is not self and covered:
                return
        merger.gaps += 1
        merger.hub.mark_gap()
