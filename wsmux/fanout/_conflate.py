"""The buffer of a ``"conflate"`` stream: at most one message per key.

A :class:`KeyedBuffer` stands where a plain stream keeps its deque and
offers the deque operations the stream uses (``append``, ``popleft``, ...),
so that the stream's read paths are the same for every policy. A newer
message of a key replaces the buffered one and moves the key to the back:
the consumer reads keys in the order they were last updated, each with its
latest message. Replaced messages are counted (``conflated``), never lost
silently.

A message whose key cannot be read (the field is missing or None, the key
function raised or returned None, the key is unhashable) is kept as it is,
never replaced, and counted (``unkeyed``); a warning is logged at most every
few seconds. Past ``maxsize`` distinct entries the oldest is dropped and
counted, as ``"drop_oldest"`` does; no policy here ever raises StreamLagged.
"""

from __future__ import annotations

import collections
import itertools
import logging
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Final, Protocol, TypeAlias

from .._log import RateLimitedLog
from ._latency import LatencyHistogram

__all__ = ["Key", "KeyedBuffer", "key_function"]

#: What ``key=`` accepts: a field name, or a function of the message.
Key: TypeAlias = str | Callable[[Any], Hashable]

_MISSING: Final = object()
_UNKEYED: Final = object()  # first item of the private keys of unkeyed messages


class _Counted(Protocol):
    _dropped: int
    _gap_pending: bool
    name: str | None


def key_function(key: Key) -> Callable[[Any], Any]:
    """Turn ``key=`` into a function of the message (None: it has no key).

    Args:
        key: A field name (looked up in a mapping, else as an attribute) or
            a callable.

    Returns:
        A function returning the key, None, or raising.

    Raises:
        TypeError: ``key`` is neither a non-empty str nor callable.
    """
    if isinstance(key, str) and key:

        def field(msg: Any) -> Any:
            if msg.__class__ is dict or isinstance(msg, Mapping):
                return msg.get(key)
            return getattr(msg, key, None)

        return field
    if callable(key) and not isinstance(key, str):
        return key
    raise TypeError(f"key must be a field name (a non-empty str) or a callable, not {key!r}")


class KeyedBuffer:
    """An ordered map from key to latest message, with a deque's face."""

    __slots__ = (
        "_clock",
        "_counter",
        "_gap",
        "_hist",
        "_key",
        "_log",
        "_map",
        "_maxsize",
        "_stream",
        "_times",
        "conflated",
        "unkeyed",
    )

    def __init__(
        self,
        stream: _Counted,
        key: Key,
        maxsize: int,
        gap: object,
        timing: tuple[Callable[[], float], LatencyHistogram] | None = None,
    ) -> None:
        self._stream = stream
        # With timing, the receipt time of each key's message, recorded as
        # receipt-to-consumer latency when it is read.
        self._clock: Callable[[], float] | None = None
        self._hist: LatencyHistogram | None = None
        if timing is not None:
            self._clock, self._hist = timing
        self._times: dict[Any, float] | None = {} if timing is not None else None
        self._gap = gap  # the stream's gap marker: its own key
        self._key = key_function(key)
        self._map: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._maxsize = maxsize
        self._counter = itertools.count()
        self._log = RateLimitedLog(logging.WARNING)
        #: Messages replaced by a newer one of the same key.
        self.conflated = 0
        #: Messages that had no usable key (kept, never replaced).
        self.unkeyed = 0

    def _key_of(self, msg: Any) -> Any:
        try:
            key = self._key(msg)
            if key is not None:
                hash(key)
                return key
            why = "no key"
        except Exception as exc:
            why = f"key raised {exc!r}"
        self.unkeyed += 1
        self._log(
            "conflating stream %r: a message with %s was kept unconflated",
            self._stream.name,
            why,
        )
        return (_UNKEYED, next(self._counter))

    def append(self, msg: Any) -> None:
        """Buffer ``msg``: replace its key's message, or add it at the back."""
        m = self._map
        times = self._times
        if msg is self._gap:  # one marker says it all: keep the latest place
            m.pop(msg, None)
            m[msg] = msg
            if times is not None:
                times[msg] = 0.0
            return
        key = self._key_of(msg)
        if m.pop(key, _MISSING) is not _MISSING:
            self.conflated += 1
        elif len(m) >= self._maxsize:
            old_key, old = m.popitem(last=False)
            if times is not None:
                del times[old_key]
            if old is self._gap:
                self._stream._gap_pending = True
            else:
                self._stream._dropped += 1
        m[key] = msg
        if times is not None and self._clock is not None:
            times[key] = self._clock()

    def appendleft(self, msg: Any) -> None:
        """Put a message back at the front (a gap marker a read left)."""
        self._map[msg] = msg
        self._map.move_to_end(msg, last=False)
        if self._times is not None:
            self._times[msg] = 0.0

    def popleft(self) -> Any:
        """Remove and return the message of the least recently updated key.

        Raises:
            IndexError: The buffer is empty.
        """
        try:
            key, msg = self._map.popitem(last=False)
        except KeyError:
            raise IndexError("pop from an empty buffer") from None
        times = self._times
        if times is not None:
            received = times.pop(key)
            if msg is not self._gap and self._hist is not None:
                self._hist.record(time.time() - received)
        return msg

    def clear(self) -> None:
        """Forget every buffered message."""
        self._map.clear()
        if self._times is not None:
            self._times.clear()

    def __len__(self) -> int:
        return len(self._map)

    def __bool__(self) -> bool:
        return bool(self._map)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._map.values())

    def __repr__(self) -> str:
        return f"<KeyedBuffer {len(self._map)}/{self._maxsize} conflated={self.conflated}>"
