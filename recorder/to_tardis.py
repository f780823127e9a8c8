"""Recordings as tardis.dev's normalized CSV files (`export --format tardis`).

    to_tardis(["recordings/"], ["BTC-PERP"], "tardis/")

For each symbol and UTC day, gzip-compressed like tardis's downloads and named as they
name them (`btse_<data type>_<day>_<symbol>.csv.gz`), with the columns, units and order
of tardis.dev's documentation:

- `incremental_book_L2`: exchange, symbol, timestamp, local_timestamp, is_snapshot, side
  (bid/ask), price, amount (0: the level is gone). A book that (re)synced is a run of
  `is_snapshot` true rows: the reader resets its book there, as for tardis's own
  snapshots; each day's file opens with one. A hole (gap, lost connection, recorder
  loss, a session's end) deletes every held level (amount 0) where it begins, so the book
  is empty during it, then the fresh snapshot follows.
- `book_snapshot_25` and `book_snapshot_5`: exchange, symbol, timestamp,
  local_timestamp, then asks[0].price, asks[0].amount, bids[0].price, bids[0].amount,
  asks[1]..., a row whenever one of the top N levels changed (empty where the book is
  thinner).
- `trades`: exchange, symbol, timestamp, local_timestamp, id, side (the taker's: buy or
  sell), price, amount.
- `quotes`: exchange, symbol, timestamp, local_timestamp, ask_amount, ask_price,
  bid_price, bid_amount, a row per top-of-book change.

Timestamps are microseconds since the epoch: `timestamp` the exchange's (BTSE sends ms),
`local_timestamp` our arrival. Sizes are contracts for futures unless `sizes="base"`.
Numbers are plain decimals (never `3e-05`).
The exchange is spelled `btse` (tardis.dev does not carry BTSE). Rows are in arrival
order, which is the recorded order.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bookengine import naming
from bookengine.errors import ArgumentError
from bookengine.events import TopOfBook
from recorder.book_changes import (
    ASK,
    BID,
    Clear,
    Level,
    Snapshot,
    TradeEvent,
    Updated,
    book_changes,
)
from recorder.format import plain_decimal
from recorder.replay import Replay

EXCHANGE = "btse"
SNAPSHOT_DEPTHS = (25, 5)
DATA_TYPES = ("incremental_book_L2", "book_snapshot_25", "book_snapshot_5", "trades", "quotes")


@dataclass
class TardisExportStats:
    files: dict[str, Path] = field(default_factory=dict)  # "SYMBOL data_type day" -> path
    rows: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    missing: list[str] = field(default_factory=list)  # symbols without a book


def _us(ns: int) -> int:
    return ns // 1000


def _exchange_us(exchange_ms: int | None, arrival_ns: int) -> int:
    return _us(arrival_ns) if exchange_ms is None else exchange_ms * 1000


def _num(value: float | None) -> str:
    return "" if value is None else plain_decimal(value)


def snapshot_header(depth: int) -> list[str]:
    head = ["exchange", "symbol", "timestamp", "local_timestamp"]
    for n in range(depth):
        head += [f"asks[{n}].price", f"asks[{n}].amount", f"bids[{n}].price", f"bids[{n}].amount"]
    return head


class _Writer:
    """One gzip CSV written under a temporary name, renamed when complete."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        # level 6: most of level 9's size at a fraction of its time
        self._gz = gzip.open(self.partial, "wb", compresslevel=6)  # noqa: SIM115 - closed below
        self._text = io.TextIOWrapper(self._gz, encoding="utf-8", newline="")
        self.csv = csv.writer(self._text, lineterminator="\n")
        self.csv.writerow(header)
        self.rows = 0

    def row(self, values: list) -> None:
        self.csv.writerow(values)
        self.rows += 1

    def close(self, keep: bool = True) -> None:
        self._text.close()
        if keep:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def to_tardis(
    paths: Iterable[str | Path],
    symbols: Iterable[str],
    out_dir: str | Path,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    sizes: str = "contracts",
    grouping: int | None = 0,
    skip_damaged: bool = True,
) -> TardisExportStats:
    """Write the tardis files of each symbol into `out_dir` (created when the first file
    is); a symbol without a book in the selection is listed in `missing`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ArgumentError(f"{out} exists and is not a directory (tardis files go in one)")
    wanted = [naming.canonical(s) for s in symbols]
    if not wanted:
        raise ArgumentError("name the symbols to export: -s BTC-PERP ...")
    paths = list(paths)
    stats = TardisExportStats()
    for symbol in wanted:
        replay = Replay(paths, symbols=[symbol], start_ns=start_ns, end_ns=end_ns,
                        book_updates=True, skip_damaged=skip_damaged, sizes=sizes)  # fmt: skip
        if not _export_symbol(replay, symbol, grouping, out, stats):
            stats.missing.append(symbol)
        stats.frames += replay.stats.selected_frames
    return stats


_BOOK = ["exchange", "symbol", "timestamp", "local_timestamp", "is_snapshot", "side", "price",
         "amount"]  # fmt: skip
_QUOTES = ["exchange", "symbol", "timestamp", "local_timestamp", "ask_amount", "ask_price",
           "bid_price", "bid_amount"]  # fmt: skip
_TRADES = ["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"]


def _day(arrival_ns: int) -> str:
    return datetime.fromtimestamp(arrival_ns / 1e9, UTC).strftime("%Y-%m-%d")


def _export_symbol(
    replay: Replay, symbol: str, grouping: int | None, out: Path, stats: TardisExportStats
) -> bool:
    """The files of one symbol, one set per UTC day of arrival (as tardis splits them);
    -> whether it had a book. Every day's book file opens with a snapshot of the book
    (tardis's start-of-day snapshot), so each file reads on its own."""
    writers: dict[tuple[str, str], _Writer] = {}
    safe = symbol.replace("/", "-")

    def writer(data_type: str, header: list[str], arrival_ns: int) -> _Writer:
        key = (data_type, _day(arrival_ns))
        w = writers.get(key)
        if w is None:
            out.mkdir(parents=True, exist_ok=True)
            w = writers[key] = _Writer(out / f"{EXCHANGE}_{data_type}_{key[1]}_{safe}.csv.gz",
                                       header)  # fmt: skip
        return w

    held: dict[int, dict[float, float]] = {BID: {}, ASK: {}}  # the book the files describe
    book_day: str | None = None
    last_top: dict[int, tuple] = {}
    had_book = False
    ok = False

    def book_rows(arrival_ns: int, exchange_ms: int | None, snapshot: bool, side: int,
                  levels: Iterable[tuple[float, float]]) -> None:  # fmt: skip
        w = writer("incremental_book_L2", _BOOK, arrival_ns)
        ts, local = _exchange_us(exchange_ms, arrival_ns), _us(arrival_ns)
        flag, name = ("true" if snapshot else "false"), ("bid" if side == BID else "ask")
        for price, size in levels:
            w.row([EXCHANGE, symbol, ts, local, flag, name, plain_decimal(price),
                   plain_decimal(size)])  # fmt: skip

    try:
        for change in book_changes(replay, symbol, grouping, tops=True):
            kind = type(change)
            if kind is TopOfBook:
                assert isinstance(change, TopOfBook)
                writer("quotes", _QUOTES, change.arrival_ns).row(
                    [EXCHANGE, symbol, _exchange_us(change.exchange_ms, change.arrival_ns),
                     _us(change.arrival_ns), _num(change.ask_size), _num(change.ask_price),
                     _num(change.bid_price), _num(change.bid_size)]
                )  # fmt: skip
            elif kind is TradeEvent:
                assert isinstance(change, TradeEvent)
                t = change.trade
                writer("trades", _TRADES, t.arrival_ns).row(
                    [EXCHANGE, symbol, _exchange_us(t.exchange_ms, t.arrival_ns),
                     _us(t.arrival_ns), t.trade_id, t.side.lower(), plain_decimal(t.price),
                     plain_decimal(t.size)]
                )  # fmt: skip
            elif kind is Clear:
                assert isinstance(change, Clear)
                # every held level deleted (amount 0): the book is empty during the hole,
                # and the next snapshot follows non-snapshot rows, so readers reset there
                for side in (BID, ASK):
                    prices = sorted(held[side], reverse=side == BID)
                    book_rows(change.arrival_ns, change.exchange_ms, False, side,
                              [(price, 0.0) for price in prices])  # fmt: skip
                    held[side] = {}
                last_top.clear()
            elif kind is Snapshot:
                assert isinstance(change, Snapshot)
                had_book = True
                held = {BID: dict(change.bids), ASK: dict(change.asks)}
                book_day = _day(change.arrival_ns)
                book_rows(change.arrival_ns, change.exchange_ms, True, BID, change.bids)
                book_rows(change.arrival_ns, change.exchange_ms, True, ASK, change.asks)
            elif kind is Level:
                assert isinstance(change, Level)
                day = _day(change.arrival_ns)
                if day != book_day:  # a new day's file starts with the whole book
                    book_day = day
                    for side in (BID, ASK):
                        levels = sorted(held[side].items(), reverse=side == BID)
                        book_rows(change.arrival_ns, change.exchange_ms, True, side, levels)
                if change.size:
                    held[change.side][change.price] = change.size
                else:
                    held[change.side].pop(change.price, None)
                book_rows(change.arrival_ns, change.exchange_ms, False, change.side,
                          [(change.price, change.size)])  # fmt: skip
            elif kind is Updated:
                assert isinstance(change, Updated)
                _snapshot_rows(change, symbol, last_top, writer)
        ok = True
    finally:
        for (data_type, day), w in sorted(writers.items()):
            w.close(keep=ok)
            if ok:
                key = f"{symbol} {data_type} {day}"
                stats.files[key] = w.path
                stats.rows[key] = w.rows
    return had_book


def _snapshot_rows(change: Updated, symbol: str, last_top: dict, writer) -> None:  # noqa: ANN001
    """A book_snapshot_N row for each N whose top N levels this update changed."""
    top_bids, top_asks = change.book.depth(max(SNAPSHOT_DEPTHS))
    for depth in SNAPSHOT_DEPTHS:
        key = (tuple(top_bids[:depth]), tuple(top_asks[:depth]))
        if last_top.get(depth) == key:
            continue
        last_top[depth] = key
        row: list = [EXCHANGE, symbol, _exchange_us(change.exchange_ms, change.arrival_ns),
                     _us(change.arrival_ns)]  # fmt: skip
        for n in range(depth):
            a = top_asks[n] if n < len(top_asks) else None
            b = top_bids[n] if n < len(top_bids) else None
            row += [_num(a and a[0]), _num(a and a[1]), _num(b and b[0]), _num(b and b[1])]
        writer(f"book_snapshot_{depth}", snapshot_header(depth), change.arrival_ns).row(row)
