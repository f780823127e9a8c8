"""`btse-recorder export`: top-of-book series or depth snapshots to .npz / .parquet."""

from __future__ import annotations

import argparse

from recorder.commands._times import (
    add_range_arguments,
    add_sizes_argument,
    parse_interval_ms,
    resolve_range,
)
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "export top-of-book series, depth snapshots or trades to numpy (.npz) or Parquet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sizes_argument(parser)
    add_range_arguments(parser)
    parser.add_argument("--to-file", "-o", dest="out", required=True, help="out.npz or out.parquet")
    parser.add_argument("--depth", type=int, default=0, help="0: top of book; N: N levels per side")
    parser.add_argument(
        "--interval",
        type=parse_interval_ms,
        default=None,
        help="with --depth: one row per interval (e.g. 100ms) instead of every update",
    )
    parser.add_argument(
        "--trades",
        action="store_true",
        help="the public trades instead (each once; futures sizes in contracts)",
    )
    parser.add_argument(
        "--skip-damaged",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read past a block that does not decode, as a hole (default: yes)",
    )


def run(args: argparse.Namespace) -> int:
    from bookengine.errors import CorruptBlock
    from recorder.export import export

    if args.depth < 0:
        raise usage("--depth must be >= 0")
    if args.interval is not None and args.depth == 0:
        raise usage("--interval goes with --depth N (top of book is every change)")
    try:
        start, end, symbols = resolve_range(args)
        path, rows, stats = export(
            args.paths,
            args.out,
            depth=args.depth,
            interval_ms=args.interval,
            symbols=symbols,
            start_ns=start,
            end_ns=end,
            skip_damaged=args.skip_damaged,
            trades=args.trades,
            sizes=args.sizes,
        )
    except FileNotFoundError as exc:  # NoRecordings included
        raise CommandFailed(Exit.NO_DATA, str(exc)) from None
    except CorruptBlock as exc:
        raise CommandFailed(Exit.CHECK_FAILED, str(exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise usage(str(exc)) from None
    print(
        f"wrote {rows:,} rows to {path} (replayed {stats.frames:,} frames in {stats.wall_s:.2f}s)"
    )
    if stats.damaged_blocks:
        print(f"{stats.damaged_blocks} damaged block(s) skipped ({stats.lost_records:,} records)")
    return 0
