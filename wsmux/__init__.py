"""wsmux: one websocket connection, any number of independent filtered streams.

Public names live here; the modules behind them are private, one per layer:
``_match`` (filters and the index), ``_stream`` (bounded buffers), ``_hub``
(fan-out and handlers), ``_supervisor`` (connect, rotate, reconnect),
``_mux`` (the base class), ``_threaded`` (a multiplexer in its own thread).
``wsmux.testing`` holds a local feed server and ``wsmux.compat`` the
AsyncWebsocketStreamInterface API.
"""

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
from ._mux import Multiplexer, MultiplexerStats, State
from .connection._backoff import Backoff
from .connection._transport import Connection
from .fanout._hub import Hub
from .fanout._stream import Overflow, Stream, StreamStatistics
from .threads._mux_thread import MuxThread, ThreadStream, run_in_thread

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
