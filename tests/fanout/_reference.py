"""The specification the matcher's index is tested against (tests only)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from wsmux.fanout._match import Filters, matches


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
