"""Past one machine: a bridge onto NATS (core or JetStream) and remote streams.

Owns the subject template (``_subject``: message fields to subject tokens,
filters to the narrowest covering subjects), the bridge (``_bridge``: a
source's stream republished onto NATS, gap markers; ``_publish``: JetStream
ids, acknowledgements and republication), the receiving side (``_feed``: core subscriptions and the
resuming JetStream consumer) and :class:`RemoteMultiplexer` (``_remote``:
the consumer half of a multiplexer over the same hub).

It sits above the fan-out layer and the ``Multiplexer`` front object: it may
import :mod:`wsmux.fanout`, :mod:`wsmux._mux` (for its typed streams),
:mod:`wsmux._exceptions`, :mod:`wsmux._log` and :mod:`wsmux._backend`;
nothing in the core imports it. nats-py (the ``nats`` extra) is imported
lazily, inside functions, so ``import wsmux`` works without it; nats-py runs
on asyncio only, and under trio the bridge and the remote side raise
RuntimeError at once.
"""

from ._bridge import Bridge
from ._conn import JetStreamConfig
from ._remote import RemoteMultiplexer
from ._stats import BridgeStats, RemoteStats
from ._subject import SubjectTemplate

__all__ = [
    "Bridge",
    "BridgeStats",
    "JetStreamConfig",
    "RemoteMultiplexer",
    "RemoteStats",
    "SubjectTemplate",
]
