"""Set values ("the field equals any member"): semantics, refusals, the index."""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from typing import Any

import pytest
from fanout._reference import reference_match
from hypothesis import given, settings
from hypothesis import strategies as st

from wsmux.fanout import Hub
from wsmux.fanout._match import Index, compile_filters


def match_all(filters: Any, msg: Any) -> bool:
    index: Index[str] = Index()
    index.add("t", compile_filters(filters))
    return index.match(msg) == ["t"]


@pytest.mark.parametrize("matcher", [reference_match, match_all])
@pytest.mark.parametrize(
    ("filters", "msg", "expected"),
    [
        ({"s": {"BTC", "ETH"}}, {"s": "BTC"}, True),
        ({"s": {"BTC", "ETH"}}, {"s": "ETH", "p": 1}, True),
        ({"s": {"BTC", "ETH"}}, {"s": "SOL"}, False),
        ({"s": {"BTC", "ETH"}}, {}, False),
        ({"s": frozenset({"BTC"})}, {"s": "BTC"}, True),
        ({"s": {"BTC", "ETH"}}, {"s": ["BTC"]}, False),  # a list field is not a member
        ({"s": {"BTC", "ETH"}}, {"s": {"BTC": 1}}, False),
        # JSON's equality for members: 1 == 1.0, True is not 1.
        ({"a": {1, 2}}, {"a": 1.0}, True),
        ({"a": {1.0, 2}}, {"a": 1}, True),
        ({"a": {1, 2}}, {"a": True}, False),
        ({"a": {True, 2}}, {"a": 1}, False),
        ({"a": {True, 2}}, {"a": True}, True),
        ({"a": {False, "x"}}, {"a": 0}, False),
        ({"a": {None, "x"}}, {"a": None}, True),
        ({"a": {"1", 2}}, {"a": 1}, False),
        # With other items, in OR lists, nested in a dict value.
        ({"e": "trade", "s": {"BTC", "ETH"}}, {"e": "trade", "s": "ETH"}, True),
        ({"e": "trade", "s": {"BTC", "ETH"}}, {"e": "depth", "s": "ETH"}, False),
        ({"e": {"trade", "aggTrade"}, "s": {"BTC", "ETH"}}, {"e": "aggTrade", "s": "BTC"}, True),
        ([{"s": {"BTC"}}, {"e": {"x", "y"}}], {"e": "y"}, True),
        ({"o": {"s": {"BTC", "ETH"}}}, {"o": {"s": "ETH", "q": "1"}}, True),
        ({"o": {"s": {"BTC", "ETH"}}}, {"o": {"s": "SOL"}}, False),
        # A list keeps its JSON-array meaning.
        ({"l": ["BTC", "ETH"]}, {"l": ["BTC", "ETH"]}, True),
        ({"l": ["BTC", "ETH"]}, {"l": "BTC"}, False),
        ({"s": {"BTC"}}, ["BTC"], False),  # a list message matches only None/[]
    ],
)
def test_any_of_semantics(matcher: Any, filters: Any, msg: Any, expected: bool) -> None:
    assert matcher(filters, msg) is expected


class Side(enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


@dataclass
class Order:
    s: str
    side: Side


@pytest.mark.parametrize("matcher", [reference_match, match_all])
def test_typed_messages_match_any_of_by_attribute(matcher: Any) -> None:
    assert matcher({"s": {"BTC", "ETH"}}, Order("ETH", Side.BUY))
    assert not matcher({"s": {"SOL"}}, Order("ETH", Side.BUY))
    assert matcher({"side": {Side.BUY}}, Order("ETH", Side.BUY))  # not indexed: still right
    assert not matcher({"side": {Side.SELL}}, Order("ETH", Side.BUY))


class Opaque:
    pass


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"s": set()}, "empty set"),
        ({"s": {b"BTC"}}, "bytes"),
        ({"s": b"BTC"}, "bytes"),
        ({"s": bytearray(b"x")}, "bytes"),
        ({"s": Opaque()}, "identity"),
        ({"s": {Opaque()}}, "identity"),
        ({"s": float("nan")}, "NaN"),
        ({"s": {float("nan"), 1}}, "NaN"),
        ({"s": {(1, 2)}}, "scalar"),
        ({"s": {frozenset({1})}}, "scalar"),
        ({"s": {len}}, "scalar"),
        ({"l": [{"BTC", "ETH"}]}, "inside a list"),
        ({"l": [{"o": {"BTC"}}]}, "inside a list"),
        ({"o": {"s": {b"x"}}}, "filters[0].o.s"),
    ],
)
def test_values_that_can_never_match_are_refused(bad: Any, words: str) -> None:
    with pytest.raises(TypeError, match=re.escape(words)):
        compile_filters(bad)


def test_values_with_their_own_equality_are_kept() -> None:
    # Typed models may carry enums and other value types: not refused.
    assert compile_filters({"side": Side.BUY, "n": {1, 2.5, None, "x"}}) is not None


def test_compiled_set_is_a_copy() -> None:
    symbols = {"BTC"}
    clauses = compile_filters({"s": symbols})
    symbols.add("ETH")
    index: Index[str] = Index()
    index.add("t", clauses)
    assert index.match({"s": "ETH"}) == []


