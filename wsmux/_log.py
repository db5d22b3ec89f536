"""Logging helpers: one logger, URL redaction, and rate-limited warnings."""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from typing import Any

import anyio

__all__ = ["RateLimitedLog", "default_name", "log", "redact_url", "sample", "show_url"]

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


_MASK = "<redacted>"
# Letters and digits mixed: a key or a token, not a word like "ws" or "stream".
_MIXED = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z])")


def _secret_looking(segment: str) -> bool:
    """A path segment that may be a credential (a listen key, a token)."""
    return len(segment) > 16 or (len(segment) >= 8 and _MIXED.match(segment) is not None)


def show_url(url: object) -> str:
    """Show a URL as the user wrote it, with only its secret parts masked.

    For error messages, so that a mistyped URL can be recognised:
    ``wsmux tap 127.0.0.1:18001`` must say which input was wrong. Logs and
    reprs use the multiplexer's name instead (see :func:`default_name`).

    The rule: scheme, host and port are shown as written (even when invalid);
    user info is masked; path segments are shown up to the first one that
    looks like a credential (more than 16 characters, or 8 or more mixing
    letters and digits), which is masked with everything after it; query
    keys are shown and their values masked; a fragment is masked. Never
    raises: text that is not a URL at all is shown the same way.

    Args:
        url: The URL (anything; non-strings are shown by type only).

    Returns:
        For example ``"wss://fstream.binance.com/ws/<redacted>"``,
        ``"wss://<redacted>@host/stream?streams=<redacted>"`` or
        ``"127.0.0.1:18001"``.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    origin, userinfo, path, query, fragment = _split(url)
    if userinfo is not None:
        scheme, sep, host = origin.rpartition("://")
        origin = f"{scheme}{sep}{_MASK}@{host}"
    shown = origin + ("" if path is None else "/" + "/".join(path))
    if query is not None:
        pairs = (pair.partition("=") for pair in query.split("&"))
        shown += "?" + "&".join(k + (f"={_MASK}" if eq else "") for k, eq, _ in pairs)
    if fragment is not None:
        shown += "#" + _MASK
    return shown


def default_name(url: str | None, owner: object) -> str:
    """The name a multiplexer is known by in logs, reprs and stats.

    Scheme, host and port as written, and the first path segment unless it
    looks like a credential (``"wss://fstream.binance.com/ws"``): enough to
    tell two multiplexers apart, and free of user info, listen keys and
    tokens. Without a URL (a custom ``_create_ws``), the class name.

    Args:
        url: The URL given to the multiplexer, if any.
        owner: The multiplexer.

    Returns:
        The name.
    """
    if url is None:
        return type(owner).__name__
    origin, _, path, _, _ = _split(url)
    if path and path[0] and path[0] != _MASK:
        return f"{origin}/{path[0]}"
    return origin


def _split(url: str) -> tuple[str, str | None, list[str] | None, str | None, str | None]:
    """Scheme and authority (without user info), user info, shown path
    segments (a credential and what follows it masked), query, fragment."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "", scheme
    rest, hash_, fragment = rest.partition("#")
    rest, qmark, query = rest.partition("?")
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    path: list[str] | None = None
    if slash:
        path = []
        for segment in tail.split("/"):
            if _secret_looking(segment):
                path.append(_MASK)
                break
            path.append(segment)
    return (
        scheme + sep + host,
        userinfo if at else None,
        path,
        query if qmark else None,
        fragment if hash_ else None,
    )


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
