"""What ``tap`` and ``demo`` share: argument types, status lines, logging to stderr."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

import orjson

from .._log import show_url

__all__ = [
    "json_filter",
    "json_value",
    "key_value",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "quiet_broken_pipe",
    "setup_logging",
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
