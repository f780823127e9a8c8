"""What the live commands (watch, record) share: the event loop and the --url/--sim choice."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--url",
        default=None,
        help="production (default), testnet, or ws://HOST:PORT (a simulator, a proxy)",
    )
    source.add_argument(
        "--sim", action="store_true", help="start the built-in simulator in-process (loopback)"
    )
    parser.add_argument("--sim-rate", type=float, default=200.0, help="with --sim: deltas/s/topic")
    parser.add_argument(
        "--sim-faults", default="", help="with --sim: e.g. drop=0.01 (see simulate)"
    )


@contextlib.asynccontextmanager
async def source_url(args: argparse.Namespace, symbols: list[str]) -> AsyncIterator[str]:
    """The URL to connect to; with --sim, a simulator serving `symbols` runs meanwhile."""
    if not args.sim:
        yield args.url or "production"
        return
    from bookengine.simulator import Faults, Simulator
    from bookengine.wire import Topic

    listed = sorted({Topic.parse(t).symbol if ":" in t else t for t in symbols})
    sim = Simulator(symbols=listed, rate=args.sim_rate, faults=Faults.parse(args.sim_faults))
    await sim.start()
    try:
        yield sim.url
    finally:
        await sim.stop()


def run_loop(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop when installed; Ctrl-C ends the main coroutine cleanly (exit 130)."""
    # uvloop.run and asyncio.run differ in their keyword arguments; only the coroutine
    # is passed here, which both take
    runner: Callable[[Coroutine[Any, Any, int]], int]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        return runner(main())
    except KeyboardInterrupt:
        return 130
