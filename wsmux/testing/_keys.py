"""Listen keys of the feed server and its tiny listen-key HTTP API.

Runs on the server's loop only: a key's TTL is a timer on that loop, and the
HTTP answers are built inside websockets' ``process_request`` hook.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Response

__all__ = ["API_ENDPOINTS", "ListenKeys", "json_response", "no_key_response"]

#: Last path segments served as the HTTP API rather than as a websocket.
API_ENDPOINTS = frozenset({"listenKey", "userDataStream"})
_NO_KEY = '{"code":-1125,"msg":"This listenKey does not exist."}'


def json_response(conn: ServerConnection, status: int, body: Any) -> Response:
    """An HTTP response with a JSON body."""
    response = conn.respond(status, orjson.dumps(body).decode())
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def no_key_response(conn: ServerConnection, status: int) -> Response:
    """Binance's answer for a listen key it does not know."""
    return json_response(conn, status, orjson.loads(_NO_KEY))


class ListenKeys:
    """The keys valid now, each with its expiry timer (None: no TTL)."""

    __slots__ = ("_expire", "_keys", "_ttl")

    def __init__(self, ttl: float | None, expire: Callable[[str], object]) -> None:
        """Create an empty key set.

        Args:
            ttl: Seconds a key lives without a keepalive; None: forever.
            expire: Called with a key when its TTL runs out.
        """
        self._ttl, self._expire = ttl, expire
        self._keys: dict[str, asyncio.TimerHandle | None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def new(self) -> str:
        """Create a key and start its TTL."""
        key = secrets.token_hex(32)
        self._keys[key] = None
        self.arm(key)
        return key

    def arm(self, key: str) -> None:
        """Start (or restart, on keepalive) the TTL of ``key``."""
        self.drop(key)
        loop = asyncio.get_running_loop()
        self._keys[key] = (
            None if self._ttl is None else loop.call_later(self._ttl, self._expire, key)
        )

    def drop(self, key: str) -> bool:
        """Forget ``key``; False if it was not valid."""
        if key not in self._keys:
            return False
        handle = self._keys.pop(key)
        if handle is not None:
            handle.cancel()
        return True

    def clear(self) -> None:
        """Forget every key and cancel its timer."""
        for handle in self._keys.values():
            if handle is not None:
                handle.cancel()
        self._keys.clear()

    def respond(self, conn: ServerConnection, method: str, query: str) -> Response:
        """The listen-key API: POST creates, PUT extends, DELETE removes."""
        key = parse_qs(query).get("listenKey", [None])[0]
        if key is None and len(self._keys) == 1:
            key = next(iter(self._keys))  # futures style: one key per account, no parameter
        body: dict[str, Any] = {}
        status = 200
        if method == "POST":
            body = {"listenKey": self.new()}
        elif method in ("PUT", "DELETE"):
            if key is None or key not in self._keys:
                return no_key_response(conn, 400)
            if method == "PUT":
                self.arm(key)
            else:
                self.drop(key)
        else:
            status, body = 405, {"code": -1, "msg": f"method {method} not allowed"}
        return json_response(conn, status, body)
