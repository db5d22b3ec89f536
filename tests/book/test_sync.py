"""The sync rules and BookSync, driven by hand-made sequences: no socket, no loop."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from wsmux.book import (
    BinanceFuturesRule,
    BinanceSpotRule,
    BookSync,
    ContiguousRule,
    OutOfSync,
)

SNAP = {"lastUpdateId": 100, "bids": [["10.0", "1"], ["9.0", "2"]], "asks": [["11.0", "3"]]}


def spot(U: int, u: int, b: Any = (), a: Any = ()) -> dict[str, Any]:
    return {"e": "depthUpdate", "U": U, "u": u, "pu": U - 1, "b": list(b), "a": list(a)}


def fut(U: int, u: int, pu: int, b: Any = (), a: Any = ()) -> dict[str, Any]:
    return {"e": "depthUpdate", "U": U, "u": u, "pu": pu, "b": list(b), "a": list(a)}


# -- the rules alone ----------------------------------------------------------------


def test_spot_rule() -> None:
    rule = BinanceSpotRule()
    assert rule.first(100, spot(90, 100)) == "drop"  # u <= lastUpdateId
    assert rule.first(100, spot(95, 101)) == "apply"  # U <= 101 <= u
    assert rule.first(100, spot(101, 103)) == "apply"
    assert rule.first(100, spot(102, 104)) == "stale"  # 101 is missing
    assert rule.next(103, spot(104, 106)) == "apply"
    assert rule.next(103, spot(105, 106)) == "gap"
    assert rule.next(103, spot(101, 103)) == "drop"  # an old one


def test_futures_rule() -> None:
    rule = BinanceFuturesRule()
    assert rule.first(100, fut(90, 99, 89)) == "drop"  # u < lastUpdateId
    assert rule.first(100, fut(95, 100, 94)) == "apply"  # U <= 100 <= u
    assert rule.first(100, fut(101, 102, 100)) == "stale"
    assert rule.next(102, fut(103, 105, 102)) == "apply"  # pu == previous u
    assert rule.next(102, fut(104, 105, 103)) == "gap"
    assert rule.next(102, fut(99, 101, 98)) == "drop"


def test_contiguous_rule() -> None:
    rule = ContiguousRule("seq")
    assert rule.first(100, {"seq": 100}) == "drop"
    assert rule.first(100, {"seq": 101}) == "apply"
    assert rule.first(100, {"seq": 102}) == "stale"
    assert rule.next(101, {"seq": 102}) == "apply"
    assert rule.next(101, {"seq": 103}) == "gap"
    assert rule.next(101, {"seq": 101}) == "drop"
    assert rule.last_id({"seq": 7}) == 7


# -- BookSync -------------------------------------------------------------------------


def test_buffered_diffs_are_placed_on_the_snapshot() -> None:
    book = BookSync(BinanceSpotRule())
    assert not book.synced and book.last_update_id is None
    for diff in (spot(95, 99), spot(100, 101, b=[["10.0", "0"]]), spot(102, 102, a=[["12", "1"]])):
        assert book.push(diff)
    assert book.statistics().buffered == 3
    assert book.load(SNAP)
    assert book.synced and book.last_update_id == 102
    assert book.bids() == [(D("9.0"), D("2"))]  # the qty-0 level is gone
    assert book.asks() == [(D("11.0"), D("3")), (D("12"), D("1"))]
    assert book.best_bid() == (D("9.0"), D("2")) and book.best_ask() == (D("11.0"), D("3"))
    s = book.statistics()
    assert (s.snapshots, s.applied, s.dropped, s.buffered, s.resyncs) == (1, 2, 1, 0, 0)


def test_snapshot_older_than_first_buffered_diff_must_be_refetched() -> None:
    book = BookSync(BinanceSpotRule())
    book.push(spot(105, 107, b=[["9.5", "1"]]))
    book.push(spot(108, 110))
    assert not book.load(SNAP)  # 101..104 are in neither: fetch again
    assert not book.synced and book.bids() == [] and book.statistics().buffered == 2
    newer = {**SNAP, "lastUpdateId": 106}
    assert book.load(newer)
    assert book.last_update_id == 110 and (D("9.5"), D("1")) in book.bids()
    assert book.statistics().snapshots == 2 and book.statistics().resyncs == 0


def test_stale_snapshot_seen_on_the_first_live_diff() -> None:
    book = BookSync(BinanceSpotRule())
    assert book.load(SNAP) and book.synced  # nothing buffered: the snapshot is the book
    assert not book.push(spot(103, 104))  # past 101: the snapshot was stale
    assert not book.synced and book.bids() == [] and book.statistics().buffered == 1
    assert book.load({**SNAP, "lastUpdateId": 102}) and book.last_update_id == 104


def test_gap_in_U_u_resyncs() -> None:
    book = BookSync(BinanceSpotRule())
    assert book.load(SNAP)
    book.push(spot(101, 102))
    with pytest.raises(OutOfSync) as info:
        book.push(spot(104, 105))  # 103 is missing
    assert info.value.reason.startswith("gap")
    assert not book.synced and book.bids() == [] and book.asks() == []
    s = book.statistics()
    assert s.resyncs == 1 and s.last_reason is not None and s.last_reason.startswith("gap")
    assert book.push(spot(106, 107)) and s.applied == 1  # buffered, waiting for a snapshot


def test_futures_gap_in_pu_resyncs() -> None:
    book = BookSync(BinanceFuturesRule())
    book.push(fut(99, 101, 98))
    assert book.load(SNAP) and book.last_update_id == 101
    book.push(fut(102, 103, 101))
    with pytest.raises(OutOfSync):
        book.push(fut(105, 106, 104))
    assert book.statistics().resyncs == 1


def test_a_crossing_diff_resyncs_and_is_never_visible() -> None:
    seen: list[tuple[Any, Any]] = []
    book = BookSync(on_update=lambda b: seen.append((b.best_bid(), b.best_ask())))
    assert book.load(SNAP)
    with pytest.raises(OutOfSync) as info:
        book.push(spot(101, 101, b=[["11.5", "1"]]))  # a bid above the best ask
    assert "crossed" in info.value.reason
    assert book.best_bid() is None and book.best_ask() is None and not book.synced
    assert all(bid[0] < ask[0] for bid, ask in seen if bid and ask)
    assert len(seen) == 1  # the snapshot only


def test_a_locked_or_crossed_snapshot_resyncs() -> None:
    book = BookSync()
    with pytest.raises(OutOfSync):
        book.load({"lastUpdateId": 1, "bids": [["11", "1"]], "asks": [["11", "1"]]})
    assert not book.synced and book.statistics().resyncs == 1


def test_checksum_mismatch_resyncs() -> None:
    def checksum(book: BookSync, diff: Any) -> bool:
        return len(book.bids()) + len(book.asks()) == diff["levels"]

    book = BookSync(BinanceSpotRule(), checksum=checksum)
    assert book.load(SNAP)
    book.push({**spot(101, 101, a=[["12", "1"]]), "levels": 4})
    assert book.last_update_id == 101
    with pytest.raises(OutOfSync, match="checksum"):
        book.push({**spot(102, 102, a=[["13", "1"]]), "levels": 4})  # 5 levels now
    assert not book.synced and book.statistics().resyncs == 1


def test_contiguous_sequence_book() -> None:
    book = BookSync(ContiguousRule("seq", bids="bids", asks="asks"))
    book.push({"seq": 100, "bids": [["1", "1"]], "asks": []})
    book.push({"seq": 101, "bids": [["2", "1"]], "asks": []})
    assert book.load({"lastUpdateId": 100, "bids": [], "asks": [["3", "1"]]})
    assert book.bids() == [(D("2"), D("1"))] and book.last_update_id == 101
    with pytest.raises(OutOfSync):
        book.push({"seq": 103, "bids": [], "asks": []})


def test_malformed_diff_resyncs() -> None:
    book = BookSync()
    assert book.load(SNAP)
    with pytest.raises(OutOfSync, match="malformed"):
        book.push({"U": 101, "u": 101, "b": [["x", "1"]], "a": []})
    with pytest.raises(OutOfSync, match="malformed"):
        book.load({"bids": [], "asks": []})


def test_floats_are_parsed_by_repr_and_depth_limits() -> None:
    book = BookSync()
    assert book.load({"lastUpdateId": 1, "bids": [[0.1, 1], [0.05, 2]], "asks": [[0.3, 1.5]]})
    assert book.bids() == [(D("0.1"), D("1")), (D("0.05"), D("2"))]
    assert book.bids(1) == [(D("0.1"), D("1"))] and book.bids(0) == []
    assert book.asks() == [(D("0.3"), D("1.5"))]


def test_the_buffer_is_bounded() -> None:
    book = BookSync(max_buffer=3)
    for i in range(5):
        book.push(spot(101 + i, 101 + i))
    s = book.statistics()
    assert s.buffered == 3 and s.dropped == 2
    assert not book.load(SNAP)  # the oldest were dropped: 101 and 102 are gone
    assert book.load({**SNAP, "lastUpdateId": 102}) and book.last_update_id == 105
    with pytest.raises(ValueError):
        BookSync(max_buffer=0)
