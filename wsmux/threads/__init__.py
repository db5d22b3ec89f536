"""A multiplexer on its own event-loop thread, used from ordinary threads.

Owns the loop thread and the calls into it from other threads
(``_loop_thread``), blocking stream iterators (``_thread_stream``), plain
handlers each in a thread of its own (``_handler_thread``), and the handle
that puts them together (``_mux_thread``); each module imports only those
listed before it. Built on the Multiplexer's public API; may import
:mod:`wsmux.fanout` and the top package's ``_exceptions`` and ``_log``
(``_mux`` for types only), never the connection layer or the tools.
"""

from ._mux_thread import MuxThread, run_in_thread
from ._thread_stream import ThreadStream

__all__ = ["MuxThread", "ThreadStream", "run_in_thread"]
