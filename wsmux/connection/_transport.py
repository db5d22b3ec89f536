"""The transport seam: the Connection protocol, default connect, error classes.

Anything with ``recv``, ``send`` and ``close`` coroutines is a connection;
websockets' asyncio and trio clients qualify as they are. Under trio,
websockets' client lives in a nursery, so ``_create_ws`` may also return an
async context manager that yields the connection; the supervisor enters it
in a task of its own and leaves it to close the connection.
"""

from __future__ import annotations

import collections
import email.utils
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import websockets.exceptions as wse

from .._backend import current_backend
from .._exceptions import FatalConnectError
from .._log import redact_url

__all__ = [
    "Connection",
    "Failure",
    "ScrubbingLogger",
    "classify",
    "current_backend",
    "default_connect",
    "describe",
    "recv_nowait_of",
    "scrub",
    "scrub_log",
]


@runtime_checkable
class Connection(Protocol):
    """What wsmux needs of a websocket connection.

    websockets' asyncio and trio ``ClientConnection`` satisfy it; adapt any
    other client with three coroutines. A connection may also offer a plain
    ``recv_nowait()`` returning a buffered frame or None: the reader then
    drains bursts without awaiting per message (the picows transport does).
    """

    async def recv(self) -> str | bytes:
        """Return the next message; raise when the connection is lost."""
        ...

    async def send(self, message: str | bytes) -> None:
        """Send one message."""
        ...

    async def close(self) -> None:
        """Close the connection."""
        ...


def default_connect(url: str, options: dict[str, Any]) -> Any:
    """Start connecting with websockets' client for the running backend.

    Args:
        url: The websocket URL.
        options: Keyword arguments for websockets' ``connect``.

    Returns:
        Under asyncio, an awaitable that gives a ClientConnection; under
        trio, an async context manager that yields one.

    """
    if current_backend() == "trio":
        from websockets.trio.client import connect as trio_connect

        return trio_connect(url, **options)
    from websockets.asyncio.client import connect as asyncio_connect

    return asyncio_connect(url, **options)


def recv_nowait_of(conn: Any) -> Callable[[], bytes | None] | None:
    """A ``recv_nowait`` for a connection: a buffered message's bytes, or None.

    A connection's own ``recv_nowait`` (picows) is returned as is. For
    websockets' asyncio client, one is made that takes a whole message
    straight from the connection's frame queue, as ``recv(decode=False)``
    would return it, with no coroutine per message; fragmented messages,
    a ``recv`` in progress and an empty queue give None (then await
    ``recv``). It relies on websockets' ``Assembler`` internals and is
    checked against them; when they differ, it returns None.

    Args:
        conn: A connection.

    Returns:
        The function, or None when the connection offers none.
    """
    own = getattr(conn, "recv_nowait", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    if not type(conn).__module__.startswith("websockets.asyncio."):
        return None
    assembler = getattr(conn, "recv_messages", None)
    frames = getattr(getattr(assembler, "frames", None), "queue", None)
    if frames.__class__ is not collections.deque or not all(
        hasattr(assembler, name) for name in ("get_in_progress", "paused", "maybe_resume")
    ):
        return None
    assert assembler is not None and frames is not None
    popleft = frames.popleft
    # maybe_resume() resumes reading once the queue is at its low-water mark;
    # below a big burst's high mark it would be called for every message.
    low = getattr(assembler, "low", None)
    if low.__class__ is not int:
        low = 1 << 62  # unknown: ask maybe_resume() every time, as before

    def recv_nowait() -> bytes | None:
        if frames and not assembler.get_in_progress:
            frame = frames[0]
            if frame.fin:  # a whole message in one frame
                popleft()
                if assembler.paused and len(frames) <= low:
                    assembler.maybe_resume()
                data = frame.data
                return data if data.__class__ is bytes else bytes(data)
        return None

    return recv_nowait


class ScrubbingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for websockets that never prints a secret.

    websockets logs the request line (``GET /ws/<listenKey>``) and every
    request and response header at DEBUG; each line is formatted here and
    passed through :func:`scrub_log` before it reaches a handler, so records carry
    no arguments. Its "keepalive ping failed" error (with a traceback, when a
    ping races the loss of the connection) is logged at DEBUG: wsmux reports
    the loss itself, once, with its reason.

    Args:
        url: The URL whose path and query must not appear.
    """

    def __init__(self, url: str | None) -> None:
        super().__init__(logging.getLogger("wsmux.websockets"), {})
        self._url = url

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Format the line, scrub it, and log it."""
        if level >= logging.ERROR and str(msg).startswith("keepalive ping failed"):
            level = logging.DEBUG
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, scrub_log(text, self._url), **kwargs)


_REDACTED: Final = "<redacted>"
_SECRET_HEADER = re.compile(r"auth|key|token|secret|signature|cookie|session|passw", re.I)
# A URL anywhere in a line: shown as scheme and host only.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# A header line: an optional direction mark (websockets' "> " and "< ") or the
# opening of a bytes repr (picows logs whole requests as b'...\r\n...').
_HEADER = re.compile(r"^(\s*(?:[<>]\s*)?(?:b['\"])?)([!#$%&'*+.^_`|~0-9A-Za-z-]+)(\s*:[ \t]*)(.+)$")
# Line breaks, real or escaped as they appear in the repr of bytes.
_BREAKS = re.compile(r"(\r?\n|\\r\\n|\\n)")
# Query parameters: the values go, the names stay.
_QUERY = re.compile(r"([?&][^=\s&#'\"]+=)[^&\s#'\"]+")


