"""The Multiplexer's options and its statistics snapshot."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from .fanout._latency import LatencyStats
from .fanout._stream import StreamStatistics

__all__ = ["MultiplexerStats", "Options"]


@dataclass(frozen=True)
class Options:
    """The validated constructor options of a Multiplexer (internal)."""

    connect_options: dict[str, Any]
    max_size: int | None
    ping_interval: float | None
    ping_timeout: float | None
    open_timeout: float
    close_timeout: float
    stale_after: float | None
    backoff_base: float
    backoff_cap: float
    reset_after: float
    max_attempts: int | None
    retry_after_cap: float
    rotation_drain: float
    rotation_interval: float
    send_timeout: float
    request_timeout: float
    id_key: str
    subscribe_chunk: int
    reconnect_args: tuple[Any, ...]
    transport: str = "auto"
    max_age: float | None = None
    #: The message's exchange time in epoch seconds (None: not measured).
    event_time: Callable[[Any], float | None] | None = None
    #: True: from the environment; None: none; else the proxy URL (secret-bearing).
    proxy: str | bool | None = field(default=True, repr=False)

    def __post_init__(self) -> None:
        """Check the ranges (the constructor's ``ValueError``/``TypeError``)."""
        for option in (
            "open_timeout",
            "close_timeout",
            "send_timeout",
            "request_timeout",
            "retry_after_cap",
        ):
            value = getattr(self, option)
            if not value > 0:
                raise ValueError(f"{option} must be > 0, not {value!r}")
        if self.stale_after is not None and not self.stale_after > 0:
            raise ValueError(f"stale_after must be > 0 or None, not {self.stale_after!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1 or None, not {self.max_attempts!r}")
        if self.subscribe_chunk < 1:
            raise ValueError(f"subscribe_chunk must be >= 1, not {self.subscribe_chunk!r}")
        if not self.rotation_drain > 0:
            raise ValueError(f"rotation_drain must be > 0, not {self.rotation_drain!r}")
        if not self.rotation_interval >= 0:
            raise ValueError(f"rotation_interval must be >= 0, not {self.rotation_interval!r}")
        max_age = self.max_age
        if max_age is not None:
            if isinstance(max_age, bool) or not isinstance(max_age, int | float):
                raise TypeError(f"max_age must be a number of seconds or None, not {max_age!r}")
            if not 0 < max_age < math.inf:
                raise ValueError(f"max_age must be > 0 and finite, or None, not {max_age!r}")
            object.__setattr__(self, "max_age", float(max_age))
        if not (self.backoff_base > 0 and self.backoff_cap >= self.backoff_base):
            raise ValueError("backoff_base must be > 0 and backoff_cap >= backoff_base")


class MultiplexerStats(NamedTuple):
    """A snapshot of a multiplexer's counters.

    Attributes:
        state: The supervisor's state.
        connects: Connections opened (first, reconnections and rotations).
        reconnects: Reconnections after an unplanned loss.
        rotations: Planned rotations completed.
        disconnects: Unplanned losses.
        connect_errors: Failed connection attempts.
        messages: Frames received.
        bytes: Bytes received.
        parse_errors: Frames that could not be parsed (skipped).
        handler_errors: Exceptions raised by handlers.
        filter_errors: Exceptions raised by filter predicates.
        duplicates: Messages dropped as seen twice across a rotation.
        stale: Connections replaced for having gone silent.
        rotation_gaps: Rotations that had to drop an old connection before it
            had published everything it received (``gaps="raise"`` streams
            get ConnectionGap there).
        drops: Messages lost to overflow, over all streams.
        streams: Streams open now (async handlers' included).
        last_message_at: Wall-clock time of the last frame, or None.
        last_disconnect: Why the last connection was lost, or None.
        name: The multiplexer's name (the ``name`` option).
        conflated: Messages replaced by a newer one of the same key in
            ``"conflate"`` streams, over all streams.
        latency: Exchange-to-receipt latency (the message's ``event_time``
            to the frame's arrival) when ``event_time`` was given, else None.
        named_streams: The statistics of each open stream that has a name
            (async handlers are named after their function); a repeated
            name gets ``" #2"``, ``" #3"``, ...
        transport: The transport of the live connection (``"websockets"``
            or ``"picows"``; what ``transport="auto"`` chose), else of the
            last one, else the option as given.
    """

    state: str
    connects: int
    reconnects: int
    rotations: int
    disconnects: int
    connect_errors: int
    messages: int
    bytes: int
    parse_errors: int
    handler_errors: int
    filter_errors: int
    duplicates: int
    stale: int
    rotation_gaps: int
    drops: int
    streams: int
    last_message_at: float | None
    last_disconnect: str | None
    name: str = ""
    conflated: int = 0
    latency: LatencyStats | None = None
    named_streams: Mapping[str, StreamStatistics] = MappingProxyType({})
    transport: str = ""
