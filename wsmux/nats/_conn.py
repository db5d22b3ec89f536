"""What the bridge and the remote side share: the NATS connection and the stream.

nats-py is imported here, lazily (inside functions), so that ``import wsmux``
works without the ``nats`` extra; :func:`require_asyncio` is called first by
every entry point, so trio fails at once with a clear error.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

import anyio

from .._backend import current_backend
from .._log import RateLimitedLog, log, redact_url

__all__ = [
    "GAP_HEADER",
    "MSG_ID",
    "JetStreamConfig",
    "connect",
    "ensure_stream",
    "require_asyncio",
    "scrub",
]

#: Header of a gap marker; its value says why (``upstream`` or ``lagged``).
GAP_HEADER: Final = "Wsmux-Gap"
MSG_ID: Final = "Nats-Msg-Id"


def require_asyncio(what: str) -> None:
    """Fail at once, with a clear message, outside asyncio or without nats-py.

    Args:
        what: The object being started, for the message.

    Raises:
        RuntimeError: Running under trio (nats-py is asyncio-only).
        ImportError: nats-py is not installed.
    """
    if current_backend() != "asyncio":
        raise RuntimeError(
            f"{what} needs asyncio: nats-py, the NATS client, runs only on asyncio, not trio."
            " Run the NATS side in an asyncio process (or a wsmux.MuxThread-style loop thread)"
        )
    try:
        import nats  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{what} needs nats-py: pip install 'wsmux[nats]'") from exc


def _secrets(url: str) -> list[str]:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    # One or two characters are no secret, and masking them would mangle words.
    out = [s for s in (parts.username, parts.password) if s and len(s) > 2]
    out += [urllib.parse.unquote(s) for s in out]
    if "@" in parts.netloc and len(parts.netloc.rpartition("@")[0]) > 2:
        out.append(parts.netloc.rpartition("@")[0])
    return sorted(set(out), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """Mask the credentials of ``url`` wherever they appear in ``text``.

    Args:
        text: A message (an exception's text, say).
        url: The NATS URL, possibly with ``user:password@`` or ``token@``.

    Returns:
        The text with every credential replaced by ``<redacted>``.
    """
    for secret in _secrets(url):
        text = text.replace(secret, "<redacted>")
    return text


@dataclass(frozen=True)
class JetStreamConfig:
    """The JetStream stream a bridge writes to and remote streams read from.

    Attributes:
        name: The stream's name.
        max_bytes: Size bound of the stream (oldest messages are discarded).
        max_msgs: Message-count bound, or None.
        max_age: Seconds a message is kept, or None.
        duplicate_window: Seconds during which a repeated ``Nats-Msg-Id``
            is dropped; must outlast a bridge failover (default 120).
        storage: ``"file"`` (survives a server restart) or ``"memory"``.
    """

    name: str
    max_bytes: int = 1 << 30
    max_msgs: int | None = None
    max_age: float | None = None
    duplicate_window: float = 120.0
    storage: str = "file"


async def connect(
    url: str, label: str, options: dict[str, Any], events: Any = None, open_timeout: float = 10.0
) -> Any:
    """Connect to NATS with wsmux's logging callbacks (credentials never logged).

    Args:
        url: The NATS URL.
        label: Who connects, for log lines.
        options: Extra keyword arguments for ``nats.connect``.
        events: An object with optional ``on_disconnect``/``on_reconnect``/
            ``on_closed``/``on_error`` async methods.
        open_timeout: Seconds allowed for the first connection.

    Returns:
        The nats-py client.

    Raises:
        ConnectionError: The first connection failed: refused credentials, or
            no server within ``open_timeout`` (the message is scrubbed).
    """
    from nats.aio.client import Client as NATS

    shown = redact_url(url)
    errors = RateLimitedLog(logging.WARNING)

    fatal = anyio.Event()
    fatal_error: list[Exception] = []

    async def error_cb(exc: Exception) -> None:
        if not nc.is_connected and "authorization" in str(exc).lower():
            fatal_error.append(exc)
            fatal.set()
            return
        errors("%s: NATS %s: %s", label, type(exc).__name__, scrub(str(exc), url))
        hook = getattr(events, "on_error", None)
        if hook is not None:
            await hook(exc)

    async def disconnected_cb() -> None:
        log.info("%s: NATS connection to %s lost", label, shown)
        hook = getattr(events, "on_disconnect", None)
        if hook is not None:
            await hook()

    async def reconnected_cb() -> None:
        log.info("%s: NATS reconnected to %s", label, shown)
        hook = getattr(events, "on_reconnect", None)
        if hook is not None:
            await hook()

    async def closed_cb() -> None:
        hook = getattr(events, "on_closed", None)
        if hook is not None:
            await hook()

    opts: dict[str, Any] = {
        "connect_timeout": 5,
        "reconnect_time_wait": 0.25,
        "max_reconnect_attempts": -1,
        "name": label,
    }
    opts.update(options)
    nc = NATS()
    try:
        # nats-py retries a first connection that fails, forever by default,
        # even a refused password: bound it, and stop at a refused one.
        with anyio.fail_after(open_timeout):
            async with anyio.create_task_group() as tg:

                async def attempt() -> None:
                    await nc.connect(
                        url,
                        error_cb=error_cb,
                        disconnected_cb=disconnected_cb,
                        reconnected_cb=reconnected_cb,
                        closed_cb=closed_cb,
                        **opts,
                    )
                    tg.cancel_scope.cancel()

                async def refused() -> None:
                    await fatal.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(attempt)
                tg.start_soon(refused)
        if not nc.is_connected:
            raise fatal_error[0] if fatal_error else ConnectionRefusedError("refused")
    except BaseException as exc:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await nc.close()
            # A connection refused mid-handshake is not closed by close().
            transport = getattr(nc, "_transport", None)
            if transport is not None:
                transport.close()
                with contextlib.suppress(Exception):
                    await transport.wait_closed()
        if not isinstance(exc, Exception):
            raise
        why = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}"
        raise ConnectionError(
            f"{label}: cannot connect to NATS at {shown}: {why}: {scrub(str(exc), url)}"
        ) from None
    log.info("%s: connected to NATS at %s", label, shown)
    return nc


async def ensure_stream(nc: Any, cfg: JetStreamConfig, subjects: list[str]) -> Any:
    """Create the JetStream stream, or check and update an existing one.

    Args:
        nc: The nats-py client.
        cfg: The stream's configuration.
        subjects: Subjects the stream must hold.

    Returns:
        The stream's info.

    Raises:
        ValueError: The existing stream holds other subjects that overlap
            and cannot be changed.
    """
    from nats.js import api
    from nats.js.errors import NotFoundError

    jsm = nc.jsm()
    config = api.StreamConfig(
        name=cfg.name,
        subjects=subjects,
        retention=api.RetentionPolicy.LIMITS,
        max_bytes=cfg.max_bytes,
        max_msgs=cfg.max_msgs if cfg.max_msgs is not None else -1,
        max_age=cfg.max_age if cfg.max_age is not None else 0,
        duplicate_window=cfg.duplicate_window,
        storage=api.StorageType.FILE if cfg.storage == "file" else api.StorageType.MEMORY,
        discard=api.DiscardPolicy.OLD,
    )
    try:
        info = await jsm.stream_info(cfg.name)
    except NotFoundError:
        return await jsm.add_stream(config)
    have = info.config
    wanted = set(subjects) | set(have.subjects or [])
    if (
        set(subjects) <= set(have.subjects or [])
        and have.max_bytes == config.max_bytes
        and have.duplicate_window == config.duplicate_window
    ):
        return info
    config.subjects = sorted(wanted)
    return await jsm.update_stream(config)
