"""Bridge + remote streams through a real nats-server (asyncio only: nats-py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import pytest
from _natsserver import NatsServer
from fanout._reference import SEMANTICS_CASES

from wsmux import (
    Bridge,
    ConnectionGap,
    JetStreamConfig,
    Multiplexer,
    RemoteMultiplexer,
    Stream,
    StreamLagged,
)
from wsmux.testing import FeedServer

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

DEADLINE = 20


async def until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def broadcast(srv: FeedServer, msg: Any) -> None:
    """Broadcast once a connection takes it (the server registers a new one
    a moment after the client sees it open)."""
    with anyio.fail_after(DEADLINE):
        while not srv.broadcast(msg):
            await anyio.sleep(0.01)


def drain(stream: Stream) -> list[Any]:
    out = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except anyio.WouldBlock:
            return out


# Values that must not break the subject hierarchy, sets (several subjects).
EXTRA_CASES: list[tuple[Any, Any, bool]] = [
    ({"a": "x.y", "b": "*"}, {"a": "x.y", "b": "*"}, True),
    ({"a": "x y"}, {"a": "x.y"}, False),
    ({"a": ">"}, {"a": ">", "b": "z"}, True),
    ({"a": {1, "q.r"}}, {"a": "q.r"}, True),
    ({"a": {1, "q.r"}}, {"a": True}, False),
    ({"a": ""}, {"a": ""}, True),
    ({"a": "_"}, {"b": 1}, False),
    ({"b": 0.5}, {"b": 0.5}, True),
    ({"a": "1"}, {"a": "1"}, True),
]


async def test_every_filter_case_selects_what_a_local_stream_selects(
    nats_server: NatsServer,
) -> None:
    cases = SEMANTICS_CASES + EXTRA_CASES
    msgs = list({repr(msg): msg for _, msg, _ in cases}.values())  # 1 and 1.0 kept apart
    url = nats_server.url
    async with FeedServer() as srv, Multiplexer(srv.url + "/ws") as mux:
        local = [mux.stream_filter(f, maxsize=4096) for f, _, _ in cases]
        async with (
            Bridge(mux, url, subject="t.{a}.{b}") as bridge,
            RemoteMultiplexer(url, subject="t.{a}.{b}") as remote,
        ):
            remote_streams = [remote.stream_filter(f, maxsize=4096) for f, _, _ in cases]
            await remote.subscribed()
            for msg in msgs:
                await broadcast(srv, '"text"' if msg == "text" else msg)
            await until(lambda: remote.stats().messages == len(msgs))
            assert bridge.stats().published == len(msgs)
            for i, (filters, msg, expected) in enumerate(cases):
                here, there = drain(local[i]), drain(remote_streams[i])
                assert there == here, f"case {i}: {filters!r}"
                assert [type(m) for m in there] == [type(m) for m in here]
                selected = repr(msg) in [repr(m) for m in here]
                assert selected is expected, f"case {i}: {filters!r} on {msg!r}"


async def test_an_upstream_loss_is_a_connection_gap_remotely(nats_server: NatsServer) -> None:
    async with (
        FeedServer() as srv,
        Multiplexer(srv.url + "/ws", backoff_base=0.01) as mux,
        Bridge(mux, nats_server.url, subject="md.{e}.{s}") as bridge,
        RemoteMultiplexer(nats_server.url, subject="md.{e}.{s}") as remote,
    ):
        gapped = remote.stream_filter({"e": "x"}, gaps="raise")
        plain = remote.stream_filter({"e": "x"})
        await remote.subscribed()
        await broadcast(srv, {"e": "x", "s": "A", "n": 1})
        with anyio.fail_after(DEADLINE):
            assert (await gapped.receive())["n"] == 1
        srv.drop()
        await until(lambda: mux.stats().reconnects == 1 and mux.state == "open")
        await broadcast(srv, {"e": "x", "s": "A", "n": 2})
        with anyio.fail_after(DEADLINE):
            with pytest.raises(ConnectionGap):
                await gapped.receive()
            assert (await gapped.receive())["n"] == 2
            assert [(await plain.receive())["n"] for _ in range(2)] == [1, 2]
        assert bridge.stats().gaps == 1
        assert remote.stats().gaps == 1


class _Recording(RemoteMultiplexer):
    """Records the JetStream sequence of every message it hands to its streams."""

    sequences: list[int]

    async def deliver(self, data: bytes) -> None:
        self.sequences.append(self.last_sequence)
        await super().deliver(data)


async def test_jetstream_consumer_resumes_after_a_server_restart(
    nats_server: NatsServer,
) -> None:
    total = 3000
    remote = _Recording(nats_server.url, jetstream="MD", heartbeat=0.25)
    remote.sequences = []
    async with (
        FeedServer(symbols=4) as srv,
        Multiplexer(srv.url + "/ws") as mux,
        Bridge(mux, nats_server.url, jetstream="MD", ack_timeout=1.0) as bridge,
        remote,
    ):
        stream = remote.stream_filter(maxsize=2 * total, gaps="raise")
        await remote.subscribed()
        srv.start_feed(rate=3000, count=total)
        await until(lambda: remote.stats().messages >= total // 3)
        nats_server.stop()
        nats_server.start()
        await srv.wait_feed_done_async()
        seqs: list[int] = []
        with anyio.fail_after(DEADLINE):
            while len(seqs) < total:
                seqs.append((await stream.receive())["seq"])  # no ConnectionGap
        # Every feed message once; in-flight ones published again after the
        # restart may be stored after their successors.
        assert sorted(seqs) == list(range(1, total + 1))
        # Every stream sequence delivered once, in order, across the restart.
        assert remote.sequences == list(range(1, total + 1))
        stats = remote.stats()
        assert stats.resumes >= 1 and stats.gaps == 0
        assert bridge.stats().errors == 0


class _Feed(Multiplexer):
    def _message_id(self, msg: Any) -> Any:
        return msg.get("seq")


async def test_two_bridges_one_killed_give_every_id_once(nats_server: NatsServer) -> None:
    total = 3000
    url = nats_server.url
    async with (
        FeedServer(symbols=4) as srv,
        _Feed(srv.url + "/ws") as m1,
        _Feed(srv.url + "/a") as m2,
    ):
        b1 = Bridge(m1, url, jetstream="MD", name="bridge 1")
        b2 = Bridge(m2, url, jetstream="MD", name="bridge 2")
        async with b2, RemoteMultiplexer(url, jetstream="MD", deliver="all") as remote:
            stream = remote.stream_filter(maxsize=2 * total, gaps="raise")
            await remote.subscribed()
            async with b1:
                srv.start_feed(rate=3000, count=total, min_clients=2)
                await until(lambda: b1.stats().published >= total // 3)
            # bridge 1 is gone mid-feed; bridge 2 carries on alone
            await srv.wait_feed_done_async()
            seqs: list[int] = []
            with anyio.fail_after(DEADLINE):
                while len(seqs) < total:
                    seqs.append((await stream.receive())["seq"])
            assert seqs == list(range(1, total + 1))
            await until(lambda: b2.stats().pending_acks == 0)
            one, two = b1.stats(), b2.stats()
            assert one.duplicates + two.duplicates > 0  # both published the same ids
            assert one.acked - one.duplicates + two.acked - two.duplicates == total
            assert remote.stats().gaps == 0


async def test_a_slow_remote_stream_lags_and_slows_nobody(nats_server: NatsServer) -> None:
    total = 500
    async with (
        FeedServer(symbols=2) as srv,
        Multiplexer(srv.url + "/ws") as mux,
        Bridge(mux, nats_server.url) as bridge,
        RemoteMultiplexer(nats_server.url) as remote,
    ):
        slow = remote.stream_filter(maxsize=10)
        fast = remote.stream_filter(maxsize=total)
        await remote.subscribed()
        srv.start_feed(count=total)
        got = []
        with anyio.fail_after(DEADLINE):
            while len(got) < total:
                got.append(await fast.receive())
        assert [m["seq"] for m in got] == list(range(1, total + 1))
        with pytest.raises(StreamLagged) as lag:
            slow.receive_nowait()
        assert lag.value.count == total - 10
        assert [m["seq"] for m in drain(slow)] == list(range(total - 9, total + 1))
        assert slow.statistics().dropped == total - 10
        assert remote.stats().drops == total - 10
        assert bridge.stats().lagged == 0 and bridge.stats().gaps == 0


async def test_credentials_in_the_url_never_reach_the_logs(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cretPassw0rd"
    server = NatsServer(tmp_path, user="wsmuxuser", password=secret)
    server.start()
    caplog.set_level(logging.DEBUG)
    try:
        async with FeedServer() as srv, Multiplexer(srv.url + "/ws") as mux:
            bridge = Bridge(mux, server.url, jetstream="MD")
            async with bridge, RemoteMultiplexer(server.url, jetstream="MD") as remote:
                stream = remote.stream_filter()
                await remote.subscribed()
                await broadcast(srv, {"e": "x", "s": "A"})
                with anyio.fail_after(DEADLINE):
                    await stream.receive()
                shown = [repr(bridge), repr(remote), str(bridge.stats()), str(remote.stats())]
            bad = server.url.replace(secret, secret + "x")
            with pytest.raises(ConnectionError) as refused:
                async with RemoteMultiplexer(bad, connect_options={"max_reconnect_attempts": 0}):
                    pass
            shown.append(str(refused.value))
    finally:
        server.stop()
    text = caplog.text + "\n".join(shown)
    assert "127.0.0.1" in text
    assert secret not in text and "wsmuxuser" not in text


async def test_streams_opened_mid_feed_disturb_no_other_stream(nats_server: NatsServer) -> None:
    """A new stream changes the subscriptions (a new JetStream consumer from the
    last sequence): the streams already open see every message once, in order."""
    total = 2000
    url = nats_server.url
    async with (
        FeedServer(symbols=4) as srv,
        Multiplexer(srv.url + "/ws") as mux,
        Bridge(mux, url, jetstream="MD"),
        RemoteMultiplexer(url, jetstream="MD", heartbeat=0.25) as remote,
    ):
        here = mux.stream_filter({"s": "SYM1"}, maxsize=total)
        first = remote.stream_filter({"s": "SYM1"}, maxsize=total, gaps="raise")
        await remote.subscribed()
        srv.start_feed(rate=4000, count=total)
        late: list[Stream] = []
        for symbol in ("SYM2", "SYM3"):
            await until(lambda: remote.stats().messages >= total // 8 * (len(late) + 1))
            late.append(remote.stream_filter({"s": symbol}, maxsize=total))
            await remote.subscribed()
        await srv.wait_feed_done_async()
        await until(lambda: first.statistics().buffered == here.statistics().buffered)
        assert [m["seq"] for m in drain(first)] == [m["seq"] for m in drain(here)]
        assert remote.stats().resumes >= 2 and remote.stats().gaps == 0
        for stream in late:  # (what was left of the feed: maybe nothing, under load)
            got = [m["seq"] for m in drain(stream)]
            assert got == sorted(set(got))


async def test_core_nats_restart_is_a_gap_then_delivery_goes_on(nats_server: NatsServer) -> None:
    url = nats_server.url
    async with (
        FeedServer() as srv,
        Multiplexer(srv.url + "/ws") as mux,
        Bridge(mux, url) as bridge,
        RemoteMultiplexer(url) as remote,
    ):
        stream = remote.stream_filter({"e": "x"}, gaps="raise")
        await remote.subscribed()
        await broadcast(srv, {"e": "x", "s": "A", "n": 1})
        with anyio.move_on_after(DEADLINE):
            assert (await stream.receive())["n"] == 1
        b, r = bridge.stats(), remote.stats()
        assert stream.statistics().delivered == 1, (b.published, b.buffered, r.messages, r.gaps)
        nats_server.stop()
        nats_server.start()
        await until(lambda: remote.stats().gaps == 1)
        await remote.subscribed()
        n = 2
        with anyio.fail_after(DEADLINE):
            with pytest.raises(ConnectionGap):
                while True:  # published until the bridge is back too
                    await broadcast(srv, {"e": "x", "s": "A", "n": n})
                    n += 1
                    with anyio.move_on_after(0.1):
                        await stream.receive()
            assert (await stream.receive())["n"] > 1
        assert bridge.stats().published >= 2


@dataclass
class Trade:
    e: str
    s: str
    p: str


class _Typed(RemoteMultiplexer):
    def _parse_raw_data(self, raw: bytes) -> Any:  # type: ignore[override]
        msg = orjson.loads(raw)
        return Trade(msg["e"], msg["s"], msg["p"]) if msg.get("e") == "trade" else msg


async def test_listen_on_typed_messages(nats_server: NatsServer) -> None:
    url = nats_server.url
    async with (
        FeedServer() as srv,
        Multiplexer(srv.url + "/ws") as mux,
        Bridge(mux, url),
        _Typed(url) as remote,
    ):
        trades = remote.listen(Trade, {"s": "B", "p": lambda p: float(p) > 10})
        await remote.subscribed()
        assert remote.stats().subjects == ("md.*.B", "md._._")  # and the gap subject
        for s, p in (("A", "20"), ("B", "5"), ("B", "20")):
            await broadcast(srv, {"e": "trade", "s": s, "p": p})
        with anyio.fail_after(DEADLINE):
            assert await trades.receive() == Trade("trade", "B", "20")


async def test_jetstream_gap_only_when_the_stream_no_longer_holds_it(
    nats_server: NatsServer,
) -> None:
    url = nats_server.url
    async with (
        FeedServer(symbols=2) as srv,
        Multiplexer(srv.url + "/ws") as mux,
        Bridge(mux, url, jetstream=JetStreamConfig("MD", max_msgs=100)) as bridge,
    ):
        srv.start_feed(count=300)
        await until(lambda: bridge.stats().acked == 300)
        async with (
            RemoteMultiplexer(url, jetstream="MD", deliver=1) as trimmed,
            RemoteMultiplexer(url, jetstream="MD", deliver=250) as kept,
        ):
            lost = trimmed.stream_filter(maxsize=1000, gaps="raise")
            whole = kept.stream_filter(maxsize=1000, gaps="raise")
            with anyio.fail_after(DEADLINE):
                with pytest.raises(ConnectionGap):  # 1 to 200 are gone
                    await lost.receive()
                assert [(await lost.receive())["seq"] for _ in range(100)] == list(range(201, 301))
                assert [(await whole.receive())["seq"] for _ in range(51)] == list(
                    range(250, 301)
                )  # no gap: the stream still holds 250 on
            assert trimmed.stats().gaps == 1 and kept.stats().gaps == 0


async def test_nats_unreachable_at_start_fails_in_time_and_leaves_nothing() -> None:
    from _natsserver import free_port

    url = f"nats://127.0.0.1:{free_port()}"  # nobody listens
    async with FeedServer() as srv, Multiplexer(srv.url + "/ws") as mux:
        bridge = Bridge(mux, url, open_timeout=0.5)
        assert mux.stats().streams == 1
        with anyio.fail_after(DEADLINE), pytest.raises(ConnectionError, match="timed out"):
            async with bridge:
                pass
        assert mux.stats().streams == 0 and bridge.stats().state == "failed"
        with anyio.fail_after(DEADLINE), pytest.raises(ConnectionError):
            async with RemoteMultiplexer(url, open_timeout=0.5):
                pass


async def test_a_blocking_jetstream_reader_loses_nothing(nats_server: NatsServer) -> None:
    """A ``block`` stream read late holds the consumer back (heartbeats stop, the
    consumer is replaced from the last sequence): every message once, in order."""
    total = 1500
    url = nats_server.url
    async with (
        FeedServer(symbols=2) as srv,
        Multiplexer(srv.url + "/ws") as mux,
        Bridge(mux, url, jetstream="MD") as bridge,
        RemoteMultiplexer(url, jetstream="MD", heartbeat=0.1) as remote,
    ):
        stream = remote.stream_filter(maxsize=50, overflow="block", gaps="raise")
        await remote.subscribed()
        srv.start_feed(count=total)
        await until(lambda: bridge.stats().acked == total)
        await until(lambda: remote.stats().resumes >= 1)  # stalled, then replaced
        with anyio.fail_after(DEADLINE):
            seqs = [(await stream.receive())["seq"] for _ in range(total)]
        assert seqs == list(range(1, total + 1))
        assert remote.stats().gaps == 0
