"""Simulator throughput to one local client (issue 3: at least 50,000 frames/s).

Two figures, both one plain websockets client (compression off, uvloop when installed)
in the same process as the server, so server and client share one core:

- preloaded: the deltas are generated before the clock starts (`Simulator(preload=N)`);
  what is timed is the server publishing, fault-checking, queueing and sending them, and
  the client receiving. This is the simulator's fast path for load tests.
- live: the market model generates every delta while the clock runs (one topic, rate
  set far above what it can do); bounded by the model's ~35k deltas/s on one core.

    python benchmarks/bench_simulator.py
"""

from __future__ import annotations

import asyncio
import time

from bookengine.simulator import Simulator

TOPIC = '{"op":"subscribe","args":["update:BTC-PERP_0"]}'


async def _measure(n: int, preload: bool) -> float:
    from websockets.asyncio.client import connect

    sim = Simulator(
        symbols=["BTC-PERP"],
        rate=1_000_000,
        preload=n + 1_000 if preload else 0,
        max_queue=10**9,
        history=max(n + 2_000, 100_000),
    )
    await sim.start()
    if preload:
        sim.model("BTC-PERP")  # builds the topic and its preloaded deltas now, off the clock
    ws = await connect(sim.futures_url, compression=None, proxy=None, max_size=2**24)
    try:
        await ws.send(TOPIC)
        while b'"snapshot"' not in await ws.recv(decode=False):
            pass
        started = time.perf_counter()
        for _ in range(n):
            await ws.recv(decode=False)
        return n / (time.perf_counter() - started)
    finally:
        await sim.stop()  # drops the socket: no close handshake behind a full pipe
        ws.transport.abort()


def measure(n: int = 100_000, preload: bool = True) -> float:
    """Delta frames/s received by one client from the simulator."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_measure(n, preload))
    return uvloop.run(_measure(n, preload))


def test_simulator_throughput_preloaded(benchmark):
    rate = benchmark.pedantic(measure, args=(50_000, True), rounds=3, iterations=1)
    benchmark.extra_info["frames_per_s"] = rate
    assert rate > 0


def test_simulator_throughput_live(benchmark):
    rate = benchmark.pedantic(measure, args=(20_000, False), rounds=3, iterations=1)
    benchmark.extra_info["frames_per_s"] = rate
    assert rate > 0


if __name__ == "__main__":
    for preload, n in ((True, 200_000), (False, 50_000)):
        runs = sorted(measure(n, preload) for _ in range(3))
        label = "preloaded" if preload else "live     "
        print(f"simulator -> one client, {label}: {runs[1]:,.0f} frames/s (median of 3, n={n})")
