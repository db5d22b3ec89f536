"""The fan-out layer: filters and their index, bounded streams, the hub, handlers.

Owns everything between "a parsed message" and "the code that wants it". No
I/O and no knowledge of connections: it may import :mod:`wsmux._exceptions`,
:mod:`wsmux._log` and :mod:`wsmux._backend`, never :mod:`wsmux.connection`.
Start reading at :mod:`wsmux.fanout._hub` (publish), then ``_match``,
``_stream`` and ``_handlers``. :func:`is_async_callable` is the one test of
"is this an async callable" for the whole package. :class:`Messages` (several
messages parsed from one frame) is part of the publish protocol: the
connection layer's reader unpacks it and publishes each element.
"""

from ._handlers import Handler, handler_name, is_async_callable
from ._hub import Hub
from ._match import Filters, compile_filters
from ._messages import Messages
from ._stream import Key, Overflow, Stream, StreamStatistics

__all__ = [
    "Filters",
    "Handler",
    "Hub",
    "Key",
    "Messages",
    "Overflow",
    "Stream",
    "StreamStatistics",
    "compile_filters",
    "handler_name",
    "is_async_callable",
]
