"""Subjects from message fields, and the subjects a filter needs.

A :class:`SubjectTemplate` such as ``"md.binance.{e}.{s}"`` is a dotted NATS
subject whose tokens are either literal or a whole ``{field}``. The bridge
fills the fields from each message; a remote stream turns its filter into
the narrowest subject patterns that cover it (a field the filter names with
a scalar becomes that token, any other field ``*``) and checks the rest of
the filter locally.

Tokens (the contract, shared by both sides):

* a string is percent-escaped: ``%``, ``.``, ``*``, ``>`` and every
  whitespace or control character become ``%XX`` (upper-case hex of their
  UTF-8 bytes), so no value can add a level or a wildcard; the escaping is
  reversible (:func:`unescape`); the empty string is ``%`` and the string
  ``"_"`` is ``%5F``;
* ``True``/``False``/``None`` are ``true``/``false``/``null``; a number is
  its shortest decimal form, integral floats as ints (``1.0`` -> ``1``, as
  JSON's ``1 == 1.0``), other floats escaped (``0.5`` -> ``0%2E5``);
* a missing field, or one whose value is not a scalar (a dict, a list), is
  ``_``. No message is unroutable: ``md.binance.trade._`` is a trade without
  ``s``, and a message with no field at all goes to ``md.binance._._``.

A token does not carry its value's type (``"1"`` and ``1`` share ``1``):
subjects only narrow what a remote consumer receives; the filter itself
decides, with the same matcher as a local stream.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..fanout._match import AnyOf, compile_filters

__all__ = ["MISSING", "SubjectTemplate", "covering", "escape", "overlap", "token", "unescape"]

#: The token of a missing (or non-scalar) field.
MISSING: Final = "_"
#: The most concrete patterns one filter clause may expand to (sets of values
#: multiply); past it, the widest field becomes ``*``.
MAX_PATTERNS: Final = 64

#: Subjects remembered by their (string) field values.
_CACHE_SIZE: Final = 1 << 16

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_UNSAFE = re.compile(r"[%.*>\s\x00-\x1f\x7f]")


def escape(text: str) -> str:
    """Escape a string into one subject token (reversible, see the module doc).

    Args:
        text: The value.

    Returns:
        The token.
    """
    if not text:
        return "%"
    if text == MISSING:
        return "%5F"
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def unescape(tok: str) -> str:
    """Undo :func:`escape`.

    Args:
        tok: A token made by :func:`escape`.

    Returns:
        The original string.
    """
    if tok == "%":
        return ""
    if "%" not in tok:
        return tok
    out = bytearray()
    i = 0
    raw = tok.encode()
    while i < len(raw):
        if raw[i] == 0x25:  # "%"
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode()


def token(value: Any) -> str:
    """The subject token of a field value (``_`` for a non-scalar).

    Args:
        value: The field's value.

    Returns:
        The token.
    """
    cls = value.__class__
    if cls is str:
        return escape(value)
    if cls is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if cls is int:
        return str(value)
    if cls is float:
        if value.is_integer():
            return str(int(value))
        return escape(repr(value))
    if isinstance(value, str):  # a str subclass, an enum.StrEnum
        return escape(str(value))
    if isinstance(value, int):  # an int subclass (IntEnum)
        return str(int(value))
    return MISSING


def overlap(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Tell whether some subject matches both patterns.

    Args:
        a: A pattern, as tokens.
        b: Another.

    Returns:
        True when they overlap.
    """
    for x, y in zip(a, b, strict=False):
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return len(a) == len(b)


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """The narrowest single pattern that covers two overlapping patterns."""
    out: list[str] = []
    for x, y in zip(a, b, strict=False):
        if x == ">" or y == ">":
            return (*out, ">")
        out.append(x if x == y else "*")
    return tuple(out)


def covering(patterns: set[tuple[str, ...]]) -> list[str]:
    """Reduce patterns to a set that covers them all with no two overlapping.

    Overlapping patterns are merged (tokens that differ become ``*``), so a
    subject matches at most one subscription and every message is received
    once; JetStream also refuses a consumer whose filters overlap.

    Args:
        patterns: Patterns as token tuples.

    Returns:
        The subjects, sorted.
    """
    work = set(patterns)
    changed = True
    while changed:
        changed = False
        items = sorted(work)
        for a, b in itertools.combinations(items, 2):
            if overlap(a, b):
                work.discard(a)
                work.discard(b)
                work.add(_merge(a, b))
                changed = True
                break
    return sorted(".".join(p) for p in work)


