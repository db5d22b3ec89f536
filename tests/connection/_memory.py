"""An in-memory exchange and its connections, for tests under a mock clock.

No socket: a connection is a buffer the exchange writes into. Each has the
``fence()`` a rotation uses: a ping "travels" at once, so its pong comes
after exactly what the exchange wrote before it. Faults: drop (the next ``recv`` raises
once the buffer is read), refuse (the next connects raise ``OSError``) and
silence (the exchange stops writing to a connection).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from typing import Any

import anyio
import anyio.lowlevel
import orjson


class Dropped(ConnectionError):
    """The in-memory connection was cut."""


class MemoryConnection:
    """One in-memory websocket: what the exchange wrote, read in order."""

    def __init__(self, exchange: MemoryExchange, conn_id: int) -> None:
        self.exchange = exchange
        self.id = conn_id
        self.buf: deque[bytes] = deque()
        self.wake = anyio.Event()
        self.written = 0
        self.dropped = False
        self.closed = False
        self.silent = False
        self.sent: list[Any] = []

    def write(self, frame: bytes) -> None:
        if self.dropped or self.closed or self.silent:
            return
        self.buf.append(frame)
        self.written += 1
        self.wake.set()

    async def recv(self) -> bytes:
        while not self.buf:
            if self.dropped:
                raise Dropped(f"connection {self.id} dropped")
            if self.closed:
                raise Dropped(f"connection {self.id} closed")
            self.wake = anyio.Event()
            await self.wake.wait()
        return self.buf.popleft()

    async def send(self, message: str | bytes) -> None:
        if self.dropped or self.closed:
            raise Dropped(f"connection {self.id} is gone")
        self.sent.append(message)

    async def close(self) -> None:
        self.closed = True
        self.exchange.live.discard(self)
        self.wake.set()

    def drop(self) -> None:
        self.dropped = True
        self.exchange.live.discard(self)
        self.wake.set()

    async def fence(self) -> int:
        await anyio.lowlevel.checkpoint()
        if self.dropped or self.closed:
            raise Dropped(f"connection {self.id} is gone")
        return self.written


class MemoryExchange:
    """Writes numbered events to every live connection; injects faults."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.live: set[MemoryConnection] = set()
        self.ids = itertools.count(1)
        self.conn_ids = itertools.count(1)
        self.refusals = 0
        self.emitted = 0
        self.connects = 0

    async def connect(self) -> MemoryConnection:
        await anyio.lowlevel.checkpoint()
        if self.refusals:
            self.refusals -= 1
            raise OSError("connection refused (simulated)")
        conn = MemoryConnection(self, next(self.conn_ids))
        self.live.add(conn)
        self.connects += 1
        return conn

    def emit(self) -> int:
        n = next(self.ids)
        frame = orjson.dumps({"e": "ORDER", "id": n})
        for conn in list(self.live):
            conn.write(frame)
        self.emitted = n
        return n

    def newest(self) -> MemoryConnection | None:
        return max(self.live, key=lambda c: c.id, default=None)
