"""`btse-recorder simulate`: run the local BTSE OSS simulator until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import time

from recorder.commands._live import run_loop
from recorder.commands._values import add_symbols_argument, chosen_symbols, parse_duration
from recorder.exitcodes import Exit, usage

HELP = "run the local BTSE exchange simulator (loopback) until Ctrl-C"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    add_symbols_argument(parser, default="the catalogue: docs/SIMULATOR.md")
    parser.add_argument("--rate", type=float, default=200.0, help="deltas/s per topic")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--faults",
        default="",
        help="e.g. drop=0.01,duplicate=0.005,malformed=0.001,stall=0.05 (see docs/SIMULATOR.md)",
    )
    parser.add_argument("--idle-timeout", type=parse_duration, default=60.0, help="e.g. 60s")
    parser.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="deltas kept per topic for the true book (~0.7 KB each)",
    )
    parser.add_argument(
        "--preload",
        type=int,
        default=0,
        help="deltas generated ahead per topic on its first subscribe (load tests)",
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="negotiate permessage-deflate when a client offers it (as BTSE does)",
    )
    parser.add_argument("--duration", type=parse_duration, default=None, help="e.g. 30s, 1h")


def run(args: argparse.Namespace) -> int:
    from bookengine.simulator import Faults, Simulator

    try:
        faults = Faults.parse(args.faults)
    except ValueError as exc:
        raise usage(str(exc)) from None
    from bookengine.simulator import CATALOGUE

    symbols = chosen_symbols(args) or list(CATALOGUE)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}, not only on loopback")

    async def main() -> int:
        sim = Simulator(
            host=args.host,
            port=args.port,
            symbols=symbols,
            rate=args.rate,
            seed=args.seed,
            faults=faults,
            idle_timeout=args.idle_timeout,
            history=args.history,
            preload=args.preload,
            compression="deflate" if args.deflate else None,
        )
        try:
            await sim.start()
        except OSError as exc:
            raise usage(
                f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            ) from None
        print(f"BTSE simulator: spot {sim.spot_url}  futures {sim.futures_url}", flush=True)
        print(f"symbols {', '.join(symbols)}; {args.rate:g} deltas/s per topic; Ctrl-C stops")
        if faults.any():
            print(f"faults: {args.faults}")
        started = time.monotonic()
        try:
            while args.duration is None or time.monotonic() - started < args.duration:
                await asyncio.sleep(1.0 if args.duration is None else min(1.0, args.duration))
        finally:
            stats = sim.stats()
            await sim.stop()
            injected = stats["injected"] or "none"
            print(
                f"stopped: {stats['connections_total']} connections, "
                f"{stats['frames_sent']} frames sent, faults injected: {injected}"
            )
        return Exit.OK

    return run_loop(main)  # SIGTERM and Ctrl-C stop it cleanly, exit 0
