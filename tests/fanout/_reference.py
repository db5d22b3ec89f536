"""The specification the matcher's index is tested against (tests only)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from wsmux.fanout._match import Filters, matches

#: (filters, message, selected?): the filter semantics every matcher must
#: honour; used by the matcher's tests and by the NATS round trip (the same
#: filters must select the same messages through bridge + remote streams).
SEMANTICS_CASES: list[tuple[Any, Any, bool]] = [
    (None, {"a": 1}, True),
    ([], {"a": 1}, True),
    ([], [1, 2], True),
    (None, "text", True),
    ([{"a": 1}], [1, 2], False),
    ([{"a": 1}, {"b": 2, "c": 3}], {"a": 1, "c": 2}, True),
    ([{"a": 1}, {"b": 2, "c": 3}], {"b": 2, "c": 3, "d": 4}, True),
    ([{"a": 1}, {"b": 2, "c": 3}], {"a": 2, "c": 2}, False),
    ([{"a": 1}, {"b": 2, "c": 3}], {"b": 2, "c": 4, "d": 4}, False),
    ({"a": 1}, {"a": 1.0}, True),
    ({"a": 1.0}, {"a": 1}, True),
    ({"a": True}, {"a": 1}, False),
    ({"a": 1}, {"a": True}, False),
    ({"a": False}, {"a": 0}, False),
    ({"a": False}, {"a": False}, True),
    ({"a": None}, {"a": None}, True),
    ({"a": None}, {}, False),
    ({"a": "1"}, {"a": 1}, False),
    ({"o": {"s": "BTCUSDT"}}, {"o": {"s": "BTCUSDT", "q": "1"}}, True),
    ({"o": {"s": "BTCUSDT"}}, {"o": {"s": "ETHUSDT"}}, False),
    ({"o": {"s": "BTCUSDT"}}, {"o": "BTCUSDT"}, False),
    ({"o": {}}, {"o": {"x": 1}}, True),
    ({"l": [1, 2]}, {"l": [1.0, 2]}, True),
    ({"l": [1, 2]}, {"l": [1, 2, 3]}, False),
    ({"l": [True]}, {"l": [1]}, False),
    ({"p": lambda v: float(v) > 100}, {"p": "101.5"}, True),
    ({"p": lambda v: float(v) > 100}, {"p": "99"}, False),
    ({"p": lambda v: True}, {}, False),
    ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 1, "d": 2}}}, True),
    ([{}], {"anything": 1}, True),
]


def expand(value: Any) -> list[Any]:
    """Every set-free value a filter value stands for.

    A set is any of its members; a dict stands for every combination of what
    its values stand for; anything else stands for itself.
    """
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, Mapping):
        keys = list(value)
        choices = [expand(value[key]) for key in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]
    return [value]


def reference_match(filters: Filters, msg: Any) -> bool:
    """Match a message against a filter the slow, obvious way.

    This is the specification the index is tested against: a clause with set
    values is the OR of the set-free clauses it expands to.

    Args:
        filters: ``None``, a dict, or a list of dicts.
        msg: The parsed message.

    Returns:
        True when the filter selects the message.
    """
    if isinstance(filters, Mapping):
        filters = [filters]
    if not filters:
        return True
    return any(matches(plain, msg) for clause in filters for plain in expand(clause))
