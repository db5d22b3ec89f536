"""``MetricsServer``: the Prometheus text format over HTTP, on 127.0.0.1 by default.

One small HTTP server in one thread (named ``wsmux-metrics-PORT``) answers
``GET /metrics``. Started inside an event loop (``async with``), it takes
every scrape's snapshots on that loop (``anyio.from_thread``), so the
multiplexers' ``stats()`` run where they live, under asyncio or trio, and
the loop is never blocked by the HTTP side. Closing stops the server and
joins its thread.
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from .._log import log
from ._collector import Snapshot, WsmuxCollector, families

__all__ = ["MetricsServer", "serve_metrics"]

#: Seconds a scraper may take to send its request before it is dropped, so
#: that a silent client cannot hold the server (or its closing) for long.
_CLIENT_TIMEOUT: Final = 1.0


class _Scrape(Collector):
    """The registry's view: snapshots taken by ``take`` (on the loop, or here)."""

    def __init__(self, take: Callable[[], list[Snapshot]]) -> None:
        self._take = take

    def collect(self) -> Any:
        return families(self._take())


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = _CLIENT_TIMEOUT
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/", "/metrics"):
            self._reply(404, b"not found: the metrics are at /metrics\n", "text/plain")
            return
        try:
            body = generate_latest(self.server.registry)
        except Exception as exc:  # the loop has stopped, a source failed...
            log.warning("metrics scrape failed: %r", exc)
            self._reply(503, f"metrics unavailable: {exc!r}\n".encode(), "text/plain")
            return
        self._reply(200, body, CONTENT_TYPE_LATEST)

    def _reply(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line on stderr per scrape."""


class _HTTPServer(http.server.HTTPServer):
    registry: CollectorRegistry


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serve the metrics of multiplexers (or pools) at ``http://HOST:PORT/metrics``.

    Use it as ``async with`` inside the multiplexers' event loop (asyncio or
    trio): every scrape then reads ``stats()`` on that loop. Used with plain
    ``with`` (no loop in this thread), ``stats()`` is called from the
    server's thread: pass :class:`wsmux.MuxThread` objects then, whose
    ``stats()`` may be called from any thread.

    It binds 127.0.0.1 unless ``host`` says otherwise: the metrics show
    names and traffic, not secrets, but need not be public.

    Example::

        async with mux, MetricsServer(mux, port=9464) as server:
            print(server.url)  # http://127.0.0.1:9464/metrics

    Args:
        *sources: Multiplexers, pools or ``MuxThread`` objects.
        port: The TCP port; 0 picks a free one (see :attr:`port`).
        host: The address to bind.

    Attributes:
        collector: The :class:`~wsmux.metrics.WsmuxCollector` of the sources.
    """

    def __init__(self, *sources: Any, port: int = 0, host: str = "127.0.0.1") -> None:
        self.collector = WsmuxCollector(*sources)
        self._host = host
        self._port = port
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._token: Any = None

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"<MetricsServer {self._host}:{self._port} {state}>"

    @property
    def port(self) -> int:
        """The port bound (the one picked, for ``port=0``)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/metrics``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}/metrics"

    def _take(self) -> list[Snapshot]:
        token = self._token
        if token is None:
            return self.collector.take()
        return anyio.from_thread.run_sync(self.collector.take, token=token)

    def start(self) -> None:
        """Bind and start serving (in a thread of its own).

        Raises:
            OSError: The address cannot be bound (a port in use, say).
            RuntimeError: Already started.
        """
        if self._server is not None:
            raise RuntimeError("the metrics server is already running")
        try:
            self._token = anyio.lowlevel.current_token()
        except RuntimeError:
            self._token = None  # no event loop in this thread
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Scrape(self._take))
        try:
            kind = _HTTPServer6 if ":" in self._host else _HTTPServer
            server = kind((self._host, self._port), _Handler)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot serve metrics on {self._host}:{self._port}: {exc.strerror}"
            ) from None
        server.registry = registry
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"wsmux-metrics-{self._port}",
            daemon=True,
        )
        self._thread.start()
        logging.getLogger("wsmux").info("metrics at %s", self.url)

    def close(self) -> None:
        """Stop serving, close the socket and join the thread; twice is harmless.

        Raises:
            RuntimeError: Called from the event loop the server was started
                in (a scrape may be waiting for it): use ``async with`` or
                :meth:`aclose` there.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        if self._token is not None:
            try:
                current = anyio.lowlevel.current_token()
            except RuntimeError:
                current = None
            if current == self._token:
                raise RuntimeError("close a MetricsServer started in an event loop with aclose()")
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        thread.join()

    async def aclose(self) -> None:
        """Stop serving, from the event loop it was started in (a worker thread waits)."""
        await anyio.to_thread.run_sync(self._close_from_worker)

    def _close_from_worker(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        thread.join()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> MetricsServer:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.aclose()


def serve_metrics(*sources: Any, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
    """Make a :class:`MetricsServer` (not started: enter it with ``async with`` or ``with``).

    Args:
        *sources: Multiplexers, pools or ``MuxThread`` objects.
        port: The TCP port; 0 picks a free one.
        host: The address to bind; 127.0.0.1 unless told otherwise.

    Returns:
        The server.

    Raises:
        TypeError: A source has no ``stats()``.
    """
    return MetricsServer(*sources, port=port, host=host)
