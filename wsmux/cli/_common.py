"""What ``tap`` and ``demo`` share: argument types, status lines, logging to stderr."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from .._log import show_url

__all__ = [
    "add_metrics_options",
    "json_filter",
    "json_value",
    "key_value",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "quiet_broken_pipe",
    "serving_metrics",
    "setup_logging",
    "stats_line",
    "status",
    "ws_url",
]


def ws_url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        ok = parts.scheme in ("ws", "wss") and bool(parts.hostname)
        if ok:
            parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        ok = False
    if not ok:
        shown = show_url(text)
        hint = f" (did you mean 'ws://{shown}'?)" if "://" not in text and shown else ""
        raise argparse.ArgumentTypeError(
            f"invalid URL {shown!r}: expected ws://host[:port]/path or wss://...{hint}"
        )
    return text


def json_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {exc}") from None


def json_filter(text: str) -> list[dict[str, Any]]:
    value = json_value(text)
    clauses = [value] if isinstance(value, dict) else value
    if not isinstance(clauses, list) or not all(isinstance(c, dict) for c in clauses):
        raise argparse.ArgumentTypeError(
            f"invalid filter {text!r}: expected a JSON object or a list of objects"
        )
    return clauses


def key_value(text: str) -> tuple[str, Any]:
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, not {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, not {text!r}")
    return value


def status(text: str) -> None:
    print(f"wsmux: {text}", file=sys.stderr, flush=True)


def setup_logging(verbose: bool) -> Callable[[], None]:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wsmux: %(message)s"))
    logger = logging.getLogger("wsmux")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO if verbose else logging.WARNING)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    return undo


def quiet_broken_pipe() -> None:
    # The reader of stdout went away (| head): exit quietly, without Python
    # complaining about the flush at shutdown.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port number (0 picks a free one), not {text!r}"
        )
    return value


def add_metrics_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--metrics-port`` and ``--metrics-host`` to a subcommand."""
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0 picks a free port;"
        " needs pip install 'wsmux[metrics]'). Binds 127.0.0.1 only, unless --metrics-host"
        " says otherwise",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address the metrics server binds (default 127.0.0.1: this machine only;"
        " 0.0.0.0 exposes it to the network)",
    )


@contextlib.contextmanager
def serving_metrics(args: argparse.Namespace, *sources: Any) -> Iterator[Any]:
    """Serve the metrics of ``sources`` while the block runs, if ``--metrics-port`` was given.

    Used in a thread with no event loop (``tap``): the sources are
    ``MuxThread`` objects, whose ``stats()`` may be called from any thread.
    """
    if args.metrics_port is None:
        yield None
        return
    server = metrics_server(args, *sources)
    try:
        server.start()
    except OSError as exc:
        status(f"error: {exc}")
        raise SystemExit(1) from None
    try:
        status(f"metrics at {server.url}")
        yield server
    finally:
        server.close()


def metrics_server(args: argparse.Namespace, *sources: Any) -> Any:
    """A :class:`wsmux.metrics.MetricsServer` (not started), or exit 2 without the extra."""
    try:
        from ..metrics import MetricsServer
    except ImportError as exc:
        status(f"--metrics-port needs prometheus-client: pip install 'wsmux[metrics]' ({exc})")
        raise SystemExit(2) from None
    return MetricsServer(*sources, port=args.metrics_port, host=args.metrics_host)


def stats_line(stats: Any, rate: float | None) -> str:
    """One line of a multiplexer's counters and latencies, for ``--stats`` and the demo."""
    parts = [f"{stats.messages} messages"]
    if rate is not None:
        parts[0] += f" ({rate:.0f}/s)"
    parts.append(f"drops {stats.drops}")
    parts.append(f"reconnects {stats.reconnects}")
    if stats.latency is not None:
        parts.append(f"exchange->receipt {stats.latency}")
    for name, st in stats.named_streams.items():
        if st.latency is not None:
            parts.append(f"receipt->{name} {st.latency}")
    return "stats: " + ", ".join(parts)


#: Connection attempts in a row before a command gives up: a refused or silent
#: port ends it (exit 1) instead of retrying forever.
DEFAULT_RETRIES = 5


def add_feed_arguments(cmd: Any, *, verb: str) -> None:
    """Add ``-f``, ``--filter``, ``--send`` and ``--retries``, as every feed command takes them.

    Args:
        cmd: The subcommand's parser.
        verb: What the command does with a selected message ("keep",
            "record only", "publish only"), for the help of ``-f``.
    """
    cmd.add_argument(
        "-f",
        dest="items",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help=f"{verb} messages whose KEY equals VALUE; repeat to AND. VALUE is read as JSON"
        " first, else taken as a string: -f c=123 matches the number 123, -f s=BTCUSDT the"
        " string; quote to force a string: -f 'c=\"123\"'",
    )
    cmd.add_argument(
        "--filter",
        type=json_filter,
        metavar="JSON",
        help="a filter as JSON: an object (AND) or a list of objects (OR),"
        ' e.g. \'[{"e": "trade"}]\'',
    )
    cmd.add_argument(
        "--send",
        action="append",
        default=[],
        type=json_value,
        metavar="JSON",
        help="a message to send after each connect (repeatable)",
    )
    cmd.add_argument(
        "--retries",
        type=nonnegative_int,
        default=DEFAULT_RETRIES,
        metavar="N",
        help="give up (exit 1) after N failed connection attempts in a row, at the start or"
        f" after a loss (default {DEFAULT_RETRIES}; 0: never give up)",
    )
