"""Latency histograms: fixed log-scale buckets, O(1) to record.

:class:`LatencyHistogram` counts durations in seconds into buckets eight per
octave (each at most 12.5% wide) from about 1 us to 128 s, so a percentile is
known to within 12.5% with no sample kept. :class:`LatencyStats` is its
snapshot, as ``stats()`` and ``statistics()`` return it; its ``buckets``
(cumulative counts at each power of two) are what a Prometheus histogram
exports.

:class:`TimedBuffer` stands where a stream keeps its deque when the stream
measures receipt-to-consumer latency: it remembers when each buffered
message was received and records the wait as the consumer takes it.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

__all__ = ["EventTime", "LatencyHistogram", "LatencyStats", "TimedBuffer", "event_seconds"]

#: What ``event_time=`` accepts: a field in milliseconds, or a function
#: returning epoch seconds (or None when the message has no time).
EventTime: TypeAlias = str | Callable[[Any], "float | None"]

_PER_OCTAVE: Final = 8
_LOW_EXP: Final = -19  # frexp exponent of the lowest bucket: 2**-20 s, about 1 us
_HIGH_EXP: Final = 7  # up to 2**7 = 128 s; longer ones count in the top bucket
_BUCKETS: Final = (_HIGH_EXP - _LOW_EXP + 1) * _PER_OCTAVE
_frexp = math.frexp


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """A snapshot of a latency histogram, in seconds.

    Percentiles are the upper edge of the bucket the rank falls in (at most
    12.5% above the true value), never above ``max``.

    Attributes:
        count: Durations recorded.
        sum: Their exact sum (negative ones, from a clock ahead of ours,
            included).
        p50: The median.
        p90: The 90th percentile.
        p99: The 99th percentile.
        p999: The 99.9th percentile.
        max: The longest recorded.
        buckets: ``(upper_bound, cumulative_count)`` at each power of two
            from about 2 us to 64 s, then ``(inf, count)``.
    """

    count: int
    sum: float
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    buckets: tuple[tuple[float, int], ...]

    def __str__(self) -> str:
        if not self.count:
            return "no samples"
        return (
            f"p50 {_ms(self.p50)} p90 {_ms(self.p90)} p99 {_ms(self.p99)}"
            f" p99.9 {_ms(self.p999)} max {_ms(self.max)} (n={self.count})"
        )


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3g}ms" if abs(ms) < 100 else f"{ms:.0f}ms"


def _upper(index: int) -> float:
    """The upper edge of bucket ``index``."""
    octave, sub = divmod(index, _PER_OCTAVE)
    return math.ldexp(0.5 + (sub + 1) / (2 * _PER_OCTAVE), octave + _LOW_EXP)


def event_seconds(spec: EventTime) -> Callable[[Any], float | None]:
    """Turn ``event_time=`` into a function from message to epoch seconds.

    Args:
        spec: A field name whose value is epoch milliseconds (Binance's
            ``"E"``), looked up in a mapping or as an attribute; or a
            function of the message returning epoch seconds or None.

    Returns:
        The function; it returns None for a message without a usable time.

    Raises:
        TypeError: ``spec`` is neither a non-empty str nor callable.
    """
    if isinstance(spec, str) and spec:

        def from_ms(msg: Any) -> float | None:
            if msg.__class__ is dict or isinstance(msg, Mapping):
                value = msg.get(spec)
            else:
                value = getattr(msg, spec, None)
            if value.__class__ is int or value.__class__ is float:
                return float(value) / 1000.0
            return None

        return from_ms
    if callable(spec) and not isinstance(spec, str):
        return spec
    raise TypeError(
        f"event_time must be a field name (epoch ms) or a function returning epoch seconds,"
        f" not {spec!r}"
    )


class LatencyHistogram:
    """Durations in seconds, counted in fixed log-scale buckets.

    ``record`` costs a few arithmetic operations and one list update, with
    no allocation; a zero or negative duration (a clock ahead of ours)
    counts in the lowest bucket.
    """

    __slots__ = ("_counts", "count", "max", "sum")

    def __init__(self) -> None:
        self._counts = [0] * _BUCKETS
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def __repr__(self) -> str:
        return f"<LatencyHistogram {self.snapshot()}>"

    def record(self, seconds: float) -> None:
        """Count one duration.

        Args:
            seconds: The duration.
        """
        self.count += 1
        self.sum += seconds
        if seconds > self.max:
            self.max = seconds
        mantissa, exp = _frexp(seconds)  # seconds = mantissa * 2**exp, 0.5 <= mantissa < 1
        i = (exp - _LOW_EXP) * _PER_OCTAVE + int((mantissa - 0.5) * 2 * _PER_OCTAVE)
        if seconds <= 0.0 or i < 0:
            i = 0
        elif i >= _BUCKETS:
            i = _BUCKETS - 1
        self._counts[i] += 1

    def percentile(self, q: float) -> float:
        """Return the ``q``-th percentile (0 to 100), 0.0 with no samples.

        Args:
            q: The percentile.

        Returns:
            The upper edge of its bucket, capped at the largest recorded.

        Raises:
            ValueError: ``q`` is outside 0..100.
        """
        if not 0 <= q <= 100:
            raise ValueError(f"percentile must be within 0..100, not {q!r}")
        return self._percentiles((q,))[0]

    def _percentiles(self, qs: tuple[float, ...]) -> list[float]:
        """The percentiles ``qs`` (ascending), in one walk over the buckets."""
        if not self.count:
            return [0.0] * len(qs)
        out: list[float] = []
        ranks = [max(1, math.ceil(self.count * q / 100)) for q in qs]
        seen = 0
        for i, n in enumerate(self._counts):
            seen += n
            while ranks and seen >= ranks[0]:
                ranks.pop(0)
                if i == _BUCKETS - 1 or self.max <= 0:
                    out.append(self.max)  # the top bucket is open-ended
                else:
                    out.append(min(_upper(i), self.max))
            if not ranks:
                break
        return out + [self.max] * len(ranks)

    def snapshot(self) -> LatencyStats:
        """Return the counts and percentiles now.

        Returns:
            A :class:`LatencyStats`.
        """
        buckets = []
        seen = 0
        counts = self._counts
        # Not the top octave's bound: its bucket also counts longer ones.
        for octave in range(_HIGH_EXP - _LOW_EXP):
            seen += sum(counts[octave * _PER_OCTAVE : (octave + 1) * _PER_OCTAVE])
            buckets.append((math.ldexp(1.0, octave + _LOW_EXP), seen))
        buckets.append((math.inf, self.count))
        p50, p90, p99, p999 = self._percentiles((50, 90, 99, 99.9))
        return LatencyStats(self.count, self.sum, p50, p90, p99, p999, self.max, tuple(buckets))


class TimedBuffer:
    """A stream's deque that records how long each message waited in it.

    The receipt time of a message is read from ``clock`` when it is
    buffered (the reader's time of the frame it came in); the wait is
    recorded when the consumer takes it.
    """

    __slots__ = ("_clock", "_gap", "_hist", "_msgs", "_times")

    def __init__(
        self, clock: Callable[[], float], hist: LatencyHistogram, gap: object, inner: Any = None
    ) -> None:
        self._clock = clock
        self._hist = hist
        self._gap = gap
        self._msgs: Any = collections.deque() if inner is None else inner
        self._times: collections.deque[float] = collections.deque()

    def append(self, msg: Any) -> None:
        """Buffer a message, noting when it was received."""
        self._msgs.append(msg)
        self._times.append(self._clock())

    def appendleft(self, msg: Any) -> None:
        """Put a message back at the front (a gap marker a read left)."""
        self._msgs.appendleft(msg)
        self._times.appendleft(0.0)

    def evict(self) -> Any:
        """Drop the oldest message (overflow): nothing is recorded.

        Returns:
            The message.
        """
        self._times.popleft()
        return self._msgs.popleft()

    def popleft(self) -> Any:
        """Take the oldest message and record how long it waited.

        Raises:
            IndexError: The buffer is empty.
        """
        msg = self._msgs.popleft()
        received = self._times.popleft()
        if msg is not self._gap:
            self._hist.record(time.time() - received)
        return msg

    def clear(self) -> None:
        """Forget every buffered message."""
        self._msgs.clear()
        self._times.clear()

    def __len__(self) -> int:
        return len(self._msgs)

    def __bool__(self) -> bool:
        return bool(self._msgs)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._msgs)
