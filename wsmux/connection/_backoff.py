"""Reconnection delays: decorrelated jitter with a cap."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays between connection attempts, "decorrelated jitter" style.

    Each delay is drawn uniformly between ``base`` and three times the
    previous delay, capped at ``cap``: attempts spread out quickly and never
    line up across clients. :meth:`reset` goes back to ``base``; the
    supervisor calls it only once a connection has stayed up for a while, so
    a server that accepts and then drops at once is not hammered.

    Args:
        base: The smallest delay, in seconds.
        cap: The largest delay, in seconds.
        rng: A random generator (for reproducible tests).

    Raises:
        ValueError: ``base`` is not positive or ``cap`` is below ``base``.
    """

    __slots__ = ("_rng", "_sleep", "base", "cap")

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        if not base > 0:
            raise ValueError(f"backoff base must be > 0, not {base!r}")
        if not cap >= base:
            raise ValueError(f"backoff cap must be >= base ({base}), not {cap!r}")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()
        self._sleep = base

    def __repr__(self) -> str:
        return f"<Backoff base={self.base} cap={self.cap} last={self._sleep:.3f}>"

    def next(self) -> float:
        """Return the next delay and remember it.

        Returns:
            Seconds to wait before the next attempt.
        """
        self._sleep = min(self.cap, self._rng.uniform(self.base, self._sleep * 3))
        return self._sleep

    def reset(self) -> None:
        """Start again from ``base``."""
        self._sleep = self.base
