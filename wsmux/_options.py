"""The Multiplexer's options and its statistics snapshot."""

from __future__ import annotations

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
