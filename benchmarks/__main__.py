"""`python -m benchmarks`: every comparison in one process, one table of ratios.

Ratios, not absolute rates, are the figures to quote: this machine is shared and noisy,
and both sides of each ratio are measured interleaved in the same run.

    python -m benchmarks            # the full table (a few minutes on 2 cores)
    python -m benchmarks --quick    # fewer frames and rounds, for a smoke test
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable

from benchmarks import workloads

Row = tuple[str, str, str]  # (what, figure, note)


def engine_rows(frames: int, repeat: int) -> list[Row]:
    import bookengine.book as book_module

    data = workloads.realistic_frames(n=frames)
    shape = workloads.frame_shape(data)

    def pure() -> None:
        saved = book_module._apply_levels, book_module.NeedsDecimals
        book_module._apply_levels = book_module._apply_levels_py
        book_module.NeedsDecimals = book_module._NeedsDecimalsPy
        try:
            workloads.booksync(data)
        finally:
            book_module._apply_levels, book_module.NeedsDecimals = saved

    loops: dict[str, Callable[[], object]] = {
        "floor": lambda: workloads.parse_floor(data),
        "booksync": lambda: workloads.booksync(data),
        "pure": pure,
        "c_book": lambda: workloads.c_orderbook(data),
        "naive": lambda: workloads.sorteddict_naive(data),
    }
    rate = workloads.compare(loops, len(data), repeat=repeat)
    note = (
        f"{len(data):,} frames, {shape['bytes']:.0f} B, {shape['entries']:.1f} entries, "
        f"{shape['deletions']:.1f} deletions per delta"
    )
    accel = "C accelerator" if book_module.ACCELERATED else "C accelerator NOT BUILT"
    return [
        ("orjson.loads floor", f"{rate['floor']:,.0f} frames/s", note),
        ("BookSync.feed / parse floor", f"{rate['booksync'] / rate['floor']:.2f}x", accel),
        ("BookSync.feed (pure Python) / floor", f"{rate['pure'] / rate['floor']:.2f}x", ""),
        (
            "BookSync.feed / C order-book loop",
            f"{rate['booksync'] / rate['c_book']:.2f}x",
            "PyPI order-book, same frames",
        ),
        (
            "BookSync.feed / naive SortedDict",
            f"{rate['booksync'] / rate['naive']:.2f}x",
            "float keys, the starting point",
        ),
    ]


def depth_rows() -> list[Row]:
    from bookengine import OrderBook

    data = workloads.realistic_frames(n=5000)
    import orjson

    book = OrderBook()
    for raw in data:
        d = orjson.loads(raw)["data"]
        if d["type"] == "snapshot":
            book.apply_snapshot(d["bids"], d["asks"])
        else:
            book.apply_delta(d["bids"], d["asks"])
    rows = []
    for label, fn in (
        ("depth(10)", lambda: book.depth(10)),
        ("depth(50)", lambda: book.depth(50)),
        ("digest(10)", lambda: book.digest(10)),
    ):
        n = 20_000

        def many(fn=fn, n=n) -> None:
            for _ in range(n):
                fn()  # results dropped at once: keeping them alive would time the GC

        seconds = workloads.best_time(many, repeat=3)
        rows.append(
            (
                f"OrderBook.{label}",
                f"{seconds / n * 1e6:.2f} us",
                f"{book.bid_levels}x{book.ask_levels} levels",
            )
        )
    return rows


SECTIONS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "engine": lambda a: engine_rows(a.frames, a.repeat),
    "depth": lambda a: depth_rows(),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small workloads, 2 rounds")
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.repeat = min(args.frames, 3000), 2
    started = time.perf_counter()
    rows: list[Row] = []
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(section(args))
    width = max(len(r[0]) for r in rows)
    fig = max(len(r[1]) for r in rows)
    print(
        f"\nbookengine benchmarks ({platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}, one run, "
        f"{time.perf_counter() - started:.0f}s)\n"
    )
    print(f"| {'measure':<{width}} | {'figure':>{fig}} | note")
    print(f"|{'-' * (width + 2)}|{'-' * (fig + 2)}|------")
    for what, figure, note in rows:
        print(f"| {what:<{width}} | {figure:>{fig}} | {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
