"""wsmux: one websocket connection, any number of independent filtered streams.

Public names live here; the subpackages behind them are private, one per layer
(data flows top to bottom, never back up):

* :mod:`wsmux.connection`: transports, failures and scrubbing, backoff, one
  link, rotation (fenced, exactly-once by id) and the supervisor;
* :mod:`wsmux.fanout`: filters and their index, bounded streams, the hub and
  handlers (no I/O);
* the top modules: the ``Multiplexer`` front object (``_mux``), which holds a
  lifecycle (``_lifecycle``), outbound traffic (``_outbound``) and the status
  the supervisor reports to; options, exceptions, logging;
* :mod:`wsmux.pool`: several supervised connections into one hub
  (sharding topics, shared limits, redundant copies merged by id);
* :mod:`wsmux.threads`: a multiplexer on its own loop thread;
* :mod:`wsmux.nats`: a bridge onto NATS/JetStream and remote streams (the
  ``nats`` extra, imported lazily: ``import wsmux`` works without it).

:mod:`wsmux.testing` holds a local feed server, :mod:`wsmux.compat` the
AsyncWebsocketStreamInterface API; ``wsmux.cli``, ``wsmux.bench`` and
``wsmux.metrics`` (Prometheus, the ``metrics`` extra) are tools that nothing
in the core imports.
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
from ._record import Recorder
from .book import (
    BinanceFuturesRule,
    BinanceSpotRule,
    BookStatistics,
    BookSync,
    ContiguousRule,
    OrderBook,
    OutOfSync,
    SyncRule,
)
from .connection._backoff import Backoff
from .connection._transport import Connection
from .fanout._hub import Hub
from .fanout._latency import LatencyHistogram, LatencyStats
from .fanout._messages import Messages
from .fanout._stream import Overflow, Stream, StreamStatistics
from .nats import (
    Bridge,
    BridgeStats,
    JetStreamConfig,
    RemoteMultiplexer,
    RemoteStats,
    SubjectTemplate,
)
from .pool import ConnectBudget, Pool, PoolConnection
from .threads._mux_thread import MuxThread, ThreadStream, run_in_thread

__all__ = [
    "Backoff",
    "BinanceFuturesRule",
    "BinanceSpotRule",
    "BookStatistics",
    "BookSync",
    "Bridge",
    "BridgeStats",
    "ConnectBudget",
    "ConnectError",
    "Connection",
    "ConnectionGap",
    "ContiguousRule",
    "FatalConnectError",
    "Hub",
    "JetStreamConfig",
    "LatencyHistogram",
    "LatencyStats",
    "Messages",
    "Multiplexer",
    "MultiplexerClosed",
    "MultiplexerStats",
    "MuxThread",
    "NotConnected",
    "OrderBook",
    "OutOfSync",
    "Overflow",
    "Pool",
    "PoolConnection",
    "Recorder",
    "RemoteMultiplexer",
    "RemoteStats",
    "RequestTimeout",
    "RetriesExhausted",
    "State",
    "Stream",
    "StreamClosed",
    "StreamLagged",
    "StreamStatistics",
    "SubjectTemplate",
    "SyncRule",
    "ThreadStream",
    "WsmuxError",
    "run_in_thread",
]

__version__ = "0.1.0"
