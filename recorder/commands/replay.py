"""`btse-recorder replay`: recordings through the live engine, with a final summary."""

from __future__ import annotations

import argparse
import sys
import time

from recorder.commands._times import (
    add_range_arguments,
    add_sizes_argument,
    require_selection,
    resolve_range,
)
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "replay recordings through the book engine (fast, paced or from a time)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sizes_argument(parser)
    add_range_arguments(parser)
    parser.add_argument(
        "--speed", type=float, default=None, help="pace by recorded time: 1 = real time, 10 = 10x"
    )
    parser.add_argument("--print", dest="show", action="store_true", help="print every top-of-book")
    parser.add_argument(
        "--skip-damaged",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read past a block that does not decode, as a hole (default: yes)",
    )


def run(args: argparse.Namespace) -> int:
    from recorder.reader import CorruptBlock
    from recorder.replay import Replay, recording_span

    try:
        start, end, symbols = resolve_range(args)
        replay = Replay(
            args.paths,
            start_ns=start,
            end_ns=end,
            symbols=symbols,
            speed=args.speed,
            skip_damaged=args.skip_damaged,
            sizes=args.sizes,
        )
    except FileNotFoundError as exc:  # NoRecordings included
        raise CommandFailed(Exit.NO_DATA, str(exc)) from None
    except ValueError as exc:
        if args.speed is not None and args.speed <= 0:
            raise usage("--speed must be > 0 (1 = as recorded, 10 = ten times faster)") from None
        raise usage(str(exc)) from None
    first, last = recording_span(args.paths)
    lo, hi = start or first or 0, end or last or 1
    tty = sys.stderr.isatty()
    last_draw = 0.0

    def progress(stats) -> None:  # noqa: ANN001
        nonlocal last_draw
        now = time.monotonic()
        final = bool(stats.wall_s)  # set once the replay has finished: always drawn
        if args.quiet or (not final and now - last_draw < (0.25 if tty else 10.0)):
            return
        last_draw = now
        done = 1.0 if final else 0.0
        if not final and stats.last_ns is not None:
            done = (stats.last_ns - lo) / max(hi - lo, 1)
        bar = "#" * int(30 * min(done, 1.0))
        line = f"[{bar:<30}] {100 * min(done, 1.0):5.1f}%  {stats.frames:,} frames"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    def show(top) -> None:  # noqa: ANN001
        print(
            f"{top.arrival_ns} {top.topic} {top.seq} {top.bid_size}@{top.bid_price} "
            f"{top.ask_price}@{top.ask_size}"
        )

    try:
        stats = replay.run(on_top=show if args.show else None, progress=progress)
    except CorruptBlock as exc:
        print(file=sys.stderr)
        raise CommandFailed(Exit.CHECK_FAILED, str(exc)) from None
    if tty and not args.quiet:
        print(file=sys.stderr)
    what = "frames" if symbols is None else f"frames of {', '.join(sorted(replay.symbols or ()))}"
    also = []
    if stats.warmup_frames:
        also.append(f"{stats.warmup_frames:,} warm-up frames before --from")
    other = stats.frames - stats.selected_frames - stats.warmup_frames
    if symbols is not None and other:
        also.append(f"{other:,} frames of other symbols")
    print(
        f"replayed {stats.selected_frames:,} {what}"
        + (f" (also read: {'; '.join(also)})" if also else "")
        + f" in {stats.wall_s:.2f}s: {stats.frames_per_s:,.0f} frames/s read; "
        f"top-of-book events {stats.top_events:,}; trades {stats.trades:,}; "
        + (f"OTC quotes {stats.otc_quotes:,}; " if stats.otc_quotes else "")
        + (f"own order notifications {stats.notifications:,}; " if stats.notifications else "")
        + f"gaps {stats.gaps}, resyncs {stats.resyncs}, bad frames {stats.bad_frames}, "
        f"records lost in recorder holes {stats.lost_records}"
    )
    if stats.damaged_blocks or stats.duplicate_blocks:
        print(
            f"{stats.damaged_blocks} damaged block(s) skipped (their records are in the holes), "
            f"{stats.duplicate_blocks} duplicated block(s) read once"
        )
    print(
        f"digests: {stats.digests_checked} match live, {len(stats.mismatches)} differ, "
        f"{stats.digests_unverified} not checkable (book not at that seqNum)"
    )
    for m in stats.mismatches[:20]:
        print(
            f"  MISMATCH at {m.arrival_ns} {m.topic} seq {m.seq}: live {m.live} replay {m.replay}"
        )
    if stats.mismatches:
        return Exit.CHECK_FAILED
    require_selection(symbols, stats)
    return Exit.OK
