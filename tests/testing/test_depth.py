"""FeedServer's own order books: diffs made from them, the REST snapshot of them."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal
from typing import Any
from urllib.error import HTTPError

import pytest
from websockets.sync.client import connect

from wsmux.testing import FeedServer


def get(url: str) -> tuple[int, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except HTTPError as exc:
        return exc.code, json.loads(exc.read())


def crossed(bids: list[list[str]], asks: list[list[str]]) -> bool:
    return bool(bids and asks and Decimal(bids[0][0]) >= Decimal(asks[0][0]))


def apply(book: dict[str, dict[Decimal, str]], diff: dict[str, Any]) -> None:
    for key, side in (("b", "bids"), ("a", "asks")):
        for price, qty in diff[key]:
            if Decimal(qty) == 0:
                book[side].pop(Decimal(price), None)
            else:
                book[side][Decimal(price)] = qty


def as_levels(book: dict[str, dict[Decimal, str]]) -> dict[str, list[list[str]]]:
    return {
        "bids": [[str(p), q] for p, q in sorted(book["bids"].items(), reverse=True)],
        "asks": [[str(p), q] for p, q in sorted(book["asks"].items())],
    }


def test_rest_snapshot_is_the_servers_book() -> None:
    with FeedServer(symbols=["BTCUSDT", "ETHUSDT"], kinds=("depth",)) as srv:
        for path in ("/api/v3/depth", "/fapi/v1/depth"):
            status, body = get(f"{srv.http_url}{path}?symbol=ETHUSDT")
            assert status == 200 and body == srv.book("ETHUSDT")
        assert set(body) == {"lastUpdateId", "bids", "asks"} and body["lastUpdateId"] == 2000
        assert body["bids"] and body["asks"] and not crossed(body["bids"], body["asks"])
        status, top = get(f"{srv.http_url}/api/v3/depth?symbol=ETHUSDT&limit=5")
        assert status == 200 and top == srv.book("ETHUSDT", limit=5)
        assert len(top["bids"]) == len(top["asks"]) == 5 and top["bids"] == body["bids"][:5]
        assert get(f"{srv.http_url}/api/v3/depth?symbol=NOPE")[0] == 400
        assert srv.stats().http_requests == 4
        with pytest.raises(KeyError):
            srv.book("NOPE")


def test_diffs_replayed_on_the_snapshot_give_the_servers_book() -> None:
    """Binance spot's procedure, by hand: the snapshot, then the diffs after it,
    never crossed after any diff, ends with the server's own book."""
    with FeedServer(symbols=["BTCUSDT", "ETHUSDT"], kinds=("depth",)) as srv:
        with connect(srv.url, proxy=None, open_timeout=2) as ws:
            srv.wait_for_connections(1)
            srv.start_feed(rate=2000, count=300)
            first = [json.loads(ws.recv(2)) for _ in range(20)]
            status, snap = get(f"{srv.http_url}/api/v3/depth?symbol=BTCUSDT")
            rest = [json.loads(ws.recv(2)) for _ in range(280)]
        assert status == 200
        book = {side: {Decimal(p): q for p, q in snap[side]} for side in ("bids", "asks")}
        last = snap["lastUpdateId"]
        applied = 0
        for diff in first + rest:
            assert (
                diff["U"] == diff["pu"] + 1 and diff["u"] >= diff["U"] and diff["b"] and diff["a"]
            )
            if diff["s"] != "BTCUSDT" or diff["u"] <= last:
                continue
            assert diff["U"] == last + 1  # the first one bridges the snapshot: U <= last + 1 <= u
            apply(book, diff)
            levels = as_levels(book)
            assert not crossed(levels["bids"], levels["asks"])
            last, applied = diff["u"], applied + 1
        assert applied > 20
        server = srv.book("BTCUSDT")
        assert server["lastUpdateId"] == last
        assert as_levels(book) == {"bids": server["bids"], "asks": server["asks"]}


def test_server_book_never_crosses_over_many_diffs() -> None:
    with FeedServer(symbols=1, kinds=("depth",), seed=3) as srv:
        with connect(srv.url, proxy=None, open_timeout=2) as ws:
            srv.wait_for_connections(1)
            snap = srv.book("SYM0")
            srv.start_feed(count=3000)
            book = {side: {Decimal(p): q for p, q in snap[side]} for side in ("bids", "asks")}
            for _ in range(3000):
                diff = json.loads(ws.recv(2))
                apply(book, diff)
                levels = as_levels(book)
                assert levels["bids"] and levels["asks"]
                assert not crossed(levels["bids"], levels["asks"]), diff
        server = srv.book("SYM0")
        assert as_levels(book) == {"bids": server["bids"], "asks": server["asks"]}
