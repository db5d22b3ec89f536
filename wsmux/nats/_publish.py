"""JetStream publication that survives a lost acknowledgement.

Each message goes out with ``publish_async`` and its ``Nats-Msg-Id``; the
futures of the acknowledgements are kept in publication order and settled
by a watcher. A message whose acknowledgement failed, or did not come within
``ack_timeout`` (the server restarted, the connection dropped with it in
flight), is published again under the same id: the stream drops it if it
already had it, within its duplicate window. So the bridge is at-least-once
towards the server and the stream exactly-once by id.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Final

import anyio

from .._log import RateLimitedLog

__all__ = ["AckedPublisher"]

#: Publications of one message before it is given up (and counted as an error).
MAX_ATTEMPTS: Final = 20


class _Pending:
    __slots__ = ("attempts", "deadline", "future", "headers", "payload", "subject")

    def __init__(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.future: Any = None
        self.deadline = 0.0
        self.attempts = 0


class AckedPublisher:
    """Publish to JetStream, watch the acknowledgements, publish again when one is missing.

    Args:
        js: nats-py's JetStream context.
        ack_timeout: Seconds before an unacknowledged message is published again.
        label: Who publishes, for log lines.
    """

    def __init__(self, js: Any, ack_timeout: float, label: str) -> None:
        self._js = js
        self._ack_timeout = ack_timeout
        self._label = label
        self._pending: collections.deque[_Pending] = collections.deque()
        self._log = RateLimitedLog(logging.WARNING)
        #: Acknowledgements received.
        self.acked = 0
        #: Acknowledgements saying the stream already had the id.
        self.duplicates = 0
        #: Publications after a missing or failed acknowledgement.
        self.republished = 0
        #: Messages given up after ``MAX_ATTEMPTS`` publications.
        self.errors = 0

    @property
    def pending(self) -> int:
        """Publications not yet acknowledged."""
        return len(self._pending)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Publish one message (waits only while nats-py's window of pending acks is full)."""
        await self._send(_Pending(subject, payload, headers))

    async def _send(self, item: _Pending) -> None:
        item.attempts += 1
        item.deadline = anyio.current_time() + self._ack_timeout
        try:
            # No wait_stall: it costs a task per call, and _settle frees slots.
            item.future = await self._js.publish_async(
                item.subject, item.payload, headers=item.headers
            )
        except Exception as exc:
            # Disconnected with a full buffer, say: try again shortly.
            self._log("%s: publish failed (%s); will retry", self._label, type(exc).__name__)
            item.future = None
            item.deadline = anyio.current_time() + 0.2
        self._pending.append(item)

    async def watch(self) -> None:
        """Settle acknowledgements every 50 ms, forever (run it in a task)."""
        while True:
            await anyio.sleep(0.05)
            await self._settle(anyio.current_time())

    async def _settle(self, now: float) -> None:
        pending = self._pending
        while pending:
            item = pending[0]
            fut = item.future
            if fut is not None and fut.done():
                pending.popleft()
                if fut.cancelled() or fut.exception() is not None:
                    await self._retry(item)
                else:
                    self.acked += 1
                    if getattr(fut.result(), "duplicate", False):
                        self.duplicates += 1
                continue
            if now < item.deadline:
                break
            pending.popleft()
            if fut is not None:
                fut.cancel()  # frees its slot in nats-py's window
            await self._retry(item)

    async def _retry(self, item: _Pending) -> None:
        if item.attempts >= MAX_ATTEMPTS:
            self.errors += 1
            self._log("%s: a message was never acknowledged; given up", self._label)
            return
        self.republished += 1
        await self._send(item)

    async def flush(self) -> None:
        """Wait until every publication is acknowledged (or given up)."""
        while self._pending:
            await self._settle(anyio.current_time())
            if self._pending:
                await anyio.sleep(0.01)
