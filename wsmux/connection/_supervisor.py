"""The supervisor: connect, read, rotate and reconnect one websocket.

The supervisor task is the only one that decides which link is live:

* planned rotation: when the live link's ``_when2create_new_ws()`` completes
  or the link is ``max_age`` seconds old (whichever comes first), open the
  next link (its own trigger armed before any of its messages is published)
  and cut over at the old link's fence, as described in
  :mod:`wsmux.connection._rotation`;
* unplanned loss: mark a gap, call the disconnect callback, back off,
  reconnect, replay subscriptions, call the reconnect callback.

It is given what it needs (the adapter's :class:`~._status.Hooks`, a
:class:`~._status.Sink`, the options, a :class:`~._status.Status`), never the
front object. Every time is read from the event loop's clock.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Iterator
from time import time as _wall
from typing import Any

import anyio
import anyio.abc
import orjson

from .._exceptions import FatalConnectError, RetriesExhausted
from .._log import RateLimitedLog, log, redact_url, sample, show_url
from .._options import Options
from .._record import Recorder
from ..fanout._messages import Messages
from ._backoff import Backoff
from ._fence import fence_of
from ._link import CountingRecv, Link, Role, describe_close
from ._rotation import Rotation
from ._status import Gate, Hooks, Sink, State, Status
from ._transport import classify, recv_nowait_of

__all__ = ["Supervisor"]

#: The least time a rotation's new link is checked against the overlap ids.
_TAIL_GRACE = 0.5
#: With ids, an old link quiet this long needs no overlap before its fence.
_QUIET = 0.1
# An exchange-to-receipt time a day or more either way is a unit mistake
# (seconds for ms, us for ms), not latency: logged, never recorded.
_UNIT_SLIP = 86400.0


class Supervisor:
    """Keeps one live connection feeding a sink; see the module docstring.

    Args:
        hooks: The adapter's hooks.
        sink: Where messages are published (the hub).
        options: The validated options.
        status: Where state and counters are reported.
        tg: The task group that runs the links' tasks.
        backoff: The reconnection delays (default: from the options).
        gate: Asked before each connection attempt (a shared
            connection-attempt budget); waiting for it is not part of
            ``open_timeout``.
        recorder: Where raw frames and connection events are recorded, if
            anywhere (a :class:`wsmux.Recorder`); None costs nothing.
    """

    def __init__(
        self,
        hooks: Hooks,
        sink: Sink,
        options: Options,
        status: Status,
        tg: anyio.abc.TaskGroup,
        backoff: Backoff | None = None,
        gate: Gate | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.hooks = hooks
        self.gate = gate
        self.sink = sink
        self.options = options
        self.status = status
        self.counters = status.counters
        self.tg = tg
        self.backoff = backoff or Backoff(options.backoff_base, options.backoff_cap)
        interval = max(options.rotation_interval, 0.001)
        self.rotation_backoff = Backoff(interval, max(options.backoff_cap, interval))
        self.live: Link | None = None
        self.links: set[Link] = set()
        self.rotation: Rotation | None = None
        self._caught_up = anyio.Event()  # set by the new link's reader
        self._next_id = 0
        self._last_rotation = -float("inf")
        self._warned_storm = False
        self._warned_no_fence = False
        #: Links whose reader runs; totals of those whose reader ended.
        self.reading: set[Link] = set()
        self.retired_messages = 0
        self.retired_bytes = 0
        self._parse_log = RateLimitedLog(logging.WARNING)
        self._id_log = RateLimitedLog(logging.ERROR)
        hook = hooks.message_id
        self.message_id = None if hook is None else functools.partial(_safe_id, hook, self._id_log)
        self.recorder = recorder

    # -- the loop ------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        """Connect, then keep a live connection until cancelled or fatal.

        Args:
            started: Called once the first connection is open.

        Raises:
            FatalConnectError: A connection failed in a way retrying cannot fix.
            RetriesExhausted: ``max_attempts`` attempts failed in a row.
        """
        self.status.set(State.CONNECTING)
        if self.recorder is not None:
            self.recorder.begin(self.hooks.url, self.hooks.label)
        link = await self._connect(initial=True)
        self._go_live(link)
        started()
        while True:
            await _race(link.due.wait, link.done.wait)
            if link.done.is_set():
                link = await self._recover(link)
            else:
                link = await self._rotate(link)

    def stop_links(self) -> None:
        """Stop every link at once (exit): no await, so nothing is read after."""
        for link in list(self.links):
            link.stop()
            if link.conn is None:
                link.holder_scope.cancel()  # still connecting

    async def wait_links_closed(self) -> None:
        """Wait until every socket is closed and every reader has ended."""
        for link in list(self.links):
            await link.closed.wait()
        for link in list(self.reading):
            await link.done.wait()

    def lose(self, conn: Any, error: BaseException) -> None:
        """Treat the link of ``conn`` as lost (a send on it failed)."""
        for link in list(self.links):
            if link.conn is conn:
                link.lose(error)

    # -- opening -------------------------------------------------------------

    async def _connect(self, *, initial: bool, first_delay: float | None = None) -> Link:
        """Open a link, retrying with backoff; raise when it is hopeless."""
        opts = self.options
        attempts = 0
        delay = first_delay
        while True:
            if delay:
                await anyio.sleep(delay)
            attempts += 1
            try:
                return await self._open()
            except Exception as exc:
                failure = classify(exc, self.hooks.url)
                self.counters["connect_errors"] += 1
                label = self.hooks.label
                # Errors show the URL as the user wrote it (secrets masked),
                # so that a typo can be seen; logs show the name.
                url = self.hooks.url
                where = label if url is None else show_url(url)
                attr = label if url is None else redact_url(url)
                if failure.fatal:
                    raise FatalConnectError(
                        f"cannot connect to {where}: {failure.reason}",
                        url=attr,
                        status=failure.status,
                    ) from None
                if opts.max_attempts is not None and attempts >= opts.max_attempts:
                    tried = "1 attempt" if attempts == 1 else f"{attempts} attempts"
                    raise RetriesExhausted(
                        f"cannot connect to {where}: {tried} failed,"
                        f" the last with {failure.reason}",
                        url=attr,
                        status=failure.status,
                    ) from None
                delay = self._delay_after(failure.status, failure.retry_after)
                log.warning(
                    "connecting to %s failed (%s); attempt %d, retrying in %.2fs",
                    label,
                    failure.reason,
                    attempts,
                    delay,
                )
                if not initial:
                    self.status.set(State.RECONNECTING)

    def _delay_after(self, status: int | None, retry_after: float | None) -> float:
        opts = self.options
        delay = self.backoff.next()
        if status == 429:
            delay = min(opts.backoff_cap, max(delay, opts.backoff_base) * 4)
        if retry_after is not None:
            delay = max(delay, min(retry_after, opts.retry_after_cap))
        return delay

    async def _open(self) -> Link:
        """Open one connection, prepare and subscribe it, arm its trigger."""
        gate = self.gate
        if gate is not None:
            await gate.acquire()
        self._next_id += 1
        link = Link(self._next_id)
        opts = self.options
        try:
            with _timeout_reason(link, opts.open_timeout):
                try:
                    await self.tg.start(self._hold, link, name=f"wsmux connection {link.id}")
                finally:
                    if gate is not None:
                        gate.release()  # the handshake is over, either way
                conn = link.conn
                link.fence = fence_of(conn)  # counts every frame from here on
                try:
                    conn.recv = CountingRecv(link, conn.recv)
                except AttributeError:
                    # A connection that counts its reads itself (picows).
                    read = getattr(conn, "messages_read", None)
                    await self.hooks.on_connect(conn)
                    if read is not None:
                        link.consumed_early += conn.messages_read - read
                else:
                    try:
                        await self.hooks.on_connect(conn)
                    finally:
                        del conn.recv
                link.topics = await self.hooks.replay(conn)
                if link.fence is not None and link.topics:
                    await link.fence()  # the server has applied the subscriptions
            # Armed before the reader starts: streams the hook opens before
            # its first await see every message of this connection.
            await self.tg.start(self._watch_due, link, name=f"wsmux rotation trigger {link.id}")
        except BaseException:
            link.release.set()
            if link.conn is None:
                link.holder_scope.cancel()
            raise
        link.opened_at = anyio.current_time()
        self.counters["connects"] += 1
        return link

    async def _hold(self, link: Link, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own one socket: open it, hand it over, close it when released."""
        self.links.add(link)
        try:
            made: Any = None
            with link.holder_scope:  # cancelled by exit() while connecting
                made = await self.hooks.create_ws()
                if not hasattr(made, "recv") and hasattr(made, "__aenter__"):
                    await self._hold_context(link, made, task_status)
                    return
            if link.holder_scope.cancel_called:
                if made is not None and hasattr(made, "recv"):
                    with anyio.CancelScope(shield=True), anyio.move_on_after(0.5):
                        await made.close()  # connected just as exit cancelled the connect
                return
            if not hasattr(made, "recv"):
                raise TypeError(
                    "_create_ws must return a connection (with recv/send/close) or an async "
                    f"context manager yielding one, not {type(made).__name__}"
                )
            link.conn = made
            try:
                task_status.started()
                await link.release.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    with anyio.move_on_after(self.options.close_timeout):
                        try:
                            await made.close()
                        except Exception as exc:
                            log.debug("closing connection %d: %r", link.id, exc)
        finally:
            self.links.discard(link)
            link.stop()
            link.closed.set()

    async def _hold_context(
        self, link: Link, made: Any, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """Hold a connection given as an async context manager (trio's client)."""
        try:
            async with made as conn:
                link.conn = conn
                task_status.started()
                await link.release.wait()
        except Exception as exc:
            if link.conn is None:
                raise
            log.debug("closing connection %d: %r", link.id, exc)

    async def _watch_due(self, link: Link, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        with link.due_scope:
            task_status.started()
            max_age = self.options.max_age
            try:
                with anyio.move_on_after(math.inf if max_age is None else max_age) as aged:
                    await self.hooks.rotation_due()
            except Exception as exc:
                log.info("_when2create_new_ws raised %r: rotating now", exc)
            if aged.cancelled_caught:
                log.info("connection %d is %.6gs old (max_age): rotating", link.id, max_age)
            link.due.set()

    # -- reading -------------------------------------------------------------

    def _start_reader(self, link: Link) -> None:
        if self.recorder is not None:
            self.recorder.event("connect", link.id)
        self.reading.add(link)
        self.tg.start_soon(self._read, link, name=f"wsmux reader {link.id}")
        if self.options.stale_after:
            self.tg.start_soon(self._watch_stale, link, name=f"wsmux stale watch {link.id}")

    async def _read(self, link: Link) -> None:
        hooks = self.hooks
        sink = self.sink
        status = self.status
        counters = self.counters
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
                                        and (link.role is live or self._route(link, one, raw))
                                        and publish(one)
                                    ):
                                        await sink.relieve()
                                        status.last_message_at = wall()
                            elif msg is not None and self._route(link, msg, raw) and publish(msg):
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

    def _route(self, link: Link, msg: Any, raw: Any) -> bool:
        """Ask the rotation what to do with a message of a link not simply live.

        Returns:
            True to publish the message now.
        """
        rotation = self.rotation
        role = link.role
        if rotation is None or role is Role.STOPPED:
            return False
        if role is Role.OLD:
            return rotation.old_message(msg, link.received, raw)
        if role is Role.NEW:
            rotation.new_message(msg, link.received, raw)
            if rotation.caught_up:
                self._caught_up.set()
            return False
        return rotation.tail_message(msg)  # Role.TAIL

    async def _watch_stale(self, link: Link) -> None:
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
                    self.counters["stale"] += 1
                    link.stale = True
                    link.reader_scope.cancel()
                    return

    # -- state changes -------------------------------------------------------

    def _go_live(self, link: Link) -> None:
        link.role = Role.LIVE
        link.tail_done.set()  # no rotation's tail to check
        self.live = link
        self._start_reader(link)
        self.status.set(State.OPEN)
        # Topics changed while it connected (after its replay) reach it now.
        self.hooks.topics_changed()

    async def _rotate(self, old: Link) -> Link:
        """Planned rotation: a new connection replaces ``old`` with no gap."""
        await _race(old.tail_done.wait, old.done.wait)  # the last rotation's tail
        await self._pace_rotation(old)
        if old.done.is_set():
            return await self._recover(old)
        self.status.set(State.ROTATING)
        while True:
            rotation = Rotation(self.message_id, on_unhashable=self._unhashable)
            self.rotation = rotation
            self._caught_up = anyio.Event()
            # From here the old link records the ids it publishes: the new
            # one repeats what was sent after it subscribed.
            old.role = Role.OLD
            new = await self._open_next(old)
            if new is None:  # the old link died first: an unplanned loss
                self.rotation = None
                return await self._recover(old)
            new.role = Role.NEW
            self._start_reader(new)
            overlap_from = anyio.current_time()  # both connections are read from here
            outcome = await self._fence(old, new, rotation)
            log.debug(
                "%s: rotation %d -> %d: %s (%r)",
                self.hooks.label,
                old.id,
                new.id,
                outcome,
                rotation,
            )
            if outcome == "new lost":
                log.warning("rotation: the new connection was lost; still serving on the old one")
                new.role = Role.STOPPED
                new.release.set()
                held = rotation.abort()
                # Published with no await in between, before the old reader
                # (live again) can publish what it reads next.
                pressure = False
                for msg in held:
                    pressure = self.sink.publish(msg) or pressure
                old.role = Role.LIVE
                self.rotation = None
                if pressure:
                    await self.sink.relieve()
                with anyio.move_on_after(self.backoff.next()):
                    await old.done.wait()
                if old.done.is_set():
                    return await self._recover(old)
                continue
            break
        old.role = Role.STOPPED
        old.release.set()
        if outcome != "fenced":
            # The old link may still have held frames it had not published:
            # they are gone with it. Say so where it matters.
            log.warning("rotation: %s; messages may be missing", outcome)
            self.counters["rotation_gaps"] += 1
            self.sink.mark_gap()
            if self.recorder is not None:
                self.recorder.event("gap", old.id, reason=outcome)
        for msg in rotation.cutover():
            if self.sink.publish(msg):
                await self.sink.relieve()
        tail = rotation.go_live()
        new.role = Role.TAIL if tail else Role.LIVE
        self.live = new
        if self.recorder is not None:
            self.recorder.event("rotation", new.id, **{"from": old.id})
        self._last_rotation = anyio.current_time()
        overlap = self._last_rotation - overlap_from
        self.counters["rotations"] += 1
        self.status.set(State.OPEN)
        self.hooks.topics_changed()  # topics changed during the rotation reach the new link
        counted = rotation.duplicates
        self.counters["duplicates"] += counted
        if tail:
            self.tg.start_soon(
                self._release_tail, new, rotation, overlap, counted, name=f"wsmux tail {new.id}"
            )
        else:
            new.tail_done.set()
            self.rotation = None
            self._log_rotation(new, overlap, rotation.duplicates)
        return new

    def _log_rotation(self, new: Link, overlap: float, duplicates: int) -> None:
        """The one INFO line of a planned rotation, once its duplicates are known."""
        if self.message_id is None:
            dropped = "no _message_id: repeats were not dropped"
        else:
            dropped = f"{duplicates} duplicate{'' if duplicates == 1 else 's'} dropped"
        log.info(
            "%s: rotated to connection %d (overlap %.0f ms, %s)",
            self.hooks.label,
            new.id,
            overlap * 1000,
            dropped,
        )

    async def _pace_rotation(self, old: Link) -> None:
        """Rotations requested back to back wait a growing interval."""
        since = anyio.current_time() - self._last_rotation
        if since >= self.options.rotation_interval:
            self.rotation_backoff.reset()
            return
        delay = self.rotation_backoff.next()
        level = logging.DEBUG if self._warned_storm else logging.WARNING
        self._warned_storm = True
        log.log(
            level,
            "%s: rotation requested %.3fs after the previous one; waiting %.2fs"
            " (rotations are rate-limited)",
            self.hooks.label,
            since,
            delay,
        )
        with anyio.move_on_after(delay):
            await old.done.wait()

    async def _open_next(self, old: Link) -> Link | None:
        """Open the next link while ``old`` serves; None if ``old`` dies first."""
        new: Link | None = None

        async def attempt() -> None:
            nonlocal new
            try:
                new = await self._open()
            except Exception as exc:
                failure = classify(exc, self.hooks.url)
                delay = self._delay_after(failure.status, failure.retry_after)
                log.warning(
                    "rotation: opening the next connection failed (%s);"
                    " still serving on the old one, retrying in %.2fs",
                    failure.reason,
                    delay,
                )
                self.counters["connect_errors"] += 1
                await anyio.sleep(delay)

        while new is None:
            await _race(attempt, old.done.wait)
            if old.done.is_set():
                if new is not None:
                    new.release.set()
                return None
        return new

    async def _fence(self, old: Link, new: Link, rotation: Rotation) -> str:
        """Find where the old link ends and wait until it has published that far.

        Returns:
            ``"fenced"``, ``"new lost"``, or why the old link could not be
            published up to its fence (a gap).
        """
        rotation.start_fence()
        fence = old.fence
        if fence is None and not self._warned_no_fence:
            self._warned_no_fence = True
            log.info(
                "%s: this connection type has no fence (ping); rotations cut over"
                " after a grace of up to rotation_drain",
                self.hooks.label,
            )
        limit = self.options.rotation_drain
        result = "the old connection did not reach its fence in time"

        async def settle() -> None:
            nonlocal result
            count: int
            await self._wait_caught_up(old, rotation)
            if fence is not None:
                try:
                    count = await fence() - old.consumed_early
                except Exception:
                    await anyio.sleep_forever()  # lost: old_lost() tells how
                    raise  # unreachable
            else:
                await anyio.sleep(min(limit, 0.05))
                count = old.received
            rotation.set_fence(count)
            await old.watch(count).wait()
            result = "fenced"

        async def new_lost() -> None:
            nonlocal result
            await new.done.wait()
            result = "new lost"

        async def old_lost() -> None:
            nonlocal result
            await old.done.wait()
            if rotation.old_done(old.received):
                result = "fenced"
            elif getattr(old.error, "rcvd", None) is not None:
                rotation.old_closed(old.received)  # closed by the server: all delivered
                result = "fenced"
            else:
                result = "the old connection was lost during the rotation"

        async def stalled() -> None:
            # Only a reader that makes no progress for rotation_drain (held by a
            # full "block" stream, or a server that neither sends nor answers)
            # ends the wait: a slow one, on a starved CPU, is waited for.
            last, since = old.received, anyio.current_time()
            while True:
                await anyio.sleep(limit / 8)
                now = anyio.current_time()
                if old.received != last:
                    last, since = old.received, now
                elif now - since >= limit:
                    return

        await _race(settle, new_lost, old_lost, stalled)
        if result != "fenced" and rotation.old_done(old.received):
            result = "fenced"
        return result

    async def _wait_caught_up(self, old: Link, rotation: Rotation) -> None:
        """Wait until the new link repeats something the old one published.

        An id, or without ids an equal frame: the streams then overlap, so
        everything the server sent before the new stream began is on the
        old link, before the fence that follows. Returns early when the old
        link carries nothing for a while (no traffic, nothing to overlap);
        a stalled old link ends the whole wait (the caller's watchdog).
        """

        last = old.received
        start = since = anyio.current_time()
        while not rotation.caught_up:
            with anyio.move_on_after(_QUIET / 4):
                await self._caught_up.wait()
            now = anyio.current_time()
            if old.received != last:
                last, since = old.received, now
            elif now - since >= _QUIET:
                return
            if now - start >= self.options.rotation_drain:
                # Two streams that never repeat each other (frames that name
                # their connection, say): the fence alone decides.
                log.debug("%s: the new stream showed no overlap; fencing anyway", self.hooks.label)
                return

    async def _release_tail(
        self, new: Link, rotation: Rotation, overlap: float, counted: int
    ) -> None:
        """Check the new link against the overlap ids until its own fence.

        Runs in the background (the supervisor goes on watching the link);
        the next rotation waits for it.
        """
        with new.tail_scope:
            start = anyio.current_time()
            fence = new.fence
            try:
                if fence is not None:
                    with anyio.move_on_after(self.options.rotation_drain):
                        count = await fence() - new.consumed_early
                        await new.watch(count).wait()
                await anyio.sleep_until(start + _TAIL_GRACE)
            except Exception:
                pass  # the new link died: the supervisor sees it
        rotation.release()
        self.counters["duplicates"] += rotation.duplicates - counted  # the tail's
        self._log_rotation(new, overlap, rotation.duplicates)
        if new.role is Role.TAIL:
            new.role = Role.LIVE
        if self.rotation is rotation:
            self.rotation = None
        new.tail_done.set()

    def _unhashable(self, kind: type) -> None:
        log.error(
            "%s: _message_id returned an unhashable %s: rotations go on without"
            " de-duplication by id (about one round trip of repeats each)",
            self.hooks.label,
            kind.__name__,
        )
        self.message_id = None

    async def _recover(self, old: Link) -> Link:
        """Unplanned loss: gap, callbacks, backoff, reconnect."""
        status = self.status
        old.role = Role.STOPPED
        old.release.set()
        uptime = anyio.current_time() - old.opened_at
        reason = "stale" if old.stale else describe_close(old.error)
        log.warning("connection to %s lost (%s): reconnecting", self.hooks.label, reason)
        status.last_disconnect = reason
        self.live = None
        status.set(State.RECONNECTING)
        self.sink.mark_gap()
        if self.recorder is not None:
            self.recorder.event("gap", old.id, reason=reason)
        self.counters["disconnects"] += 1
        status.on_disconnect()
        if uptime >= self.options.reset_after:
            self.backoff.reset()
            first_delay = 0.0
        else:
            first_delay = self.backoff.next()
        link = await self._connect(initial=False, first_delay=first_delay)
        self._go_live(link)
        self.counters["reconnects"] += 1
        status.on_reconnect()
        return link


@contextlib.contextmanager
def _timeout_reason(link: Link, seconds: float) -> Iterator[None]:
    """``fail_after(seconds)``, and a TimeoutError that says what did not finish.

    Both anyio's deadline and the transports' own handshake timeouts raise a
    bare TimeoutError; a reason such as ``"TimeoutError: "`` tells nothing.
    """
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError as exc:
        if str(exc):
            raise
        if link.conn is None:
            what = f"no handshake within {seconds:g}s (open_timeout)"
        else:
            what = f"_on_connect and subscriptions not done within {seconds:g}s (open_timeout)"
        raise TimeoutError(what) from None


def _safe_id(hook: Callable[[Any], Any], errors: RateLimitedLog, msg: Any) -> Any:
    """The adapter's ``_message_id``; an exception means "no id"."""
    try:
        return hook(msg)
    except Exception as exc:
        errors("_message_id raised %r; the message is treated as having no id", exc)
        return None


async def _race(*fns: Callable[[], Awaitable[object]]) -> None:
    """Run the functions concurrently; return as soon as one of them returns."""
    async with anyio.create_task_group() as tg:

        async def run(fn: Callable[[], Awaitable[object]]) -> None:
            await fn()
            tg.cancel_scope.cancel()

        for fn in fns:
            tg.start_soon(run, fn, name=f"wsmux {getattr(fn, '__name__', 'wait')}")


def _speaks_websockets(conn: Any) -> bool:
    """True for websockets' own connections, whose recv takes ``decode``."""
    return type(conn).__module__.startswith("websockets.")
