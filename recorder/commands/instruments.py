"""`btse-recorder instruments`: the markets table (tick, size increment, contract size)."""

from __future__ import annotations

import argparse

from recorder.commands._values import add_symbols_argument, chosen_symbols, parse_duration
from recorder.exitcodes import CommandFailed, Exit

HELP = "print instrument metadata: tick, size increment, contract size, both names"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_symbols_argument(parser, positional=True, default="all")
    parser.add_argument(
        "--url",
        default="production",
        help="production (default), testnet, or http(s)://HOST:PORT (the simulator's ws:// too)",
    )
    parser.add_argument("--cache", default=None, help="a cache file: used when fresh, refreshed")
    parser.add_argument(
        "--max-age", type=parse_duration, default=24 * 3600.0, help="cache age limit (24h)"
    )


def run(args: argparse.Namespace) -> int:
    from bookengine.instruments import Instruments

    instruments = Instruments.get_or_cache(args.url, args.cache, max_age_s=args.max_age)
    chosen = list(instruments)
    wanted = chosen_symbols(args)
    if wanted:
        missing = [s for s in wanted if instruments.get(s) is None]
        if missing:
            raise CommandFailed(
                Exit.NO_DATA, f"not listed by {instruments.source}: {', '.join(missing)}"
            )
        chosen = [instruments[s] for s in wanted]
    print(f"{'socket name':<16} {'markets API name':<20} {'kind':<9} {'tick':>10} "
          f"{'size step':>10} {'contract':>10}")  # fmt: skip
    for i in chosen:
        print(f"{i.symbol:<16} {i.markets_api:<20} {i.kind:<9} {i.tick:>10} "
              f"{i.size_increment:>10} {i.contract_size:>10}")  # fmt: skip
    print(f"{len(chosen)} of {len(instruments)} markets from {instruments.source}, "
          f"{instruments.age_s:.0f} s old")  # fmt: skip
    return 0
