"""The connection layer: transports, errors and scrubbing, backoff, links, rotation.

Owns one supervised websocket: opening it (websockets or picows), classifying
failures, keeping it alive, rotating and reconnecting it. It is handed what it
needs (an adapter protocol for the hooks, a publish target, options, a
counters object), never the Multiplexer. It may import :mod:`wsmux._exceptions`,
:mod:`wsmux._log`, :mod:`wsmux._backend`, :mod:`wsmux._options` and
:mod:`wsmux._record` (the optional recorder of raw frames); it never
imports :mod:`wsmux.fanout` internals beyond the publish protocol, nor the
front object. Start reading at ``_supervisor`` (which decides which link
is live and drives rotations), then ``_connector`` (opening links, backoff,
the attempt budget) and ``_reader`` (one task per link: parse, route,
publish); ``_proxy`` resolves the ``proxy`` option for both transports.
"""

from ._backoff import Backoff
from ._transport import Connection

__all__ = ["Backoff", "Connection"]
