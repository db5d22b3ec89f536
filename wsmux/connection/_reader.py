"""The reader of a link: parse each frame, ask where it goes, publish it.

One reader task per link: it drains a burst of frames without a coroutine
per message where the transport allows (websockets' buffered frames, picows'
queue), parses with orjson or the adapter's hook, publishes what a live link
reads, and asks the supervisor's ``route`` about links in a rotation. It also
counts what finished links read, for ``stats()``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from time import time as _wall
from typing import Any

import anyio
import orjson

from .._log import RateLimitedLog, log, sample
from .._options import Options
from .._record import Recorder
from ..fanout._messages import Messages
from ._link import Link, Role, describe_close
from ._status import Hooks, Sink, Status
from ._transport import recv_nowait_of

__all__ = ["Reader"]

# An exchange-to-receipt time a day or more either way is a unit mistake
# (seconds for ms, us for ms), not latency: logged, never recorded.
_UNIT_SLIP = 86400.0


class Reader:
    """Reads the links of one supervisor into its sink.

    Args:
        hooks: The adapter's hooks (parse).
        sink: Where messages are published.
        status: Counters, the latency histogram and the receipt time.
        options: The multiplexer's options (``event_time``, ``stale_after``).
        recorder: Where raw frames are recorded, if anywhere.
        route: Asked, for a link in a rotation, whether a message is
            published now.
    """

    def __init__(
        self,
        hooks: Hooks,
        sink: Sink,
        status: Status,
        options: Options,
        recorder: Recorder | None,
        *,
        route: Callable[[Link, Any, Any], bool],
    ) -> None:
        self.hooks = hooks
        self.sink = sink
        self.status = status
        self.options = options
        self.recorder = recorder
        self.route = route
        #: Links whose reader runs; totals of those whose reader ended.
        self.reading: set[Link] = set()
        self.retired_messages = 0
        self.retired_bytes = 0
        self._parse_log = RateLimitedLog(logging.WARNING)

    def totals(self) -> tuple[int, int]:
        """Messages and bytes read by every link so far, ended or running."""
        messages = self.retired_messages + sum(link.received for link in self.reading)
        nbytes = self.retired_bytes + sum(link.nbytes for link in self.reading)
        return messages, nbytes

    async def read(self, link: Link) -> None:
        """Read ``link`` until it ends: parse, route and publish each frame."""
        hooks = self.hooks
        sink = self.sink
        status = self.status
        counters = status.counters
        conn = link.conn
        recv = conn.recv
        parse: Callable[[Any], Any] = orjson.loads
        async_parse = hooks.async_parse
        # A connection may offer recv_nowait(): a buffered message or None,
        # so that a burst is drained without a coroutine per message. It
        # gives bytes: only for the default parse (orjson takes bytes).
        recv_nowait = getattr(conn, "recv_nowait", None)
        if hooks.parse is not None:
            parse = hooks.parse
        elif async_parse is None and _speaks_websockets(conn):
            recv = functools.partial(conn.recv, decode=False)
            recv_nowait = recv_nowait_of(conn)
        publish: Callable[[Any], bool] = sink.publish
        if status.latency is not None and self.options.event_time is not None:
            publish = self._timed(publish)
        live = Role.LIVE
        recorder = self.recorder
        if recorder is not None:
            recv, recv_nowait = recorder.wrap(link.id, recv, recv_nowait)
        wall = _wall
        try:
            with link.reader_scope:
                while True:
                    raw = await recv()
                    # Once per burst (every frame drained below was in by
                    # now), and again after each yield to the consumers.
                    status.last_message_at = wall()
                    while raw is not None:
                        link.received += 1
                        link.nbytes += len(raw)
                        try:
                            msg = await async_parse(raw) if async_parse else parse(raw)
                        except Exception as exc:
                            counters["parse_errors"] += 1
                            self._parse_log("cannot parse frame %s: %r", sample(raw), exc)
                            msg = None
                        if link.role is live and msg.__class__ is not Messages:
                            if msg is not None and publish(msg):
                                await sink.relieve()
                                status.last_message_at = wall()
                        else:
                            if msg.__class__ is Messages:
                                # Each element is a message of its own; the role
                                # is checked for each, since relieve() may change it.
                                for one in msg:
                                    if (
                                        one is not None
                                        and (link.role is live or self.route(link, one, raw))
                                        and publish(one)
                                    ):
                                        await sink.relieve()
                                        status.last_message_at = wall()
                            elif msg is not None and self.route(link, msg, raw) and publish(msg):
                                await sink.relieve()
                                status.last_message_at = wall()
                            if link.mark is not None and link.received >= link.mark:
                                link.reached.set()
                        raw = recv_nowait() if recv_nowait is not None else None
        except Exception as exc:
            link.error = exc
        finally:
            if recorder is not None:
                reason = "stopped" if link.error is None else describe_close(link.error)
                recorder.event("close", link.id, reason=reason)
            self.reading.discard(link)
            self.retired_messages += link.received
            self.retired_bytes += link.nbytes
            link.done.set()

    def _timed(self, publish: Callable[[Any], bool]) -> Callable[[Any], bool]:
        """``publish``, recording each message's exchange-to-receipt latency first.

        Only readers of a multiplexer given ``event_time`` use it: the
        others publish with no per-message cost. The receipt time is the
        one the reader took when the frame arrived.
        """
        event_time = self.options.event_time
        status = self.status
        assert event_time is not None and status.latency is not None
        record = status.latency.record
        errors = RateLimitedLog(logging.WARNING)

        def timed(msg: Any) -> bool:
            # Whatever event_time gives (a string, NaN, a time in the wrong
            # unit), the message is published and the reader lives on.
            try:
                sent = event_time(msg)
                if sent is not None:
                    took = status.received_at() - sent
                    if -_UNIT_SLIP < took < _UNIT_SLIP:
                        record(took)
                    else:
                        errors(
                            "event_time is %.3g s from the receipt time; not recorded"
                            " (a field must be epoch ms, a function epoch seconds)",
                            took,
                        )
            except Exception as exc:
                errors("event_time gave no usable time (%r); latency not recorded", exc)
            return publish(msg)

        return timed

    async def watch_stale(self, link: Link) -> None:
        """Replace ``link`` when it has read nothing for ``stale_after`` seconds."""
        limit = self.options.stale_after
        assert limit is not None
        with link.scope:
            seen, since = link.received, anyio.current_time()
            while True:
                await anyio.sleep(limit / 4)
                if link.received != seen:
                    seen, since = link.received, anyio.current_time()
                elif anyio.current_time() - since >= limit:
                    log.warning("no message for %.1fs: replacing the connection", limit)
                    self.status.counters["stale"] += 1
                    link.stale = True
                    link.reader_scope.cancel()
                    return


def _speaks_websockets(conn: Any) -> bool:
    """True for websockets' own connections, whose recv takes ``decode``."""
    return type(conn).__module__.startswith("websockets.")
