"""The feed server of ``wsmux bench``, run in a process of its own.

It speaks just enough of RFC 6455 to feed one client per connection from a
pre-built buffer of unmasked frames, so that the client, not the server, is
what the benchmark measures. The URL's query says what to send:

* ``mode=burst&n=N&symbols=S``: N Binance-style trades spread over S
  symbols, as fast as the socket allows, then an end marker;
* ``mode=paced&n=N&rate=R``: N trades at R per second, each carrying
  ``"ts"``, the ``time.monotonic_ns()`` of its sending (CLOCK_MONOTONIC is
  system-wide on Linux, so the client can compute the latency).

Nothing is sent before the client's first text frame (``go``), so the
client times only the feed. The server answers pings and close frames and
exits when its standard input closes, so it never outlives the bench.

Run it as ``python -m wsmux.bench._server``; it prints ``PORT <n>`` first.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Final
from urllib.parse import parse_qs, urlsplit

import orjson

__all__ = ["build_burst", "end_marker", "main", "symbol", "trade"]

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_T0: Final = 1_700_000_000_000
_CLOSE_FRAME: Final = b"\x88\x02\x03\xe8"

_cache: dict[tuple[int, int], bytes] = {}
_cache_lock = threading.Lock()


def symbol(i: int, symbols: int) -> str:
    """Return the symbol of the i-th trade of a burst over ``symbols`` symbols.

    Args:
        i: The trade's position in the burst.
        symbols: How many symbols the burst is spread over.

    Returns:
        The symbol, ``"SYM<k>"``.
    """
    return f"SYM{i % symbols}"


def trade(i: int, symbols: int) -> bytes:
    """Encode the i-th trade of a burst (about 110 bytes of JSON).

    Args:
        i: The trade's position in the burst.
        symbols: How many symbols the burst is spread over.

    Returns:
        The JSON text, as bytes.
    """
    return orjson.dumps(
        {
            "e": "trade",
            "E": _T0 + i,
            "s": symbol(i, symbols),
            "t": 100_000_000 + i,
            "p": f"{27000 + (i % 100_000) / 100:.2f}",
            "q": "0.012",
            "T": _T0 + i,
            "m": bool(i & 1),
        }
    )


def end_marker(n: int) -> bytes:
    """Encode the end marker that follows ``n`` trades.

    Args:
        n: How many trades were sent.

    Returns:
        The JSON text, as bytes.
    """
    return orjson.dumps({"e": "end", "n": n})


def _frame(payload: bytes) -> bytes:
    """Encode one unmasked, final text frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def build_burst(n: int, symbols: int) -> bytes:
    """Return the frames of a burst: ``n`` trades, then the end marker.

    Args:
        n: How many trades.
        symbols: How many symbols they are spread over.

    Returns:
        The frames, concatenated.
    """
    key = (n, symbols)
    with _cache_lock:
        data = _cache.get(key)
        if data is None:
            parts = [_frame(trade(i, symbols)) for i in range(n)]
            parts.append(_frame(end_marker(n)))
            data = _cache[key] = b"".join(parts)
        return data


class _Handler(socketserver.StreamRequestHandler):
    """One websocket client: handshake, wait for ``go``, feed, close."""

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request_line = self.rfile.readline().decode("latin-1")
        headers: dict[str, str] = {}
        while True:
            line = self.rfile.readline().decode("latin-1").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = request_line.split()
        key = headers.get("sec-websocket-key")
        if len(parts) < 2 or key is None:
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        query = {k: v[-1] for k, v in parse_qs(urlsplit(parts[1]).query).items()}
        mode = query.get("mode", "burst")
        n = int(query.get("n", "1000"))
        payload = build_burst(n, int(query.get("symbols", "1"))) if mode == "burst" else b""
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        if not self._wait_for_text():
            return
        if mode == "burst":
            sock.sendall(payload)
        else:
            self._paced(sock, n, float(query.get("rate", "10000")))
        self._wait_for_text()  # until the client closes

    def _paced(self, sock: socket.socket, n: int, rate: float) -> None:
        interval = int(1e9 / rate)
        start = time.monotonic_ns()
        head = b'{"e":"trade","E":1700000000000,"s":"SYM0","t":%d,"p":"27123.45","q":"0.012",'
        for i in range(n):
            due = start + i * interval
            now = time.monotonic_ns()
            if due - now > 300_000:
                time.sleep((due - now - 200_000) / 1e9)
            while time.monotonic_ns() < due:
                pass  # spin: sleep() is too coarse for 100 us steps
            body = head % i + b'"T":1700000000000,"m":true,"ts":%d}' % time.monotonic_ns()
            sock.sendall(_frame(body))
        sock.sendall(_frame(end_marker(n)))

    def _wait_for_text(self) -> bool:
        """Read client frames until a text or binary one; answer pings and close.

        Returns:
            True for a data frame, False when the connection is closing.
        """
        rfile = self.rfile
        sock: socket.socket = self.request
        while True:
            head = rfile.read(2)
            if len(head) < 2:
                return False
            opcode = head[0] & 0x0F
            size = head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", rfile.read(8))[0]
            mask = rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(rfile.read(size)))
            if opcode in (1, 2):
                return True
            if opcode == 9:  # ping
                sock.sendall(bytes((0x8A, len(data))) + data)
            elif opcode == 8:  # close
                with contextlib.suppress(OSError):
                    sock.sendall(_CLOSE_FRAME)
                return False


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Ignore clients that go away mid-feed; the bench checks its counts."""


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1 until standard input closes.

    Args:
        argv: ``[port]``; 0 (the default) picks a free port.

    Returns:
        The exit code.
    """
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0]) if args else 0
    server = _Server(("127.0.0.1", port), _Handler)
    sys.stdout.write(f"PORT {server.server_address[1]}\n")
    sys.stdout.flush()

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the bench is gone
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        return 130
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
