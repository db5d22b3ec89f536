"""The metrics endpoint, scraped over HTTP and parsed with prometheus-client's own parser."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from typing import Any

import anyio
import anyio.to_thread
import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsmux import Multiplexer, run_in_thread
from wsmux.metrics import MetricsServer, WsmuxCollector, serve_metrics
from wsmux.testing import FeedServer

FAST = {"backoff_base": 0.02, "backoff_cap": 0.1, "open_timeout": 2.0, "close_timeout": 0.5}
N = 400

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        return reply.read().decode()


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(server: MetricsServer) -> Samples:
    return parse(await anyio.to_thread.run_sync(get, server.url))


COUNTERS = {
    "connects": "wsmux_connects_total",
    "reconnects": "wsmux_reconnects_total",
    "rotations": "wsmux_rotations_total",
    "disconnects": "wsmux_disconnects_total",
    "connect_errors": "wsmux_connect_errors_total",
    "messages": "wsmux_frames_total",
    "bytes": "wsmux_received_bytes_total",
    "parse_errors": "wsmux_parse_errors_total",
    "handler_errors": "wsmux_handler_errors_total",
    "filter_errors": "wsmux_filter_errors_total",
    "duplicates": "wsmux_duplicates_total",
    "stale": "wsmux_stale_total",
    "rotation_gaps": "wsmux_rotation_gaps_total",
    "drops": "wsmux_dropped_messages_total",
    "conflated": "wsmux_conflated_messages_total",
}


@pytest.mark.anyio
async def test_scraped_counters_equal_stats() -> None:
    with FeedServer(symbols=4, kinds=("trade",)) as srv:
        mux = Multiplexer(srv.url, name="feed", event_time="E", **FAST)
        everything = mux.stream_filter(name="all", maxsize=N + 10)
        lagging = mux.stream_filter(name="small", maxsize=10, overflow="drop_oldest")
        mux.stream_filter(name="tickers", overflow="conflate", key="s")
        mux.add_handler(lambda m: 1 / 0 if m["seq"] == 7 else None)  # one handler error
        srv.start_feed(count=N, min_clients=1)
        async with mux, serve_metrics(mux) as server:
            assert server.url.startswith("http://127.0.0.1:")
            with anyio.fail_after(20):
                for _ in range(N):
                    await everything.receive()
                await lagging.receive()
            samples = await scrape(server)
            stats = mux.stats()
        for attr, name in COUNTERS.items():
            assert value(samples, name, mux="feed") == getattr(stats, attr), attr
        assert stats.messages == N and stats.handler_errors == 1
        assert stats.drops > 0 and stats.conflated == N - 4
        assert value(samples, "wsmux_streams", mux="feed") == stats.streams
        assert value(samples, "wsmux_up", mux="feed") == 1
        assert value(samples, "wsmux_state", mux="feed", state="open") == 1
        assert value(samples, "wsmux_state", mux="feed", state="closed") == 0
        assert value(samples, "wsmux_last_message_timestamp_seconds", mux="feed") == (
            stats.last_message_at
        )
        for name, st in stats.named_streams.items():
            labels = {"mux": "feed", "stream": name}
            assert value(samples, "wsmux_stream_delivered_total", **labels) == st.delivered
            assert value(samples, "wsmux_stream_dropped_total", **labels) == st.dropped
            assert value(samples, "wsmux_stream_conflated_total", **labels) == st.conflated
            assert value(samples, "wsmux_stream_buffered", **labels) == st.buffered
            assert value(samples, "wsmux_stream_peak", **labels) == st.peak
            assert st.latency is not None
            hist = "wsmux_stream_receipt_to_consumer_seconds"
            assert value(samples, f"{hist}_count", **labels) == st.latency.count
            assert value(samples, f"{hist}_sum", **labels) == pytest.approx(st.latency.sum)
        assert set(stats.named_streams) == {"all", "small", "tickers"}
        lat = stats.latency
        assert lat is not None and lat.count == N
        hist = "wsmux_exchange_to_receipt_seconds"
        assert value(samples, f"{hist}_count", mux="feed") == N
        assert value(samples, f"{hist}_sum", mux="feed") == pytest.approx(lat.sum)
        assert value(samples, f"{hist}_bucket", mux="feed", le="+Inf") == N
        for bound, count in lat.buckets[:-1]:
            assert value(samples, f"{hist}_bucket", mux="feed", le=repr(bound)) == count


class _Pool:
    """Shaped like wsmux's pool as the exporter sees it: stats() and connections."""

    def __init__(self, conns: list[Multiplexer]) -> None:
        self.connections = conns

    def stats(self) -> Any:
        first = self.connections[0].stats()
        total = sum(c.stats().messages for c in self.connections)
        return first._replace(name="pool", messages=total, named_streams={})


@pytest.mark.anyio
async def test_a_pool_is_labelled_by_connection() -> None:
    with FeedServer(symbols=2) as srv:
        a = Multiplexer(srv.url, name="conn", **FAST)
        b = Multiplexer(srv.url, name="conn", **FAST)  # the same name: numbered
        pool = _Pool([a, b])
        async with a, b, serve_metrics(pool, a) as server:
            srv.broadcast({"e": "hello"})
            with anyio.fail_after(10):
                while a.stats().messages < 1 or b.stats().messages < 1:
                    await anyio.sleep(0.01)
            samples = await scrape(server)
        assert value(samples, "wsmux_frames_total", mux="pool") == 2
        assert value(samples, "wsmux_connection_frames_total", mux="pool", connection="conn") == 1
        assert value(samples, "wsmux_connection_up", mux="pool", connection="conn #2") == 1
        assert value(samples, "wsmux_frames_total", mux="conn") == 1


def test_a_thread_multiplexer_from_plain_code() -> None:
    with FeedServer(symbols=2) as srv, run_in_thread(Multiplexer(srv.url, name="t", **FAST)) as t:
        stream = t.stream_filter(timeout=10)
        srv.start_feed(count=20)
        for _ in range(20):
            stream.receive()
        with serve_metrics(t, port=0) as server:
            samples = parse(get(server.url))
            assert value(samples, "wsmux_frames_total", mux="t") == t.stats().messages == 20
            with pytest.raises(urllib.error.HTTPError) as info:
                get(server.url.replace("/metrics", "/nothing"))
            assert info.value.code == 404
            info.value.close()
        server.close()  # twice: harmless
        # Closed: the port no longer answers, and the thread was joined (conftest).
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
            pass


@pytest.mark.anyio
async def test_a_failing_source_answers_503_and_closing_on_the_loop_is_refused() -> None:
    class Broken:
        def stats(self) -> Any:
            raise RuntimeError("no stats today")

    server = serve_metrics(Broken())
    async with server:
        with pytest.raises(urllib.error.HTTPError) as info:
            await anyio.to_thread.run_sync(get, server.url)
        assert info.value.code == 503
        info.value.close()
        with pytest.raises(RuntimeError, match="aclose"):
            server.close()
    with pytest.raises(TypeError, match="stats"):
        WsmuxCollector(object())


def test_a_silent_client_does_not_hold_the_server() -> None:
    # Connected and silent: dropped after a short timeout, so the scrape
    # behind it is answered (the server answers one client at a time).
    server = serve_metrics()
    with server, socket.create_connection(("127.0.0.1", server.port), 5) as silent:
        silent.sendall(b"GET /met")
        assert parse(get(server.url)) == {}
