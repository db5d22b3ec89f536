"""The specification the matcher's index is tested against (tests only)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wsmux.fanout._match import Filters, matches


def reference_match(filters: Filters, msg: Any) -> bool:
    """Match a message against a filter the slow, obvious way.

    This is the specification the index is tested against.

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
    return any(matches(clause, msg) for clause in filters)
