"""The markers and states a stream's buffer and readers share.

Below :mod:`wsmux.fanout._stream` and :mod:`wsmux.fanout._batch`, so that
both can name them.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["CHECKPOINT_EVERY", "GAP", "StreamState"]

#: A consumer reading buffered messages yields to the event loop this often.
CHECKPOINT_EVERY: Final = 128


class _Gap:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<connection gap>"


#: Marker put in the buffers of ``gaps="raise"`` streams at an unplanned reconnect.
GAP: Final = _Gap()


class StreamState(enum.Enum):
    """Where a stream is in its life."""

    OPEN = "open"
    ENDED = "ended"  # the hub ended it: buffered messages, then the end or error
    CLOSED = "closed"  # closed by its owner: nothing more is read


_OPEN, _ENDED, _CLOSED = StreamState.OPEN, StreamState.ENDED, StreamState.CLOSED
#: What a wait returns when no message was handed over with the wake-up.
_AGAIN: Final = object()
