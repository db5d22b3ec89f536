"""Prometheus metric families made from ``stats()`` snapshots.

:class:`WsmuxCollector` is a prometheus-client collector: register it on a
registry and every scrape reads ``stats()`` of its sources. Taking the
snapshots (:meth:`WsmuxCollector.take`, which must run where ``stats()`` may
be called) is kept apart from turning them into metric families
(:func:`families`, pure), so that a server thread can take them on the
multiplexer's own loop.

A source is anything with ``stats()`` returning what ``Multiplexer.stats()``
returns (a :class:`wsmux.MultiplexerStats`, or an object with some of its
attributes: missing ones are left out). A source with a ``connections``
attribute (a pool) also gets per-connection families, ``wsmux_connection_*``,
from each connection's ``stats()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["STATES", "Snapshot", "WsmuxCollector", "families"]

#: The states a multiplexer can be in (``wsmux_state{state=...}``).
STATES: Final = (
    "idle",
    "connecting",
    "open",
    "rotating",
    "reconnecting",
    "closing",
    "closed",
    "failed",
)

#: ``stats()`` counters: attribute, metric name (without ``wsmux_`` and ``_total``), help.
_COUNTERS: Final = (
    ("connects", "connects", "Connections opened (first, reconnections, rotations)."),
    ("reconnects", "reconnects", "Reconnections after an unplanned loss."),
    ("rotations", "rotations", "Planned rotations completed."),
    ("disconnects", "disconnects", "Unplanned connection losses."),
    ("connect_errors", "connect_errors", "Failed connection attempts."),
    ("messages", "frames", "Frames received."),
    ("bytes", "received_bytes", "Bytes received."),
    ("parse_errors", "parse_errors", "Frames that could not be parsed (skipped)."),
    ("handler_errors", "handler_errors", "Exceptions raised by handlers."),
    ("filter_errors", "filter_errors", "Exceptions raised by filter predicates."),
    ("duplicates", "duplicates", "Messages dropped as seen twice across a rotation."),
    ("stale", "stale", "Connections replaced for having gone silent."),
    ("rotation_gaps", "rotation_gaps", "Rotations that could not hand over without a gap."),
    ("drops", "dropped_messages", "Messages lost to stream overflow, over all streams."),
    ("conflated", "conflated_messages", "Messages replaced in conflating streams."),
)

_STREAM_COUNTERS: Final = (
    ("delivered", "delivered", "Messages handed to the stream's reader."),
    ("dropped", "dropped", "Messages the stream lost to overflow (or held at close)."),
    ("conflated", "conflated", "Messages replaced by a newer one of the same key."),
)


class Snapshot(NamedTuple):
    """What one scrape read from one source (see :meth:`WsmuxCollector.take`)."""

    name: str
    stats: Any
    connections: list[tuple[str, Any]]


def _unique(name: str, seen: set[str]) -> str:
    label, n = name, 1
    while label in seen:
        n += 1
        label = f"{name} #{n}"
    seen.add(label)
    return label


def _buckets(latency: Any) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for bound, count in latency.buckets:
        out.append(("+Inf" if math.isinf(bound) else repr(float(bound)), float(count)))
    if not out or out[-1][0] != "+Inf":
        out.append(("+Inf", float(latency.count)))
    return out


class _Families:
    """The families of one scrape, filled source by source."""

    def __init__(self, prefix: str, labels: Sequence[str]) -> None:
        self.prefix = prefix
        self.labels = list(labels)
        self.counters = {
            attr: CounterMetricFamily(f"{prefix}{name}", doc, labels=self.labels)
            for attr, name, doc in _COUNTERS
        }
        self.streams = GaugeMetricFamily(
            f"{prefix}streams", "Streams open now (async handlers' included).", labels=self.labels
        )
        self.up = GaugeMetricFamily(
            f"{prefix}up", "1 while a connection is open (open or rotating).", labels=self.labels
        )
        self.state = GaugeMetricFamily(
            f"{prefix}state",
            "1 for the current state, 0 for the others.",
            labels=[*labels, "state"],
        )
        self.last = GaugeMetricFamily(
            f"{prefix}last_message_timestamp_seconds",
            "Wall-clock time of the last frame received.",
            labels=self.labels,
        )
        self.latency = HistogramMetricFamily(
            f"{prefix}exchange_to_receipt_seconds",
            "From the message's event time (event_time=) to the frame's arrival.",
            labels=self.labels,
        )

    def add(self, values: list[str], stats: Any) -> None:
        for attr, family in self.counters.items():
            value = getattr(stats, attr, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                family.add_metric(values, value)
        streams = getattr(stats, "streams", None)
        if isinstance(streams, int):
            self.streams.add_metric(values, streams)
        state = str(getattr(stats, "state", ""))
        if state:
            self.up.add_metric(values, 1.0 if state in ("open", "rotating") else 0.0)
            for name in STATES:
                self.state.add_metric([*values, name], 1.0 if name == state else 0.0)
        last = getattr(stats, "last_message_at", None)
        if last is not None:
            self.last.add_metric(values, last)
        latency = getattr(stats, "latency", None)
        if latency is not None:
            self.latency.add_metric(values, _buckets(latency), latency.sum)

    def __iter__(self) -> Iterator[Metric]:
        yield from self.counters.values()
        yield from (self.streams, self.up, self.state, self.last, self.latency)


def families(snapshots: Iterable[Snapshot]) -> Iterator[Metric]:
    """Turn the snapshots of one scrape into metric families.

    Args:
        snapshots: What :meth:`WsmuxCollector.take` returned.

    Yields:
        Metric families: ``wsmux_*`` per source (label ``mux``),
        ``wsmux_stream_*`` per named stream (labels ``mux``, ``stream``) and
        ``wsmux_connection_*`` per connection of a pool (labels ``mux``,
        ``connection``).
    """
    top = _Families("wsmux_", ["mux"])
    conns = _Families("wsmux_connection_", ["mux", "connection"])
    labels = ["mux", "stream"]
    stream_counters = {
        attr: CounterMetricFamily(f"wsmux_stream_{name}", doc, labels=labels)
        for attr, name, doc in _STREAM_COUNTERS
    }
    buffered = GaugeMetricFamily(
        "wsmux_stream_buffered", "Messages waiting in the stream: its lag.", labels=labels
    )
    peak = GaugeMetricFamily(
        "wsmux_stream_peak", "The most messages the stream ever held.", labels=labels
    )
    waited = HistogramMetricFamily(
        "wsmux_stream_receipt_to_consumer_seconds",
        "From the frame's arrival to the stream's reader taking the message.",
        labels=labels,
    )
    for snap in snapshots:
        top.add([snap.name], snap.stats)
        for conn_name, conn_stats in snap.connections:
            conns.add([snap.name, conn_name], conn_stats)
        named = getattr(snap.stats, "named_streams", None) or {}
        for stream_name, st in named.items():
            values = [snap.name, stream_name]
            for attr, family in stream_counters.items():
                family.add_metric(values, getattr(st, attr, 0))
            buffered.add_metric(values, st.buffered)
            peak.add_metric(values, st.peak)
            latency = getattr(st, "latency", None)
            if latency is not None:
                waited.add_metric(values, _buckets(latency), latency.sum)
    every = [*top, *conns, *stream_counters.values(), buffered, peak, waited]
    yield from (family for family in every if family.samples)


class WsmuxCollector:
    """A prometheus-client collector of multiplexers' (and pools') ``stats()``.

    Example::

        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry()
        registry.register(WsmuxCollector(mux))
        print(generate_latest(registry).decode())

    ``collect()`` calls ``stats()`` in the thread that scrapes: register it
    where that is safe (a :class:`wsmux.MuxThread` may be scraped from any
    thread; a plain multiplexer from its own loop), or use
    :class:`~wsmux.metrics.MetricsServer`, which takes the snapshots on the
    loop it was started from.

    Args:
        *sources: Multiplexers, pools or ``MuxThread`` objects: anything
            with ``stats()``.

    Raises:
        TypeError: A source has no ``stats()``.
    """

    def __init__(self, *sources: Any) -> None:
        for source in sources:
            if not callable(getattr(source, "stats", None)):
                raise TypeError(f"a metrics source needs stats(), not {source!r}")
        self.sources = list(sources)

    def take(self) -> list[Snapshot]:
        """Read ``stats()`` of every source (and of a pool's connections).

        Returns:
            One snapshot per source, names made unique.
        """
        out: list[Snapshot] = []
        seen: set[str] = set()
        for source in self.sources:
            stats = source.stats()
            name = _unique(str(getattr(stats, "name", "") or type(source).__name__), seen)
            conns: list[tuple[str, Any]] = []
            conn_seen: set[str] = set()
            connections = getattr(source, "connections", None) or ()
            if isinstance(connections, Mapping):
                connections = connections.values()
            for i, conn in enumerate(connections):
                read = getattr(conn, "stats", None)
                if read is None:
                    continue
                # A method, or a snapshot already taken (wsmux.PoolConnection).
                conn_stats = read() if callable(read) else read
                label = str(getattr(conn_stats, "name", "") or i)
                conns.append((_unique(label, conn_seen), conn_stats))
            out.append(Snapshot(name, stats, conns))
        return out

    def collect(self) -> Iterator[Metric]:
        """Read every source now and yield the metric families (the Collector protocol).

        Yields:
            See :func:`families`.
        """
        yield from families(self.take())
