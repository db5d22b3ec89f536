"""``wsmux demo``: a simulated exchange session with many consumers and a live status line.

The embedded :class:`~wsmux.testing.FeedServer` plays the exchange: market
data with order books kept in sync from its REST snapshots
(:class:`~wsmux.cli.binance.OrderBook`, a :class:`wsmux.OrderBook`),
and a user-data stream whose listen key keeps expiring
(:class:`~wsmux.cli.binance.BinanceFapiUserData`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import IO, Any

import anyio

from .. import Multiplexer, Recorder, Stream, StreamLagged
from ._common import (
    add_metrics_options,
    metrics_server,
    positive_float,
    positive_int,
    setup_logging,
    status,
)
from .binance import BinanceFapiUserData, OrderBook

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add the ``demo`` subcommand.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    demo = sub.add_parser(
        "demo",
        help="run a simulated exchange and many consumers, with a live status line",
        description="Start the embedded FeedServer as a simulated exchange (many symbols,"
        " depth diffs with sequence numbers, a user-data stream whose listen key expires every"
        " few seconds, a random disconnect now and then) and a demo adapter with many"
        " concurrent consumers. Shows a status line each second. No internet needed: the"
        " simulated exchange listens on 127.0.0.1 only.",
    )
    demo.add_argument(
        "--seconds",
        type=positive_float,
        metavar="S",
        help="stop after S seconds (default: Ctrl-C)",
    )
    demo.add_argument("--symbols", type=positive_int, default=12, help="symbols (default 12)")
    demo.add_argument(
        "--rate", type=positive_float, default=2000.0, help="market messages/s (default 2000)"
    )
    demo.add_argument(
        "--key-ttl",
        type=positive_float,
        default=3.0,
        metavar="S",
        help="listen key lifetime in seconds (default 3)",
    )
    demo.add_argument(
        "--drop-every",
        type=positive_float,
        default=7.0,
        metavar="S",
        help="drop a random connection about every S seconds (default 7)",
    )
    demo.add_argument(
        "--record",
        metavar="FILE",
        help="record the market connection's raw frames to FILE (.zst: compressed), for"
        " wsmux replay",
    )
    add_metrics_options(demo)
    demo.add_argument("-v", "--verbose", action="store_true", help="log wsmux warnings too")
    demo.set_defaults(func=_demo)


async def _count_symbol(stream: Stream, counts: dict[str, int], symbol: str) -> None:
    while True:
        try:
            async for _ in stream:
                counts[symbol] += 1
            return
        except StreamLagged:
            continue


class _Line:
    """The live status line: redrawn with \\r on a terminal, plain lines otherwise."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.tty = out.isatty()
        self.width = 0

    def show(self, text: str) -> None:
        if self.tty:
            pad = " " * max(0, self.width - len(text))
            self.out.write(f"\r{text}{pad}")
            self.width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty and self.width:
            self.out.write("\n")
            self.out.flush()


async def _run_demo(
    args: argparse.Namespace, line: _Line, recorder: Recorder | None = None
) -> dict[str, Any]:
    from ..testing import FeedServer

    symbols = [f"SYM{i}" for i in range(args.symbols)]
    fast: dict[str, Any] = {"backoff_base": 0.1, "backoff_cap": 1.0, "close_timeout": 1.0}
    async with FeedServer(symbols=symbols, listen_key_ttl=args.key_ttl, seed=7) as srv:
        srv.start_feed(rate=args.rate)
        srv.schedule("drop", every=args.drop_every, jitter=args.drop_every / 3)
        # "E" is the server's send time in ms: exchange-to-receipt latency.
        market = Multiplexer(
            f"{srv.url}/stream", name="market", event_time="E", recorder=recorder, **fast
        )
        user = BinanceFapiUserData(
            srv.url, srv.http_url, period=60.0, name="user", event_time="E", **fast
        )
        counts = dict.fromkeys(symbols, 0)
        books = {s: OrderBook(market, s, srv.http_url, futures=True) for s in symbols[:4]}
        totals = {"volume": 0.0, "big": 0, "user": 0, "sent": 0}

        def on_trade(msg: dict[str, Any]) -> None:
            totals["volume"] += float(msg["q"])

        async def on_big_trade(msg: dict[str, Any]) -> None:
            totals["big"] += 1

        def on_user(msg: dict[str, Any]) -> None:
            totals["user"] += 1

        market.add_handler(on_trade, {"e": "trade"})
        market.add_handler(on_big_trade, {"e": "trade", "q": lambda q: float(q) > 1.9})
        user.add_handler(on_user, {"e": "ORDER_TRADE_UPDATE"})
        started = time.monotonic()
        server = None if args.metrics_port is None else metrics_server(args, market, user)
        async with (
            market,
            user,
            server or contextlib.nullcontext(),
            anyio.create_task_group() as tg,
        ):
            if server is not None:
                status(f"metrics at {server.url}")
            for symbol in symbols:
                trades = market.stream_filter({"e": "trade", "s": symbol}, name=symbol)
                tg.start_soon(_count_symbol, trades, counts, symbol)
            for book in books.values():
                tg.start_soon(book.run)
            tg.start_soon(_user_events, srv, totals)
            with anyio.CancelScope() as main_scope:
                tg.start_soon(_on_sigint, main_scope)
                with anyio.move_on_after(args.seconds if args.seconds else float("inf")):
                    await _status_loop(market, user, books, totals, line)
            # Read while the streams are open: exiting closes them all.
            streams = market.stats().streams + user.stats().streams
            tg.cancel_scope.cancel()
        elapsed = time.monotonic() - started
        m, u = market.stats(), user.stats()
        return {
            "seconds": elapsed,
            "messages": m.messages + u.messages,
            "trades": sum(counts.values()),
            "volume": totals["volume"],
            "big": totals["big"],
            "user_events": totals["user"],
            "user_sent": totals["sent"],
            "rotations": u.rotations,
            "reconnects": m.reconnects + u.reconnects,
            "drops": m.drops + u.drops,
            "resyncs": sum(b.statistics().resyncs for b in books.values()),
            "books": len(books),
            "streams": streams,
            "latency": m.latency,
        }


