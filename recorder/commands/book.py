"""`btse-recorder book`: the exact book of one symbol at an instant of a recording.

Seeks like `replay --from` (from the recorder's last checkpoint before the instant), runs
the engine up to the instant, and prints the book the live feed had then, with its seq.
"""

from __future__ import annotations

import argparse

from recorder.commands._times import add_sizes_argument, iso_time, parse_time
from recorder.commands._values import add_symbols_argument, chosen_symbols
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "print the exact book of a symbol at an instant of a recording"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="recording files or directories")
    add_symbols_argument(parser)
    parser.add_argument("--at", required=True, help="ISO time, epoch, or +30s from the start")
    parser.add_argument("--depth", type=int, default=10, help="levels per side (default 10)")
    parser.add_argument("--grouping", type=int, default=0, help="price grouping (default 0)")
    add_sizes_argument(parser)


def run(args: argparse.Namespace) -> int:
    from recorder.replay import Replay, recording_span

    symbols = chosen_symbols(args)
    if len(symbols) != 1:
        raise usage("name one symbol: -s BTC-PERP")
    if args.depth < 1:
        raise usage("--depth must be >= 1")
    first, last = recording_span(args.paths)
    if first is None or last is None:
        raise CommandFailed(Exit.NO_DATA, "the recordings hold no records")
    try:
        at = parse_time(args.at, first)
    except argparse.ArgumentTypeError as exc:
        raise usage(str(exc)) from None
    if not first <= at <= last:
        raise CommandFailed(
            Exit.NO_DATA,
            f"--at is outside the recordings, which span {iso_time(first)} to {iso_time(last)}",
        )
    replay = Replay(args.paths, start_ns=at, end_ns=at, symbols=symbols, sizes=args.sizes)
    for _ in replay.events():
        pass
    symbol = next(iter(replay.symbols or ()))
    book = replay.book(symbol, args.grouping)
    when = iso_time(at)
    if book is None:
        status = replay.status(symbol, args.grouping)
        if status is None:
            raise CommandFailed(Exit.NO_DATA, f"{symbol} is not in the recordings at {when}")
        raise CommandFailed(Exit.NO_DATA, f"{symbol} was not synced at {when} ({status})")
    seq = replay.last_seq(symbol, args.grouping)
    exchange = "-" if book.exchange_ms is None else iso_time(book.exchange_ms * 1_000_000)
    print(f"{symbol} at {when}: seq {seq}, exchange time {exchange}, "
          f"{book.bid_levels} bids x {book.ask_levels} asks, spread {book.spread}")  # fmt: skip
    bids, asks = book.depth(args.depth)
    print(f"{'bid size':>16} {'bid':>14} | {'ask':<14} {'ask size':<16}")
    for n in range(max(len(bids), len(asks))):
        bid = bids[n] if n < len(bids) else None
        ask = asks[n] if n < len(asks) else None
        left = f"{bid[1]!r:>16} {bid[0]!r:>14}" if bid else " " * 31
        right = f"{ask[0]!r:<14} {ask[1]!r:<16}" if ask else ""
        print(f"{left} | {right}".rstrip())
    return Exit.OK

