"""``wsmux tap nats://HOST:PORT/SUBJECT``: print what a bridge publishes.

SUBJECT is the bridge's template (``md.binance.{e}.{s}``): the filters then
narrow the NATS subscription as remote streams do (a
:class:`wsmux.RemoteMultiplexer`), and ``--jetstream NAME`` reads the
JetStream stream (``--deliver all`` replays it). Runs on asyncio (nats-py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.parse
from typing import IO, Any

import orjson

from .. import ConnectionGap, RemoteMultiplexer, StreamLagged, SubjectTemplate, WsmuxError
from .._log import show_url
from ._common import setup_logging, status, ws_url

__all__ = ["add_arguments", "filters_of", "nats_tap", "nats_url", "tap_url"]


def nats_url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        ok = parts.scheme in ("nats", "tls") and bool(parts.hostname)
        if ok:
            parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"invalid NATS URL {show_url(text)!r}: expected nats://[user:password@]host[:port]"
        )
    return text


def tap_url(text: str) -> str:
    """The type of ``tap``'s URL: a websocket URL, or nats://HOST:PORT/SUBJECT."""
    if text.startswith(("nats://", "tls://")):
        nats_url(text)
        if not urllib.parse.urlsplit(text).path.strip("/"):
            raise argparse.ArgumentTypeError(
                f"invalid NATS URL {show_url(text)!r}: expected nats://host:port/SUBJECT"
                " (the bridge's subject template, such as md.binance.{e}.{s})"
            )
        try:
            SubjectTemplate(urllib.parse.unquote(urllib.parse.urlsplit(text).path.strip("/")))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text
    return ws_url(text)


def add_arguments(tap: Any) -> None:
    """Add the options that only ``tap nats://...`` uses.

    Args:
        tap: The ``tap`` subparser.
    """
    tap.add_argument("--jetstream", metavar="NAME", help="nats:// URLs: read this JetStream stream")
    tap.add_argument(
        "--deliver",
        default="new",
        metavar="new|all|SEQ",
        help="with --jetstream: start with new messages (default), all, or a sequence",
    )


def filters_of(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    items = dict(args.items)
    if args.filter is not None:
        return [{**clause, **items} for clause in args.filter]
    return [items] if items else None


def nats_tap(args: argparse.Namespace) -> int:
    """Run ``tap`` on a nats:// URL.

    Args:
        args: The parsed ``tap`` arguments.

    Returns:
        The exit code.
    """
    undo = setup_logging(args.verbose)
    try:
        count = asyncio.run(_tap(args, sys.stdout))
    except KeyboardInterrupt:
        status("interrupted")
        return 0
    except (WsmuxError, ConnectionError, ValueError) as exc:
        status(f"error: {exc}")
        return 1
    finally:
        undo()
    if args.count is not None and count < args.count:
        status(f"stopped after {count} message(s)")
    return 0


async def _tap(args: argparse.Namespace, out: IO[str]) -> int:
    parts = urllib.parse.urlsplit(args.url)
    subject = urllib.parse.unquote(parts.path.strip("/"))
    server = parts._replace(path="", query="", fragment="").geturl()
    deliver: Any = args.deliver if args.deliver in ("new", "all") else int(args.deliver)
    remote = RemoteMultiplexer(server, subject=subject, jetstream=args.jetstream, deliver=deliver)
    stream = remote.stream_filter(filters_of(args), maxsize=65536, gaps="raise")
    async with remote:
        await remote.subscribed()
        status(f"reading {show_url(server)} {subject}")
        return await _print(stream, out, args.count)


async def _print(stream: Any, out: IO[str], limit: int | None) -> int:
    count = 0
    while limit is None or count < limit:
        try:
            msg = await stream.receive()
        except StreamLagged as exc:
            status(f"too slow: {exc.count} message(s) dropped")
            continue
        except ConnectionGap:
            status("gap: messages may be missing here (upstream or NATS connection lost)")
            continue
        out.write(orjson.dumps(msg, default=str).decode())
        out.write("\n")
        out.flush()
        count += 1
    return count
