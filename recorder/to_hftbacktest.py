"""Recordings as hftbacktest's native event array (`export --format hftbacktest`).

    data, stats = to_hftbacktest(["recordings/"], "BTC-PERP", "btc.npz")
    # then: BacktestAsset().data("btc.npz")...  HashMapMarketDepthBacktest([asset])

One symbol per file, as hftbacktest takes one asset per data stream. Every constant and
the dtype come from the `hftbacktest` package (the `[hftbacktest]` extra), and the event
order is corrected and checked with its own `correct_event_order` and
`validate_event_order`:

- a (re)synced book is `DEPTH_CLEAR_EVENT` per side (when something was held) then one
  `DEPTH_SNAPSHOT_EVENT` per level;
- a level change is a `DEPTH_EVENT` (size 0 deletes);
- a hole (gap, lost connection, recorder loss record) clears both sides at once: the
  backtest sees an empty book until the fresh snapshot, never a splice across the hole;
- a trade is a `TRADE_EVENT` with `BUY_EVENT`/`SELL_EVENT` for the taker's side.

`exch_ts` is the exchange's timestamp (ms, as BTSE sends it, in ns), `local_ts` our
arrival time (ns): hftbacktest's feed latency is their difference. Sizes: contracts for
futures (`sizes="contracts"`, as sent) or base coin (`sizes="base"`); choose the
backtest's `lot_size` to match.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bookengine.errors import ArgumentError, MissingExtra
from recorder.book_changes import BID, Clear, Level, Snapshot, TradeEvent, book_changes
from recorder.replay import Replay, ReplayStats


@dataclass
class HftExportStats:
    path: Path | None
    events: int  # rows written, after hftbacktest's order correction
    depth: int = 0
    snapshots: int = 0
    clears: int = 0  # holes, each a clear of both sides
    trades: int = 0
    replay: ReplayStats | None = None


def _hftbacktest():  # noqa: ANN202
    try:
        import hftbacktest
        from hftbacktest.data import (
            correct_event_order,
            correct_local_timestamp,
            validate_event_order,
        )
    except ImportError:
        raise MissingExtra(
            "--format hftbacktest needs hftbacktest: pip install 'bookengine[hftbacktest]'"
        ) from None
    return hftbacktest, correct_event_order, correct_local_timestamp, validate_event_order


def to_hftbacktest(
    paths: Iterable[str | Path],
    symbol: str,
    out: str | Path | None = None,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    sizes: str = "contracts",
    grouping: int | None = 0,
    skip_damaged: bool = True,
) -> tuple[np.ndarray, HftExportStats]:
    """hftbacktest events of `symbol` (and its trades); written to `out` (.npz, key
    `data`, hftbacktest's own layout) when given."""
    hbt, correct_event_order, correct_local_timestamp, validate_event_order = _hftbacktest()
    if out is not None and Path(out).suffix != ".npz":
        raise ArgumentError("hftbacktest data is an .npz file")
    if out is not None and not Path(out).parent.is_dir():
        raise ArgumentError(f"the output's directory {Path(out).parent} does not exist")
    replay = Replay(paths, symbols=[symbol], start_ns=start_ns, end_ns=end_ns,
                    book_updates=True, skip_damaged=skip_damaged, sizes=sizes)  # fmt: skip
    ev, exch, local = array("Q"), array("q"), array("q")
    px, qty = array("d"), array("d")
    stats = HftExportStats(None, 0, replay=replay.stats)
    buy, sell = hbt.BUY_EVENT, hbt.SELL_EVENT

    def add(flags: int, exch_ms: int | None, arrival_ns: int, price: float, size: float) -> None:
        ev.append(flags)
        # a frame without an exchange time: the arrival stands in (zero latency)
        exch.append(arrival_ns if exch_ms is None else exch_ms * 1_000_000)
        local.append(arrival_ns)
        px.append(price)
        qty.append(size)

    for change in book_changes(replay, symbol, grouping):
        if isinstance(change, Level):
            side = buy if change.side == BID else sell
            add(hbt.DEPTH_EVENT | side, change.exchange_ms, change.arrival_ns, change.price,
                change.size)  # fmt: skip
            stats.depth += 1
        elif isinstance(change, Snapshot):
            for flag, levels in ((buy, change.bids), (sell, change.asks)):
                for price, size in levels:
                    add(hbt.DEPTH_SNAPSHOT_EVENT | flag, change.exchange_ms, change.arrival_ns,
                        price, size)  # fmt: skip
            stats.snapshots += 1
        elif isinstance(change, Clear):
            # DEPTH_CLEAR clears one side from the best level up to `px`: the worst held
            if change.bids:
                add(hbt.DEPTH_CLEAR_EVENT | buy, change.exchange_ms, change.arrival_ns,
                    change.bids[-1], 0.0)  # fmt: skip
            if change.asks:
                add(hbt.DEPTH_CLEAR_EVENT | sell, change.exchange_ms, change.arrival_ns,
                    change.asks[-1], 0.0)  # fmt: skip
            stats.clears += 1
        elif isinstance(change, TradeEvent):
            trade = change.trade
            side = buy if trade.side == "BUY" else sell
            add(hbt.TRADE_EVENT | side, trade.exchange_ms, trade.arrival_ns, trade.price,
                trade.size)  # fmt: skip
            stats.trades += 1
    raw = np.zeros(len(ev), hbt.event_dtype)
    raw["ev"] = np.frombuffer(ev, dtype=np.uint64)
    raw["exch_ts"] = np.frombuffer(exch, dtype=np.int64)
    raw["local_ts"] = np.frombuffer(local, dtype=np.int64)
    raw["px"] = np.frombuffer(px, dtype=np.float64)
    raw["qty"] = np.frombuffer(qty, dtype=np.float64)
    if len(raw):
        # exchange times are whole ms and can lie after our arrival stamp by clock skew:
        # hftbacktest's helper shifts local times so no latency is negative
        raw = correct_local_timestamp(raw, 0)
        # at equal timestamps a trade goes before depth: the book change a trade caused
        # must not shrink the queue before the trade does (hftbacktest's own converters
        # ask for trades first); otherwise the recorded order stands (stable sorts)
        depth_last = (raw["ev"] & 0xFF) != hbt.TRADE_EVENT
        data = correct_event_order(
            raw,
            np.lexsort((depth_last, raw["exch_ts"])),
            np.lexsort((depth_last, raw["local_ts"])),
        )
        validate_event_order(data)
    else:
        data = raw
    stats.events = len(data)
    if out is not None and len(data):
        path = Path(out)
        partial = path.with_name(f".{path.name}.partial")
        try:
            with open(partial, "wb") as f:
                np.savez_compressed(f, data=data)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        stats.path = path
    return data, stats
