"""Opening links: attempts, backoff, the shared budget, holding each socket.

The :class:`Connector` opens one link at a time for the supervisor: it asks
the connection-attempt gate, runs the adapter's ``_create_ws``, ``_on_connect``
and subscription replay under ``open_timeout``, counts the frames read before
the link's fence, arms its rotation trigger (``_when2create_new_ws`` or
``max_age``), and retries with backoff until an attempt succeeds or the error
is fatal. Each socket is held by a task of its own until its link is released.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.abc

from .._exceptions import FatalConnectError, RetriesExhausted
from .._log import log, redact_url, show_url
from .._options import Options
from ._backoff import Backoff
from ._fence import fence_of
from ._link import CountingRecv, Link
from ._status import Gate, Hooks, State, Status
from ._transport import classify

__all__ = ["Connector"]


class Connector:
    """Opens the links of one supervisor.

    Args:
        hooks: The adapter's hooks (create, on_connect, replay, rotation_due).
        options: The multiplexer's options.
        status: Where state and counters are reported.
        tg: The task group that holds the sockets.
        backoff: The reconnection delays (default: from the options).
        gate: Asked before each connection attempt (a shared budget).
    """

    def __init__(
        self,
        hooks: Hooks,
        options: Options,
        status: Status,
        tg: anyio.abc.TaskGroup,
        backoff: Backoff | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.hooks = hooks
        self.options = options
        self.status = status
        self.tg = tg
        self.backoff = backoff or Backoff(options.backoff_base, options.backoff_cap)
        self.gate = gate
        #: Every link whose socket is held (connecting, live, old or tail).
        self.links: set[Link] = set()
        self._next_id = 0

    async def connect(self, *, initial: bool, first_delay: float | None = None) -> Link:
        """Open a link, retrying with backoff; raise when it is hopeless."""
        opts = self.options
        attempts = 0
        delay = first_delay
        while True:
            if delay:
                await anyio.sleep(delay)
            attempts += 1
            try:
                return await self.open()
            except Exception as exc:
                failure = classify(exc, self.hooks.url)
                self.status.counters["connect_errors"] += 1
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
                delay = self.delay_after(failure.status, failure.retry_after)
                log.warning(
                    "connecting to %s failed (%s); attempt %d, retrying in %.2fs",
                    label,
                    failure.reason,
                    attempts,
                    delay,
                )
                if not initial:
                    self.status.set(State.RECONNECTING)

    def delay_after(self, status: int | None, retry_after: float | None) -> float:
        """The wait before the next attempt, after a failure with this HTTP status."""
        opts = self.options
        delay = self.backoff.next()
        if status == 429:
            delay = min(opts.backoff_cap, max(delay, opts.backoff_base) * 4)
        if retry_after is not None:
            delay = max(delay, min(retry_after, opts.retry_after_cap))
        return delay

    async def open(self) -> Link:
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
        self.status.counters["connects"] += 1
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
