"""Filter semantics and the index, with no socket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fanout._reference import SEMANTICS_CASES, reference_match
from hypothesis import given, settings
from hypothesis import strategies as st

from wsmux.fanout._match import Index, compile_filters


def match_all(filters: Any, msg: Any) -> bool:
    index: Index[str] = Index()
    index.add("t", compile_filters(filters))
    return index.match(msg) == ["t"]


@pytest.mark.parametrize("matcher", [reference_match, match_all])
@pytest.mark.parametrize(("filters", "msg", "expected"), SEMANTICS_CASES)
def test_filter_semantics(matcher: Any, filters: Any, msg: Any, expected: bool) -> None:
    assert matcher(filters, msg) is expected


@dataclass
class Trade:
    s: str
    p: float


@pytest.mark.parametrize("matcher", [reference_match, match_all])
def test_typed_messages_match_by_attribute(matcher: Any) -> None:
    assert matcher({"s": "BTC"}, Trade("BTC", 1.0))
    assert not matcher({"s": "ETH"}, Trade("BTC", 1.0))
    assert matcher({"p": lambda p: p > 0.5}, Trade("BTC", 1.0))
    assert not matcher({"missing": 1}, Trade("BTC", 1.0))


@pytest.mark.parametrize(
    "bad",
    ["e=trade", 5, [{"a": 1}, "b"], [{1: 2}], {"a": [{3, 4}]}, {"a": {"b": set()}}, ({"a": 1}, 7)],
)
def test_bad_filters_raise_type_error_at_once(bad: Any) -> None:
    with pytest.raises(TypeError):
        compile_filters(bad)


def test_compile_copies_the_filter() -> None:
    flt = {"s": "A"}
    clauses = compile_filters(flt)
    flt["s"] = "B"
    assert clauses == [{"s": "A"}]


def test_index_probes_only_matching_buckets() -> None:
    index: Index[int] = Index()
    for i in range(10_000):
        index.add(i, compile_filters({"s": f"SYM{i}"}))
    assert len(list(index.candidates({"s": "SYM42", "e": "trade"}))) == 1
    assert index.match({"s": "SYM42"}) == [42]
    assert list(index.candidates({"s": "NOPE"})) == []


def test_index_spreads_clauses_over_the_smallest_bucket() -> None:
    index: Index[int] = Index()
    for i in range(1000):
        index.add(i, compile_filters({"e": "trade", "s": f"SYM{i}"}))
    # Only the first clause may sit in the ("e", "trade") bucket.
    assert len(list(index.candidates({"e": "trade", "s": "SYM500"}))) <= 2
    assert index.match({"e": "trade", "s": "SYM500"}) == [500]


def test_index_remove_and_empty_buckets() -> None:
    index: Index[str] = Index()
    index.add("a", compile_filters([{"s": "X"}, {"flag": True}]))
    index.add("b", compile_filters({"s": "X"}))
    index.add("c", None)
    index.add("d", compile_filters({"o": {"s": "X"}}))
    assert index.match({"s": "X", "flag": True}) == ["c", "a", "b"]
    index.remove("a")
    index.remove("a")  # removing twice is harmless
    index.remove("c")
    index.remove("d")
    assert index.match({"s": "X", "flag": True}) == ["b"]
    index.remove("b")
    assert len(index) == 0 and index.keys == [] and index.scan == []


def test_unhashable_message_values_do_not_break_the_index() -> None:
    index: Index[str] = Index()
    index.add("a", compile_filters({"s": "X"}))
    assert index.match({"s": ["X"]}) == []
    assert index.match({"s": {"X": 1}}) == []


# -- property: the index agrees with the reference matcher -------------------

keys = st.sampled_from(["e", "s", "p", "o", "n"])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, -1.0, 2.5]),
    st.sampled_from(["a", "b", "1", "X"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(keys, inner, max_size=2)),
    max_leaves=4,
)
messages = st.one_of(
    st.dictionaries(keys, values, max_size=4),
    st.lists(scalars, max_size=2),
)
filter_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(keys, inner, max_size=2)),
    max_leaves=3,
)
filters = st.one_of(
    st.none(),
    st.dictionaries(keys, filter_values, max_size=3),
    st.lists(st.dictionaries(keys, filter_values, max_size=3), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(filters, min_size=1, max_size=8), st.lists(messages, min_size=1, max_size=8))
def test_index_agrees_with_reference(flts: list[Any], msgs: list[Any]) -> None:
    index: Index[int] = Index()
    for i, flt in enumerate(flts):
        index.add(i, compile_filters(flt))
    for msg in msgs:
        expected = {i for i, flt in enumerate(flts) if reference_match(flt, msg)}
        got = index.match(msg)
        assert len(got) == len(set(got))
        assert set(got) == expected
    # and after removing half of them
    for i in range(0, len(flts), 2):
        index.remove(i)
    for msg in msgs:
        expected = {i for i, flt in enumerate(flts) if i % 2 and reference_match(flt, msg)}
        assert set(index.match(msg)) == expected
