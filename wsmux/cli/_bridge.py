"""``wsmux bridge URL --nats nats://HOST:PORT --subject TEMPLATE``: a feed onto NATS.

One multiplexer on URL (reconnecting, ``--send`` after each connect, as
``tap`` does) and a :class:`wsmux.Bridge` republishing the messages the
filters select; ``--jetstream NAME`` publishes into a JetStream stream with
``Nats-Msg-Id``. Runs on asyncio (nats-py) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from .. import Bridge, WsmuxError
from .._log import show_url
from ._common import (
    add_feed_arguments,
    positive_float,
    setup_logging,
    status,
    ws_url,
)
from ._nats_tap import filters_of, nats_url
from ._tap import _TapMux

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Add the ``bridge`` subcommand.

    Args:
        sub: The object ``ArgumentParser.add_subparsers`` returned.
    """
    cmd = sub.add_parser(
        "bridge",
        help="republish a websocket feed onto NATS subjects (core or JetStream)",
        description="Connect to URL (reconnecting as needed), send the --send messages after"
        " each connect, and publish the messages the filters select to NATS on the subject"
        " the template builds from their fields. With --jetstream NAME, publish into that"
        " JetStream stream (created if missing) with Nats-Msg-Id, so two bridges of one feed"
        " store each message once. An upstream loss is published as a gap marker. Runs until"
        " Ctrl-C (exit 0); exits 1 when the feed or NATS cannot be reached.",
        epilog="example: wsmux bridge wss://fstream.binance.com/ws --nats nats://127.0.0.1:4222"
        ' --subject \'md.binance.{e}.{s}\' --jetstream MD --send \'{"method": "SUBSCRIBE",'
        ' "params": ["btcusdt@aggTrade"], "id": 1}\'',
    )
    cmd.add_argument("url", type=ws_url, metavar="URL", help="a ws:// or wss:// URL")
    add_feed_arguments(cmd, verb="publish only")
    cmd.add_argument(
        "--nats",
        required=True,
        type=nats_url,
        metavar="NATS_URL",
        help="nats://[user:password@]host:port",
    )
    cmd.add_argument(
        "--subject",
        default="md.{e}.{s}",
        metavar="TEMPLATE",
        help="subject template, fields in braces (default: md.{e}.{s})",
    )
    cmd.add_argument("--jetstream", metavar="NAME", help="publish into this JetStream stream")
    cmd.add_argument(
        "--max-bytes",
        type=int,
        default=1 << 30,
        metavar="N",
        help="JetStream: size bound of the stream (default 1 GiB)",
    )
    cmd.add_argument(
        "--rotate-every",
        type=positive_float,
        metavar="S",
        help="replace the connection every S seconds, with no gap",
    )
    cmd.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    cmd.set_defaults(func=_bridge)


async def _run(args: argparse.Namespace) -> None:
    from .. import JetStreamConfig, SubjectTemplate

    template = SubjectTemplate(args.subject)
    js = JetStreamConfig(args.jetstream, max_bytes=args.max_bytes) if args.jetstream else None
    mux = _TapMux(args.url, args.send, args.rotate_every, max_attempts=args.retries or None)
    bridge = Bridge(mux, args.nats, subject=template, jetstream=js, filters=filters_of(args))
    mode = f"JetStream stream {args.jetstream!r}" if js else "core NATS"
    async with mux:
        status(
            f"bridging {show_url(args.url)} to {show_url(args.nats)} ({mode}),"
            f" subject {template.template}"
        )
        await bridge.run()


def _bridge(args: argparse.Namespace) -> int:
    undo = setup_logging(args.verbose)
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        status("interrupted")
    except (WsmuxError, ConnectionError, ValueError, OSError) as exc:
        status(f"error: {exc}")
        return 1
    finally:
        undo()
    return 0
