"""The live Feed from the simulator on loopback (issue 4).

- throughput: frames/s the Feed takes in from a simulator with preloaded deltas (TCP
  back-pressure means nothing is lost: the figure is what the Feed sustains);
- latency: p50/p99 arrival-to-callback of top-of-book events at 5,000 frames/s.

    python benchmarks/bench_feed.py
"""

from __future__ import annotations

import asyncio
import time

from bookengine.feed import Feed
from bookengine.simulator import Simulator


def _run(coro):  # noqa: ANN001, ANN202
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _throughput(n: int) -> dict:
    sim = Simulator(symbols=["BTC-PERP"], rate=1_000_000, preload=n + 5000, max_queue=10**9)
    await sim.start()
    sim.model("BTC-PERP")  # preload off the clock
    try:
        async with Feed(["BTC-PERP"], url=sim.url) as feed:
            await feed.wait_synced(30)
            first = feed.stats().frames
            started = time.perf_counter()
            while feed.stats().frames - first < n:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            stats = feed.stats()
            return {"frames_per_s": (stats.frames - first) / elapsed, "gaps": stats.gaps}
    finally:
        await sim.stop()


async def _latency(rate: float, seconds: float) -> dict:
    symbols = ["BTC-PERP", "ETH-PERP", "BTC-USD", "ETH-USD", "SOL-USD"]
    per_topic = rate / len(symbols)
    async with Simulator(symbols=symbols, rate=per_topic) as sim:
        tops = 0

        def on_top(_top) -> None:  # noqa: ANN001
            nonlocal tops
            tops += 1

        async with Feed(symbols, url=sim.url, on_top=on_top) as feed:
            await feed.wait_synced(10)
            first = feed.stats().frames
            await asyncio.sleep(seconds)
            stats = feed.stats()
            p50 = sorted(v["callback_us_p50"] for v in stats.latency.values())
            p99 = sorted(v["callback_us_p99"] for v in stats.latency.values())
            return {
                "frames_per_s": (stats.frames - first) / seconds,
                "callback_us_p50": p50[len(p50) // 2],
                "callback_us_p99": max(p99),
                "gaps": stats.gaps,
                "top_events": tops,
            }


def throughput(n: int = 50_000) -> dict:
    return _run(_throughput(n))


def latency(rate: float = 5000.0, seconds: float = 5.0) -> dict:
    return _run(_latency(rate, seconds))


def test_feed_throughput(benchmark):
    result = benchmark.pedantic(throughput, args=(30_000,), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["gaps"] == 0


def test_feed_latency_at_5000_frames_per_s(benchmark):
    result = benchmark.pedantic(latency, args=(5000.0, 3.0), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["top_events"] > 0


if __name__ == "__main__":
    print("throughput:", throughput())
    print("latency at 5,000 frames/s:", latency())
