"""`btse-recorder export`: tables (.npz, .parquet, .csv), or the formats backtesters read:
hftbacktest's event array and tardis.dev's normalized CSV files."""

from __future__ import annotations

import argparse

from recorder.commands._times import (
    add_range_arguments,
    add_sizes_argument,
    parse_interval_ms,
    require_selection,
    resolve_range,
)
from recorder.commands._values import Deprecated
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "export top of book, depth, trades or L1 quotes; or hftbacktest / tardis.dev files"
FORMATS_HELP = """formats (--format):
  table        (default) one table per file: top of book, --depth N, --trades or --l1,
               to .npz, .parquet or .csv; a `synced` column marks every hole
  hftbacktest  one symbol's events for hftbacktest (-o btc.npz; [hftbacktest] extra):
               depth snapshots as clear + snapshot, level changes, trades with the
               taker's side; exch_ts = BTSE's timestamp (ms resolution), local_ts =
               arrival; a hole clears the book until the fresh snapshot
  tardis       tardis.dev's incremental_book_L2, book_snapshot_25/_5, trades and quotes,
               gzip CSV, one set per symbol and UTC day (-o DIR); timestamps in
               microseconds; a hole deletes every level (amount 0), then a fresh
               is_snapshot batch; each day's book file opens with a snapshot
both: a hole is a gap, a lost connection, a recorder loss record or the end of a
recording session (a restarted recorder); trades are exported once each, even when a
new session's first batch repeats them; --grouping N for a grouped book
limits: futures sizes are contracts as BTSE sends them, unless --sizes base (with the
instrument metadata stored in the recording); trades exist only in recordings made with
trades (the default since 0.1); set hftbacktest's tick_size/lot_size to the market's
(`btse-recorder instruments`)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sizes_argument(parser)
    add_range_arguments(parser)
    parser.add_argument(
        "-o", "--output", dest="out", default=None,
        help="out.npz, out.parquet or out.csv; with --format tardis a directory",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("table", "hftbacktest", "tardis"), default="table",
        help="table (default), hftbacktest or tardis: see below",
    )  # fmt: skip
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
        "--otc", action="store_true",
        help="the recorded OTC quotes instead, each beside the book then (spread, markup)",
    )  # fmt: skip
    parser.add_argument(
        "--notifications", action="store_true",
        help="your recorded order notifications instead, with the book's top at each",
    )  # fmt: skip
    parser.add_argument(
        "--parallel", type=int, nargs="?", const=-1, default=None, metavar="N",
        help="one Dask task per file, N worker processes (default: one per core), into a "
        "Parquet dataset directory (-o DIR) partitioned by date and symbol ([parallel] extra)",
    )  # fmt: skip
    parser.add_argument(
        "--scheduler", default=None, metavar="ADDR",
        help="with --parallel: a Dask scheduler (tcp://host:8786) instead of a local cluster",
    )  # fmt: skip
    parser.add_argument(
        "--grouping", type=int, default=0,
        help="with --format hftbacktest/tardis: the book's price grouping (default 0)",
    )  # fmt: skip
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
    if args.format != "table":
        if args.parallel is not None or args.scheduler is not None:
            raise usage("--parallel writes the table format only (a Parquet dataset)")
        return _backtest_format(args)
    if args.parallel is not None or args.scheduler is not None:
        return _parallel(args)
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
            otc=args.otc,
            notifications=args.notifications,
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
        what = (
            "L1 quotes (record snapshotL1:SYMBOL topics)" if args.l1
            else "OTC quotes (record --otc SYM:QTY:CUR)" if args.otc
            else "order notifications (record --notifications)" if args.notifications
            else "rows"
        )  # fmt: skip
        raise CommandFailed(Exit.NO_DATA, f"no {what} in the selection: nothing written")
    print(
        f"wrote {rows:,} rows to {path} (from {stats.selected_frames:,} frames; "
        f"{stats.frames:,} read in {stats.wall_s:.2f}s)"
    )
    if stats.damaged_blocks:
        print(f"{stats.damaged_blocks} damaged block(s) skipped ({stats.lost_records:,} records)")
    require_selection(symbols, stats)
    return Exit.OK


def _backtest_format(args: argparse.Namespace) -> int:
    """--format hftbacktest | tardis."""
    from bookengine.errors import BookEngineError

    if args.depth or args.interval is not None or args.trades or args.l1 or args.otc or (
        args.notifications
    ):
        raise usage(f"--format {args.format} writes books and trades together: "
                    "no --depth, --interval, --trades, --l1, --otc or --notifications")  # fmt: skip
    start, end, symbols = resolve_range(args)
    if not symbols:
        raise usage("name the symbols: -s BTC-PERP")
    try:
        if args.format == "hftbacktest":
            from recorder.to_hftbacktest import to_hftbacktest

            if len(symbols) != 1:
                raise usage("hftbacktest data holds one symbol: -s BTC-PERP")
            _, stats = to_hftbacktest(args.paths, symbols[0], args.out, start_ns=start,
                                      end_ns=end, sizes=args.sizes,
                                      grouping=args.grouping)  # fmt: skip
            if stats.path is None or not stats.snapshots:
                if stats.path is not None:
                    stats.path.unlink()
                raise CommandFailed(
                    Exit.NO_DATA,
                    f"no book of {symbols[0]} (grouping {args.grouping}) in the selection: "
                    "nothing written",
                )
            print(
                f"wrote {stats.events:,} hftbacktest events to {stats.path}: "
                f"{stats.snapshots} snapshot(s), {stats.depth:,} depth, {stats.trades:,} trades, "
                f"{stats.clears} hole(s) as clears"
            )
        else:
            from recorder.to_tardis import to_tardis

            tardis = to_tardis(args.paths, symbols, args.out, start_ns=start, end_ns=end,
                               sizes=args.sizes, grouping=args.grouping)  # fmt: skip
            for key, path in sorted(tardis.files.items()):
                print(f"wrote {tardis.rows[key]:>10,} rows to {path}")
            for symbol in symbols:
                if not any(key.startswith(f"{symbol} trades ") for key in tardis.files):
                    print(f"note: no trades of {symbol} (recorded with --no-trades?)")
            if tardis.missing:
                raise CommandFailed(
                    Exit.NO_DATA,
                    f"no book (grouping {args.grouping}) of {', '.join(tardis.missing)} in the "
                    "selection",
                )
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    except OSError as exc:
        raise CommandFailed(Exit.DISK, f"cannot write {args.out}: {exc.strerror or exc}") from None
    return Exit.OK


def _parallel(args: argparse.Namespace) -> int:
    """--parallel [N] [--scheduler ADDR]: a partitioned Parquet dataset, one task per file."""
    import os
    import sys

    from bookengine.errors import BookEngineError
    from recorder.parallel_export import export_dataset, require_dask

    if args.l1 or args.otc or args.notifications:
        raise usage("--parallel exports top of book, --depth N or --trades "
                    "(not --l1, --otc or --notifications)")  # fmt: skip
    if args.depth < 0 or (args.interval is not None and args.depth == 0):
        raise usage("--interval goes with --depth N")
    if args.parallel is not None and args.parallel == 0 or (args.parallel or 0) < -1:
        raise usage("--parallel N: N >= 1 worker processes (or --parallel: one per core)")
    try:
        require_dask()
        import pyarrow  # noqa: F401
    except ImportError:
        raise usage("--parallel writes Parquet: pip install 'bookengine[parallel]'") from None
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    start, end, symbols = resolve_range(args)
    if start is not None or end is not None:
        raise usage("--parallel exports whole files: no --from/--to (select files instead)")
    workers = args.parallel if args.parallel and args.parallel > 0 else os.cpu_count() or 2
    import logging

    if args.verbosity <= 0:  # Dask's own INFO lines (workers starting, ...) only with -v
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def progress(done: int, total: int, row: dict) -> None:
        if not args.quiet:
            note = f"  ERROR {row['error']}" if row["error"] else ""
            print(f"[{done}/{total}] {row['file']}: {row['rows']:,} rows from "
                  f"{row['frames']:,} frames in {row['seconds']:.2f}s{note}",
                  file=sys.stderr, flush=True)  # fmt: skip

    try:
        rows = export_dataset(
            args.paths, args.out, depth=args.depth, interval_ms=args.interval,
            symbols=symbols, trades=args.trades, sizes=args.sizes,
            workers=None if args.scheduler else workers, scheduler=args.scheduler,
            progress=progress, skip_damaged=args.skip_damaged,
        )  # fmt: skip
    except FileNotFoundError as exc:  # NoRecordings included
        raise CommandFailed(Exit.NO_DATA, str(exc)) from None
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    summary = os.path.join(args.out, "_summary.csv")  # "_": dataset readers skip it
    with open(summary, "w", newline="") as f:
        import csv

        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    keys = ("rows", "frames", "gaps", "resyncs", "damaged_blocks", "digest_mismatches")
    total = {key: sum(r[key] for r in rows) for key in keys}
    bad = [r for r in rows if r["error"] or r["damaged_blocks"] or r["digest_mismatches"]]
    print(
        f"wrote {total['rows']:,} rows from {total['frames']:,} frames of {len(rows)} file(s) "
        f"into {args.out} (partitioned by date and symbol); gaps {total['gaps']}, resyncs "
        f"{total['resyncs']}, damaged blocks {total['damaged_blocks']}, digest mismatches "
        f"{total['digest_mismatches']}; per file: {summary}"
    )
    for row in bad:
        print(f"  {row['file']}: {row['error'] or 'damaged or mismatching (see the summary)'}")
    if bad:
        return Exit.CHECK_FAILED
    if not total["rows"]:
        raise CommandFailed(Exit.NO_DATA, "no rows in the selection (the summary is written)")
    return Exit.OK
