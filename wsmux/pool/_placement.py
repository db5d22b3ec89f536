"""Which topics the pool wants, and which connection carries each of them.

Plain bookkeeping, no I/O. :class:`Wanted` is the set the user asked for:
topics given to ``subscribe`` plus those open streams need (``topics=``).
:class:`Placement` maps each wanted topic to a :class:`Shard` (the topics
one connection, or one set of redundant connections, carries) and works out
what has to change when the wanted set does: a topic goes to the first
shard with room, a new shard opens when all are full, and a shard left with
no topic closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Plan", "Placement", "Shard", "Wanted", "check_topics"]


def check_topics(topics: Iterable[Any]) -> list[str]:
    """Return the topics without repeats.

    Raises:
        TypeError: A topic is not a non-empty str.
    """
    checked = list(topics)
    for topic in checked:
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topics must be non-empty str, not {topic!r}")
    return list(dict.fromkeys(checked))


class Wanted:
    """The topics subscribed to and the topics open streams need.

    Args:
        changed: Called after every change (the pool then re-places topics).
    """

    def __init__(self, changed: Callable[[], None]) -> None:
        self._changed = changed
        self._explicit: dict[str, None] = {}  # subscribe()d topics, in order
        self._demand: dict[str, int] = {}  # topic -> open streams needing it

    @property
    def topics(self) -> list[str]:
        """Every wanted topic, in the order first wanted."""
        return list(dict.fromkeys([*self._explicit, *self._demand]))

    def add(self, topics: list[str]) -> None:
        """Remember topics given to ``subscribe``."""
        for topic in topics:
            self._explicit[topic] = None

    def remove(self, topics: list[str]) -> None:
        """Forget topics given to ``unsubscribe`` (streams may still need them)."""
        for topic in topics:
            self._explicit.pop(topic, None)

    def attach(self, stream: Any, topics: Iterable[str]) -> None:
        """Want ``topics`` until ``stream`` closes."""
        wanted = check_topics(topics)
        if not wanted:
            return
        for topic in wanted:
            self._demand[topic] = self._demand.get(topic, 0) + 1
        stream._on_close = lambda: self._release(wanted)
        self._changed()

    def _release(self, topics: list[str]) -> None:
        for topic in topics:
            count = self._demand.get(topic, 0) - 1
            if count <= 0:
                self._demand.pop(topic, None)
            else:
                self._demand[topic] = count
        self._changed()


@dataclass(eq=False)
class Shard:
    """The topics one connection (or each of its redundant copies) carries.

    Attributes:
        id: The shard's number, from 1, never reused.
        topics: Its topics, in the order placed.
        members: What the pool attached: its connections.
    """

    id: int
    topics: dict[str, None] = field(default_factory=dict)
    members: list[Any] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<Shard {self.id} topics={len(self.topics)}>"


@dataclass
class Plan:
    """What to tell the connections so that they carry the wanted topics.

    Attributes:
        drop: Topics to unsubscribe, per shard that keeps some.
        close: Shards left with no topic.
        add: Topics to subscribe, per shard that existed already.
        new: Shards to open, with their topics.
    """

    drop: list[tuple[Shard, list[str]]] = field(default_factory=list)
    close: list[Shard] = field(default_factory=list)
    add: list[tuple[Shard, list[str]]] = field(default_factory=list)
    new: list[Shard] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.drop or self.close or self.add or self.new)


class Placement:
    """The shards and the topics each carries, at most ``max_topics`` each.

    Args:
        max_topics: The most topics one connection may carry.
    """

    def __init__(self, max_topics: int) -> None:
        self.max_topics = max_topics
        self.shards: list[Shard] = []
        self._where: dict[str, Shard] = {}
        self._next_id = 0

    def __repr__(self) -> str:
        return f"<Placement shards={len(self.shards)} topics={len(self._where)}>"

    def shard_of(self, topic: str) -> Shard | None:
        """The shard that carries ``topic``, if any."""
        return self._where.get(topic)

    def apply(self, wanted: list[str]) -> Plan:
        """Place the wanted topics; return what changed.

        Topics no longer wanted leave their shard first (making room); new
        topics fill the oldest shards with room, in order, then new shards.
        """
        plan = Plan()
        keep = set(wanted)
        for shard in list(self.shards):
            gone = [t for t in shard.topics if t not in keep]
            if not gone:
                continue
            for topic in gone:
                del shard.topics[topic]
                del self._where[topic]
            if shard.topics:
                plan.drop.append((shard, gone))
            else:
                self.shards.remove(shard)
                plan.close.append(shard)
        todo = [t for t in wanted if t not in self._where]
        for shard in self.shards:
            room = self.max_topics - len(shard.topics)
            if room <= 0 or not todo:
                continue
            placed, todo = todo[:room], todo[room:]
            self._put(shard, placed)
            plan.add.append((shard, placed))
        while todo:
            placed, todo = todo[: self.max_topics], todo[self.max_topics :]
            self._next_id += 1
            shard = Shard(self._next_id)
            self._put(shard, placed)
            self.shards.append(shard)
            plan.new.append(shard)
        return plan

    def discard(self, shard: Shard) -> None:
        """Forget a shard and its topics (they are placed again next time)."""
        if shard in self.shards:
            self.shards.remove(shard)
        for topic in shard.topics:
            if self._where.get(topic) is shard:
                del self._where[topic]
        shard.topics.clear()

    def _put(self, shard: Shard, topics: list[str]) -> None:
        for topic in topics:
            shard.topics[topic] = None
            self._where[topic] = shard
