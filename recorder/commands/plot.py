"""`btse-recorder plot`: a picture of a symbol of a recording (matplotlib: [plot] extra)."""

from __future__ import annotations

import argparse

from recorder.commands._times import add_range_arguments, add_sizes_argument, resolve_range
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "draw mid, trades, spread and a depth heatmap of one symbol, holes marked (.png)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_range_arguments(parser)
    parser.add_argument("-o", "--output", required=True, help="out.png (or .svg, .pdf)")
    parser.add_argument("--depth", type=int, default=20, help="levels per side in the heatmap")
    add_sizes_argument(parser)


def run(args: argparse.Namespace) -> int:
    from bookengine.errors import ArgumentError
    from recorder.plot import plot_recording

    start, end, symbols = resolve_range(args)
    if not symbols or len(symbols) != 1:
        raise usage("name one symbol: -s BTC-PERP")
    if not 1 <= args.depth <= 200:
        raise usage("--depth must be 1-200")
    try:
        stats = plot_recording(
            args.paths, symbols[0], args.output, start_ns=start, end_ns=end,
            depth=args.depth, sizes=args.sizes,
        )  # fmt: skip
    except ArgumentError as exc:
        if "no synced book" in str(exc):
            raise CommandFailed(Exit.NO_DATA, str(exc)) from None
        raise usage(str(exc)) from None
    print(
        f"drew {stats.path}: {stats.tops:,} top-of-book changes, {stats.trades:,} trades, "
        f"{len(stats.holes)} hole(s) marked, {stats.samples} depth columns"
    )
    return Exit.OK