def test_a_set_costs_one_probe_and_one_candidate() -> None:
    index: Index[int] = Index()
    index.add(0, compile_filters({"s": {f"SYM{i}" for i in range(1000)}}))
    for i in range(1, 1000):
        index.add(i, compile_filters({"s": {f"SYM{i}", f"ALT{i}"}}))
    assert len(index.keys) == 1
    assert [c.target for c in index.candidates({"s": "SYM500"})] == [0, 500]
    assert [c.target for c in index.candidates({"s": "ALT7"})] == [7]
    assert index.match({"s": "ALT7"}) == [7]
    assert index.scan == []


def test_set_filed_under_the_smallest_item() -> None:
    index: Index[int] = Index()
    for i in range(10):
        index.add(i, compile_filters({"e": "trade", "s": {f"S{i}", f"T{i}"}}))
    # The first clause takes the empty ("e", "trade") bucket; the rest go under "s".
    assert len(list(index.candidates({"e": "trade", "s": "T5"}))) == 2
    assert index.match({"e": "trade", "s": "T5"}) == [5]


def test_remove_empties_every_member_bucket() -> None:
    index: Index[str] = Index()
    index.add("a", compile_filters({"s": {"X", "Y", True}}))
    index.add("b", compile_filters([{"s": {"Y", "Z"}}, {"s": "X"}]))
    assert index.match({"s": "Y"}) == ["a", "b"]
    assert index.match({"s": True}) == ["a"]
    assert index.match({"s": 1}) == []
    index.remove("a")
    assert index.match({"s": "X"}) == ["b"]
    assert index.match({"s": True}) == []
    index.remove("b")
    assert len(index) == 0 and index.keys == [] and index.scan == []


def test_hub_delivers_once_when_several_items_and_clauses_match() -> None:
    hub = Hub()
    one = hub.open_stream({"s": {"A", "B"}, "t": {"A", "B"}})
    many = hub.open_stream([{"s": {"A", "B"}}, {"t": {"B", "C"}}, {"s": "A"}])
    hub.publish({"s": "A", "t": "B"})
    hub.publish({"s": "C", "t": "C"})
    assert one.statistics().buffered == 1
    assert many.statistics().buffered == 2
    assert one.receive_nowait() == {"s": "A", "t": "B"}
    assert [many.receive_nowait(), many.receive_nowait()] == [
        {"s": "A", "t": "B"},
        {"s": "C", "t": "C"},
    ]
    hub.close()


def boom(value: Any) -> bool:
    raise ValueError("bad predicate")


def test_filter_predicate_errors_name_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub()
    hub.open_stream({"s": {"A"}, "p": boom}, name="prices")
    hub.add_handler(lambda m: None, [{"s": "A", "q": boom}])
    with caplog.at_level(logging.ERROR, logger="wsmux"):
        hub.publish({"s": "A", "p": 1, "q": 2})
    assert hub.filter_errors == 2
    lines = [r.getMessage() for r in caplog.records]
    assert "stream 'prices'" in lines[0] and "bad predicate" in lines[0]
    hub.close()


def test_unnamed_stream_is_named_by_its_repr(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub()
    hub.open_stream({"s": "A", "p": boom})
    with caplog.at_level(logging.ERROR, logger="wsmux"):
        hub.publish({"s": "A", "p": 1})
    assert "<Stream open" in caplog.records[0].getMessage()
    hub.close()


# -- property: with set values, the index agrees with the reference ----------

keys = st.sampled_from(["e", "s", "p", "o"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1, 2),
    st.sampled_from([0.0, 1.0, 2.5]),
    st.sampled_from(["a", "b", "1"]),
)
message_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(keys, inner, max_size=2)),
    max_leaves=4,
)
messages = st.one_of(
    st.dictionaries(keys, message_values, max_size=4), st.lists(scalars, max_size=2)
)
any_of = st.one_of(st.frozensets(scalars, min_size=1, max_size=4), st.sets(scalars, min_size=1))
array_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(keys, inner, max_size=2)),
    max_leaves=3,
)
filter_values = st.recursive(
    st.one_of(scalars, any_of, any_of, st.lists(array_values, max_size=2)),
    lambda inner: st.dictionaries(keys, inner, max_size=2),
    max_leaves=3,
)
clauses = st.dictionaries(keys, filter_values, max_size=3)
filters = st.one_of(st.none(), clauses, st.lists(clauses, max_size=3))


@settings(max_examples=400, deadline=None)
@given(st.lists(filters, min_size=1, max_size=8), st.lists(messages, min_size=1, max_size=8))
def test_index_with_sets_agrees_with_reference(flts: list[Any], msgs: list[Any]) -> None:
    index: Index[int] = Index()
    hub = Hub()
    streams = []
    for i, flt in enumerate(flts):
        index.add(i, compile_filters(flt))
        streams.append(hub.open_stream(flt, maxsize=100))
    for msg in msgs:
        expected = {i for i, flt in enumerate(flts) if reference_match(flt, msg)}
        got = index.match(msg)
        assert len(got) == len(set(got))
        assert set(got) == expected
        hub.publish(msg)
    for i, flt in enumerate(flts):  # the hub's inlined loop, each message at most once
        assert list(streams[i]._buf) == [m for m in msgs if reference_match(flt, m)]
    for i in range(0, len(flts), 2):
        index.remove(i)
    for msg in msgs:
        expected = {i for i, flt in enumerate(flts) if i % 2 and reference_match(flt, msg)}
        assert set(index.match(msg)) == expected
    hub.close()
