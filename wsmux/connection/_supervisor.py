"""The supervisor: connect, read, rotate and reconnect one websocket.

Each connection is a :class:`_Link`: a holder task owns the socket (so that
trio's nursery-bound client works, and closing never blocks the reader), a
reader task parses frames and publishes them to the hub. The supervisor task
is the only one that decides which link is live:

* planned rotation: when ``_when2create_new_ws()`` completes, open the next
  link and run ``_on_connect`` on it while the old one keeps serving; then
  read the new one into a holding list while the old one drains, cut over,
  publish what was held (minus duplicates when ``_message_id`` is defined)
  and close the old one in the background;
* unplanned loss: mark a gap, call the disconnect callback, back off,
  reconnect, replay subscriptions, call the reconnect callback.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
import anyio.lowlevel
import orjson

from .._exceptions import FatalConnectError, RetriesExhausted
from .._log import RateLimitedLog, log, sample
from ._backoff import Backoff
from ._transport import classify

if TYPE_CHECKING:
    from .._mux import Multiplexer

__all__ = ["STATES", "Supervisor"]

#: Every state a multiplexer can be in, in lifecycle order.
STATES: Final = (
    "idle",
    "connecting",
    "open",
    "rotating",
    "reconnecting",
    "closing",
    "closed",
    "failed",
)

_HOLD, _LIVE, _DRAIN, _STOP = 0, 1, 2, 3
#: The new link of a rotation, live, still dropping what the old one published.
_TAIL = 4


class _Link:
    """One websocket connection and the state of its reader."""

    __slots__ = (
        "closed",
        "conn",
        "done",
        "error",
        "first_id",
        "held",
        "holder_scope",
        "id",
        "idle",
        "mode",
        "nbytes",
        "opened_at",
        "reader_scope",
        "received",
        "release",
        "scope",
        "stale",
        "topics",
    )

    def __init__(self, link_id: int) -> None:
        self.id = link_id
        self.conn: Any = None
        self.mode = _HOLD
        self.held: list[Any] = []
        self.first_id: Hashable | None = None
        self.received = 0
        self.nbytes = 0
        self.idle = False  # the reader waits for data: it has published all it had
        self.opened_at = 0.0
        self.error: BaseException | None = None
        self.stale = False
        self.topics: set[str] = set()  # what this connection was subscribed to
        self.release = anyio.Event()  # tells the holder to close the socket
        self.done = anyio.Event()  # the reader has ended
        self.closed = anyio.Event()  # the holder has closed the socket
        self.scope = anyio.CancelScope()  # the link's helper tasks
        self.reader_scope = anyio.CancelScope()
        self.holder_scope = anyio.CancelScope()  # cancels a connect in progress

    def __repr__(self) -> str:
        return f"<link {self.id} received={self.received}>"


class Supervisor:
    """Keeps one live connection feeding the hub; see the module docstring."""

    def __init__(self, mux: Multiplexer, tg: anyio.abc.TaskGroup) -> None:
        self.mux = mux
        self.hub = mux._hub
        self.tg = tg
        opts = mux._options
        self.backoff = Backoff(opts.backoff_base, opts.backoff_cap)
        self.live: _Link | None = None
        self.links: set[_Link] = set()
        self._next_id = 0
        self._overlap_ids: set[Hashable] | None = None
        self._rotating_to: _Link | None = None
        self._rotating_from: _Link | None = None
        #: Links whose reader runs; totals of those whose reader ended.
        self.reading: set[_Link] = set()
        self.retired_messages = 0
        self.retired_bytes = 0
        self._caught_up = anyio.Event()
        self._parse_log = RateLimitedLog(logging.WARNING)
        self._message_id: Callable[[Any], Hashable | None] | None = (
            self._safe_message_id if mux._has_message_id() else None
        )
        self._id_log = RateLimitedLog(logging.ERROR)

    def _safe_message_id(self, msg: Any) -> Hashable | None:
        """The adapter's ``_message_id``; an exception means "no id"."""
        try:
            return self.mux._message_id(msg)
        except Exception as exc:
            self._id_log("_message_id raised %r; the message is treated as having no id", exc)
            return None

    # -- the loop ------------------------------------------------------------

    async def run(self, started: Callable[[], None]) -> None:
        """Connect, then keep a live connection until cancelled or fatal.

        Args:
            started: Called once the first connection is open.

        Raises:
            FatalConnectError: A connection failed in a way retrying cannot fix.
            RetriesExhausted: ``max_attempts`` attempts failed in a row.
        """
        self.mux._set_state("connecting")
        link = await self._connect(initial=True)
        self._go_live(link)
        started()
        while True:
            await self._wait_for_event(link)
            if link.done.is_set():
                link = await self._recover(link)
            else:
                link = await self._rotate(link)

    async def _wait_for_event(self, link: _Link) -> None:
        """Return when the link died or its rotation is due."""
        await _race(self._rotation_due, link.done.wait)

    async def _rotation_due(self) -> None:
        try:
            await self.mux._when2create_new_ws()
        except Exception as exc:
            log.info("_when2create_new_ws raised %r: rotating now", exc)

    # -- opening -------------------------------------------------------------

    async def _connect(self, *, initial: bool, first_delay: float | None = None) -> _Link:
        """Open a link, retrying with backoff; raise when it is hopeless."""
        opts = self.mux._options
        attempts = 0
        delay = first_delay
        while True:
            if delay:
                await anyio.sleep(delay)
            attempts += 1
            self.mux._counters["connect_attempts"] += 1
            try:
                return await self._open()
            except Exception as exc:
                failure = classify(exc, self.mux.url)
                self.mux._counters["connect_errors"] += 1
                url = self.mux._redacted
                if failure.fatal:
                    raise FatalConnectError(
                        f"cannot connect to {url}: {failure.reason}", url=url, status=failure.status
                    ) from None
                if opts.max_attempts is not None and attempts >= opts.max_attempts:
                    raise RetriesExhausted(
                        f"cannot connect to {url}: {attempts} attempt(s) failed,"
                        f" the last with {failure.reason}",
                        url=url,
                        status=failure.status,
                    ) from None
                delay = self.backoff.next()
                if failure.status == 429:
                    delay = min(opts.backoff_cap, max(delay, opts.backoff_base) * 4)
                if failure.retry_after is not None:
                    delay = max(delay, min(failure.retry_after, opts.retry_after_cap))
                log.warning(
                    "connecting to %s failed (%s); attempt %d, retrying in %.2fs",
                    url,
                    failure.reason,
                    attempts,
                    delay,
                )
                if not initial:
                    self.mux._set_state("reconnecting")

    async def _open(self) -> _Link:
        """Open one connection and run ``_on_connect`` on it (no retry)."""
        self._next_id += 1
        link = _Link(self._next_id)
        opts = self.mux._options
        try:
            with anyio.fail_after(opts.open_timeout):
                await self.tg.start(self._hold, link, name=f"wsmux connection {link.id}")
                await self.mux._on_connect(link.conn)
                link.topics = await self.mux._replay_subscriptions(link.conn)
        except BaseException:
            link.release.set()
            if link.conn is None:
                link.holder_scope.cancel()
            raise
        link.opened_at = time.monotonic()
        self.mux._counters["connects"] += 1
        return link

    async def _hold(self, link: _Link, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own one socket: open it, hand it over, close it when released."""
        self.links.add(link)
        try:
            made: Any = None
            with link.holder_scope:  # cancelled by exit() while connecting
                made = await self.mux._create_ws()
                if not hasattr(made, "recv") and hasattr(made, "__aenter__"):
                    await self._hold_context(link, made, task_status)
                    return
            if link.holder_scope.cancel_called:
                if made is not None and hasattr(made, "recv"):
                    with anyio.CancelScope(shield=True), anyio.move_on_after(0.5):
                        await made.close()  # connected just as exit cancelled the connect
                return
            if hasattr(made, "recv"):
                link.conn = made
                try:
                    task_status.started()
                    await link.release.wait()
                finally:
                    with anyio.CancelScope(shield=True):
                        with anyio.move_on_after(self.mux._options.close_timeout):
                            try:
                                await made.close()
                            except Exception as exc:
                                log.debug("closing connection %d: %r", link.id, exc)
            else:
                raise TypeError(
                    "_create_ws must return a connection (with recv/send/close) or an async "
                    f"context manager yielding one, not {type(made).__name__}"
                )
        finally:
            self.links.discard(link)
            link.scope.cancel()
            link.reader_scope.cancel()
            link.closed.set()

    async def _hold_context(
        self, link: _Link, made: Any, task_status: anyio.abc.TaskStatus[None]
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

    # -- reading -------------------------------------------------------------

    def _start_reader(self, link: _Link) -> None:
        self.reading.add(link)
        self.tg.start_soon(self._read, link, name=f"wsmux reader {link.id}")
        if self.mux._options.stale_after:
            self.tg.start_soon(self._watch_stale, link, name=f"wsmux stale watch {link.id}")

    async def _read(self, link: _Link) -> None:
        mux = self.mux
        hub = self.hub
        counters = mux._counters
        conn = link.conn
        recv = conn.recv
        parse: Callable[[Any], Any] = orjson.loads
        async_parse = None
        if mux._has_parse_hook():
            hook = mux._parse_raw_data
            if _is_coroutine_function(hook):
                async_parse = hook
            else:
                parse = hook
        elif _speaks_websockets(conn):
            recv = functools.partial(conn.recv, decode=False)
        publish = hub.publish
        # A connection may offer recv_nowait(): a buffered frame or None, so
        # that a burst is drained without a coroutine per message.
        recv_nowait = getattr(conn, "recv_nowait", None)
        wall = time.time
        try:
            with link.reader_scope:
                while True:
                    raw = recv_nowait() if recv_nowait is not None else None
                    if raw is None:
                        link.idle = True
                        raw = await recv()
                        link.idle = False
                    mux._last_message_at = wall()
                    link.received += 1
                    link.nbytes += len(raw)
                    try:
                        msg = await async_parse(raw) if async_parse else parse(raw)
                    except Exception as exc:
                        counters["parse_errors"] += 1
                        self._parse_log("cannot parse frame %s: %r", sample(raw), exc)
                        continue
                    if msg is None:
                        continue
                    if link.mode != _LIVE and self._divert(link, msg):
                        continue
                    if publish(msg):
                        await hub.relieve()
        except Exception as exc:
            link.error = exc
        finally:
            self.reading.discard(link)
            self.retired_messages += link.received
            self.retired_bytes += link.nbytes
            link.done.set()

    def _divert(self, link: _Link, msg: Any) -> bool:
        """Handle a message of a link that is not simply live.

        Returns:
            True when the message must not be published now.
        """
        if link.mode == _HOLD:
            # The first message with an id (a subscription reply has none).
            if link.first_id is None and self._message_id is not None:
                link.first_id = mid = self._message_id(msg)
                old = self._rotating_from
                if old is not None and self._overlap_ids and mid in self._overlap_ids:
                    old.mode = _STOP  # the old link is already past this point
                    self._caught_up.set()
            link.held.append(msg)
            return True
        if link.mode == _STOP:
            return True
        if link.mode == _TAIL:
            # The old link may have run ahead of what this one had read at the
            # cutover: drop what it published, up to the first id it did not.
            mid = self._message_id(msg) if self._message_id is not None else None
            if mid is None:
                return False
            if self._overlap_ids is not None and mid in self._overlap_ids:
                self.mux._counters["duplicates"] += 1
                return True
            link.mode = _LIVE
            self._overlap_ids = None
            return False
        # _DRAIN: the old link of a rotation, still published.
        if self._message_id is not None and self._overlap_ids is not None:
            mid = self._message_id(msg)
            if mid is not None:
                if mid in self._overlap_ids:
                    self.mux._counters["duplicates"] += 1
                    return True
                self._overlap_ids.add(mid)
                nxt = self._rotating_to
                if nxt is not None and nxt.first_id is not None and mid == nxt.first_id:
                    link.mode = _STOP  # caught up with the new link: stop here
                    self._caught_up.set()
        return False

    async def _watch_stale(self, link: _Link) -> None:
        limit = self.mux._options.stale_after
        assert limit is not None
        with link.scope:
            seen, since = link.received, time.monotonic()
            while True:
                await anyio.sleep(limit / 4)
                if link.received != seen:
                    seen, since = link.received, time.monotonic()
                elif time.monotonic() - since >= limit:
                    log.warning("no message for %.1fs: replacing the connection", limit)
                    self.mux._counters["stale"] += 1
                    link.stale = True
                    link.reader_scope.cancel()
                    return

    # -- state changes -------------------------------------------------------

    def _go_live(self, link: _Link) -> None:
        link.mode = _LIVE
        self.live = link
        self._start_reader(link)
        self.mux._set_state("open")

    async def _rotate(self, old: _Link) -> _Link:
        """Planned rotation: a new connection replaces ``old`` with no gap."""
        mux = self.mux
        mux._set_state("rotating")
        while True:
            new = await self._open_next(old)
            if new is None:  # the old link died first: an unplanned loss
                return await self._recover(old)
            # Read the new link into its holding list while the old one drains.
            self._rotating_to = new
            self._start_reader(new)
            drained = await self._drain(old, new)
            if new.done.is_set() and old.mode == _DRAIN and not old.done.is_set():
                # The new link died before taking over: keep the old one and
                # try again later; the new one's messages come on the old too.
                log.warning("rotation: the new connection was lost; still serving on the old one")
                new.mode = _STOP
                new.release.set()
                old.mode = _LIVE
                self._rotating_to = self._rotating_from = None
                self._overlap_ids = None
                await anyio.sleep(self.backoff.next())
                continue
            break
        old.mode = _STOP
        old.release.set()
        if not drained:
            # The old link still held frames it had not published: they are
            # gone with it. Say so where it matters, as an unplanned loss would.
            log.warning("rotation: the old connection had not drained; messages may be missing")
            mux._counters["rotation_gaps"] += 1
            self.hub.mark_gap()
        # Publish what the new link held, in order, then let it go live.
        while new.held:
            batch, new.held = new.held, []
            for msg in batch:
                if self._overlap_ids is not None:
                    mid = self._message_id(msg) if self._message_id else None
                    if mid is not None and mid in self._overlap_ids:
                        mux._counters["duplicates"] += 1
                        continue
                if self.hub.publish(msg):
                    await self.hub.relieve()
        new.mode = _LIVE if self._overlap_ids is None else _TAIL
        self._rotating_to = self._rotating_from = None
        self.live = new
        mux._counters["rotations"] += 1
        mux._set_state("open")
        mux._topics_changed()  # topics changed during the rotation reach the new link
        return new

    async def _open_next(self, old: _Link) -> _Link | None:
        """Open the next link while ``old`` serves; None if ``old`` dies first."""
        mux = self.mux
        # Record what the old link publishes from now on, so that what the
        # new one repeats (it is subscribed before it is read) is dropped. A
        # link still in its tail keeps the ids of the rotation before.
        self._rotating_from = old
        if self._message_id is None:
            self._overlap_ids = None
        elif old.mode != _TAIL or self._overlap_ids is None:
            self._overlap_ids = set()
        self._caught_up = anyio.Event()
        old.mode = _DRAIN
        new: _Link | None = None
        attempts = 0

        async def attempt() -> None:
            nonlocal new, attempts
            attempts += 1
            if attempts > 1 and self._overlap_ids is not None:
                self._overlap_ids.clear()  # only this attempt's overlap matters
            try:
                new = await self._open()
            except Exception as exc:
                failure = classify(exc, mux.url)
                delay = self.backoff.next()
                log.warning(
                    "rotation: opening the next connection failed (%s);"
                    " still serving on the old one, retrying in %.2fs",
                    failure.reason,
                    delay,
                )
                mux._counters["connect_errors"] += 1
                await anyio.sleep(delay)

        while new is None:
            await _race(attempt, old.done.wait)
            if new is None and old.done.is_set():
                self._overlap_ids = self._rotating_from = None
                return None
        return new

    async def _drain(self, old: _Link, new: _Link) -> bool:
        """Keep publishing the old link until it has published what it received.

        Stops when the old link caught up with the new one (by message id),
        ended, or went quiet; else after ``rotation_drain``, the next time it
        waits for data with everything it received published. A reader held
        back (by a full ``block`` stream) gets ``rotation_drain`` once more;
        after that the cutover loses what it still holds.

        Returns:
            True when nothing the old link received is left unpublished.
        """
        opts = self.mux._options
        settled = False

        def done() -> bool:
            return old.done.is_set() or self._caught_up.is_set()

        async def settle(grace: float) -> None:
            # The reader is drained when it waits in recv() for data. Idle
            # alone is not proof: under trio recv() checkpoints even with
            # data buffered, so idle must hold, with no new message, across
            # a few scheduler passes, and for ``grace`` (frames still in
            # flight). Sampled: the reader's hot path only stores a flag.
            nonlocal settled
            last, since = old.received, anyio.current_time()
            while True:
                await anyio.sleep(0.005)
                if old.received != last:
                    last, since = old.received, anyio.current_time()
                if not old.idle or anyio.current_time() - since < grace:
                    continue
                seen = old.received
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()
                if old.idle and old.received == seen:
                    settled = True
                    return

        # Quiet for a grace ends the drain early; otherwise the old link is
        # read for rotation_drain (duplicates, not gaps, without message ids),
        # then stops the next time it waits for data. A reader held back by
        # a full "block" stream gets rotation_drain once more.
        for grace in (min(0.05, opts.rotation_drain), 0.0):
            with anyio.move_on_after(opts.rotation_drain):
                await _race(
                    old.done.wait,
                    self._caught_up.wait,
                    new.done.wait,
                    functools.partial(settle, grace),
                )
            if done() or settled or new.done.is_set():
                break
        return done() or settled

    async def _recover(self, old: _Link) -> _Link:
        """Unplanned loss: gap, callbacks, backoff, reconnect."""
        mux = self.mux
        old.mode = _STOP
        old.release.set()
        uptime = time.monotonic() - old.opened_at
        reason = "stale" if old.stale else _describe(old.error)
        log.warning("connection to %s lost (%s): reconnecting", mux._redacted, reason)
        mux._last_disconnect = reason
        self.live = None
        mux._set_state("reconnecting")
        self.hub.mark_gap()
        mux._counters["disconnects"] += 1
        mux._in_background(mux._call_back, "disconnect_fn", ())
        if uptime >= mux._options.reset_after:
            self.backoff.reset()
            first_delay = 0.0
        else:
            first_delay = self.backoff.next()
        link = await self._connect(initial=False, first_delay=first_delay)
        self._go_live(link)
        mux._counters["reconnects"] += 1
        mux._in_background(mux._call_back, "reconnect_fn", mux._options.reconnect_args)
        return link


async def _race(*fns: Callable[[], Awaitable[object]]) -> None:
    """Run the functions concurrently; return as soon as one of them returns."""
    async with anyio.create_task_group() as tg:

        async def run(fn: Callable[[], Awaitable[object]]) -> None:
            await fn()
            tg.cancel_scope.cancel()

        for fn in fns:
            tg.start_soon(run, fn, name=f"wsmux {getattr(fn, '__name__', 'wait')}")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "closed by the server"
    for attr, who in (("rcvd", "server"), ("sent", "client")):
        frame = getattr(exc, attr, None)
        if frame is not None:
            reason = f" ({frame.reason})" if frame.reason else ""
            return f"close code {frame.code}{reason} from the {who}"
    if type(exc).__name__.startswith("ConnectionClosed"):
        return "connection dropped without a close frame"
    return type(exc).__name__


def _is_coroutine_function(fn: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def _speaks_websockets(conn: Any) -> bool:
    """True for websockets' own connections, whose recv takes ``decode``."""
    module = type(conn).__module__
    return module.startswith("websockets.")
