"""The handoff against a real feed: the server drops the connection mid-burst.

100 streams each have a reader waiting (on its handoff under asyncio) when
a burst arrives and the server drops the TCP connection in the middle of
it. No stream may see a message twice or out of order; every
``gaps="raise"`` stream raises ConnectionGap; everything sent after the
reconnect arrives. A ``block`` stream of maxsize 2 with a waiting reader
loses nothing it was given.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from wsmux import ConnectionGap, Multiplexer
from wsmux.fanout._stream import Stream
from wsmux.testing import FeedServer

FAST: dict[str, Any] = {
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
    "open_timeout": 2.0,
    "close_timeout": 0.5,
}
STREAMS = 100
BEFORE, AFTER = 150, 100


async def _until(check: Any) -> None:
    while not check():
        await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_a_drop_mid_burst_with_100_waiting_readers() -> None:
    async with FeedServer(symbols=1, kinds=("trade",)) as srv:
        mux = Multiplexer(srv.url, **FAST)
        streams: list[Stream] = [
            mux.stream_filter(gaps="raise" if i % 2 else "ignore", name=f"s{i}")
            for i in range(STREAMS)
        ]
        streams.append(mux.stream_filter(overflow="block", maxsize=2, name="block", gaps="raise"))
        got: list[list[int]] = [[] for _ in streams]
        gaps = [0] * len(streams)

        async def read(i: int, stream: Stream) -> None:
            while True:
                try:
                    msg = await stream.receive()
                except ConnectionGap:
                    gaps[i] += 1
                    continue
                if msg["k"] == "end":
                    return
                got[i].append(msg["k"])

        with anyio.fail_after(20):
            async with mux, anyio.create_task_group() as tg:
                for i, stream in enumerate(streams):
                    tg.start_soon(read, i, stream)
                first = (await srv.wait_for_connections_async(1))[0].id
                srv.send({"k": -1})  # a first read: later waits are on the handoff
                await _until(lambda: all(g == [-1] for g in got))
                await _until(lambda: all(s._event is not None for s in streams))
                for k in range(BEFORE):
                    srv.send({"k": k})
                    if k == BEFORE // 2:
                        srv.drop()
                        break
                await _until(lambda: any(r.id != first for r in srv.open_connections()))
                await _until(lambda: all(s._event is not None for s in streams))
                for k in range(BEFORE, BEFORE + AFTER):
                    srv.send({"k": k})
                srv.send({"k": "end"})
        for i, stream in enumerate(streams):
            ks = got[i]
            assert len(set(ks)) == len(ks), f"stream {i}: a message twice"
            assert ks == sorted(ks), f"stream {i}: out of order"
            assert ks[-AFTER:] == list(range(BEFORE, BEFORE + AFTER)), f"stream {i}: lost"
            assert gaps[i] == (1 if stream.gaps == "raise" else 0), (i, gaps[i])
            counts = stream.statistics()
            assert counts.dropped == 0 and counts.delivered == len(ks) + 1, (i, counts)
        assert got[-1] == got[0], "the block stream got what the others got"


@pytest.mark.anyio
async def test_a_full_block_stream_across_a_drop_then_a_waiting_reader() -> None:
    """A ``block`` stream (maxsize 2) fills while its reader is held back,
    the server drops the connection, the reader then reads on and waits:
    nothing is dropped or doubled, the gap is raised once, and what is sent
    after the reconnect reaches the waiting reader."""
    async with FeedServer(symbols=1, kinds=("trade",)) as srv:
        mux = Multiplexer(srv.url, **FAST)
        stream = mux.stream_filter(overflow="block", maxsize=2, gaps="raise")
        got: list[int] = []
        gaps = 0
        go = anyio.Event()

        async def read() -> None:
            nonlocal gaps
            await go.wait()
            while True:
                try:
                    msg = await stream.receive()
                except ConnectionGap:
                    gaps += 1
                    continue
                if msg["k"] == "end":
                    return
                got.append(msg["k"])

        with anyio.fail_after(20):
            async with mux, anyio.create_task_group() as tg:
                tg.start_soon(read)
                first = (await srv.wait_for_connections_async(1))[0].id
                for k in range(20):
                    srv.send({"k": k})
                await _until(lambda: stream.statistics().buffered >= 2)
                srv.drop()
                go.set()
                await _until(lambda: any(r.id != first for r in srv.open_connections()))
                await _until(lambda: stream._event is not None)
                for k in range(100, 100 + AFTER):
                    srv.send({"k": k})
                srv.send({"k": "end"})
        assert len(set(got)) == len(got) and got == sorted(got)
        assert got[:2] == [0, 1] and got[-AFTER:] == list(range(100, 100 + AFTER))
        assert gaps == 1
        counts = stream.statistics()
        assert counts.dropped == 0 and counts.delivered == len(got) + 1
