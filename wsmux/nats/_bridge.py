"""The bridge: a multiplexer's (or a pool's) messages republished onto NATS.

The bridge is a consumer like any other: it reads its own stream of the
source (``stream_filter``, with an overflow policy), so publishing never
blocks the hub, and a lag is counted and announced. Every message goes to the
subject its fields give (:class:`~._subject.SubjectTemplate`), as JSON.

Core NATS is at-most-once and the fastest. With JetStream, each message is
published with ``publish_async`` and a ``Nats-Msg-Id`` (the source's
``_message_id``, else a per-bridge serial), and the acknowledgements are
watched: a message not acknowledged in ``ack_timeout`` (the server restarted,
the connection dropped) is published again under the same id, which the
server drops if it already had it. Two bridges of the same feed with the same
ids therefore give each message once, whichever of them is killed.

An unplanned loss upstream (``ConnectionGap`` on the bridge's stream), a lag
of the bridge itself, or a core-NATS reconnection of the bridge is published
as a gap marker: an empty message with the ``Wsmux-Gap`` header on the
template's gap subject (every field ``_``), which remote streams turn into
``ConnectionGap``.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Hashable
from types import TracebackType
from typing import Any, Literal, Protocol

import anyio
import anyio.abc
import orjson

from .._exceptions import ConnectionGap, StreamClosed, StreamLagged
from .._log import RateLimitedLog, log, redact_url
from ..fanout import Filters, Overflow, Stream
from ._conn import (
    GAP_HEADER,
    MSG_ID,
    JetStreamConfig,
    connect,
    ensure_stream,
    require_asyncio,
    scrub,
)
from ._publish import AckedPublisher
from ._stats import BridgeStats
from ._subject import SubjectTemplate

__all__ = ["Bridge", "Source"]


class Source(Protocol):
    """What a bridge needs of its source: a Multiplexer or a Pool."""

    def stream_filter(
        self,
        filters: Filters = None,
        *,
        maxsize: int = ...,
        overflow: Overflow = ...,
        gaps: Literal["raise", "ignore"] = ...,
        name: str | None = ...,
    ) -> Stream: ...


class Bridge:
    """Republish a multiplexer's messages onto NATS subjects.

    Use it as ``async with Bridge(mux, "nats://127.0.0.1:4222") as bridge:``
    inside ``async with mux:`` (or ``await bridge.run()`` in a task). Its
    stream is opened here, so a bridge made before the multiplexer starts
    misses nothing. asyncio only (nats-py).

    Args:
        source: A ``Multiplexer`` or a ``Pool`` (anything with ``stream_filter``).
        nats_url: ``nats://[user:password@]host:port``; credentials never logged.

    Keyword Args:
        subject: The subject template, e.g. ``"md.binance.{e}.{s}"``.
        jetstream: None for core NATS (at-most-once), else a stream name or a
            :class:`JetStreamConfig` (created or checked at start).
        filters: Only messages this filter selects (default: all).
        maxsize: The bridge stream's buffer.
        overflow: Its policy (``"lag"``: losses are counted and announced as a
            gap; ``"block"`` slows the source instead).
        message_id: ``fn(msg)`` giving the JetStream id; default: the
            source's ``_message_id`` hook, else a per-bridge serial.
        encode: ``fn(msg) -> bytes``; default orjson.
        ack_timeout: JetStream: seconds before an unacknowledged message is
            published again.
        connect_options: Extra keyword arguments for ``nats.connect``.
        open_timeout: Seconds allowed to reach NATS at start (ConnectionError
            after that, or at once for refused credentials).
        name: Label for logs and the repr.

    Raises:
        ValueError: The template is invalid.
        TypeError: The filter is malformed.
    """

    def __init__(
        self,
        source: Source,
        nats_url: str,
        *,
        subject: str | SubjectTemplate = "md.{e}.{s}",
        jetstream: str | JetStreamConfig | None = None,
        filters: Filters = None,
        maxsize: int = 65536,
        overflow: Overflow = "lag",
        message_id: Callable[[Any], Hashable | None] | None = None,
        encode: Callable[[Any], bytes] | None = None,
        ack_timeout: float = 5.0,
        connect_options: dict[str, Any] | None = None,
        open_timeout: float = 10.0,
        name: str | None = None,
    ) -> None:
        if not isinstance(nats_url, str):
            raise TypeError(f"nats_url must be a str, not {type(nats_url).__name__}")
        self._url = nats_url
        self._template = (
            subject if isinstance(subject, SubjectTemplate) else SubjectTemplate(subject)
        )
        if isinstance(jetstream, str):
            jetstream = JetStreamConfig(jetstream)
        self._js_cfg = jetstream
        self._name = name or f"bridge to {redact_url(nats_url)}"
        self._id_of = message_id or getattr(source, "_message_id", None)
        self._encode = encode or orjson.dumps
        self._ack_timeout = ack_timeout
        self._options = dict(connect_options or {})
        self._open_timeout = open_timeout
        self._stream = source.stream_filter(
            filters, maxsize=maxsize, overflow=overflow, gaps="raise", name=self._name
        )
        self._session = os.urandom(6).hex()
        self._serial = itertools.count(1)
        self._nc: Any = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._state = "idle"
        self._reconnected = False
        self._errors_log = RateLimitedLog(logging.WARNING)
        self._done = anyio.Event()
        self._error: Exception | None = None
        self._acks: AckedPublisher | None = None
        self.published = self.errors = self.gaps = self.lagged = 0

    def __repr__(self) -> str:
        mode = f"jetstream {self._js_cfg.name!r}" if self._js_cfg else "core"
        return (
            f"<Bridge {self._name!r} {self._template.template!r} {mode} {self._state}"
            f" published={self.published}>"
        )

    @property
    def template(self) -> SubjectTemplate:
        """The subject template."""
        return self._template

    def stats(self) -> BridgeStats:
        """Return a snapshot of the counters.

        Returns:
            The counters.
        """
        acks = self._acks
        return BridgeStats(
            self._state,
            self.published,
            acks.acked if acks else 0,
            acks.duplicates if acks else 0,
            acks.republished if acks else 0,
            self.errors + (acks.errors if acks else 0),
            self.gaps,
            self.lagged,
            self._stream.statistics().buffered,
            acks.pending if acks else 0,
        )

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Bridge:
        try:
            await self._start()
        except BaseException:
            self._stream.close_nowait()  # no stream left buffering on the source
            self._state = "failed"
            raise
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._pump, name=f"wsmux {self._name}")
        if self._acks is not None:
            self._tg.start_soon(self._acks.watch, name=f"wsmux {self._name} acks")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        await self._close()

    async def run(self) -> None:
        """Run until :meth:`exit` is called or the source ends.

        Raises:
            RuntimeError: Under trio (nats-py is asyncio-only).
            ConnectionError: NATS could not be reached.
            Exception: The error the source died of.
        """
        async with self:
            await self._done.wait()
        if self._error is not None:
            raise self._error

    async def exit(self) -> None:
        """Stop publishing and close the NATS connection (after a flush)."""
        self._done.set()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _start(self) -> None:
        require_asyncio("wsmux Bridge")
        self._nc = await connect(
            self._url, self._name, self._options, self, open_timeout=self._open_timeout
        )
        self._state = "running"
        if self._js_cfg is not None:
            try:
                await ensure_stream(self._nc, self._js_cfg, [self._template.wildcard])
            except Exception:
                await self._nc.close()
                raise
            js = self._nc.jetstream(publish_async_max_pending=8192)
            self._acks = AckedPublisher(js, self._ack_timeout, self._name)
            log.info("%s: publishing to JetStream stream %r", self._name, self._js_cfg.name)

    async def _close(self) -> None:
        self._stream.close_nowait()
        nc, self._nc = self._nc, None
        if nc is not None:
            with anyio.move_on_after(2, shield=True):
                if self._acks is not None:
                    await self._acks.flush()
                if not nc.is_closed:
                    await nc.drain()
        if self._state == "running":
            self._state = "closed"

    async def on_reconnect(self) -> None:
        """Called by the NATS client once reconnected (core NATS may have lost messages)."""
        if self._acks is None:
            self._reconnected = True

    # -- publishing -------------------------------------------------------------

    async def _pump(self) -> None:
        stream = self._stream
        template = self._template
        try:
            while True:
                try:
                    msg = await stream.receive()
                except StreamLagged as exc:
                    self.lagged += exc.count
                    await self._gap("lagged")
                    continue
                except ConnectionGap:
                    await self._gap("upstream")
                    continue
                except (anyio.EndOfStream, StreamClosed):
                    break
                if self._reconnected:
                    self._reconnected = False
                    await self._gap("nats")
                try:
                    payload = self._encode(msg)
                except Exception as exc:
                    self.errors += 1
                    self._errors_log("%s: cannot encode a message: %r", self._name, exc)
                    continue
                subject = template.subject(msg)
                if self._acks is None:
                    await self._nc.publish(subject, payload)
                else:
                    await self._acks.publish(subject, payload, {MSG_ID: self._msg_id(msg)})
                self.published += 1
        except Exception as exc:  # the source died, or NATS is closed for good
            self._error = exc
            self._state = "failed"
            log.error("%s: stopped: %s", self._name, scrub(str(exc), self._url))
        finally:
            self._done.set()

    def _msg_id(self, msg: Any) -> str:
        if self._id_of is not None:
            try:
                found = self._id_of(msg)
            except Exception:
                found = None
            if found is not None:
                return found.decode() if isinstance(found, bytes) else str(found)
        return f"{self._session}-{next(self._serial)}"

    async def _gap(self, reason: Literal["upstream", "lagged", "nats"]) -> None:
        self.gaps += 1
        log.warning("%s: publishing a gap marker (%s)", self._name, reason)
        headers: dict[str, str] = {GAP_HEADER: reason}
        subject = self._template.gap_subject
        if self._acks is None:
            await self._nc.publish(subject, b"", headers=headers)
        else:
            headers[MSG_ID] = f"{self._session}-gap-{next(self._serial)}"
            await self._acks.publish(subject, b"", headers)
