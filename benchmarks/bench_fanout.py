"""Fan-out over Redis Streams (issue 21): what the publisher costs per frame, how fast
frames go through Redis to consumer processes, and the latency from the publisher's
arrival stamp to a consumer's callback, paced, with 4 consumer processes.

    python -m benchmarks.bench_fanout

The publisher is driven through its tap with realistic frames (no BTSE socket): the
figures are the fan-out's own. A real redis-server is started on a free loopback port.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path

from benchmarks import workloads

TOPIC = "update:BTC-PERP_0"


def _publisher(redis_url: str):  # noqa: ANN202
    from bookengine.fanout import RedisPublisher
    from bookengine.feed import Feed

    feed = Feed(["BTC-PERP"], url="ws://127.0.0.1:1")  # never started: its tap is driven
    return RedisPublisher(feed, redis_url, queue_size=2_000_000, checkpoint_interval=3600)


def tap_cost(frames: tuple[bytes, ...], repeat: int) -> dict[str, float]:
    """Frames/s of the publisher's tap (route + number + queue) beside BookSync.feed and
    the orjson floor on the same frames."""
    publisher = _publisher("redis://127.0.0.1:1/0")

    def tap() -> None:
        on_frame = publisher.on_frame
        for raw in frames:
            on_frame(0, 0, raw)
        publisher._queue.clear()

    return workloads.compare(
        {
            "floor": lambda: workloads.parse_floor(frames),
            "booksync": lambda: workloads.booksync(frames),
            "tap": tap,
        },
        len(frames),
        repeat=repeat,
    )


def writer_rate(redis_url: str, frames: tuple[bytes, ...]) -> float:
    """Records/s the publisher's writer puts into Redis, from a full queue (batches of
    `batch` records: its ceiling)."""
    import redis

    redis.Redis.from_url(redis_url).flushall()

    async def run() -> float:
        publisher = _publisher(redis_url)
        publisher.on_call(0, time.time_ns(), "subscribe", [TOPIC])
        for raw in frames:
            publisher.on_frame(0, time.time_ns(), raw)
        started = time.perf_counter()
        await publisher.start()
        while publisher._queue:
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - started
        await publisher.close()
        return (len(frames) + 1) / elapsed

    return asyncio.run(run())


def _consume(redis_url: str, expected: int, ready, results) -> None:  # noqa: ANN001
    """A consumer process: follow BTC-PERP until `expected` frames were applied; report
    the arrival -> callback latency of every book it handed out."""
    from bookengine.fanout import RedisFeed

    latencies: list[int] = []

    async def main() -> None:
        def on_book(update) -> None:  # noqa: ANN001
            latencies.append(time.time_ns() - update.arrival_ns)

        async with RedisFeed(["BTC-PERP"], redis_url, on_book=on_book) as feed:
            ready.put(True)
            follower = feed.followers[TOPIC]
            deadline = time.monotonic() + 120
            while follower.stats.frames < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            done = time.time_ns()
            stats = feed.stats()
        results.put((follower.stats.frames, done, sorted(latencies), stats.holes))

    asyncio.run(main())


async def _drive(publisher, frames: tuple[bytes, ...], rate: float | None) -> int:  # noqa: ANN001
    """Push frames through the tap, paced at `rate` frames/s (None: as fast as the writer
    keeps up); returns the wall ns of the first frame."""
    await publisher.start()
    first = time.time_ns()
    publisher.on_call(0, first, "subscribe", [TOPIC])
    started = time.monotonic()
    sent, total = 0, len(frames)
    while sent < total:
        if rate is None:  # as fast as Redis takes it, never further ahead than 20k
            due = sent + 200 if len(publisher._queue) < 20_000 else sent
        else:  # every frame due by now, then a short sleep (the writer runs meanwhile)
            due = int((time.monotonic() - started) * rate) + 1
        for raw in frames[sent : min(due, total)]:
            publisher.on_frame(0, time.time_ns(), raw)
        sent = max(sent, min(due, total))
        await asyncio.sleep(0 if rate is None else 0.0005)
    while publisher._queue:
        await asyncio.sleep(0.001)
    await publisher.close()
    return first


def end_to_end(redis_url: str, frames: tuple[bytes, ...], rate: float | None,
               consumers: int = 4) -> dict[str, float]:  # fmt: skip
    import redis

    redis.Redis.from_url(redis_url).flushall()  # consumers start from an empty stream
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=_consume, args=(redis_url, len(frames), ready, results))
        for _ in range(consumers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=60)
    time.sleep(0.2)
    publisher = _publisher(redis_url)
    first = asyncio.run(_drive(publisher, frames, rate))
    reports = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(30)
    latencies = sorted(x for r in reports for x in r[2])
    last = max(r[1] for r in reports)
    return {
        "frames_per_s": len(frames) / ((last - first) / 1e9),
        "p50_us": latencies[len(latencies) // 2] / 1000,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1000,
        "applied": min(r[0] for r in reports),
        "holes": sum(r[3] for r in reports),
        "unpublished": publisher.stats.unpublished + publisher.stats.dropped,
    }


def measure(frames: int = 20_000, repeat: int = 3, seconds: float = 5.0) -> dict:
    from tests.redis_server import RedisServer

    data = workloads.realistic_frames(n=frames)
    out: dict = {"tap": tap_cost(data, repeat)}
    with tempfile.TemporaryDirectory() as d:
        server = RedisServer(Path(d))
        server.start()
        try:
            out["writer"] = writer_rate(server.url, data)
            out["max"] = end_to_end(server.url, data, None)
            paced = data[: int(5000 * seconds)]
            out["paced"] = end_to_end(server.url, paced, 5000.0)
        finally:
            server.kill()
    return out


if __name__ == "__main__":
    r = measure()
    tap = r["tap"]
    print(f"tap {tap['tap']:,.0f} frames/s = {tap['tap'] / tap['booksync']:.2f}x "
          f"BookSync.feed; {1e6 / tap['tap']:.2f} us/frame")  # fmt: skip
    print(f"writer {r['writer']:,.0f} records/s")
    for name in ("max", "paced"):
        print(name, r[name])
