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
        with book_module.pure_python():
            workloads.booksync(data)

    loops: dict[str, Callable[[], object]] = {
        "floor": lambda: workloads.parse_floor(data),
        "booksync": lambda: workloads.booksync(data),
        "orjson_path": lambda: workloads.booksync(data, scanner=False),
        "pure": pure,
        "c_book": lambda: workloads.c_orderbook(data),
        "naive": lambda: workloads.sorteddict_naive(data),
    }
    rate = workloads.compare(loops, len(data), repeat=repeat)
    mixed = workloads.interleaved_frames(n=frames)
    symbols = workloads.INTERLEAVED_SYMBOLS
    mixed_rate = workloads.compare(
        {
            "floor": lambda: workloads.parse_floor(mixed),
            "booksync": lambda: workloads.booksync(mixed, symbols=symbols),
        },
        len(mixed),
        repeat=repeat,
    )
    trades = workloads.trade_frames(n=frames)
    trade_rate = workloads.compare(
        {
            "floor": lambda: workloads.parse_floor(trades),
            "tradesync": lambda: workloads.tradesync(trades),
        },
        len(trades),
        repeat=repeat,
    )
    note = (
        f"{len(data):,} frames, {shape['bytes']:.0f} B, {shape['entries']:.1f} entries, "
        f"{shape['deletions']:.1f} deletions per delta"
    )
    accel = "C accelerator" if book_module.ACCELERATED else "C accelerator NOT BUILT"
    return [
        ("orjson.loads floor", f"{rate['floor']:,.0f} frames/s", note),
        ("BookSync.feed / parse floor", f"{rate['booksync'] / rate['floor']:.2f}x", accel),
        (
            f"BookSync.feed / floor, {len(symbols)} symbols mixed",
            f"{mixed_rate['booksync'] / mixed_rate['floor']:.2f}x",
            "their deltas interleaved on one connection",
        ),
        (
            "TradeSync.feed / parse floor",
            f"{trade_rate['tradesync'] / trade_rate['floor']:.2f}x",
            f"trade frames ({trade_rate['tradesync']:,.0f} frames/s), 1-2 trades each",
        ),
        (
            "BookSync.feed, orjson path / floor",
            f"{rate['orjson_path'] / rate['floor']:.2f}x",
            "the same without the delta scanner",
        ),
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


def replay_rows(frames: int, repeat: int) -> list[Row]:
    from benchmarks import bench_replay

    r = bench_replay.measure(frames, repeat)
    return [
        (
            "replay / decompress+parse floor",
            f"{r['ratio']:.2f}x",
            f"replay {r['replay']:,.0f} frames/s, floor {r['floor']:,.0f}",
        ),
    ]


def backtest_rows(frames: int, repeat: int) -> list[Row]:
    try:
        import hftbacktest  # noqa: F401
    except ImportError:
        return [("backtest exports", "-", "needs the [hftbacktest] extra")]
    from benchmarks import bench_backtest_export

    r = bench_backtest_export.measure(frames, repeat)
    return [
        (
            "export --format hftbacktest / replay",
            f"{r['hftbacktest_ratio']:.2f}x",
            f"{r['hftbacktest']:,.0f} vs {r['replay']:,.0f} frames/s; "
            f"{r['hftbacktest_events_per_frame']:.1f} events/frame",
        ),
        (
            "export --format tardis / replay",
            f"{r['tardis_ratio']:.2f}x",
            f"{r['tardis']:,.0f} frames/s; {r['tardis_rows_per_frame']:.1f} CSV rows/frame",
        ),
    ]


def parallel_rows(frames: int) -> list[Row]:
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        return [("parallel export", "-", "needs the [parallel] extra")]
    from benchmarks import bench_parallel_export

    r = bench_parallel_export.measure(max(frames * 3, 12_000), files=8)
    return [
        (
            "export --parallel 2 / --parallel 1",
            f"{r['scaling']:.2f}x",
            f"{r['workers_2']:,.0f} vs {r['workers_1']:,.0f} frames/s (depth 10 @100ms, "
            f"{r['files']} files, cluster start included); {r['per_file_s']:.2f}s per file",
        ),
    ]


def recorder_rows(frames: int, quick: bool) -> list[Row]:
    from benchmarks import bench_recorder

    w = bench_recorder.write_rate(frames)
    cpu = bench_recorder.cpu_share_at(1000.0, 2.0 if quick else 5.0)
    z = bench_recorder.zstd_vs_gzip(frames)
    zs, gz = z["zstd-3"], z["gzip-6"]
    return [
        (
            "recorder write (sink+thread+zstd+disk)",
            f"{w['frames_per_s']:,.0f} frames/s",
            f"{w['cpu_us_per_frame']:.1f} us CPU/frame, file x{w['ratio']:.1f}, lost {w['lost']}",
        ),
        ("recorder CPU share at 1,000 frames/s", f"{100 * cpu['cpu_share']:.1f}%", "of one core"),
        (
            "zstd-3 / gzip-6 speed",
            f"{zs['mb_per_s'] / gz['mb_per_s']:.1f}x",
            f"zstd {zs['mb_per_s']:,.0f} MB/s x{zs['ratio']:.2f}; gzip {gz['mb_per_s']:,.0f} MB/s "
            f"x{gz['ratio']:.2f}",
        ),
    ]


def live_rows(quick: bool) -> list[Row]:
    from benchmarks import bench_live, bench_simulator

    sim = bench_simulator.measure(20_000 if quick else 50_000)
    thr = bench_live.throughput(30_000 if quick else 100_000)
    lat = bench_live.latency(5000.0, 2.0 if quick else 4.0)
    rows: list[Row] = [
        ("simulator -> plain websockets client", f"{sim:,.0f} frames/s", "preloaded deltas"),
        (
            "Feed / bare websockets receive loop",
            f"{thr['feed'] / thr['bare']:.2f}x",
            f"{thr['feed']:,.0f} vs {thr['bare']:,.0f} frames/s; frame source in another "
            "process (benchmarks/frame_source.py)",
        ),
        (
            "Feed(delivery='inline') / bare receive",
            f"{thr['inline'] / thr['bare']:.2f}x",
            f"{thr['inline']:,.0f} frames/s: callbacks on the reader, no hand-off",
        ),
    ]
    picows = "bare_picows" in thr
    if picows:
        rows += [
            (
                "Feed(client='picows') / bare websockets",
                f"{thr['feed_picows'] / thr['bare']:.2f}x",
                f"{thr['feed_picows']:,.0f} frames/s (inline {thr['inline_picows']:,.0f}); "
                f"bare picows loop {thr['bare_picows']:,.0f} frames/s, "
                f"{thr['bare_picows'] / thr['bare']:.1f}x websockets'",
            ),
            (
                "Feed(client='picows') / bare picows loop",
                f"{thr['feed_picows'] / thr['bare_picows']:.2f}x",
                "what the Feed itself costs once receiving is nearly free",
            ),
        ]
    else:
        rows.append(("Feed(client='picows')", "-", "needs the [picows] extra"))
    rows += [
        (
            "send->callback p99 at 5k/s, Feed / bare",
            f"{lat['feed_p99_us'] / lat['bare_p99_us']:.2f}x",
            f"Feed p50 {lat['feed_p50_us']:,.0f} us, p99 {lat['feed_p99_us']:,.0f} us; bare "
            f"recv p50 {lat['bare_p50_us']:,.0f} us, p99 {lat['bare_p99_us']:,.0f} us",
        ),
        (
            "the same, Feed(delivery='inline') / bare",
            f"{lat['inline_p99_us'] / lat['bare_p99_us']:.2f}x",
            f"inline p50 {lat['inline_p50_us']:,.0f} us, p99 {lat['inline_p99_us']:,.0f} us",
        ),
    ]
    if picows:
        rows += [
            (
                "the same, Feed(client='picows') / bare websockets",
                f"{lat['feed_picows_p99_us'] / lat['bare_p99_us']:.2f}x",
                f"p50 {lat['feed_picows_p50_us']:,.0f} us, p99 "
                f"{lat['feed_picows_p99_us']:,.0f} us; inline p99 "
                f"{lat['inline_picows_p99_us']:,.0f} us "
                f"({lat['inline_picows_p99_us'] / lat['bare_p99_us']:.2f}x)",
            ),
            (
                "the same, bare picows / bare websockets",
                f"{lat['bare_picows_p99_us'] / lat['bare_p99_us']:.2f}x",
                f"bare picows p50 {lat['bare_picows_p50_us']:,.0f} us, "
                f"p99 {lat['bare_picows_p99_us']:,.0f} us",
            ),
        ]
    return rows


def fanout_rows(frames: int, repeat: int, quick: bool) -> list[Row]:
    try:
        import redis  # noqa: F401
    except ImportError:
        return [("fan-out", "-", "needs the [fanout] extra")]
    from benchmarks import bench_fanout

    try:
        r = bench_fanout.measure(frames, repeat, seconds=2.0 if quick else 5.0)
    except FileNotFoundError as exc:
        return [("fan-out", "-", str(exc))]
    tap, mx, paced = r["tap"], r["max"], r["paced"]
    per_frame_us = 1e6 / tap["tap"] + 1e6 / r["writer"]
    return [
        (
            "fan-out publisher tap / BookSync.feed",
            f"{tap['tap'] / tap['booksync']:.2f}x",
            f"{1e6 / tap['tap']:.1f} us/frame on the BTSE reader (route, number, queue)",
        ),
        (
            "fan-out publisher cost per frame",
            f"{per_frame_us:.1f} us",
            f"tap + writer ({r['writer']:,.0f} records/s into Redis, batched)",
        ),
        (
            "fan-out max frames/s to 4 consumer procs",
            f"{mx['frames_per_s']:,.0f} frames/s",
            f"publisher -> redis-server -> 4 RedisFeed processes, holes {mx['holes']}",
        ),
        (
            "fan-out arrival->consumer callback, 5k/s",
            f"p50 {paced['p50_us']:,.0f} us",
            f"p99 {paced['p99_us']:,.0f} us; 4 consumer processes, all on this 2-core machine",
        ),
    ]


SECTIONS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "engine": lambda a: engine_rows(a.frames, a.repeat),
    "depth": lambda a: depth_rows(),
    "replay": lambda a: replay_rows(a.frames, a.repeat),
    "backtest": lambda a: backtest_rows(a.frames, min(a.repeat, 2)),
    "parallel": lambda a: parallel_rows(a.frames),
    "recorder": lambda a: recorder_rows(a.frames, a.quick),
    "live": lambda a: live_rows(a.quick),
    "fanout": lambda a: fanout_rows(a.frames, min(a.repeat, 3), a.quick),
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
