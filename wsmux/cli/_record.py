"""``wsmux record URL -o FILE``: write a websocket's raw frames to a recording.

The multiplexer runs with a :class:`wsmux.Recorder`; the format (JSON lines,
zstd when the name ends in ``.zst``) is described in ``docs/recording.md``.
``wsmux replay`` serves the file again.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

import anyio

from .. import Recorder, WsmuxError
from .._log import show_url
from ._common import (
    add_feed_arguments,
    positive_float,
    setup_logging,
    status,
    ws_url,
)
from ._tap import _TapMux

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add the ``record`` subcommand.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    rec = sub.add_parser(
        "record",
        help="record the raw frames of a websocket to a file, for wsmux replay",
        description="Connect to URL (reconnecting as needed), send the --send messages after"
        " each connect, and write every raw frame with its receive time and connection id,"
        " and the connections, rotations and gaps, to FILE as JSON lines (zstd-compressed"
        " when FILE ends in .zst, which needs pip install 'wsmux[record]'). Stops on Ctrl-C"
        " or after --duration seconds (exit 0); exits 1 when connecting fails for good.",
        epilog="example: wsmux record wss://fstream.binance.com/ws -o btc.jsonl.zst --send"
        ' \'{"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 1}\' --duration 3600',
    )
    rec.add_argument("url", type=ws_url, metavar="URL", help="a ws:// or wss:// URL")
    add_feed_arguments(rec, verb="record only")
    rec.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the recording (.zst: compressed)"
    )
    rec.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    rec.add_argument(
        "--proxy",
        metavar="URL",
        help="connect through this proxy (http://[user:pass@]host:port or socks5h://...);"
        " default: the environment's (https_proxy, all_proxy, no_proxy); 'none' for no proxy",
    )
    rec.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    rec.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    items = dict(args.items)
    filters: list[dict[str, Any]] | None
    if args.filter is not None:
        filters = [{**clause, **items} for clause in args.filter]
    else:
        filters = [items] if items else None
    undo = setup_logging(args.verbose)
    try:
        recorder = Recorder(args.output, filters=filters)
    except (ImportError, OSError) as exc:
        undo()
        status(f"error: {exc}")
        return 1
    try:
        with recorder:
            anyio.run(_run, args, recorder)
    except (WsmuxError, ValueError, ImportError) as exc:  # ValueError: a bad --proxy
        status(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        status("interrupted")
    finally:
        undo()
    skipped = f" ({recorder.skipped} filtered out)" if recorder.skipped else ""
    status(f"recorded {recorder.frames} frame(s){skipped} to {args.output}")
    return 0


async def _run(args: argparse.Namespace, recorder: Recorder) -> None:
    proxy: str | bool | None = True if args.proxy is None else args.proxy
    if proxy == "none":
        proxy = None
    mux = _TapMux(
        args.url,
        args.send,
        None,
        max_attempts=args.retries or None,
        recorder=recorder,
        proxy=proxy,
    )
    status(f"recording {show_url(args.url)} to {args.output}")
    error: WsmuxError | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_on_sigint, tg.cancel_scope)
        try:
            with anyio.move_on_after(args.duration if args.duration else float("inf")):
                await mux.run()
        except WsmuxError as exc:
            error = exc  # raised outside the task group, not wrapped in a group
        tg.cancel_scope.cancel()
    if error is not None:
        raise error


async def _on_sigint(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return