async def _on_sigint(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _user_events(srv: Any, totals: dict[str, Any]) -> None:
    i = 0
    while True:
        await anyio.sleep(0.1)
        for key in srv.listen_keys:
            i += 1
            event = {"e": "ORDER_TRADE_UPDATE", "E": int(time.time() * 1000), "i": i}
            totals["sent"] += srv.send_user_event(key, event) > 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2g}ms"


def _latency_words(stats: Any) -> str:
    """Exchange-to-receipt percentiles, and the slowest stream's receipt-to-consumer p99."""
    lat = stats.latency
    if lat is None or not lat.count:
        return ""
    waits = [s.latency.p99 for s in stats.named_streams.values() if s.latency and s.latency.count]
    consumer = f", consumers p99 <= {_ms(max(waits))}" if waits else ""
    return f"  latency p50 {_ms(lat.p50)} p99 {_ms(lat.p99)}{consumer}"


async def _status_loop(
    market: Multiplexer,
    user: Multiplexer,
    books: dict[str, OrderBook],
    totals: dict[str, Any],
    line: _Line,
) -> None:
    last = market.stats().messages + user.stats().messages
    last_t = time.monotonic()
    while True:
        await anyio.sleep(1.0)
        m, u = market.stats(), user.stats()
        now, total = time.monotonic(), m.messages + u.messages
        rate = (total - last) / max(1e-6, now - last_t)
        last, last_t = total, now
        synced = sum(1 for b in books.values() if b.synced)
        line.show(
            f"{time.strftime('%H:%M:%S')}  {rate:7.0f} msg/s  streams {m.streams + u.streams}"
            f"  rotations {u.rotations}  reconnects {m.reconnects + u.reconnects}"
            f"  lag drops {m.drops + u.drops}  books {synced}/{len(books)} in sync"
            f" (resyncs {sum(b.statistics().resyncs for b in books.values())})"
            f"  user events {totals['user']}{_latency_words(m)}"
        )


def _demo(args: argparse.Namespace) -> int:
    undo = setup_logging(args.verbose) if args.verbose else (lambda: None)
    line = _Line(sys.stderr)
    status("demo: a simulated exchange on 127.0.0.1, Ctrl-C to stop")
    recorder: Recorder | None = None
    try:
        if args.record:
            recorder = Recorder(args.record)
        summary = anyio.run(_run_demo, args, line, recorder)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop
        line.done()
        status("interrupted")
        return 0
    except (ImportError, OSError) as exc:  # no zstandard, the metrics port is taken, say
        line.done()
        status(f"error: {exc}")
        return 1
    finally:
        undo()
        if recorder is not None:
            recorder.close()
            status(f"recorded {recorder.frames} frame(s) to {args.record}")
    line.done()
    status(summary_line(summary))
    return 0


def _n(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def summary_line(s: dict[str, Any]) -> str:
    """The closing line of the demo, from what :func:`_run_demo` returned."""
    return (
        f"done in {s['seconds']:.1f}s: {_n(s['messages'], 'message')}"
        f" ({s['messages'] / max(s['seconds'], 1e-6):.0f}/s), {_n(s['trades'], 'trade')}"
        f" (volume {s['volume']:.1f}, {s['big']} big) on {_n(s['streams'], 'stream')},"
        f" {_n(s['user_events'], 'user event')}, {_n(s['rotations'], 'rotation')},"
        f" {_n(s['reconnects'], 'reconnect')}, {_n(s['drops'], 'lag drop')},"
        f" {_n(s['resyncs'], 'book resync')}"
        + (
            f"; exchange->receipt p50 {_ms(s['latency'].p50)} p99 {_ms(s['latency'].p99)}"
            if s.get("latency") is not None and s["latency"].count
            else ""
        )
    )
