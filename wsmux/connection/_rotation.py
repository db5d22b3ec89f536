"""The bookkeeping of one planned rotation, free of I/O.

A rotation replaces the live connection (old) by a new one with no gap:

1. The new connection is opened and subscribed while the old one serves. Its
   own fence (a ping, see :mod:`wsmux.connection._fence`) proves the server
   has applied its subscriptions. Its reader holds what it reads.
2. The old connection goes on publishing until the new one repeats
   something it published (:attr:`Rotation.caught_up`): an id, or without
   ids a frame equal byte for byte. The streams then overlap, even if the
   server started the new one late or holds data for the old one in its own
   queue past the pong. (The wait ends early when the old connection
   carries nothing.)
   :meth:`Rotation.start_fence`: a ping is sent on the old connection.
3. :meth:`Rotation.set_fence`: the pong came back after ``fence`` messages
   of the old connection. The old connection publishes exactly those: they
   are what the server sent before it read the ping. What it reads after is
   held, in case the new connection dies before the cutover.
4. :meth:`Rotation.cutover`, once the old reader has read up to the fence:
   the new connection's held messages are published, minus duplicates; it
   goes live. With ``message_id``, duplicates are dropped by id (a set of
   the ids published during the overlap, any interleaving); without it,
   everything the new connection held is published: what it received
   before the fence repeats (about one round trip of traffic, since the
   fence is sent as soon as the new connection is ready), and nothing that
   only one connection carries (a listen key's own expiry event) is lost.
5. With ids, the new connection's messages are still checked against the set
   until its own tail fence (one more ping) proves that it is past the
   overlap, and for at least half a second after the cutover (a server may
   queue a message for one connection a little longer than for the other);
   then the set is released (:meth:`release`).

The rotation never switches a reader itself: readers ask it what to do with
each message (:meth:`old_message`, :meth:`new_message`, :meth:`tail_message`)
and the supervisor task moves it from one phase to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from enum import Enum
from typing import Any

__all__ = ["Phase", "Rotation"]


class Phase(Enum):
    """Where a rotation stands."""

    OPENING = "opening"  # the new connection is being opened and subscribed
    FENCING = "fencing"  # the old one publishes up to its fence
    CUTOVER = "cutover"  # the new one's held messages are being published
    TAIL = "tail"  # the new one is live, still checked against the overlap ids
    DONE = "done"
    ABORTED = "aborted"  # the new connection was lost: the old one goes on


class Rotation:
    """One planned rotation; see the module docstring.

    Args:
        message_id: The adapter's message id, or None without one.
        on_unhashable: Called with the id's type when an id cannot be
            hashed; the rotation then goes on without ids.
        max_ids: The most ids kept for the overlap; past it the oldest
            are forgotten (logged), which can only let a duplicate through.
    """

    __slots__ = (
        "_max_ids",
        "caught_up",
        "duplicates",
        "fence",
        "frames",
        "gap",
        "held_new",
        "held_old",
        "message_id",
        "on_unhashable",
        "phase",
        "seen",
    )

    def __init__(
        self,
        message_id: Callable[[Any], Hashable | None] | None,
        *,
        on_unhashable: Callable[[type], None] = lambda kind: None,
        max_ids: int = 1_000_000,
    ) -> None:
        self.phase = Phase.OPENING
        self.message_id = message_id
        self.seen: dict[Hashable, None] | None = {} if message_id is not None else None
        self.held_new: list[tuple[int, Any]] = []
        self.held_old: list[Any] = []
        self.on_unhashable = on_unhashable
        self.caught_up = False  # the new connection repeated what the old one published
        # Without ids, the raw frames the old one published: only to see the
        # new stream overlap it (equal frames are never dropped for that).
        # (With ids too: messages with no id are seen to overlap that way.)
        self.frames: dict[Any, None] | None = {}
        self.fence: int | None = None
        self.duplicates = 0
        self.gap = False
        self._max_ids = max_ids

    def __repr__(self) -> str:
        return (
            f"<Rotation {self.phase.value} fence={self.fence}"
            f" held={len(self.held_new)} duplicates={self.duplicates}>"
        )

    # -- ids -------------------------------------------------------------------

    def _first_time(self, msg: Any, record: bool = True) -> bool:
        """False when the message's id was published already; else record it."""
        seen = self.seen
        if seen is None or self.message_id is None:
            return True
        mid = self.message_id(msg)
        if mid is None:
            return True
        try:
            if mid in seen:
                return False
            if record:
                seen[mid] = None
        except TypeError:
            self.seen = None
            self.message_id = None
            self.on_unhashable(type(mid))
            return True
        if len(seen) > self._max_ids:
            del seen[next(iter(seen))]
        return True

    # -- the old connection ------------------------------------------------------

    def old_message(self, msg: Any, received: int, raw: Any = None) -> bool:
        """Decide for the old connection's ``received``-th message.

        Returns:
            True to publish it now; False when it is held or dropped.
        """
        fence = self.fence
        if fence is not None and received > fence:
            if self.phase is Phase.FENCING:
                self.held_old.append(msg)
            return False
        if not self._first_time(msg):
            self.duplicates += 1
            return False
        frames = self.frames
        if frames is not None and raw is not None and not self.caught_up:
            frames[raw] = None
            if len(frames) > self._max_ids:
                del frames[next(iter(frames))]
        return True

    def old_done(self, received: int) -> bool:
        """Whether the old connection has read everything before its fence."""
        return self.fence is not None and received >= self.fence

    # -- the new connection ------------------------------------------------------

    def new_message(self, msg: Any, received: int, raw: Any = None) -> None:
        """Hold the new connection's ``received``-th message until the cutover.

        Note when the new connection repeats what the old one published (an
        id, or without ids a frame equal byte for byte): its stream then
        overlaps the old one's.
        """
        self.held_new.append((received, msg))
        if self.caught_up:
            return
        by_id = self.seen is not None and not self._first_time(msg, record=False)
        by_frame = self.frames is not None and raw is not None and raw in self.frames
        if by_id or by_frame:
            self.caught_up = True
            self.frames = None

    def start_fence(self) -> None:
        """The ping on the old connection is about to be sent."""
        self.phase = Phase.FENCING

    def set_fence(self, fence: int) -> None:
        """The old connection's pong came after ``fence`` messages."""
        self.fence = fence

    def old_closed(self, received: int) -> None:
        """The server closed the old connection before its fence.

        Everything it sent came before the close: it ends where it was read.
        """
        self.fence = received

    def cutover(self) -> Iterator[Any]:
        """Yield the new connection's held messages to publish, in order.

        Call it until :attr:`held_new` stays empty; the new reader may add
        more while the caller publishes.
        """
        self.phase = Phase.CUTOVER
        self.held_old.clear()
        while self.held_new:
            batch, self.held_new = self.held_new, []
            for _, msg in batch:
                if self._first_time(msg):
                    yield msg
                else:
                    self.duplicates += 1

    def go_live(self) -> bool:
        """End the cutover; True when the new connection must still be checked."""
        self.phase = Phase.TAIL if self.seen is not None else Phase.DONE
        return self.phase is Phase.TAIL

    def tail_message(self, msg: Any) -> bool:
        """Decide for a new-connection message during the tail: True to publish.

        The tail only checks: the new connection repeats nothing of its own,
        so the set stays the size of the overlap.
        """
        if self._first_time(msg, record=False):
            return True
        self.duplicates += 1
        return False

    def release(self) -> None:
        """The tail fence was passed: forget the overlap ids."""
        self.phase = Phase.DONE
        self.seen = None

    def abort(self) -> list[Any]:
        """The new connection was lost first: return what the old one held."""
        self.phase = Phase.ABORTED
        self.held_new.clear()
        held, self.held_old = self.held_old, []
        return held
