"""``wsmux replay FILE``: serve a recording as a live websocket feed.

A :meth:`wsmux.testing.FeedServer.replay` server on 127.0.0.1 (unless
``--host`` says otherwise); the playback starts when the first client
connects, and the command ends once every frame was served.
"""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

import anyio

from ._common import nonnegative_int, setup_logging, status

__all__ = ["add_parser", "speed"]


def speed(text: str) -> float:
    """``--speed``: a factor > 0, or 0 / ``max`` for as fast as possible."""
    if text == "max":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'max', not {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Add the ``replay`` subcommand.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    rep = sub.add_parser(
        "replay",
        help="serve a recording (wsmux record) as a live websocket feed on 127.0.0.1",
        description="Serve the frames of FILE (a recording made by wsmux record or wsmux demo"
        " --record) to every client of ws://HOST:PORT/<any path>, in their recorded order and"
        " spacing divided by --speed. The playback starts when the first client connects; the"
        " command exits 0 once every frame was served (Ctrl-C stops it earlier). Listens on"
        " 127.0.0.1 only, unless --host says otherwise.",
        epilog="example: wsmux replay btc.jsonl.zst --port 8765 --speed 10"
        "  (then: wsmux tap ws://127.0.0.1:8765/ws)",
    )
    rep.add_argument("file", metavar="FILE", help="a recording (.zst: compressed)")
    rep.add_argument(
        "--port", type=nonnegative_int, default=0, help="TCP port (default 0: a free one, shown)"
    )
    rep.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every"
        " interface)",
    )
    rep.add_argument(
        "--speed",
        type=speed,
        default=1.0,
        metavar="X",
        help="1 is real time (default), 10 ten times faster, 0 or max as fast as possible",
    )
    rep.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    rep.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    from ..testing import FeedServer

    undo = setup_logging(args.verbose)
    try:
        server = FeedServer.replay(args.file, args.speed, host=args.host, port=args.port)
        replay = server.replaying
        if replay is None:  # replay() always sets it
            raise ValueError(f"{args.file}: not a replay")
        with server:
            how = "as fast as possible" if not args.speed else f"at {args.speed:g}x"
            status(
                f"replaying {args.file}: {replay.frames} frame(s) over {replay.duration:.1f}s,"
                f" {how}, on {server.url}/ (waiting for a client)"
            )
            started = time.monotonic()
            anyio.run(_wait, server)
            if replay.done:
                status(f"done: {replay.played} frame(s) served in {replay.elapsed or 0:.2f}s")
            else:
                status(f"stopped after {time.monotonic() - started:.1f}s, {replay.played} served")
    except (ValueError, OSError, ImportError) as exc:
        status(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        status("interrupted")
    finally:
        undo()
    return 0


async def _wait(server: Any) -> None:
    async with anyio.create_task_group() as tg:

        async def on_sigint() -> None:
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(on_sigint)
        await server.wait_until_async(lambda: server.replaying.done)
        tg.cancel_scope.cancel()
