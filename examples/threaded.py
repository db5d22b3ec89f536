"""A plain threaded program: no asyncio in user code.

The multiplexer runs on its own event loop in a daemon thread
(``wsmux.run_in_thread``); worker threads read filtered streams with ``for``
loops, a plain handler runs in its own thread, and the main thread changes
subscriptions, sends, reads stats and stops everything with ``with``. A main
thread that blocks (here: ``time.sleep``) delays none of it:

    python examples/threaded.py --seconds 5
    python examples/threaded.py --url wss://fstream.binance.com/ws \
        --topics btcusdt@aggTrade ethusdt@aggTrade
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from typing import Any

from wsmux import Multiplexer, run_in_thread
from wsmux.testing import FeedServer


def worker(name: str, stream: Any) -> None:
    n = 0
    for msg in stream:  # ends when the multiplexer stops
        n += 1
        if n % 100 == 0:
            print(f"[{name}] {n} messages, last {msg.get('s')} {msg.get('e')}")
    print(f"[{name}] done after {n} messages")


def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        url, topics = args.url, args.topics
        if url is None:
            srv = stack.enter_context(FeedServer(symbols=3, require_subscribe=True))
            srv.start_feed(rate=600)
            url = srv.url
            topics = topics or ["sym0@trade", "sym1@trade", "sym2@depth"]
        big = 0

        def on_big(msg: dict[str, Any]) -> None:  # runs in a thread of its own
            nonlocal big
            big += 1

        with run_in_thread(Multiplexer(url)) as t:
            t.add_handler(on_big, {"q": lambda q: float(q) > 1.9})
            threads = []
            for topic in topics:
                symbol = topic.split("@")[0].upper()  # "btcusdt@aggTrade" -> "BTCUSDT"
                stream = t.stream_filter({"s": symbol})
                threads.append(threading.Thread(target=worker, args=(topic, stream)))
                threads[-1].start()
            deadline = time.monotonic() + args.seconds
            pending = list(topics)
            while time.monotonic() < deadline:  # the main thread may block: nothing waits on it
                if pending:
                    t.subscribe(pending.pop(0))  # one more topic per second
                    print(f"subscribed to {t.topics}")
                time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))
            stats = t.stats()
        for thread in threads:
            thread.join()
        print(f"{stats.messages} messages, {big} big ones, {stats.reconnects} reconnects")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a websocket URL (default: the embedded FeedServer)")
    parser.add_argument("--topics", nargs="*", help="topics to subscribe to, one per second")
    parser.add_argument("--seconds", type=float, default=float("inf"), help="stop after S s")
    with contextlib.suppress(KeyboardInterrupt):
        main(parser.parse_args())
