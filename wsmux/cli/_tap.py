"""``wsmux tap URL``: print the messages a filter selects as JSON lines.

The multiplexer runs in a thread (:func:`wsmux.run_in_thread`); the main
thread reads a :class:`wsmux.ThreadStream` and writes stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Hashable, Iterator
from typing import IO, Any

import anyio
import orjson

from .. import ConnectionGap, Multiplexer, StreamLagged, ThreadStream, WsmuxError, run_in_thread
from .._log import show_url
from ._common import (
    DEFAULT_RETRIES,
    add_feed_arguments,
    add_metrics_options,
    positive_float,
    positive_int,
    quiet_broken_pipe,
    serving_metrics,
    setup_logging,
    stats_line,
    status,
)
from ._nats_tap import add_arguments as add_nats_arguments
from ._nats_tap import nats_tap, tap_url

__all__ = ["DEFAULT_RETRIES", "add_parser"]


def add_parser(sub: Any) -> None:
    """Add the ``tap`` subcommand.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    tap = sub.add_parser(
        "tap",
        help="print the messages of a websocket as JSON lines",
        description="Connect to URL (reconnecting as needed), send the --send messages after"
        " each connect, and print the messages the filters select as JSON lines on stdout."
        " Status changes go to stderr. Stops on Ctrl-C or after --count messages (exit 0);"
        " exits 1 when connecting fails for good: at once for a refused handshake (HTTP 401,"
        " 403, other 4xx) or a bad URL, after --retries failed attempts in a row otherwise"
        " (a refused or silent port).",
        epilog='example: wsmux tap wss://fstream.binance.com/ws -f e=aggTrade --send \'{"method":'
        ' "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}\' --count 5',
    )
    tap.add_argument(
        "url",
        type=tap_url,
        metavar="URL",
        help="a ws:// or wss:// URL, or nats://HOST:PORT/SUBJECT",
    )
    add_feed_arguments(tap, verb="keep")
    tap.add_argument("--count", type=positive_int, metavar="N", help="stop after N messages")
    tap.add_argument(
        "--rotate-every",
        type=positive_float,
        metavar="S",
        help="replace the connection every S seconds, with no gap",
    )
    tap.add_argument(
        "--stats",
        action="store_true",
        help="print a line of counters and latencies to stderr every second, and at the end",
    )
    tap.add_argument(
        "--event-time",
        metavar="FIELD",
        help="the field carrying each message's exchange time in epoch milliseconds (Binance:"
        " E): --stats and the metrics then show exchange-to-receipt latency",
    )
    add_metrics_options(tap)
    tap.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    add_nats_arguments(tap)
    tap.set_defaults(func=_tap)


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
        status(f"{what} {show_url(self.url)}")
        for msg in self._sends:
            await ws.send(orjson.dumps(msg).decode())

    async def _when2create_new_ws(self) -> None:
        if self._rotate_every is None:
            await anyio.sleep_forever()
        else:
            await anyio.sleep(self._rotate_every)

    def _message_id(self, msg: Any) -> Hashable | None:
        # tap knows nothing of the feed: a message equal to one printed during
        # a rotation's overlap is taken for its repeat (called only then).
        try:
            return orjson.dumps(msg, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return None


def _tap(args: argparse.Namespace) -> int:
    if not args.url.startswith(("ws://", "wss://")):
        return nats_tap(args)
    items = dict(args.items)
    filters: list[dict[str, Any]] | None
    if args.filter is not None:
        filters = [{**clause, **items} for clause in args.filter]
    else:
        filters = [items] if items else None
    undo = setup_logging(args.verbose)
    mux = _TapMux(
        args.url,
        args.send,
        args.rotate_every,
        max_attempts=args.retries or None,
        event_time=args.event_time,
    )
    out = sys.stdout
    count = 0
    try:
        # Opened before the start: misses nothing. Named, for the metrics.
        raw = mux.stream_filter(filters, maxsize=65536, name="tap", latency=args.stats or None)
        with (
            run_in_thread(mux, wait=False) as t,
            serving_metrics(args, t),
            _stats_lines(t, args.stats) as tick,
        ):
            count = _print_messages(ThreadStream(t, raw), out, args.count, tick)
    except KeyboardInterrupt:
        status("interrupted")
    except BrokenPipeError:
        quiet_broken_pipe()
    except WsmuxError as exc:
        status(f"error: {exc}")
        return 1
    finally:
        undo()
    if args.count is not None and count < args.count:
        status(f"stopped after {count} message(s)")
    return 0


@contextlib.contextmanager
def _stats_lines(t: Any, enabled: bool) -> Iterator[Any]:
    """Yield ``tick()``: prints a stats line when a second has passed (and at the end)."""
    if not enabled:
        yield None
        return
    last = [time.monotonic(), 0]

    def tick() -> float:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            stats = t.stats()
            rate = (stats.messages - last[1]) / (now - last[0])
            status(stats_line(stats, rate))
            last[:] = [now, stats.messages]
        return max(0.01, last[0] + 1.0 - now)

    yield tick
    if t.running:
        status(stats_line(t.stats(), None))


def _print_messages(stream: ThreadStream, out: IO[str], limit: int | None, tick: Any = None) -> int:
    count = 0
    while limit is None or count < limit:
        try:
            try:
                msg = stream.receive_nowait()
            except anyio.WouldBlock:
                out.flush()  # flush once per burst, not per line
                if tick is None:
                    msg = stream.receive()
                else:
                    try:
                        msg = stream.receive(timeout=tick())
                    except TimeoutError:
                        continue
        except StreamLagged as exc:
            status(f"too slow: {exc.count} message(s) dropped")
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
