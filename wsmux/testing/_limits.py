"""The limits an exchange puts on one IP and one connection, enforced as Binance does.

:class:`Limits` is handed the core's counters and is asked three questions
on the server loop: may this handshake go ahead (the connection-attempt
budget: 429, then 418 for a client that does not back off), may this
connection subscribe to these topics (the streams-per-connection cap), and
one more inbound message: is the connection over its message rate (close
1008)? :class:`InboundMeter` counts one connection's inbound messages in a
sliding window. Plain logic and counters: the core does the I/O.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

__all__ = ["OVER_LIMIT", "InboundMeter", "Limits", "check_limit"]

#: The error a Binance-like server answers a subscribe over the streams cap with.
OVER_LIMIT = {"code": 2, "msg": "Max number of streams exceeded"}
#: The window used to measure inbound rates when no ``inbound_rate_limit`` is set.
DEFAULT_WINDOW = 1.0


def check_limit(name: str, limit: tuple[int, float] | None) -> tuple[int, float] | None:
    """Validate a ``(count, seconds)`` limit option.

    Raises:
        TypeError: If ``limit`` is not a pair of numbers.
        ValueError: If the count is below 1 or the window not positive.
    """
    if limit is None:
        return None
    if not isinstance(limit, tuple) or len(limit) != 2:
        raise TypeError(f"{name} must be a (count, seconds) tuple or None, not {limit!r}")
    count, window = limit
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(f"{name}: count must be an int, not {count!r}")
    if isinstance(window, bool) or not isinstance(window, int | float):
        raise TypeError(f"{name}: seconds must be a number, not {window!r}")
    if count < 1 or not window > 0:
        raise ValueError(f"{name} needs a count >= 1 and seconds > 0, not {limit!r}")
    return count, float(window)


class InboundMeter:
    """Inbound messages of one connection within a sliding window (server thread only).

    Attributes:
        peak: Most messages seen within any ``window`` seconds.
        total: Messages counted so far.
    """

    __slots__ = ("_limit", "_times", "_window", "peak", "total")

    def __init__(self, limit: tuple[int, float] | None) -> None:
        self._limit = None if limit is None else limit[0]
        self._window = DEFAULT_WINDOW if limit is None else limit[1]
        self._times: deque[float] = deque()
        self.peak = 0
        self.total = 0

    def hit(self, now: float) -> bool:
        """Count one message at ``now``; True if that takes the connection over its limit."""
        times = self._times
        times.append(now)
        edge = now - self._window
        while times[0] <= edge:
            times.popleft()
        self.total += 1
        self.peak = max(self.peak, len(times))
        return self._limit is not None and len(times) > self._limit


class Limits:
    """The exchange's limits, on the server loop; counters go to the core's ``counts``.

    Counters: ``connect_attempts``, ``connect_rate_limited`` (429s),
    ``connect_banned`` (418s), ``over_limit_errors`` (subscribes refused) and
    ``inbound_rate_closes`` (connections closed with 1008). ``connect_window_max``
    is the most attempts seen within one ``connect_limit`` window.
    """

    def __init__(
        self,
        counts: Counter[str],
        *,
        max_topics: int | None,
        connect_limit: tuple[int, float] | None,
        inbound_rate_limit: tuple[int, float] | None,
    ) -> None:
        self.max_topics = max_topics
        self.connect_limit = connect_limit
        self.inbound_rate_limit = inbound_rate_limit
        self._counts = counts
        self._attempts: deque[float] = deque()
        self._limited_until = 0.0  # a 429 was answered: attempts before this get 418
        self._banned_until = 0.0
        self.connect_window_max = 0

    def admit(self, now: float) -> tuple[int, float] | None:
        """Count a handshake attempt; return ``(status, retry_after)`` to refuse it, else None.

        Every attempt counts against the budget, refused ones too, as an
        exchange counts them. Over the budget the answer is 429 with the
        seconds until the window has room; an attempt before then gets 418
        and a ban of one window, and attempts during the ban get 418 again.
        """
        self._counts["connect_attempts"] += 1
        if self.connect_limit is None:
            return None
        limit, window = self.connect_limit
        times = self._attempts
        times.append(now)
        while times[0] <= now - window:
            times.popleft()
        self.connect_window_max = max(self.connect_window_max, len(times))
        if now < self._banned_until or now < self._limited_until:
            self._banned_until = max(self._banned_until, now + window)
            self._counts["connect_banned"] += 1
            return 418, self._banned_until - now
        if len(times) <= limit:
            return None
        retry_after = times[len(times) - limit] + window - now
        self._limited_until = now + retry_after
        self._counts["connect_rate_limited"] += 1
        return 429, retry_after

    def over_topics(self, subscribed: set[str], adding: set[str]) -> bool:
        """Whether subscribing to ``adding`` takes a connection over the streams cap (counted)."""
        if self.max_topics is None or len(subscribed | adding) <= self.max_topics:
            return False
        self._counts["over_limit_errors"] += 1
        return True

    def over_limit_reply(self, request_id: Any) -> dict[str, Any]:
        """The error frame answering a subscribe over the streams cap."""
        return {"error": dict(OVER_LIMIT), "id": request_id}

    def meter(self) -> InboundMeter:
        """A fresh inbound meter for a new connection."""
        return InboundMeter(self.inbound_rate_limit)
