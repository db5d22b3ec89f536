"""The statistics snapshots of the bridge and of the remote side."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["BridgeStats", "RemoteStats"]


class BridgeStats(NamedTuple):
    """A snapshot of a bridge's counters.

    Attributes:
        state: ``idle``, ``running``, ``closed`` or ``failed``.
        published: Messages handed to NATS (republications not counted).
        acked: JetStream: acknowledgements received.
        duplicates: JetStream: acknowledgements saying the stream already
            had the id (the other bridge of an HA pair was first).
        republished: JetStream: messages published again after no ack.
        errors: Messages that could not be encoded or published for good.
        gaps: Gap markers published.
        lagged: Messages the bridge's own stream lost to overflow.
        buffered: Messages waiting in the bridge's stream.
        pending_acks: JetStream: publications not yet acknowledged.
    """

    state: str
    published: int
    acked: int
    duplicates: int
    republished: int
    errors: int
    gaps: int
    lagged: int
    buffered: int
    pending_acks: int


class RemoteStats(NamedTuple):
    """A snapshot of a remote multiplexer's counters.

    Attributes:
        state: ``idle``, ``open``, ``closed`` or ``failed``.
        messages: Messages received from NATS and handed to the hub.
        bytes: Their payload bytes.
        gaps: Gaps reported to ``gaps="raise"`` streams (bridge markers,
            lost NATS connections, JetStream retention).
        resumes: JetStream: consumers replaced (reconnection, new subjects).
        last_sequence: JetStream: the last stream sequence delivered.
        parse_errors: Payloads that could not be parsed (skipped).
        handler_errors: Exceptions raised by handlers.
        filter_errors: Exceptions raised by filter predicates.
        drops: Messages lost to overflow, over all streams.
        streams: Streams open now.
        subjects: The NATS subjects subscribed to.
    """

    state: str
    messages: int
    bytes: int
    gaps: int
    resumes: int
    last_sequence: int
    parse_errors: int
    handler_errors: int
    filter_errors: int
    drops: int
    streams: int
    subjects: tuple[str, ...]
