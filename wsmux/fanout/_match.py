"""Filter matching, and the index that keeps it flat in the number of filters.

A filter is ``None`` or ``[]`` (every message), a dict (AND over its items), or
a list of dicts (OR over them). An item matches when the key is present and
the value equal under JSON's rules (``True`` is not ``1``, ``1 == 1.0``); a
set value matches when the field equals any member (``{"s": {"BTCUSDT",
"ETHUSDT"}}``); a dict value matches as a nested subset; a list value is a
JSON array, compared item by item; a callable value is a predicate on the
field. Messages that are not mappings are matched by attribute.

Values that could never equal a parsed field (bytes, NaN, an empty set,
objects that compare by identity, sets inside a list) are refused when the
filter is compiled, so a mistake shows at ``stream_filter`` and not as a
stream that stays silent.

:class:`Index` maps (key, scalar value) to the clauses that name it, so that
publishing one message probes one dict per indexed key instead of testing
every filter. A set of scalars is filed under each of its members, so it
costs the same one probe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, Final, Generic, TypeAlias, TypeVar

__all__ = ["AnyOf", "Clause", "Filters", "Index", "compile_filters", "matches"]

Filters: TypeAlias = "Mapping[str, Any] | Sequence[Mapping[str, Any]] | None"

_MISSING: Final = object()
_SCALARS: Final = (str, int, float, bool, type(None))
_IDENTITY_EQ: Final[Any] = object.__eq__

T = TypeVar("T")


def _json_eq(want: Any, got: Any) -> bool:
    """Equality as JSON sees it: booleans are not numbers, 1 == 1.0."""
    if want.__class__ is bool or got.__class__ is bool:
        return want.__class__ is got.__class__ and bool(want == got)
    if isinstance(want, list | tuple):
        if not isinstance(got, list | tuple) or len(want) != len(got):
            return False
        return all(_json_eq(w, g) for w, g in zip(want, got, strict=True))
    return bool(want == got)


def _field(msg: Any, key: str) -> Any:
    if isinstance(msg, Mapping):
        return msg.get(key, _MISSING)
    if isinstance(msg, list | tuple | str | bytes):
        return _MISSING
    return getattr(msg, key, _MISSING)


class AnyOf:
    """A compiled set value: the field equals any member, under JSON's rules.

    Booleans are kept apart from the other members, as the index keeps them,
    so that ``True`` never matches a member ``1`` (nor ``1`` a member
    ``True``) while ``1.0`` still matches ``1``.

    Attributes:
        values: The members that are not booleans.
        bools: The boolean members.
    """

    __slots__ = ("bools", "values")

    def __init__(self, members: frozenset[Any]) -> None:
        self.values = frozenset(m for m in members if m.__class__ is not bool)
        self.bools = frozenset(m for m in members if m.__class__ is bool)

    def __repr__(self) -> str:
        return f"AnyOf({set(self.values | self.bools)!r})"

    def __contains__(self, got: Any) -> bool:
        try:
            return got in (self.bools if got.__class__ is bool else self.values)
        except TypeError:  # an unhashable field (a list, a dict) equals no scalar
            return False

    def members(self) -> frozenset[Any]:
        """Return every member."""
        return self.values | self.bools


def _item_matches(want: Any, got: Any) -> bool:
    if got is _MISSING:
        return False
    if want.__class__ is AnyOf:
        return got in want
    if isinstance(want, Mapping):
        if isinstance(got, list | tuple | str | bytes | int | float) or got is None:
            return False
        return all(_item_matches(w, _field(got, k)) for k, w in want.items())
    if callable(want):
        return bool(want(got))
    return _json_eq(want, got)


def matches(clause: Mapping[str, Any], msg: Any) -> bool:
    """Tell whether one AND-clause matches a message.

    Args:
        clause: A dict of key to expected value.
        msg: The parsed message.

    Returns:
        True when every item of the clause matches.
    """
    if isinstance(msg, list | tuple):
        return False
    return all(_item_matches(want, _field(msg, key)) for key, want in clause.items())


def _refusal(value: Any) -> str | None:
    """Why a scalar-like filter value could never equal a field, or None."""
    if value is None or isinstance(value, str | int | bool):
        return None
    if isinstance(value, float):
        return "NaN equals nothing" if value != value else None
    if isinstance(value, bytes | bytearray | memoryview):
        return "a parsed field is never bytes: use a str"
    if type(value).__eq__ is _IDENTITY_EQ and not isinstance(value, Enum):
        return f"{type(value).__name__} compares by identity: use a predicate"
    try:
        hash(value)
    except TypeError:
        return f"unsupported type {type(value).__name__}: use a scalar, dict, list, set or callable"
    return None


def _compile_value(path: str, value: Any, in_array: bool = False) -> Any:
    """Check one filter value and return it as the matcher wants it."""
    if callable(value):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, sub in value.items():
            if not isinstance(key, str):
                raise TypeError(f"filter key {path}.{key!r} must be a str")
            out[key] = _compile_value(f"{path}.{key}", sub, in_array)
        return value if in_array else out
    if isinstance(value, list | tuple):
        for i, sub in enumerate(value):
            _compile_value(f"{path}[{i}]", sub, in_array=True)
        return value
    if isinstance(value, set | frozenset):
        if in_array:
            raise TypeError(
                f"filter value at {path} is a set inside a list: a list is a JSON array,"
                " compared item by item; use a list of clauses for alternatives"
            )
        if not value:
            raise TypeError(f"filter value at {path} is an empty set, which matches nothing")
        for member in value:
            why = (
                "a member must be a scalar"
                if isinstance(member, Mapping | list | tuple | frozenset) or callable(member)
                else _refusal(member)
            )
            if why is not None:
                raise TypeError(
                    f"filter value at {path} has a member {member!r} that can never match: {why}"
                )
        return AnyOf(frozenset(value))
    why = _refusal(value)
    if why is not None:
        raise TypeError(f"filter value at {path} ({value!r}) can never match: {why}")
    return value


def compile_filters(filters: Filters) -> list[dict[str, Any]] | None:
    """Validate a filter and normalise it to a list of clauses.

    Args:
        filters: ``None``, ``[]``, a dict, or a list (or tuple) of dicts.

    Returns:
        ``None`` for "every message", else a list of clause dicts (copies, so
        later changes by the caller have no effect; sets become
        :class:`AnyOf`).

    Raises:
        TypeError: The filter is not a dict or a list of dicts, a key is not a
            str, or a value could never match (bytes, NaN, an object that
            compares by identity, an empty set, a set with a member that is
            not a scalar, a set inside a list).
    """
    if filters is None:
        return None
    if isinstance(filters, Mapping):
        filters = [filters]
    if isinstance(filters, str | bytes) or not isinstance(filters, Sequence):
        raise TypeError(
            f"filters must be None, a dict or a list of dicts, not {type(filters).__name__}"
        )
    if not filters:
        return None
    clauses = []
    for i, clause in enumerate(filters):
        if not isinstance(clause, Mapping):
            raise TypeError(f"filters[{i}] must be a dict, not {type(clause).__name__}")
        compiled = {}
        for key, value in clause.items():
            if not isinstance(key, str):
                raise TypeError(f"filter key {key!r} in filters[{i}] must be a str")
            compiled[key] = _compile_value(f"filters[{i}].{key}", value)
        clauses.append(compiled)
    return clauses


class Clause(Generic[T]):
    """One AND-clause of a subscriber's filter, as stored in the index.

    Attributes:
        target: The subscriber the clause belongs to.
        rest: Items still to check after the index probe, or None when the
            probe alone decides.
        put: The target's delivery function when the probe alone decides
            and the target takes the message with no more checks (given to
            :meth:`Index.add`); None otherwise.
    """

    __slots__ = ("_slot", "put", "rest", "target")

    def __init__(self, target: T, rest: dict[str, Any] | None) -> None:
        self.target = target
        self.rest = rest
        self.put: Callable[[Any], None] | None = None
        #: The key the clause is filed under, and the values of its buckets.
        self._slot: tuple[str, tuple[Any, ...]] | None = None


def _indexable(value: Any) -> bool:
    return isinstance(value, _SCALARS) and not (isinstance(value, float) and value != value)


def _bucket_values(value: Any) -> tuple[Any, ...] | None:
    """The values a clause item can be filed under, or None if not indexable."""
    if value.__class__ is AnyOf:
        members = tuple(value.members())
        return members if all(_indexable(m) for m in members) else None
    return (value,) if _indexable(value) else None


class Index(Generic[T]):
    """Subscribers indexed by the scalar values their filters name.

    Each clause is filed under one of its (key, scalar value) items, the one
    whose bucket is smallest when it is added, so that a message probes one
    dict per indexed key and tests only the clauses that can match. An item
    whose value is a set of scalars is filed under each member, in one bucket
    per member: a message has one value for the key, so it finds the clause
    once. Clauses with no indexable item are tested against every mapping
    message; targets with no filter receive everything.

    Lists are replaced, never changed in place, so a publish loop that is
    iterating one is not disturbed when a subscriber leaves during delivery.

    For publishing, :attr:`calls` maps each (key, value) to the one
    subscriber's ``put`` when its clause alone fills the bucket and the
    probe decides (10,000 symbol streams: one dict probe and one call per
    message), else to the bucket itself (a list), for the publisher to
    check and deliver clause by clause.
    """

    __slots__ = ("_bools", "_filed", "_values", "calls", "catch_all", "keys", "scan")

    def __init__(self) -> None:
        self._values: dict[str, dict[Any, list[Clause[T]]]] = {}
        self._bools: dict[str, dict[Any, list[Clause[T]]]] = {}
        self._filed: dict[int, list[Clause[T]]] = {}
        #: (key, value table, bool table) for each key some clause is filed under.
        self.keys: list[tuple[str, dict[Any, list[Clause[T]]], dict[Any, list[Clause[T]]]]] = []
        #: (key, value -> put or bucket, bool -> put or bucket), as ``keys``.
        self.calls: list[tuple[str, dict[Any, Any], dict[Any, Any]]] = []
        #: Clauses with no scalar item, tested against every message.
        self.scan: list[Clause[T]] = []
        #: Targets with no filter.
        self.catch_all: list[T] = []

    def __len__(self) -> int:
        return len(self._filed) + len(self.catch_all)

    def add(
        self,
        target: T,
        clauses: list[dict[str, Any]] | None,
        put: Callable[[Any], None] | None = None,
    ) -> None:
        """File a target under its compiled filter.

        Args:
            target: The subscriber.
            clauses: The output of :func:`compile_filters`.
            put: Delivers a message to the target; called directly for a
                clause the probe alone decides. Give it only for a target of
                one clause (several could match one message, and must
                deliver it once).
        """
        if clauses is None:
            self.catch_all = [*self.catch_all, target]
            return
        filed: list[Clause[T]] = []
        for clause in clauses:
            best: tuple[str, tuple[Any, ...]] | None = None
            best_size = -1
            for key, value in clause.items():
                values = _bucket_values(value)
                if values is not None:
                    size = sum(len(self._table(key, v).get(v, ())) for v in values)
                    if best is None or size < best_size:
                        best, best_size = (key, values), size
            if best is None:
                entry: Clause[T] = Clause(target, clause)
                self.scan = [*self.scan, entry]
            else:
                key, values = best
                entry = Clause(target, {k: v for k, v in clause.items() if k != key} or None)
                if entry.rest is None:
                    entry.put = put
                entry._slot = best
                if key not in self._values:
                    self._values[key], self._bools[key] = {}, {}
                    self.keys = [*self.keys, (key, self._values[key], self._bools[key])]
                    self.calls = [*self.calls, (key, {}, {})]
                for value in values:
                    table = self._table(key, value)
                    table[value] = [*table.get(value, ()), entry]
                    self._refresh(key, value)
            filed.append(entry)
        self._filed[id(target)] = filed

    def filed(self, target: T) -> list[Clause[T]]:
        """Return the clauses a target is filed under (none for catch-all).

        Args:
            target: The subscriber.

        Returns:
            Its clauses, in the index.
        """
        return self._filed.get(id(target), [])

    def remove(self, target: T) -> None:
        """Remove a target; removing one that is not filed does nothing.

        Args:
            target: The subscriber.
        """
        filed = self._filed.pop(id(target), None)
        if filed is None:
            if any(t is target for t in self.catch_all):
                self.catch_all = [t for t in self.catch_all if t is not target]
            return
        for entry in filed:
            if entry._slot is None:
                self.scan = [c for c in self.scan if c is not entry]
                continue
            key, values = entry._slot
            for value in values:
                table = self._table(key, value)
                bucket = [c for c in table[value] if c is not entry]
                if bucket:
                    table[value] = bucket
                else:
                    del table[value]
                self._refresh(key, value)
            if not self._values[key] and not self._bools[key]:
                del self._values[key], self._bools[key]
                self.keys = [k for k in self.keys if k[0] != key]
                self.calls = [k for k in self.calls if k[0] != key]

    def _table(self, key: str, value: Any) -> dict[Any, list[Clause[T]]]:
        tables = self._bools if value.__class__ is bool else self._values
        return tables.get(key, {})

    def _refresh(self, key: str, value: Any) -> None:
        """Recompute what :attr:`calls` holds for one bucket."""
        for name, values, bools in self.calls:
            if name == key:
                calls = bools if value.__class__ is bool else values
                bucket = self._table(key, value).get(value)
                if not bucket:
                    calls.pop(value, None)
                elif len(bucket) == 1 and bucket[0].put is not None:
                    calls[value] = bucket[0].put
                else:
                    calls[value] = bucket
                return

    def candidates(self, msg: Any) -> Iterator[Clause[T]]:
        """Yield the clauses that may match a message.

        Args:
            msg: The parsed message.

        Yields:
            Clauses found by the index, then the scan list; check ``rest``.
        """
        if isinstance(msg, list | tuple):
            return
        for key, values, bools in self.keys:
            got = _field(msg, key)
            if got is _MISSING:
                continue
            try:
                bucket = (bools if got.__class__ is bool else values).get(got)
            except TypeError:  # an unhashable value equals no scalar
                continue
            if bucket:
                yield from bucket
        yield from self.scan

    def match(self, msg: Any) -> list[T]:
        """Return every target whose filter selects the message, each once.

        This is the readable twin of the inlined loop in ``Hub.publish``.

        Args:
            msg: The parsed message.

        Returns:
            The matching targets, catch-all targets first.
        """
        found = list(self.catch_all)
        seen = {id(t) for t in found}
        for clause in self.candidates(msg):
            if id(clause.target) not in seen and (clause.rest is None or matches(clause.rest, msg)):
                seen.add(id(clause.target))
                found.append(clause.target)
        return found
