"""Subject templates: tokens, escaping, missing fields, filters to subjects (no server)."""

from __future__ import annotations

from typing import Any

import pytest
from fanout._reference import SEMANTICS_CASES, reference_match
from hypothesis import given
from hypothesis import strategies as st

from wsmux import SubjectTemplate
from wsmux.nats._subject import covering, escape, overlap, unescape

T = SubjectTemplate("md.binance.{e}.{s}")


@pytest.mark.parametrize(
    ("msg", "subject"),
    [
        ({"e": "trade", "s": "BTCUSDT"}, "md.binance.trade.BTCUSDT"),
        ({"e": "trade", "s": "BTC.USDT"}, "md.binance.trade.BTC%2EUSDT"),
        ({"e": "a b", "s": "*"}, "md.binance.a%20b.%2A"),
        ({"e": ">", "s": "%"}, "md.binance.%3E.%25"),
        ({"e": "trade"}, "md.binance.trade._"),
        ({"e": "trade", "s": "_"}, "md.binance.trade.%5F"),
        ({"e": "", "s": None}, "md.binance.%.null"),
        ({"e": True, "s": 1.0}, "md.binance.true.1"),
        ({"e": 0.5, "s": -3}, "md.binance.0%2E5.-3"),
        ({"e": {"x": 1}, "s": [1]}, "md.binance._._"),
        ([1, 2], "md.binance._._"),
        ("text", "md.binance._._"),
    ],
)
def test_subjects(msg: Any, subject: str) -> None:
    assert T.subject(msg) == subject


def test_attributes_of_typed_messages() -> None:
    class Trade:
        e = "trade"
        s = "ETHUSDT"

    assert T.subject(Trade()) == "md.binance.trade.ETHUSDT"


@given(st.text())
def test_escaping_is_reversible_and_one_token(text: str) -> None:
    tok = escape(text)
    assert unescape(tok) == text
    assert tok and tok != "_"
    assert not any(c in tok for c in ".*> \t\r\n") and not any(c.isspace() for c in tok)
    assert T.values(T.subject({"e": text, "s": "X"})) == {"e": text, "s": "X"}


@pytest.mark.parametrize(
    "bad", ["md..{e}", "md.{e}x", "md.*.{e}", "md.>", "md", "md.{e}.{e}", "md. x.{e}", "_.{e}"]
)
def test_bad_templates(bad: str) -> None:
    with pytest.raises(ValueError):
        SubjectTemplate(bad)


def test_filters_compile_to_the_narrowest_subjects() -> None:
    def subjects(filters: Any) -> list[str]:
        return covering(T.patterns(filters))

    assert subjects(None) == ["md.binance.*.*"]
    assert subjects({"e": "trade", "s": "BTC.USDT"}) == ["md.binance.trade.BTC%2EUSDT"]
    assert subjects({"s": "X", "p": lambda v: True}) == ["md.binance.*.X"]
    assert subjects({"e": {"trade", "depth"}}) == ["md.binance.depth.*", "md.binance.trade.*"]
    assert subjects({"e": {"o": 1}, "s": [1]}) == ["md.binance.*.*"]
    # Overlapping clauses merge into one subject: each message arrives once.
    assert subjects([{"e": "trade"}, {"s": "X"}]) == ["md.binance.*.*"]
    assert subjects([{"e": "trade", "s": "X"}, {"e": "depth", "s": "X"}]) == [
        "md.binance.depth.X",
        "md.binance.trade.X",
    ]


def test_overlap() -> None:
    assert overlap(("a", "*"), ("a", "b"))
    assert not overlap(("a", "c"), ("a", "b"))
    assert overlap(("a", ">"), ("a", "b", "c"))
    assert not overlap(("a",), ("a", "b"))


@pytest.mark.parametrize(("filters", "msg", "expected"), SEMANTICS_CASES)
def test_a_selected_message_is_on_a_subscribed_subject(
    filters: Any, msg: Any, expected: bool
) -> None:
    t = SubjectTemplate("t.{a}.{b}")
    subject = t.subject(msg).split(".")
    subscribed = [s.split(".") for s in covering(t.patterns(filters))]
    covered = any(
        len(p) == len(subject) and all(x in ("*", y) for x, y in zip(p, subject, strict=True))
        for p in subscribed
    )
    if reference_match(filters, msg):
        assert covered
