"""A small HTTP CONNECT proxy for tests: :class:`ConnectProxy`.

It runs asyncio streams on its own daemon thread (like the feed server, so
sync, asyncio and trio tests share it), binds 127.0.0.1, tunnels only to
loopback addresses unless told otherwise (it is not an open relay), checks
an optional ``Proxy-Authorization: Basic`` and records every CONNECT it saw.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ._waiters import Waiters

__all__ = ["ConnectProxy", "ConnectRequest"]

logger = logging.getLogger("wsmux.testing.proxy")

_HEAD_LIMIT = 16384


@dataclass(frozen=True)
class ConnectRequest:
    """One CONNECT the proxy saw.

    Attributes:
        target: ``"host:port"`` as the client asked.
        status: What the proxy answered: 200 (tunnel open), 407 (missing
            or wrong credentials), 403 (target not allowed), 502 (target
            unreachable) or 400 (not a CONNECT).
        user: The user name the client gave, if any (never the password).
    """

    target: str
    status: int
    user: str | None


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1, for tests of proxied connections.

    Example::

        with ConnectProxy(auth=("user", "secret")) as proxy:
            mux = Multiplexer(url, proxy=proxy.url_with("user", "secret"))

    Args:
        host: Interface to bind (default 127.0.0.1: never reachable from
            another machine unless asked).
        port: TCP port; 0 picks a free one.
        auth: ``(user, password)`` required in ``Proxy-Authorization``;
            None accepts every client.
        allow_remote: Tunnel to any address; by default only to loopback
            ones (a CONNECT elsewhere gets 403).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: tuple[str, str] | None = None,
        allow_remote: bool = False,
    ) -> None:
        self.host, self._port = host, port
        self._auth = auth
        self._allow_remote = allow_remote
        self._waiters = Waiters()
        self._requests: list[ConnectRequest] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else "unbound"
        auth = " auth" if self._auth else ""
        return f"<ConnectProxy {where}{auth} requests={len(self.requests)}>"

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        """Start serving on a daemon thread; return once the port is bound.

        Raises:
            OSError: The port cannot be bound.
            RuntimeError: The thread did not come up within 10 s.
        """
        if self._thread is not None:
            return self
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=self._main, name="wsmux-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(10.0):
            raise RuntimeError("ConnectProxy thread did not start within 10 s")
        if self._error is not None:
            self._thread.join(5.0)
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Close the listener and every tunnel; join the thread. Idempotent.

        Raises:
            RuntimeError: The thread did not end in time.
        """
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread.join(10.0)
        if thread.is_alive():
            raise RuntimeError("ConnectProxy thread did not stop")
        self._thread = None

    async def stop_async(self) -> None:
        """Like :meth:`stop`, without blocking the caller's event loop."""
        import anyio

        await anyio.to_thread.run_sync(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    # -- what tests read ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: Before :meth:`start`.
        """
        if not self._port:
            raise RuntimeError("ConnectProxy has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        """``"http://127.0.0.1:PORT"``, without credentials."""
        return f"http://{self.host}:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """The proxy URL with credentials: ``"http://user:password@127.0.0.1:PORT"``."""
        return f"http://{user}:{password}@{self.host}:{self.port}"

    @property
    def requests(self) -> list[ConnectRequest]:
        """Every CONNECT seen so far, in order."""
        with self._waiters.lock:
            return list(self._requests)

    def wait_for_requests(self, n: int = 1, timeout: float = 5.0) -> list[ConnectRequest]:
        """Block until ``n`` CONNECTs were seen.

        Raises:
            TimeoutError: Fewer were seen within ``timeout`` seconds.
        """
        self._waiters.wait_until(lambda: len(self._requests) >= n, timeout, "CONNECT requests")
        return self.requests

    async def wait_for_requests_async(self, n: int = 1) -> list[ConnectRequest]:
        """Async twin of :meth:`wait_for_requests`; bound it with ``anyio.fail_after``."""
        await self._waiters.wait_until_async(lambda: len(self._requests) >= n)
        return self.requests

    # -- the thread ----------------------------------------------------------------

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except Exception as exc:
            logger.exception("ConnectProxy thread failed")
            self._error = exc
        finally:
            loop.close()
            self._loop = None
            self._started.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._client, self.host, self._port)
        except OSError as exc:
            self._error = exc
            return
        self._port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks)
            await server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._tunnel(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            logger.debug("ConnectProxy: client ended: %r", exc)
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _HEAD_LIMIT:
            return
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.partition(" ")[0]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        user, ok = self._check_auth(headers.get("proxy-authorization"))
        host, _, port = target.rpartition(":")
        host = host.strip("[]")
        if method != "CONNECT" or not port.isdigit():
            status = 400
        elif not ok:
            status = 407
        elif not (self._allow_remote or _is_loopback(host)):
            status = 403
        else:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                status = 502
            else:
                self._record(target, 200, user)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await _pipe_both(reader, writer, up_reader, up_writer)
                return
        self._record(target, status, user)
        extra = 'Proxy-Authenticate: Basic realm="wsmux"\r\n' if status == 407 else ""
        writer.write(f"HTTP/1.1 {status} Refused\r\n{extra}Content-Length: 0\r\n\r\n".encode())
        await writer.drain()

    def _check_auth(self, value: str | None) -> tuple[str | None, bool]:
        user = password = None
        if value is not None:
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(token.strip(), validate=True).decode()
                except (ValueError, UnicodeDecodeError):
                    decoded = ""
                user, _, password = decoded.partition(":")
        if self._auth is None:
            return user, True
        return user, (user, password) == self._auth

    def _record(self, target: str, status: int, user: str | None) -> None:
        with self._waiters.lock:
            self._requests.append(ConnectRequest(target, status, user))
        self._waiters.notify()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Copy bytes both ways until either side ends; then close the upstream."""

    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

    tasks = [
        asyncio.ensure_future(copy(reader, up_writer)),
        asyncio.ensure_future(copy(up_reader, writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        up_writer.close()
        with contextlib.suppress(OSError):
            await up_writer.wait_closed()
