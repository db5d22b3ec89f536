"""wsmux: one websocket connection, any number of independent filtered streams.

Public names live here; the modules behind them are private, one per layer:
``_match`` (filters and the index), ``_stream`` (bounded buffers), ``_hub``
(fan-out and handlers), ``_supervisor`` (connect, rotate, reconnect),
``_mux`` (the base class), ``_threaded`` (a multiplexer in its own thread).
``wsmux.testing`` holds a local feed server and ``wsmux.compat`` the
AsyncWebsocketStreamInterface API.
"""

from ._backoff import Backoff
from ._connection import Connection
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
from ._mux import Multiplexer, MultiplexerStats, State
from ._stream import Overflow, Stream, StreamStatistics
from ._threaded import MuxThread, ThreadStream, run_in_thread

__all__ = [
    "Backoff",
    "ConnectError",
    "Connection",
    "ConnectionGap",
    "FatalConnectError",
    "Hub",
    "Multiplexer",
    "MultiplexerClosed",
    "MultiplexerStats",
    "MuxThread",
    "NotConnected",
    "Overflow",
    "RequestTimeout",
    "RetriesExhausted",
    "State",
    "Stream",
    "StreamClosed",
    "StreamLagged",
    "StreamStatistics",
    "ThreadStream",
    "WsmuxError",
    "run_in_thread",
]

__version__ = "0.1.0"
