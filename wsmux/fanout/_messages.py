"""``Messages``: several messages carried by one frame, published one by one."""

from __future__ import annotations

from typing import Any

__all__ = ["Messages"]


class Messages(tuple[Any, ...]):
    """Several messages parsed from one frame, to be published one by one.

    Return it from ``_parse_raw_data`` when a frame carries a batch, such as
    Binance's ``!miniTicker@arr``, whose frame is a JSON array of tickers.
    Each element is then published in order as a message of its own: filters
    see it, ``_message_id`` is asked for its id (so a rotation drops repeats
    element by element), and a ``block`` stream's backpressure applies
    between elements. A ``None`` element is skipped, as a ``None`` returned
    for a whole frame is.

    A plain list returned by ``_parse_raw_data`` stays one message (a list
    message matches only the filters ``None`` and ``[]``); only this wrapper
    splits.

    Example::

        class MiniTickers(wsmux.Multiplexer):
            def _parse_raw_data(self, raw):
                msg = orjson.loads(raw)
                return wsmux.Messages(msg) if isinstance(msg, list) else msg

    ``Messages(iterable)`` takes the messages in the order they are to be
    published.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Messages({list(self)!r})"
