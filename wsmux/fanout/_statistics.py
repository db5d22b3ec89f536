"""``StreamStatistics``: the counters of one stream, as ``statistics()`` returns them."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._latency import LatencyStats

__all__ = ["StreamStatistics"]


class _Counts(NamedTuple):
    delivered: int
    dropped: int
    buffered: int
    peak: int


class StreamStatistics(_Counts):
    """Counters of one stream.

    A named tuple of four, ``(delivered, dropped, buffered, peak)``, as it
    always was (compare it, unpack it); ``conflated``, ``unkeyed`` and
    ``latency`` are attributes beside them.
    ``delivered + dropped + buffered + conflated`` is the number of messages
    that matched the stream's filter since it opened.

    Attributes:
        delivered: Messages handed to the reader.
        dropped: Messages lost to overflow, or still buffered at close.
        buffered: Messages waiting to be read now.
        peak: The most messages ever buffered at once.
        conflated: ``"conflate"`` streams: messages replaced by a newer one
            of the same key before they were read.
        unkeyed: ``"conflate"`` streams: messages that had no key (kept,
            never replaced).
        latency: Receipt-to-consumer latency (from the frame's arrival to
            the read), when the stream measures it; else None.
    """

    conflated: int = 0
    unkeyed: int = 0
    latency: LatencyStats | None = None

    def __new__(
        cls,
        delivered: int,
        dropped: int,
        buffered: int,
        peak: int,
        conflated: int = 0,
        unkeyed: int = 0,
        latency: LatencyStats | None = None,
    ) -> StreamStatistics:
        self = super().__new__(cls, delivered, dropped, buffered, peak)
        self.conflated = conflated
        self.unkeyed = unkeyed
        self.latency = latency
        return self

    def _replace(self, **changes: Any) -> StreamStatistics:
        extras = {k: changes.pop(k, getattr(self, k)) for k in ("conflated", "unkeyed", "latency")}
        return StreamStatistics(*_Counts(*self)._replace(**changes), **extras)

    def __getnewargs__(self) -> tuple[Any, ...]:
        return (*self, self.conflated, self.unkeyed, self.latency)

    def __repr__(self) -> str:
        extra = (
            f", conflated={self.conflated}, unkeyed={self.unkeyed}"
            if self.conflated or self.unkeyed
            else ""
        )
        if self.latency is not None:
            extra += f", latency=<{self.latency}>"
        return (
            f"StreamStatistics(delivered={self.delivered}, dropped={self.dropped},"
            f" buffered={self.buffered}, peak={self.peak}{extra})"
        )
