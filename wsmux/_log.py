"""Logging helpers: one logger, URL redaction, and rate-limited warnings."""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

import anyio

__all__ = ["RateLimitedLog", "log", "redact_url", "sample"]

log = logging.getLogger("wsmux")


def redact_url(url: object) -> str:
    """Show a URL as scheme, host and port only.

    Listen keys and tokens live in paths and query strings, so nothing past
    the authority is ever shown; user info is dropped too.

    Args:
        url: The URL (anything; non-strings are shown by type only).

    Returns:
        For example ``"wss://stream.example.com:9443"``,
        ``"ws://127.0.0.1:<invalid port>"``, or ``"<invalid url>"``.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "<invalid url>"
    if not parts.scheme or not host:
        return "<invalid url>"
    try:
        port: object = parts.port
    except ValueError:  # out of range, or not a number
        port = "<invalid port>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def sample(raw: object, limit: int = 80) -> str:
    """A short, printable excerpt of a raw frame for a log line.

    Args:
        raw: The frame (bytes, str or anything else).
        limit: The most characters to keep.

    Returns:
        The excerpt, with its full size when it was cut.
    """
    text = repr(raw[:limit] if isinstance(raw, bytes | str) else raw)
    size = len(raw) if isinstance(raw, bytes | str) else None
    if size is not None and size > limit:
        return f"{text}... ({size} in all)"
    return text[: limit + 20]


class RateLimitedLog:
    """Log a recurring condition at most once per interval.

    The first occurrence is logged at once; later ones within the interval
    are counted and their number is reported with the next line logged.
    """

    __slots__ = ("_interval", "_last", "_level", "_suppressed")

    def __init__(self, level: int = logging.WARNING, interval: float = 5.0) -> None:
        self._level = level
        self._interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def __call__(self, msg: str, *args: Any, exc_info: BaseException | None = None) -> None:
        """Log the line now, or count it if one was logged recently."""
        now = _now()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} similar suppressed)"
            self._suppressed = 0
        self._last = now
        log.log(self._level, msg, *args, exc_info=exc_info)


def _now() -> float:
    """The event loop's clock (a mock clock in tests), else the monotonic clock."""
    try:
        return anyio.current_time()
    except Exception:  # no event loop in this thread
        return time.monotonic()
