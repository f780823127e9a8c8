"""A fan-out consumer process for the tests: follows books from Redis with `RedisFeed`,
records the digest of its book at every seq, and writes what it saw as JSON when it is
sent SIGTERM (or after --seconds).

    python tests/fanout_consumer.py REDIS_URL OUT.json SYMBOL [SYMBOL...]
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys

import orjson

from bookengine.events import BookUpdate, StatusChanged
from bookengine.fanout import RedisFeed


async def main(url: str, out: str, symbols: list[str]) -> None:
    digests: dict[str, str] = {}
    statuses: list[list[str]] = []

    def on_book(update: BookUpdate) -> None:
        digests[f"{update.topic}|{update.seq}"] = update.book.digest()

    def on_status(event: object) -> None:
        if isinstance(event, StatusChanged):
            statuses.append([event.topic, event.status.value, event.reason.value])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with RedisFeed(symbols, url, on_book=on_book, on_status=on_status) as feed:
        print("ready", flush=True)
        await stop.wait()
        stats = dataclasses.asdict(feed.stats())
        final = {s: feed.status(s) for s in symbols}
    with open(out, "wb") as f:
        f.write(orjson.dumps({"digests": digests, "statuses": statuses, "stats": stats,
                              "final": final}))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
