"""The ``tap`` and ``demo`` commands of the ``wsmux`` command line.

``tap`` runs a multiplexer in a thread (:func:`wsmux.run_in_thread`) and
prints the messages a filter selects as JSON lines. ``demo`` plays a whole
exchange session against the embedded :class:`~wsmux.testing.FeedServer`:
market data with order books kept in sync, and a user-data stream whose
listen key keeps expiring, with a live status line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import IO, Any

import anyio
import anyio.abc
import orjson

from .._exceptions import ConnectionGap, StreamLagged, WsmuxError
from .._log import redact_url
from .._mux import Multiplexer
from ..fanout._stream import Stream
from ..threads._mux_thread import ThreadStream, run_in_thread

__all__ = ["add_parsers"]


def add_parsers(sub: Any) -> None:
    """Add the ``tap`` and ``demo`` subcommands.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    tap = sub.add_parser(
        "tap",
        help="print the messages of a websocket as JSON lines",
        description="Connect to URL (reconnecting as needed), send the --send messages after"
        " each connect, and print the messages the filters select as JSON lines on stdout."
        " Status changes go to stderr. Stops on Ctrl-C or after --count messages.",
        epilog='example: wsmux tap wss://fstream.binance.com/ws -f e=aggTrade --send \'{"method":'
        ' "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}\' --count 5',
    )
    tap.add_argument("url", type=_ws_url, metavar="URL", help="a ws:// or wss:// URL")
    tap.add_argument(
        "-f",
        dest="items",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="keep messages whose KEY equals VALUE (JSON, or a plain string); repeat to AND",
    )
    tap.add_argument(
        "--filter",
        type=_json_filter,
        metavar="JSON",
        help="a filter as JSON: an object (AND) or a list of objects (OR),"
        ' e.g. \'[{"e": "trade"}]\'',
    )
    tap.add_argument(
        "--send",
        action="append",
        default=[],
        type=_json_value,
        metavar="JSON",
        help="a message to send after each connect (repeatable)",
    )
    tap.add_argument("--count", type=_positive_int, metavar="N", help="stop after N messages")
    tap.add_argument(
        "--rotate-every",
        type=_positive_float,
        metavar="S",
        help="replace the connection every S seconds, with no gap",
    )
    tap.add_argument(
        "--retries",
        type=_positive_int,
        metavar="N",
        help="give up after N failed connection attempts in a row (default: never)",
    )
    tap.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    tap.set_defaults(func=_tap)

    demo = sub.add_parser(
        "demo",
        help="run a simulated exchange and many consumers, with a live status line",
        description="Start the embedded FeedServer as a simulated exchange (many symbols,"
        " depth diffs with sequence numbers, a user-data stream whose listen key expires every"
        " few seconds, a random disconnect now and then) and a demo adapter with many"
        " concurrent consumers. Shows a status line each second. No internet needed.",
    )
    demo.add_argument(
        "--seconds",
        type=_positive_float,
        metavar="S",
        help="stop after S seconds (default: Ctrl-C)",
    )
    demo.add_argument("--symbols", type=_positive_int, default=12, help="symbols (default 12)")
    demo.add_argument(
        "--rate", type=_positive_float, default=2000.0, help="market messages/s (default 2000)"
    )
    demo.add_argument(
        "--key-ttl",
        type=_positive_float,
        default=3.0,
        metavar="S",
        help="listen key lifetime in seconds (default 3)",
    )
    demo.add_argument(
        "--drop-every",
        type=_positive_float,
        default=7.0,
        metavar="S",
        help="drop a random connection about every S seconds (default 7)",
    )
    demo.add_argument("-v", "--verbose", action="store_true", help="log wsmux warnings too")
    demo.set_defaults(func=_demo)


# -- argument types ----------------------------------------------------------


def _ws_url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        ok = parts.scheme in ("ws", "wss") and bool(parts.hostname)
        if ok:
            parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"invalid URL {redact_url(text)!r}: expected ws://host[:port]/path or wss://..."
        )
    return text


def _json_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {exc}") from None


def _json_filter(text: str) -> list[dict[str, Any]]:
    value = _json_value(text)
    clauses = [value] if isinstance(value, dict) else value
    if not isinstance(clauses, list) or not all(isinstance(c, dict) for c in clauses):
        raise argparse.ArgumentTypeError(
            f"invalid filter {text!r}: expected a JSON object or a list of objects"
        )
    return clauses


