"""The pool's parts without a socket: placement, the merge of copies, the budget."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from wsmux import ConnectBudget, Multiplexer, Pool
from wsmux.pool._merge import Merger
from wsmux.pool._placement import Placement


class Recorder:
    """A sink that records what reaches the hub."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.gaps = 0

    def publish(self, msg: Any) -> bool:
        self.published.append(msg)
        return False

    async def relieve(self) -> None:
        pass

    def mark_gap(self) -> None:
        self.gaps += 1


# -- placement ---------------------------------------------------------------------


def test_placement_fills_the_oldest_shard_first_and_closes_empty_ones() -> None:
    placement = Placement(max_topics=3)
    plan = placement.apply([f"t{i}" for i in range(7)])
    assert [list(s.topics) for s in plan.new] == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
    assert not plan.add and not plan.drop and not plan.close
    one, two, three = placement.shards
    # Dropping from the first shard makes room there: new topics fill it first.
    plan = placement.apply(["t0", "t3", "t4", "t5", "t6", "n1", "n2", "n3"])
    assert plan.drop == [(one, ["t1", "t2"])]
    assert plan.add == [(one, ["n1", "n2"]), (three, ["n3"])]
    assert not plan.new and not plan.close
    # A shard left with nothing closes; its number is never reused.
    plan = placement.apply(["t0", "n1", "n2", "t6", "n3"])
    assert plan.close == [two] and placement.shards == [one, three]
    plan = placement.apply(["t0", "n1", "n2", "t6", "n3", "a", "b", "c"])
    assert plan.add == [(three, ["a"])]
    assert [s.id for s in plan.new] == [4] and list(plan.new[0].topics) == ["b", "c"]
    assert not placement.apply(["t0", "n1", "n2", "t6", "n3", "a", "b", "c"])  # nothing to do
    assert placement.shard_of("a") is three and placement.shard_of("t1") is None


def test_placement_of_3000_topics_at_1024() -> None:
    placement = Placement(max_topics=1024)
    placement.apply([f"sym{i}@trade" for i in range(3000)])
    assert [len(s.topics) for s in placement.shards] == [1024, 1024, 952]


# -- merging copies ------------------------------------------------------------------


def test_first_copy_is_delivered_later_ones_dropped_with_bounded_memory() -> None:
    hub = Recorder()
    merger = Merger(hub, lambda m: m.get("id"), copies=2, window=4)
    frames = [0.0]
    a, b = merger.sink(lambda: frames[0]), merger.sink(lambda: frames[0])
    for i in range(10):
        a.publish({"id": i})
        b.publish({"id": i})
    assert [m["id"] for m in hub.published] == list(range(10))
    assert b.dropped == 10 and a.dropped == 0 and merger.duplicates == 10
    assert len(merger._seen) == 4 == len(merger._order)  # the last ``window`` ids
    # One copy only (the other is down): ids are kept, but at most ``window``.
    for i in range(10, 30):
        a.publish({"id": i})
    assert len(merger._seen) <= 4 and len(merger._order) <= 4
    # Messages without an id, or whose id cannot be had, come from every copy.
    a.publish({"x": 1})
    b.publish({"x": 1})
    assert hub.published[-2:] == [{"x": 1}, {"x": 1}]


def test_a_copy_that_repeats_an_id_does_not_let_it_through_twice() -> None:
    """A copy repeating a message (a replay after its reconnect, a rotation
    without ids) is dropped, before or after the other copy brought it; and
    ids that churn never keep more than ``window`` entries."""
    hub = Recorder()
    merger = Merger(hub, lambda m: m["id"], copies=2, window=8)
    a, b = merger.sink(lambda: None), merger.sink(lambda: None)
    a.publish({"id": 1})
    a.publish({"id": 1})  # repeated on copy a before b brought it
    b.publish({"id": 1})
    a.publish({"id": 1})  # and again after both did
    assert [m["id"] for m in hub.published] == [1] and merger.duplicates == 3
    for i in range(2, 1000):  # churn: every id once on a, most on b, some twice
        a.publish({"id": i})
        if i % 3:
            b.publish({"id": i})
        if i % 7 == 0:
            b.publish({"id": i})
    assert [m["id"] for m in hub.published] == list(range(1, 1000))
    assert len(merger._seen) <= 8 and len(merger._order) <= 8


def test_losing_one_copy_is_not_a_gap_losing_every_copy_is_one() -> None:
    hub = Recorder()
    merger = Merger(hub, lambda m: m["id"], copies=2, window=100)
    last = {"a": None, "b": None}
    a = merger.sink(lambda: last["a"])
    b = merger.sink(lambda: last["b"])
    a.publish({"id": 1})
    b.publish({"id": 1})
    last["a"] = last["b"] = time.time()  # the last frames came after both were up
    a.mark_gap()  # b is up and was up before a's last frame
    assert hub.gaps == 0
    b.mark_gap()  # a has not delivered since: nobody covered
    assert hub.gaps == 1 and merger.gaps == 1
    # a is back (its first frame), then b is lost again: covered by a only if
    # a was up before b's last frame.
    a.publish({"id": 2})
    b.publish({"id": 2})
    last["b"] = time.time()
    b.mark_gap()
    assert hub.gaps == 1


# -- the connection-attempt budget ------------------------------------------------


@pytest.mark.anyio
async def test_budget_counts_an_attempt_until_a_window_after_it_ended() -> None:
    budget = ConnectBudget(2, 0.2)
    await budget.acquire()
    await budget.acquire()
    assert budget.used() == 2
    budget.release()
    ended = anyio.current_time()
    budget.release()
    with anyio.fail_after(5):
        await budget.acquire()  # waits for the first to leave the window
    assert anyio.current_time() >= ended + 0.2
    assert budget.granted == 3 and budget.waited == 1
    budget.release()
    with pytest.raises(RuntimeError):
        budget.release()


@pytest.mark.parametrize("args", [(0, 1.0), (1, 0), (1.5, 1.0), (True, 1.0), (1, -1)])
def test_budget_checks_its_arguments(args: tuple[Any, Any]) -> None:
    with pytest.raises(ValueError):
        ConnectBudget(*args)


# -- construction -------------------------------------------------------------------


def test_redundancy_needs_message_id() -> None:
    with pytest.raises(TypeError, match="_message_id"):
        Pool(lambda: Multiplexer("ws://127.0.0.1:9"), redundancy=2)


@pytest.mark.parametrize(
    "options",
    [
        {"max_topics": 0},
        {"redundancy": 0},
        {"dedup_window": 0},
        {"urls": []},
        {"send_rate": (0, 1.0)},
        {"connect_budget": (0, 1.0)},
    ],
)
def test_pool_checks_its_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Pool(lambda: Multiplexer("ws://127.0.0.1:9"), **options)


def test_pool_factory_must_make_a_multiplexer() -> None:
    with pytest.raises(TypeError):
        Pool(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Multiplexer"):
        Pool(lambda: object(), redundancy=2)  # type: ignore[arg-type, return-value]
