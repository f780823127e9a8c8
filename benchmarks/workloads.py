"""The loops the benchmarks time, on realistic frames from the simulator's market model.

Every comparison is a ratio of two loops over the *same* frames in the *same* process
(this machine is shared and noisy): e.g. BookSync.feed frames/s divided by
orjson.loads-only frames/s.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable, Sequence

import orjson

from bookengine import BookSync, TopOfBook


@functools.cache
def realistic_frames(symbol: str = "BTC-PERP", n: int = 20_000, seed: int = 1) -> tuple[bytes, ...]:
    """A snapshot then `n` deltas of one topic, seeded (the simulator's realistic model)."""
    from bookengine.simulator import realistic_frames as generate

    return tuple(generate(symbol=symbol, n=n, seed=seed))


INTERLEAVED_SYMBOLS = ("BTC-PERP", "ETH-PERP", "SOL-PERP", "BTC-USD")


@functools.cache
def interleaved_frames(n: int = 20_000, seed: int = 1) -> tuple[bytes, ...]:
    """`n` frames of several symbols, their deltas interleaved as on one busy connection."""
    from bookengine.simulator import MarketModel

    models = [MarketModel(s, seed=seed + i) for i, s in enumerate(INTERLEAVED_SYMBOLS)]
    frames = [m.snapshot_frame() for m in models]
    while len(frames) < n:
        for m in models:
            frames.append(m.next_delta_frame())
    return tuple(frames[:n])


@functools.cache
def trade_frames(n: int = 20_000, seed: int = 1) -> tuple[bytes, ...]:
    """`n` trade frames as the main futures socket sends them (the simulator's trades at
    the touch: numeric price and size, one or two trades per frame)."""
    from bookengine.simulator import MarketModel

    model = MarketModel("BTC-PERP", seed=seed)
    frames: list[bytes] = []
    trade_id = 1_000_000
    while len(frames) < n:
        model.next_delta_frame()
        if not model.last_trades:
            continue
        data = []
        for price, units, side in model.last_trades:
            trade_id += 1
            data.append(
                {"price": float(price), "size": units, "side": side, "symbol": "BTC-PERP",
                 "tradeId": trade_id, "timestamp": model.timestamp}
            )  # fmt: skip
        frames.append(orjson.dumps({"topic": "tradeHistoryApiV3:BTC-PERP", "data": data}))
    return tuple(frames)


def tradesync(frames: Sequence[bytes]) -> int:
    """TradeSync.feed end to end: parse, validate, route, de-duplicate, Trade events."""
    from bookengine.trades import TradeSync

    sync = TradeSync()
    sync.subscribe(["tradeHistoryApiV3:BTC-PERP"], 0)
    feed = sync.feed
    count = 0
    for i, raw in enumerate(frames):
        count += len(feed(i, raw))
    return count


def frame_shape(frames: Sequence[bytes]) -> dict[str, float]:
    """Mean bytes, level entries and deletions per delta: what the figures were measured on."""
    deltas = [orjson.loads(f)["data"] for f in frames[1:]]
    entries = [len(d["bids"]) + len(d["asks"]) for d in deltas]
    zeros = [sum(1 for _, s in d["bids"] + d["asks"] if s == "0") for d in deltas]
    return {
        "bytes": sum(map(len, frames[1:])) / len(deltas),
        "entries": sum(entries) / len(deltas),
        "deletions": sum(zeros) / len(deltas),
    }


# --- the loops ---------------------------------------------------------------------------


def parse_floor(frames: Sequence[bytes]) -> int:
    """orjson.loads alone: the floor every engine is measured against."""
    loads = orjson.loads
    for raw in frames:
        loads(raw)
    return len(frames)


def booksync(
    frames: Sequence[bytes], scanner: bool = True, symbols: Sequence[str] = ("BTC-PERP",)
) -> int:
    """BookSync.feed end to end: parse, route, seq check, apply, top-of-book events.

    `scanner=False` parses every frame with orjson (the C level loop still applies them):
    what the delta scanner is worth."""
    sync = BookSync()
    if not scanner:
        sync._scanner = None
    sync.subscribe([f"update:{s}_0" for s in symbols], 0)
    feed = sync.feed
    tops = 0
    for i, raw in enumerate(frames):
        for event in feed(i, raw):
            tops += type(event) is TopOfBook
    if sync.stats.gaps or sync.stats.bad_frames:
        raise AssertionError(f"benchmark frames were not clean: {sync.stats}")
    return tops


def c_orderbook(frames: Sequence[bytes]) -> int:
    """The same job on the C-extension book from PyPI `order-book` (float keys): parse,
    seq check, apply, read the best levels, build a top-of-book event when they change."""
    from order_book import OrderBook as COrderBook

    loads = orjson.loads
    book = COrderBook()
    last = -1
    top = None
    tops = 0
    for i, raw in enumerate(frames):
        data = loads(raw)["data"]
        if data["type"] == "snapshot":
            book = COrderBook()
        elif data["prevSeqNum"] != last:
            raise AssertionError("gap in benchmark frames")
        bids, asks = book.bids, book.asks
        for side, levels in ((bids, data["bids"]), (asks, data["asks"])):
            for price, size in levels:
                amount = float(size)
                if amount:
                    side[float(price)] = amount
                else:
                    try:
                        del side[float(price)]
                    except KeyError:
                        pass
        last = data["seqNum"]
        new_top = (*bids.index(0), *asks.index(0))
        if new_top != top:
            top = new_top
            tops += 1
            TopOfBook(i, data["timestamp"], data["symbol"], 0, last, *new_top)
    return tops


def sorteddict_naive(frames: Sequence[bytes]) -> int:
    """The straightforward engine issue 8 started from: SortedDict per side, float keys."""
    from sortedcontainers import SortedDict

    loads = orjson.loads
    bids, asks = SortedDict(), SortedDict()
    last = -1
    top = None
    tops = 0
    for i, raw in enumerate(frames):
        data = loads(raw)["data"]
        if data["type"] == "snapshot":
            bids.clear()
            asks.clear()
        elif data["prevSeqNum"] != last:
            raise AssertionError("gap in benchmark frames")
        for side, levels in ((bids, data["bids"]), (asks, data["asks"])):
            for price, size in levels:
                amount = float(size)
                if amount:
                    side[float(price)] = amount
                else:
                    side.pop(float(price), None)
        last = data["seqNum"]
        new_top = (*bids.peekitem(-1), *asks.peekitem(0))
        if new_top != top:
            top = new_top
            tops += 1
            TopOfBook(i, data["timestamp"], data["symbol"], 0, last, *new_top)
    return tops


# --- timing --------------------------------------------------------------------------------


def best_time(fn: Callable[[], object], repeat: int = 5) -> float:
    """Best of `repeat` wall-clock runs (the least disturbed by the shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def compare(
    loops: dict[str, Callable[[], object]], items: int, repeat: int = 5
) -> dict[str, float]:
    """Items/s of each loop, runs interleaved so that machine noise hits all alike."""
    best = {name: float("inf") for name in loops}
    for _ in range(repeat):
        for name, fn in loops.items():
            best[name] = min(best[name], best_time(fn, repeat=1))
    return {name: items / seconds for name, seconds in best.items()}
