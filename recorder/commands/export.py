"""`btse-recorder export`: top-of-book series or depth snapshots to .npz / .parquet."""

from __future__ import annotations

import argparse

from recorder.commands._times import (
    add_range_arguments,
    add_sizes_argument,
    parse_interval_ms,
    resolve_range,
)
from recorder.commands._values import Deprecated
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "export top of book, depth, trades or L1 quotes to .npz, .parquet or .csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sizes_argument(parser)
    add_range_arguments(parser)
    parser.add_argument("-o", "--output", dest="out", default=None,
                        help="out.npz, out.parquet or out.csv")  # fmt: skip
    parser.add_argument("--to-file", dest="out", action=Deprecated, new="-o/--output")
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
        help="the public trades instead (each once; futures sizes as --sizes says)",
    )
    parser.add_argument("--l1", action="store_true", help="the recorded snapshotL1 quotes instead")
    parser.add_argument(
        "--skip-damaged",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read past a block that does not decode, as a hole (default: yes)",
    )


def run(args: argparse.Namespace) -> int:
    from bookengine.errors import CorruptBlock
    from recorder.export import export

    if not args.out:
        raise usage("an output file is needed: -o out.npz|out.parquet|out.csv")
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
            l1=args.l1,
            sizes=args.sizes,
            write_empty=False,
        )
    except FileNotFoundError as exc:  # NoRecordings included
        raise CommandFailed(Exit.NO_DATA, str(exc)) from None
    except CorruptBlock as exc:
        raise CommandFailed(Exit.CHECK_FAILED, str(exc)) from None
    except (ValueError, RuntimeError) as exc:
        raise usage(str(exc)) from None
    except OSError as exc:  # the output could not be written (disk full, I/O error)
        raise CommandFailed(
            Exit.DISK, f"cannot write {args.out}: {exc.strerror or exc}; nothing was written"
        ) from None
    if path is None:
        what = "L1 quotes (record snapshotL1:SYMBOL topics)" if args.l1 else "rows"
        raise CommandFailed(Exit.NO_DATA, f"no {what} in the selection: nothing written")
    print(
        f"wrote {rows:,} rows to {path} (from {stats.selected_frames:,} frames; "
        f"{stats.frames:,} read in {stats.wall_s:.2f}s)"
    )
    if stats.damaged_blocks:
        print(f"{stats.damaged_blocks} damaged block(s) skipped ({stats.lost_records:,} records)")
    if symbols is not None:
        from bookengine import naming

        absent = sorted({naming.canonical(s) for s in symbols} - stats.symbols_seen)
        if absent:
            raise CommandFailed(
                Exit.NO_DATA, f"not in the recordings (window): {', '.join(absent)}"
            )
    if stats.selected_frames == 0:
        raise CommandFailed(Exit.NO_DATA, "no frame in the selected recordings and window")
    return Exit.OK
