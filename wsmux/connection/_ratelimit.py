"""An outbound message rate limit shared by every sender."""

from __future__ import annotations

import anyio
import anyio.lowlevel

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allow at most ``count`` messages in any window of ``per`` seconds.

    Exchanges cap how many messages a client may send per second (Binance:
    10 per second per connection); going over gets the connection closed.
    Senders wait their turn in order of arrival.

    Args:
        count: Messages allowed per window.
        per: The window, in seconds.

    Raises:
        ValueError: ``count`` is below 1 or ``per`` is not positive.
    """

    __slots__ = ("_lock", "_sent", "count", "per")

    def __init__(self, count: int, per: float = 1.0) -> None:
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"rate limit count must be an int >= 1, not {count!r}")
        if not per > 0:
            raise ValueError(f"rate limit period must be > 0, not {per!r}")
        self.count = count
        self.per = per
        self._sent: list[float] = []
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<RateLimiter {self.count}/{self.per}s recent={len(self._sent)}>"

    async def acquire(self) -> None:
        """Wait until one more message may be sent, and count it."""
        async with self._lock:
            now = anyio.current_time()
            sent = self._sent = [t for t in self._sent if t > now - self.per]
            if len(sent) >= self.count:
                await anyio.sleep(sent[0] + self.per - now)
                sent.pop(0)
            sent.append(anyio.current_time())
