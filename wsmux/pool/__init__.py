"""The pool: several supervised connections, made by one adapter, into one hub.

Owns what lies past one connection: placing topics on connections with room
(``_placement``), making, running and closing the connections
(``_members``), merging the redundant copies of a shard exactly once by id
(``_merge``), start and shutdown (``_life``), and the :class:`Pool` front
(``_pool``). The connection-attempt budget they share,
:class:`ConnectBudget`, lives in the connection layer (``_budget``). It sits above the
connection and fan-out layers, beside the ``Multiplexer`` front: it may
import :mod:`wsmux.connection`, :mod:`wsmux.fanout` and the top modules
(``_mux``, ``_lifecycle``, ``_exceptions``, ``_log``); nothing below it
imports it, and it never imports the tools. Each connection is a
``Multiplexer`` made by the user's factory, handed the sink it publishes
into, the shared connection-attempt budget and its outbound rate; it never
sees the pool. Start reading at ``_pool``.
"""

from ..connection._budget import ConnectBudget
from ._members import PoolConnection
from ._pool import Pool

__all__ = ["ConnectBudget", "Pool", "PoolConnection"]
