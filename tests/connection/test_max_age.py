"""``max_age``: a connection is rotated, gap-free, once it is that old."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import anyio
import pytest

from wsmux import ConnectionGap, Multiplexer
from wsmux.testing import FeedServer

FAST: dict[str, Any] = {"backoff_base": 0.02, "backoff_cap": 0.1, "close_timeout": 0.5}


class SeqIds(Multiplexer):
    """An adapter whose messages carry ids: the feed's ``seq``."""

    def _message_id(self, msg: Any) -> Any:
        return msg.get("seq") if isinstance(msg, dict) else None


class Triggered(SeqIds):
    """Rotates when told to (its own trigger), besides ``max_age``."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.rotate_now = anyio.Event()

    async def _when2create_new_ws(self) -> None:
        await self.rotate_now.wait()
        self.rotate_now = anyio.Event()


@pytest.mark.anyio
async def test_max_age_rotates_without_a_gap_or_a_duplicate() -> None:
    """max_age=0.3 against a 500 msg/s feed: at least two rotations, every seq
    once and in order on a ``gaps="raise"`` stream, no ConnectionGap."""
    with FeedServer(symbols=4, queue_size=100_000) as srv:
        mux = SeqIds(srv.url, max_age=0.3, rotation_interval=0.05, **FAST)
        stream = mux.stream_filter(gaps="raise", maxsize=100_000)
        seqs: list[int] = []
        async with mux:
            srv.start_feed(rate=500)
            with anyio.fail_after(20):
                # A rotation opens its connection only after the previous one
                # completed: four connections mean at least two rotations done.
                await srv.wait_until_async(lambda: srv.stats().accepted >= 4)
                srv.stop_feed()
                last = await srv.wait_feed_done_async()
                while not seqs or seqs[-1] < last:
                    msg = await stream.receive()  # ConnectionGap would fail the test
                    if "seq" in msg:
                        seqs.append(msg["seq"])
            stats = mux.stats()
    assert stats.rotations >= 2 and stats.disconnects == 0 and stats.rotation_gaps == 0
    assert srv.stats().dropped == 0
    repeated = [seq for seq, n in Counter(seqs).items() if n > 1]
    assert not repeated, f"delivered twice: {repeated[:5]}"
    assert seqs == list(range(1, last + 1)), "a message is missing or out of order"


@pytest.mark.anyio
async def test_the_adapter_trigger_still_rotates_when_max_age_is_far() -> None:
    with FeedServer(symbols=2) as srv:
        mux = Triggered(srv.url, max_age=3600, rotation_interval=0.01, **FAST)
        async with mux:
            with anyio.fail_after(15):
                for opened in (2, 3):  # the third opens once the first rotation is done
                    mux.rotate_now.set()
                    await srv.wait_until_async(lambda n=opened: srv.stats().accepted >= n)
        assert mux.stats().rotations >= 1 and mux.stats().disconnects == 0


@pytest.mark.anyio
async def test_without_max_age_a_connection_is_kept() -> None:
    """The default (None) arms no timer: the first connection serves on."""
    with FeedServer(symbols=2) as srv:
        mux = SeqIds(srv.url, **FAST)
        stream = mux.stream_filter(gaps="raise")
        async with mux:
            srv.start_feed(rate=200, count=60)
            with anyio.fail_after(15):
                got = 0
                while got < 60:
                    got += "seq" in await stream.receive()
        assert mux.stats().connects == 1 and mux.stats().rotations == 0


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.inf, ValueError),
        (math.nan, ValueError),
        ("60", TypeError),
        (True, TypeError),
    ],
)
def test_max_age_is_checked(bad: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_age"):
        Multiplexer("ws://127.0.0.1:1", max_age=bad)


def test_max_age_accepts_seconds() -> None:
    assert Multiplexer("ws://127.0.0.1:1", max_age=23.5 * 3600)._options.max_age == 84600.0
    assert Multiplexer("ws://127.0.0.1:1", max_age=1)._options.max_age == 1.0
    assert ConnectionGap  # the stream above raises it on a gap