def scrub(text: str, url: str | None = None) -> str:
    """Remove URL secrets from a text (an error message or a log line).

    Masks the path and query of ``url`` (listen keys, tokens) wherever they
    appear, shows every URL in the text as scheme and host only (user info
    gone), and masks the values of query parameters.

    Args:
        text: The text.
        url: The secret-bearing URL, if any.

    Returns:
        The scrubbed text.
    """
    if url:
        text = text.replace(url, redact_url(url))
        _, _, rest = url.partition("://")
        _, slash, tail = rest.partition("/")
        if slash and len(tail) > 3:
            text = text.replace(tail, _REDACTED)
    if "://" in text:
        text = _URL.sub(_redact_match, text)
    if "=" in text:
        text = _QUERY.sub(r"\1" + _REDACTED, text)
    return text


def scrub_log(text: str, url: str | None = None) -> str:
    """Remove every secret from a log line of a transport library.

    Does what :func:`scrub` does, and masks the value of every header line
    (a line of its own, or a ``\\r\\n``-separated line inside a logged
    bytes repr) whose name suggests a credential: ``Authorization``,
    ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``, and any name that
    contains auth, key, token, secret, signature, session or passw.

    Args:
        text: The formatted log line, possibly several lines.
        url: The secret-bearing URL, if any.

    Returns:
        The scrubbed line.
    """
    text = scrub(text, url)
    if ":" in text:
        parts = _BREAKS.split(text)
        for i in range(0, len(parts), 2):
            header = _HEADER.match(parts[i])
            if header is not None and _is_secret_header(header[2]):
                parts[i] = header[1] + header[2] + header[3] + _REDACTED
        text = "".join(parts)
    return text


def _is_secret_header(name: str) -> bool:
    # An exception's "KeyError: ..." is not a header.
    return _SECRET_HEADER.search(name) is not None and not name.endswith(("Error", "Exception"))


def _redact_match(match: re.Match[str]) -> str:
    return redact_url(match[0])


@dataclass(frozen=True)
class Failure:
    """How a failed connection attempt should be treated.

    Attributes:
        fatal: Retrying cannot help.
        status: The HTTP status of a refused handshake, if any.
        retry_after: Seconds the server asked us to wait, if it did.
        reason: A one-line description, free of secrets.
    """

    fatal: bool
    status: int | None
    retry_after: float | None
    reason: str


_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(exc: BaseException, url: str | None = None) -> Failure:
    """Decide whether a connection error is fatal or worth retrying.

    Network errors, timeouts, closed connections, 408/425/429/5xx handshake
    refusals and unknown errors (say, a failed REST call in ``_create_ws``)
    are retried; ``Retry-After`` is honoured. 401, 403 and other 4xx
    refusals, a proxy's refusal of the tunnel (407: wrong credentials) but
    for those same retryable statuses, invalid URLs (a port out of range included),
    :class:`FatalConnectError` raised by a hook, and programming errors
    (TypeError, AttributeError, ...) are fatal.

    Args:
        exc: The exception raised while connecting.
        url: The URL, so that it can be scrubbed from the reason.

    Returns:
        The classification.
    """
    if isinstance(exc, wse.InvalidStatus):
        status = exc.response.status_code
        retry_after = _retry_after(exc.response.headers.get("Retry-After"))
        reason = f"handshake refused with HTTP {status}"
        return Failure(status not in _RETRY_STATUSES, status, retry_after, reason)
    if isinstance(exc, wse.InvalidProxyStatus):
        status = exc.response.status_code
        why = " (proxy authentication failed)" if status == 407 else ""
        reason = f"the proxy refused the tunnel with HTTP {status}{why}"
        return Failure(status not in _RETRY_STATUSES, status, None, reason)
    if isinstance(exc, wse.InvalidProxy):
        return Failure(True, None, None, f"invalid proxy: {exc.msg}")
    if isinstance(exc, FatalConnectError):
        return Failure(True, exc.status, None, scrub(str(exc), url))
    if isinstance(exc, wse.InvalidURI):
        return Failure(True, None, None, scrub(f"invalid URL: {exc.msg}", url))
    if isinstance(exc, ValueError) and _invalid_port(url):
        # urllib's "Port out of range 0-65535", raised by websockets and picows alike.
        return Failure(True, None, None, scrub(f"invalid URL: {exc}", url))
    if isinstance(exc, OSError | TimeoutError | EOFError | wse.ConnectionClosed):
        return Failure(False, None, None, scrub(describe(exc), url))
    fatal = isinstance(exc, _PROGRAMMING_ERRORS)
    return Failure(fatal, None, None, scrub(describe(exc), url))


#: What an exception raised with no message means while connecting.
_SILENT_MEANING: Final = {
    "TimeoutError": "timed out",
    "EOFError": "the server closed the connection during the handshake",
    "IncompleteReadError": "the server closed the connection during the handshake",
    "CancelledError": "cancelled",
}


def describe(exc: BaseException) -> str:
    """Name an exception with its message, never with an empty reason.

    Args:
        exc: The exception.

    Returns:
        ``"TypeName: message"``; for an exception raised without a message,
        what it means (``"TimeoutError: timed out"``) or ``"TypeName (no
        details)"``, and never ``"TypeName: "``.
    """
    name = type(exc).__name__
    text = str(exc).strip()
    if not text:
        meaning = next(
            (
                v
                for k, v in _SILENT_MEANING.items()
                if any(c.__name__ == k for c in type(exc).__mro__)
            ),
            None,
        )
        return f"{name}: {meaning}" if meaning else f"{name} (no details)"
    return f"{name}: {text}"


def _invalid_port(url: str | None) -> bool:
    if url is None:
        return False
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 - parsed for its ValueError
    except ValueError:
        return True
    return False


_PROGRAMMING_ERRORS = (
    TypeError,
    AttributeError,
    NameError,
    ImportError,
    NotImplementedError,
    AssertionError,
    LookupError,
)