class SubjectTemplate:
    """A NATS subject built from message fields: ``"md.binance.{e}.{s}"``.

    Args:
        template: Dotted tokens, each literal or a whole ``{field}``
            (top-level keys of a mapping, attributes of another object).

    Raises:
        ValueError: An empty token, a field inside a literal token, a
            wildcard or whitespace in a literal, or no field at all.
    """

    __slots__ = ("_cache", "_literal", "_parts", "fields", "template")

    def __init__(self, template: str) -> None:
        if not isinstance(template, str):
            raise TypeError(f"subject template must be a str, not {type(template).__name__}")
        self.template = template
        parts: list[tuple[str, bool]] = []
        for tok in template.split("."):
            m = _FIELD.fullmatch(tok)
            if m is not None:
                parts.append((m.group(1), True))
                continue
            if not tok or "{" in tok or "}" in tok or _UNSAFE.search(tok) or tok == MISSING:
                raise ValueError(
                    f"invalid subject template {template!r}: token {tok!r} must be a literal"
                    " (no '.', '*', '>', '%', whitespace, braces; not '_') or a whole {field}"
                )
            parts.append((tok, False))
        self._parts = tuple(parts)
        self.fields = tuple(name for name, is_field in parts if is_field)
        if not self.fields:
            raise ValueError(f"subject template {template!r} names no {{field}}")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError(f"subject template {template!r} names a field twice")
        self._literal = tuple(None if f else name for name, f in parts)
        self._cache: dict[tuple[Any, ...], str] = {}

    def __repr__(self) -> str:
        return f"SubjectTemplate({self.template!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SubjectTemplate) and other.template == self.template

    def __hash__(self) -> int:
        return hash(self.template)

    @property
    def wildcard(self) -> str:
        """The pattern of every subject the template makes (``md.binance.*.*``)."""
        return ".".join("*" if lit is None else lit for lit in self._literal)

    @property
    def gap_subject(self) -> str:
        """Where the bridge publishes gap markers: every field ``_``."""
        return ".".join(MISSING if lit is None else lit for lit in self._literal)

    def subject(self, msg: Any) -> str:
        """Build the subject of one message.

        Args:
            msg: The parsed message.

        Returns:
            The subject (missing or non-scalar fields give ``_``).
        """
        if msg.__class__ is dict:
            # The hot path: string fields, seen before (symbols repeat).
            values = tuple(map(msg.get, self.fields))
            if all(v.__class__ is str for v in values):
                found = self._cache.get(values)
                if found is None:
                    if len(self._cache) >= _CACHE_SIZE:
                        self._cache.clear()
                    found = self._cache[values] = self._build(msg.get)
                return found
        get: Callable[[str, Any], Any]
        if isinstance(msg, Mapping):
            get = msg.get
        elif isinstance(msg, list | tuple | str | bytes):
            return self.gap_subject
        else:
            get = functools.partial(getattr, msg)
        return self._build(get)

    def _build(self, get: Callable[[str, Any], Any]) -> str:
        out = []
        for name, is_field in self._parts:
            if is_field:
                value = get(name, _ABSENT)
                out.append(MISSING if value is _ABSENT else token(value))
            else:
                out.append(name)
        return ".".join(out)

    def values(self, subject: str) -> dict[str, str | None]:
        """Read the field tokens of a subject back (unescaped).

        Args:
            subject: A subject made by :meth:`subject`.

        Returns:
            Field name to its unescaped token, None for ``_``.

        Raises:
            ValueError: The subject does not fit the template.
        """
        toks = subject.split(".")
        if len(toks) != len(self._parts):
            raise ValueError(f"subject {subject!r} does not fit {self.template!r}")
        out: dict[str, str | None] = {}
        for (name, is_field), tok in zip(self._parts, toks, strict=True):
            if is_field:
                out[name] = None if tok == MISSING else unescape(tok)
            elif tok != name:
                raise ValueError(f"subject {subject!r} does not fit {self.template!r}")
        return out

    def patterns(self, filters: Any) -> set[tuple[str, ...]]:
        """The subject patterns that cover every message a filter selects.

        Args:
            filters: A filter, as for ``stream_filter``.

        Returns:
            Patterns as token tuples (not yet reduced by :func:`covering`).

        Raises:
            TypeError: The filter is malformed.
        """
        clauses = compile_filters(filters)
        if clauses is None:
            return {tuple(self.wildcard.split("."))}
        out: set[tuple[str, ...]] = set()
        for clause in clauses:
            choices: list[list[str]] = []
            for name, is_field in self._parts:
                if not is_field:
                    choices.append([name])
                    continue
                choices.append(_tokens_for(clause.get(name, _ABSENT)))
            total = 1
            for c in choices:
                total *= len(c)
            while total > MAX_PATTERNS:
                widest = max(range(len(choices)), key=lambda i: len(choices[i]))
                total //= len(choices[widest])
                choices[widest] = ["*"]
            out.update(itertools.product(*choices))
        return out


_ABSENT: Final = object()


def _tokens_for(want: Any) -> list[str]:
    """The tokens a field may have when a clause item holds (``*``: any)."""
    if want is _ABSENT or callable(want) or isinstance(want, Mapping | list | tuple):
        return ["*"]
    if want.__class__ is AnyOf:
        return sorted({token(v) for v in want.members()})
    return [token(want)]
