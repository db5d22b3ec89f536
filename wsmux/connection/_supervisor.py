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

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from .._log import RateLimitedLog, log
from .._options import Options
from .._record import Recorder
from ._backoff import Backoff
from ._connector import Connector
from ._link import Link, Role, describe_close
from ._reader import Reader
from ._rotation import Rotation
from ._status import Gate, Hooks, Sink, State, Status
from ._transport import classify

__all__ = ["Supervisor"]

#: The least time a rotation's new link is checked against the overlap ids.
_TAIL_GRACE = 0.5
#: With ids, an old link quiet this long needs no overlap before its fence.
_QUIET = 0.1


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
        self.sink = sink
        self.options = options
        self.status = status
        self.counters = status.counters
        self.tg = tg
        self.connector = Connector(hooks, options, status, tg, backoff, gate)
        self.backoff = self.connector.backoff
        interval = max(options.rotation_interval, 0.001)
        self.rotation_backoff = Backoff(interval, max(options.backoff_cap, interval))
        self.live: Link | None = None
        self.links = self.connector.links  # every link whose socket is held
        self.rotation: Rotation | None = None
        self._caught_up = anyio.Event()  # set by the new link's reader
        self._last_rotation = -float("inf")
        self._warned_storm = False
        self._warned_no_fence = False
        self.reader = Reader(hooks, sink, status, options, recorder, route=self._route)
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
        link = await self.connector.connect(initial=True)
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
        for link in list(self.reader.reading):
            await link.done.wait()

    def lose(self, conn: Any, error: BaseException) -> None:
        """Treat the link of ``conn`` as lost (a send on it failed)."""
        for link in list(self.links):
            if link.conn is conn:
                link.lose(error)

    # -- opening -------------------------------------------------------------

    # -- reading -------------------------------------------------------------

    def _start_reader(self, link: Link) -> None:
        if self.recorder is not None:
            self.recorder.event("connect", link.id)
        self.reader.reading.add(link)
        self.tg.start_soon(self.reader.read, link, name=f"wsmux reader {link.id}")
        if self.options.stale_after:
            self.tg.start_soon(self.reader.watch_stale, link, name=f"wsmux stale watch {link.id}")

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
                new = await self.connector.open()
            except Exception as exc:
                failure = classify(exc, self.hooks.url)
                delay = self.connector.delay_after(failure.status, failure.retry_after)
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
        link = await self.connector.connect(initial=False, first_delay=first_delay)
        self._go_live(link)
        self.counters["reconnects"] += 1
        status.on_reconnect()
        return link


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
