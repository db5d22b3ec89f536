"""wsmux: one websocket connection, any number of independent filtered streams."""

from ._exceptions import (
    ConnectError,
    ConnectionGap,
    FatalConnectError,
    MultiplexerClosed,
    NotConnected,
    RequestTimeout,
    RetriesExhausted,
    StreamClosed,
    StreamLagged,
    WsmuxError,
)
from ._hub import Hub
from ._stream import Stream, StreamStatistics

__all__ = [
    "ConnectError",
    "ConnectionGap",
    "FatalConnectError",
    "Hub",
    "MultiplexerClosed",
    "NotConnected",
    "RequestTimeout",
    "RetriesExhausted",
    "Stream",
    "StreamClosed",
    "StreamLagged",
    "StreamStatistics",
    "WsmuxError",
]

__version__ = "0.1.0"
