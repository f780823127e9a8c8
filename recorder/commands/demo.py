"""`btse-recorder demo`: the sans-I/O engine on simulated frames, no network at all.

Generates a seeded session with the simulator's market model, drops one frame to show gap
detection and resync, feeds everything through `BookSync` and prints the books and
counters. The quickest proof that the engine works on this machine.
"""

from __future__ import annotations

import argparse
import time

from recorder.commands._values import add_symbols_argument, chosen_symbols

HELP = "run the book engine over a generated session (no network) and print the books"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_symbols_argument(parser, default="BTC-PERP ETH-USD")
    parser.add_argument("--frames", type=int, default=20_000, help="deltas per symbol")
    parser.add_argument("--depth", type=int, default=5, help="levels to print per side")
    parser.add_argument("--seed", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    from bookengine import BookSync, StatusChanged
    from bookengine.simulator import MarketModel
    from recorder.exitcodes import usage

    symbols = [s.upper() for s in chosen_symbols(args) or ["BTC-PERP", "ETH-USD"]]
    if not symbols or args.frames < 1 or args.depth < 1:
        raise usage("need at least one symbol, --frames >= 1 and --depth >= 1")
    models = {s: MarketModel(s, seed=args.seed) for s in symbols}
    sync = BookSync()
    sync.subscribe([f"update:{s}_0" for s in symbols], 0)
    clock = 0
    notes: list[str] = []
    started = time.perf_counter()
    frames = 0

    def feed(raw: bytes, model: MarketModel) -> None:
        nonlocal clock, frames
        clock += 1_000_000
        frames += 1
        for event in sync.feed(clock, raw):
            if isinstance(event, StatusChanged):
                notes.append(f"{event.topic}: {event.status} ({event.reason}) {event.detail}")
        for _ in sync.take_actions():
            feed(model.snapshot_frame(), model)  # what the live Feed's resubscribe brings

    for model in models.values():
        feed(model.snapshot_frame(), model)
    for i in range(args.frames):
        for model in models.values():
            raw = model.next_delta_frame()
            if i == args.frames // 2:
                continue  # drop one frame per symbol: the engine must notice the gap
            feed(raw, model)
    elapsed = time.perf_counter() - started

    for symbol, model in models.items():
        book = sync.book(symbol)
        truth_bids, truth_asks = model.true_book()
        same = book is not None and book.as_dict() == (
            {float(p): float(s) for p, s in truth_bids.items()},
            {float(p): float(s) for p, s in truth_asks.items()},
        )
        print(f"\n{symbol}  seq {sync.last_seq(symbol)}  equals simulator truth: {same}")
        if book is None:
            print("  (not synced)")
            continue
        print(f"  spread {book.spread}  mid {book.mid}  levels {book.bid_levels}x{book.ask_levels}")
        bids, asks = book.depth(args.depth)
        for (bp, bs), (ap, az) in zip(bids, asks, strict=False):
            print(f"  {bs:>14} @ {bp:<14} | {ap:>14} @ {az}")
    print("\nstatus changes:")
    for note in notes:
        print("  " + note)
    stats = sync.stats
    print(
        f"\n{frames} frames in {elapsed:.2f}s ({frames / elapsed:,.0f} frames/s incl. generation); "
        f"gaps {stats.gaps}, resyncs {stats.resyncs}, bad frames {stats.bad_frames}"
    )
    injected = len(models)
    print(
        f"injected: {injected} dropped frame(s), one per symbol, so gaps {injected} and resyncs "
        f"{injected} are expected; {'all' if stats.gaps == injected else 'NOT all'} were caught"
    )
    return 0
