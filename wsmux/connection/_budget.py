"""A connection-attempt budget: at most N attempts in any window, shared.

Exchanges count connection attempts per IP (Binance: 300 per 5 minutes,
OKX: 3 per second) and answer a client over the budget with 429, then ban
it (418). One :class:`ConnectBudget` can be shared by every connection of a
pool (or by several pools on one IP): the supervisor asks it before each
attempt (first connection, reconnection and rotation alike) and tells it
when the handshake is over.
"""

from __future__ import annotations

from collections import deque

import anyio

__all__ = ["ConnectBudget"]


class ConnectBudget:
    """Allow at most ``attempts`` connection attempts in any window of ``per`` seconds.

    An attempt counts from the moment it is granted until ``per`` seconds
    after its handshake ended (succeeded or failed): the server may see the
    request at any time in between, so counting the whole span keeps the
    server's own count, in any sliding window, at or below ``attempts``.
    Attempts wait their turn in order of arrival.

    Args:
        attempts: Attempts allowed per window (Binance: 300).
        per: The window in seconds (Binance: 300.0).

    Raises:
        ValueError: ``attempts`` is below 1 or ``per`` is not positive.
    """

    __slots__ = ("_ended", "_freed", "_in_flight", "_lock", "attempts", "granted", "per", "waited")

    def __init__(self, attempts: int, per: float) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, not {attempts!r}")
        if isinstance(per, bool) or not isinstance(per, int | float) or not per > 0:
            raise ValueError(f"per must be a number of seconds > 0, not {per!r}")
        self.attempts = attempts
        self.per = float(per)
        self._ended: deque[float] = deque()  # when counted attempts ended
        self._in_flight = 0
        self._lock: anyio.Lock | None = None
        self._freed: anyio.Event | None = None
        #: Attempts granted so far.
        self.granted = 0
        #: Attempts that had to wait for the budget.
        self.waited = 0

    def __repr__(self) -> str:
        return (
            f"<ConnectBudget {self.attempts}/{self.per:g}s"
            f" in_window={self.used()} granted={self.granted}>"
        )

    def used(self) -> int:
        """Return the attempts counted in the current window (in flight included)."""
        self._prune(anyio.current_time())
        return len(self._ended) + self._in_flight

    def _prune(self, now: float) -> None:
        ended = self._ended
        while ended and ended[0] <= now - self.per:
            ended.popleft()

    async def acquire(self) -> None:
        """Wait until one more attempt fits in the window, and count it.

        Pair every call with :meth:`release` once the handshake is over.
        """
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            waited = False
            while True:
                now = anyio.current_time()
                self._prune(now)
                if len(self._ended) + self._in_flight < self.attempts:
                    break
                waited = True
                freed = self._freed = self._freed or anyio.Event()
                # The oldest ended attempt leaves the window at ended[0] + per;
                # an attempt in flight frees nothing before it ends.
                wait = self._ended[0] + self.per - now if self._ended else self.per
                with anyio.move_on_after(wait):
                    await freed.wait()
            self._in_flight += 1
            self.granted += 1
            self.waited += waited

    def release(self) -> None:
        """Say that a granted attempt's handshake is over (it counts from now)."""
        if self._in_flight <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self._in_flight -= 1
        self._ended.append(anyio.current_time())
        freed, self._freed = self._freed, None
        if freed is not None:
            freed.set()
