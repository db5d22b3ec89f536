"""The Multiplexer's options and its statistics snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

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
    transport: str = ""
