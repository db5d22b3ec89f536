"""Fixtures of the wsmux.nats tests: a real nats-server per test, asyncio only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _natsserver import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