def _key_value(text: str) -> tuple[str, Any]:
    key, eq, raw = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"invalid filter item {text!r}: expected KEY=VALUE")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = raw  # a plain string: -f s=BTCUSDT
    if isinstance(value, dict | list):
        value = raw if not raw.strip().startswith(("{", "[")) else value
    return key, value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


# -- output ------------------------------------------------------------------


def _status(text: str) -> None:
    print(f"wsmux: {text}", file=sys.stderr, flush=True)


class _StderrFilter(logging.Filter):
    """Drop the multiplexer's own 'failed' line: the command prints the error itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.funcName == "_supervise")


def _setup_logging(verbose: bool) -> Callable[[], None]:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wsmux: %(message)s"))
    handler.addFilter(_StderrFilter())
    logger = logging.getLogger("wsmux")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO if verbose else logging.WARNING)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    return undo


def _quiet_broken_pipe() -> None:
    # The reader of stdout went away (| head): exit quietly, without Python
    # complaining about the flush at shutdown.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- tap ---------------------------------------------------------------------


class _TapMux(Multiplexer):
    def __init__(self, url: str, sends: list[Any], rotate_every: float | None, **kw: Any):
        super().__init__(url, **kw)
        self._sends = sends
        self._rotate_every = rotate_every
        self._opened = 0

    async def _on_connect(self, ws: Any) -> None:
        self._opened += 1
        if self._opened == 1:
            what = "connected to"
        elif self.state == "rotating":
            what = "rotated to a new connection to"
        else:
            what = "reconnected to"
        _status(f"{what} {self._redacted}")
        for msg in self._sends:
            await ws.send(orjson.dumps(msg).decode())

    async def _when2create_new_ws(self) -> None:
        if self._rotate_every is None:
            await anyio.sleep_forever()
        else:
            await anyio.sleep(self._rotate_every)


def _tap(args: argparse.Namespace) -> int:
    items = dict(args.items)
    filters: list[dict[str, Any]] | None
    if args.filter is not None:
        filters = [{**clause, **items} for clause in args.filter]
    else:
        filters = [items] if items else None
    undo = _setup_logging(args.verbose)
    mux = _TapMux(args.url, args.send, args.rotate_every, max_attempts=args.retries)
    out = sys.stdout
    count = 0
    try:
        raw = mux.stream_filter(filters, maxsize=65536)  # before start: misses nothing
        with run_in_thread(mux, wait=False) as t:
            count = _print_messages(ThreadStream(t, raw), out, args.count)
    except KeyboardInterrupt:
        _status("interrupted")
    except BrokenPipeError:
        _quiet_broken_pipe()
    except WsmuxError as exc:
        _status(f"error: {exc}")
        return 1
    finally:
        undo()
    if args.count is not None and count < args.count:
        _status(f"stopped after {count} message(s)")
    return 0


def _print_messages(stream: ThreadStream, out: IO[str], limit: int | None) -> int:
    count = 0
    while limit is None or count < limit:
        try:
            try:
                msg = stream.receive_nowait()
            except anyio.WouldBlock:
                out.flush()  # flush once per burst, not per line
                msg = stream.receive()
        except StreamLagged as exc:
            _status(f"too slow: {exc.count} message(s) dropped")
            continue
        except (anyio.EndOfStream, WsmuxError) as exc:
            if isinstance(exc, anyio.EndOfStream | ConnectionGap):
                break
            raise
        out.write(orjson.dumps(msg, default=str).decode())
        out.write("\n")
        count += 1
    out.flush()
    return count


# -- demo --------------------------------------------------------------------


def _post_listen_key(http_url: str) -> str:
    request = urllib.request.Request(f"{http_url}/fapi/v1/listenKey", method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        key: str = orjson.loads(response.read())["listenKey"]
        return key


class DemoUserData(Multiplexer):
    """A Binance-style user-data adapter, as seed 004's BinanceFapiAsyncWs.

    Each connection gets a fresh listen key from the REST endpoint; the
    connection is rotated (with no gap) on ``listenKeyExpired`` or after
    ``period`` seconds, whichever comes first.
    """

    def __init__(self, ws_base: str, http_base: str, *, period: float = 3600.0, **kw: Any):
        super().__init__(ws_base, **kw)
        self._ws_base = ws_base
        self._http_base = http_base
        self._period = period

    async def _create_ws(self) -> Any:
        key = await anyio.to_thread.run_sync(_post_listen_key, self._http_base)
        self.url = f"{self._ws_base}/ws/{key}"
        return await super()._create_ws()

    async def _when2create_new_ws(self) -> None:
        async with self.stream_filter({"e": "listenKeyExpired"}, maxsize=4) as expired:
            with anyio.move_on_after(self._period):
                await expired.receive()

    def _message_id(self, msg: Any) -> Any:
        return msg.get("i") if isinstance(msg, dict) else None


class _Book:
    """An order book kept from depth diffs, checking ``pu`` against the last ``u``."""

    __slots__ = ("asks", "bids", "last_u", "resyncs", "updates")

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_u: int | None = None
        self.resyncs = 0
        self.updates = 0

    def resync(self) -> None:
        # A real client fetches a REST snapshot here; the demo exchange has
        # none, so the book restarts from the next diff.
        self.bids.clear()
        self.asks.clear()
        self.last_u = None
        self.resyncs += 1

    def apply(self, diff: dict[str, Any]) -> bool:
        if self.last_u is not None and diff["pu"] != self.last_u:
            return False
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for price, qty in levels:
                if float(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.last_u = diff["u"]
        self.updates += 1
        return True


async def _keep_book(stream: Stream, book: _Book) -> None:
    while True:
        try:
            async for diff in stream:
                if not book.apply(diff):
                    book.resync()
            return
        except (ConnectionGap, StreamLagged):
            book.resync()


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


async def _run_demo(args: argparse.Namespace, line: _Line) -> dict[str, Any]:
    from ..testing import FeedServer

    symbols = [f"SYM{i}" for i in range(args.symbols)]
    fast: dict[str, Any] = {"backoff_base": 0.1, "backoff_cap": 1.0, "close_timeout": 1.0}
    async with FeedServer(symbols=symbols, listen_key_ttl=args.key_ttl, seed=7) as srv:
        srv.start_feed(rate=args.rate)
        srv.schedule("drop", every=args.drop_every, jitter=args.drop_every / 3)
        market = Multiplexer(f"{srv.url}/stream", **fast)
        user = DemoUserData(srv.url, srv.http_url, period=60.0, **fast)
        counts = dict.fromkeys(symbols, 0)
        books = {s: _Book() for s in symbols[:4]}
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
        async with market, user, anyio.create_task_group() as tg:
            for symbol in symbols:
                trades = market.stream_filter({"e": "trade", "s": symbol}, name=symbol)
                tg.start_soon(_count_symbol, trades, counts, symbol)
            for symbol, book in books.items():
                diffs = market.stream_filter({"e": "depthUpdate", "s": symbol}, gaps="raise")
                tg.start_soon(_keep_book, diffs, book)
            tg.start_soon(_user_events, srv, totals)
            with anyio.CancelScope() as main_scope:
                tg.start_soon(_on_sigint, main_scope)
                with anyio.move_on_after(args.seconds if args.seconds else float("inf")):
                    await _status_loop(market, user, books, totals, line)
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
            "resyncs": sum(b.resyncs for b in books.values()),
            "books": len(books),
            "streams": m.streams + u.streams,
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


async def _status_loop(
    market: Multiplexer,
    user: Multiplexer,
    books: dict[str, _Book],
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
        synced = sum(1 for b in books.values() if b.last_u is not None)
        line.show(
            f"{time.strftime('%H:%M:%S')}  {rate:7.0f} msg/s  streams {m.streams + u.streams}"
            f"  rotations {u.rotations}  reconnects {m.reconnects + u.reconnects}"
            f"  lag drops {m.drops + u.drops}  books {synced}/{len(books)} in sync"
            f" (resyncs {sum(b.resyncs for b in books.values())})  user events {totals['user']}"
        )


def _demo(args: argparse.Namespace) -> int:
    undo = _setup_logging(args.verbose) if args.verbose else (lambda: None)
    line = _Line(sys.stderr)
    _status("demo: a simulated exchange on 127.0.0.1, Ctrl-C to stop")
    try:
        summary = anyio.run(_run_demo, args, line)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop
        line.done()
        _status("interrupted")
        return 0
    finally:
        undo()
    line.done()
    s = summary
    _status(
        f"done in {s['seconds']:.1f}s: {s['messages']} messages"
        f" ({s['messages'] / max(s['seconds'], 1e-6):.0f}/s), {s['trades']} trades"
        f" (volume {s['volume']:.1f}, {s['big']} big) on {s['streams']} streams,"
        f" {s['user_events']} user events, {s['rotations']} rotations,"
        f" {s['reconnects']} reconnects, {s['drops']} lag drops,"
        f" {s['resyncs']} book resyncs"
    )
    return 0
