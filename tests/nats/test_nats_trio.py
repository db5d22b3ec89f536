"""nats-py is asyncio-only: under trio the NATS side says so at once."""

from __future__ import annotations

import pytest

from wsmux import Bridge, Multiplexer, RemoteMultiplexer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_fails_at_once_with_a_clear_error() -> None:
    remote = RemoteMultiplexer("nats://127.0.0.1:4222")
    with pytest.raises(RuntimeError, match="asyncio"):
        async with remote:
            pass
    bridge = Bridge(Multiplexer("ws://127.0.0.1:1"), "nats://127.0.0.1:4222")
    with pytest.raises(RuntimeError, match="asyncio"):
        async with bridge:
            pass
