"""A multiplexer on its own event-loop thread, used from ordinary threads.

Owns the loop thread, blocking stream iterators (:class:`ThreadStream`) and
handler threads. Built on the front object's public API; imports the top
package's private modules and :mod:`wsmux.fanout`, never the tools.
"""

from ._mux_thread import MuxThread, run_in_thread
from ._thread_stream import ThreadStream

__all__ = ["MuxThread", "ThreadStream", "run_in_thread"]
