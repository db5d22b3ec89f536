"""The real nats-server of the wsmux.nats tests: :class:`wsmux.testing.NatsServer`."""

from __future__ import annotations

from wsmux.testing import NatsServer
from wsmux.testing._nats import _free_port as free_port

__all__ = ["NatsServer", "free_port"]
