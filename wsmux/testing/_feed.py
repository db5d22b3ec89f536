"""The scripted feed: tasks on the server loop that queue generated messages.

:class:`FeedRunner` is handed the :class:`~._core.FeedCore` and uses only its
connection table, queues and task spawning; the messages come from
:class:`~._generator.FeedGenerator`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

from ._core import FeedCore
from ._generator import FeedGenerator, FeedSpec, Frame, garbage_frame
from ._keys import json_response
from ._live import Live

__all__ = ["FeedRunner"]


class FeedRunner:
    """Runs the feed :meth:`wsmux.testing.FeedServer.start_feed` asked for.

    Attributes:
        gen: The broadcast feed's generator (its ``seq`` is ``last_seq``).
    """

    def __init__(
        self,
        core: FeedCore,
        symbols: Sequence[str],
        kinds: Sequence[str],
        seed: int,
        require_subscribe: bool,
    ) -> None:
        self._core = core
        self._symbols, self._kinds, self._seed = tuple(symbols), tuple(kinds), seed
        self._require_subscribe = require_subscribe
        self.gen = FeedGenerator(symbols, kinds, seed)
        self._spec: FeedSpec | None = None  # server thread only

    def snapshot(self, symbol: str, limit: int | None = None) -> dict[str, Any]:
        """The broadcast feed's book of ``symbol`` (see ``FeedServer.book``)."""
        return self.gen.snapshot(symbol, limit)

    def depth_response(self, conn: ServerConnection, method: str, query: str) -> Response:
        """``GET .../depth?symbol=X[&limit=N]``: the REST depth snapshot, Binance style."""
        if method != "GET":
            return json_response(conn, 405, {"code": -1, "msg": f"method {method} not allowed"})
        params = parse_qs(query)
        symbol = params.get("symbol", [""])[0]
        limit = params.get("limit", [""])[0]
        if symbol not in self._symbols or not (limit.isdigit() or not limit):
            return json_response(conn, 400, {"code": -1121, "msg": "Invalid symbol."})
        return json_response(conn, 200, self.snapshot(symbol, int(limit) if limit else None))

    def connection_opened(self, live: Live) -> None:
        """Give a new market connection its own feed, in per-connection mode."""
        spec = self._spec
        if spec is not None and not spec.broadcast and live.rec.listen_key is None:
            live.feed = self._core.spawn(self._run(spec, live), feed=True)

    def forget(self) -> None:
        """Forget the spec, so that connections after a restart get no feed."""
        self._spec = None

    def start(self, spec: FeedSpec) -> None:
        """Start a feed, replacing the one running."""
        self.stop()
        self._spec = spec
        if spec.broadcast:
            self._core.spawn(self._run(spec, None), feed=True)
            return
        for live in self._core.live.values():
            if live.rec.listen_key is None:
                live.feed = self._core.spawn(self._run(spec, live), feed=True)

    def stop(self) -> None:
        """Cancel every feed task; what they queued is still sent."""
        self._spec = None
        for task in list(self._core.feed_tasks):
            task.cancel()

    def _targets(self) -> list[Live]:
        return [lv for lv in self._core.live.values() if lv.rec.listen_key is None and not lv.muted]

    async def _wait_targets(self, n: int) -> None:
        while len(self._targets()) < n:
            await self._core.wait_changed()

    async def _run(self, spec: FeedSpec, only: Live | None) -> None:
        core = self._core
        if only is None:
            gen = self.gen
            await self._wait_targets(spec.min_clients)
        else:
            gen = FeedGenerator(self._symbols, self._kinds, self._seed + only.rec.id)
        loop, rng, fast = asyncio.get_running_loop(), core.rng, spec.rate is None
        produced, start = 0, loop.time()
        targets: list[Live] = []
        while spec.count is None or produced < spec.count:
            targets = [only] if only is not None else self._targets()
            if fast and not targets:
                await self._wait_targets(1)
                continue
            n = spec.batch if spec.count is None else min(spec.batch, spec.count - produced)
            now_ms = int(time.time() * 1000)
            for _ in range(n):
                if spec.garbage_ratio and rng.random() < spec.garbage_ratio:
                    junk = garbage_frame(rng, "text" if rng.random() < 0.5 else "binary")
                    for live in targets:
                        if await self._put(live, junk, fast):
                            live.rec.garbage += 1
                            core.counts["garbage_sent"] += 1
                data, topic = gen.next(now_ms)
                frame = (data, True)
                for live in targets:
                    if self._require_subscribe and topic not in live.topics:
                        continue
                    if await self._put(live, frame, fast):
                        live.rec.last_seq = gen.seq
            produced += n
            core.counts["feed_messages"] += n
            if spec.rate is None:
                await asyncio.sleep(0)  # let the writers run between batches
            else:
                await asyncio.sleep(max(0.0, start + produced / spec.rate - loop.time()))
        await self._flush(targets)

    async def _put(self, live: Live, frame: Frame, wait: bool) -> bool:
        if wait and not live.muted and live.queue.full():
            await live.put(frame)  # as fast as the socket allows: backpressure
            return True
        return self._core.enqueue(live, frame)

    async def _flush(self, lives: list[Live]) -> None:
        """Wait (up to 2 s) until what the feed queued has been written."""
        joins = [asyncio.ensure_future(lv.queue.join()) for lv in lives if not lv.muted]
        if not joins:
            return
        try:
            await asyncio.wait(joins, timeout=2.0)
        finally:
            for join in joins:
                join.cancel()
            await asyncio.wait(joins)
