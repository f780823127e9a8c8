"""What the live commands (watch, record) share: the event loop and the --url/--sim choice."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from recorder.exitcodes import Exit

log = logging.getLogger("recorder")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client",
        choices=("websockets", "picows"),
        default=None,  # websockets; record may take it from its --config file
        help="the WebSocket client for book and trade streams: websockets (default) or "
        "picows, several times faster at receiving (pip install 'bookengine[picows]')",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--url",
        default=None,
        help="production (default), testnet, or ws://HOST:PORT (a simulator, a proxy)",
    )
    source.add_argument(
        "--sim",
        action="store_true",
        default=None,
        help="start the built-in simulator in-process (loopback)",
    )
    parser.add_argument(
        "--sim-rate", type=float, default=None, help="with --sim: deltas/s/topic (default 200)"
    )
    parser.add_argument(
        "--sim-faults", default=None, help="with --sim: e.g. drop=0.01 (see simulate)"
    )
    parser.add_argument(
        "--sim-symbols", nargs="+", action="extend", default=None, metavar="SYMBOL",
        help="with --sim: the markets it lists (default: a catalogue of BTSE-like spot, "
        "perpetual, dated and K_ markets); others are refused as BTSE refuses them",
    )  # fmt: skip


def check_source(args: argparse.Namespace, topics: list[str]) -> None:
    """Refuse a bad --url, --sim-rate or --sim-faults before anything is created (the
    Feed's own checks, made without I/O)."""
    from bookengine import naming
    from bookengine.errors import BookEngineError
    from bookengine.feed import Feed
    from bookengine.simulator import Faults
    from recorder.commands._values import symbol_list
    from recorder.exitcodes import usage

    args.client = args.client or "websockets"
    try:
        Feed(
            topics,
            url="ws://127.0.0.1:1" if args.sim else (args.url or "production"),
            client=args.client,  # refused here if its extra is missing
        )
        if args.sim:
            Faults.parse(args.sim_faults or "")
            for symbol in symbol_list(args.sim_symbols):
                naming.canonical(symbol)
    except (BookEngineError, ValueError) as exc:
        raise usage(str(exc)) from None
    given = [
        name for name, value in
        (("--sim-rate", args.sim_rate), ("--sim-faults", args.sim_faults),
         ("--sim-symbols", args.sim_symbols))
        if value is not None
    ]  # fmt: skip
    if given and not args.sim:  # never a silent fallback to the real exchange
        raise usage(f"{', '.join(given)} go(es) with --sim")
    if args.sim and args.url is not None:
        raise usage("--url and --sim name two sources: choose one")
    if args.sim_rate is not None and not 0 < args.sim_rate < 1e6:
        raise usage("--sim-rate must be > 0 and < 1e6 deltas/s")
    if not args.sim and args.url is not None and "://" in args.url:
        check_url(args.url)


def check_url(url: str) -> None:
    """A ws(s):// URL that can name a socket: a host, a valid port, no spaces."""
    from urllib.parse import urlsplit

    from recorder.exitcodes import usage

    parts = urlsplit(url)
    try:
        port = parts.port  # ValueError when out of range or not a number
    except ValueError:
        raise usage(f"bad port in url {url!r}") from None
    if not parts.hostname or any(c.isspace() for c in url) or port == 0:
        raise usage(f"url {url!r} names no host (e.g. ws://127.0.0.1:8765)")


@contextlib.asynccontextmanager
async def source_url(args: argparse.Namespace, symbols: list[str]) -> AsyncIterator[str]:
    """The URL to connect to; with --sim, a simulator runs meanwhile, listing the
    catalogue or --sim-symbols (what the user subscribes is not added: a typo is refused
    as BTSE would refuse it)."""
    if not args.sim:
        yield args.url or "production"
        return
    from bookengine.simulator import CATALOGUE, Faults, Simulator
    from recorder.commands._values import symbol_list

    listed = symbol_list(args.sim_symbols) if args.sim_symbols else list(CATALOGUE)
    faults = Faults.parse(args.sim_faults or "")
    sim = Simulator(symbols=listed, rate=args.sim_rate or 200.0, faults=faults)
    await sim.start()
    try:
        yield sim.url
    finally:
        await sim.stop()


def run_loop(
    main: Callable[[], Coroutine[Any, Any, int]],
    *,
    on_stop: Callable[[str], None] | None = None,
    on_hup: Callable[[], None] | None = None,
) -> int:
    """Run `main` on uvloop (when installed) with the signals a service gets.

    SIGTERM and SIGINT call `on_stop(name)` (default: cancel `main`, which ends as it
    does at Ctrl-C); a second one exits at once (files being written stay `.partial`,
    readable to their last block). SIGHUP calls `on_hup` when given. A `main` cancelled
    by a signal returns 0: being stopped is how a service ends."""
    runner: Callable[[Coroutine[Any, Any, int]], int]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def supervised() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        received: list[str] = []

        def stop(sig: signal.Signals) -> None:
            received.append(sig.name)
            if len(received) > 1:
                log.error("second %s: exiting now; a file being written stays .partial", sig.name)
                logging.shutdown()
                os._exit(int(Exit.INTERRUPTED))
            log.info("%s: stopping (a second signal exits at once)", sig.name)
            if on_stop is not None:
                on_stop(sig.name)
            elif task is not None:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        if on_hup is not None and hasattr(signal, "SIGHUP"):
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        try:
            return await main()
        except asyncio.CancelledError:
            if received:
                return int(Exit.OK)
            raise

    try:
        return runner(supervised())
    except KeyboardInterrupt:
        return int(Exit.OK)
