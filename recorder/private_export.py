"""Tables of the authenticated streams, each row beside the lit book at that instant:

- OTC quotes (`collect_otc`): arrival_ns, exchange_ms, symbol, topic, quantity, currency,
  buy/sell quote ids, unit prices, quantities and totals, status, reason, `otc_spread_bps`;
  then the book of the same symbol as the replay had it then: `book_synced`, `book_seq`
  (the book's seq at the quote, the one the walk below used),
  `book_bid`, `book_ask`, `book_spread_bps`, and `book_buy_price`/`book_sell_price`,
  the average price of the same quantity walked through the book (NaN when the book is
  out of sync or too thin), with `buy_markup_bps`/`sell_markup_bps` of the quote over it.
  "OTC spread vs book spread" is one export: record the book with the quotes
  (`record BTC-USD --otc BTC-USD:1:BTC`).
- own order notifications (`collect_notifications`): arrival_ns, exchange_ms, symbol,
  order_id, cl_order_id, side, status, status_name, maker (1, 0, or -1 when BTSE did not
  say), price, size, fill_size, fill_price, total_filled, remaining, avg_fill_price; then
  `book_bid`, `book_ask` at arrival (mark-outs of real fills against the book).
"""

from __future__ import annotations

from collections.abc import Iterator
from math import nan
from typing import Any, TypeVar

import numpy as np

from bookengine.events import OrderNotification, OtcQuote, StatusChanged, SyncStatus, TopOfBook
from bookengine.private import fill_cost
from recorder.replay import Replay


class RowTable:
    """Rows of mixed columns, typed once at the end (ints, floats with NaN, strings)."""

    def __init__(self, names: list[str], floats: set[str], ints: set[str]) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in names}
        self.floats, self.ints = floats, ints

    def add(self, row: dict[str, Any]) -> None:
        for name, column in self.columns.items():
            column.append(row.get(name))

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def as_numpy(self) -> dict[str, np.ndarray]:
        out = {}
        for name, values in self.columns.items():
            if name in self.floats:
                out[name] = np.array([nan if v is None else v for v in values], dtype=np.float64)
            elif name in self.ints:
                out[name] = np.array([-1 if v is None else v for v in values], dtype=np.int64)
            elif values and all(isinstance(v, bool) for v in values):
                out[name] = np.array(values, dtype=bool)
            else:
                out[name] = np.array(["" if v is None else str(v) for v in values], dtype=str)
        return out


OTC_FLOATS = ["quantity", "buy_unit_price", "buy_quantity", "buy_total", "sell_unit_price",
              "sell_quantity", "sell_total", "otc_spread_bps", "book_bid", "book_ask",
              "book_spread_bps", "book_buy_price", "book_sell_price", "buy_markup_bps",
              "sell_markup_bps"]  # fmt: skip
OTC_COLUMNS = ["arrival_ns", "exchange_ms", "symbol", "topic", "currency", "buy_quote_id",
               "sell_quote_id", "status", "reason", "book_synced", "book_seq",
               *OTC_FLOATS]  # fmt: skip
NOTE_FLOATS = ["price", "size", "fill_size", "fill_price", "total_filled", "remaining",
               "avg_fill_price", "book_bid", "book_ask"]  # fmt: skip
NOTE_COLUMNS = ["arrival_ns", "exchange_ms", "symbol", "order_id", "cl_order_id", "side",
                "status", "status_name", "maker", *NOTE_FLOATS]  # fmt: skip


def collect_otc(replay: Replay) -> RowTable:
    """Every recorded OTC quote beside the book of its symbol at that instant."""
    table = RowTable(OTC_COLUMNS, set(OTC_FLOATS), {"arrival_ns", "exchange_ms", "book_seq"})
    for quote, top in _beside_book(replay, OtcQuote):
        table.add(_otc_row(replay, quote, top))
    return table


def collect_notifications(replay: Replay) -> RowTable:
    """Every recorded own-order notification, with the book's top at its arrival."""
    ints = {"arrival_ns", "exchange_ms", "status", "maker"}
    table = RowTable(NOTE_COLUMNS, set(NOTE_FLOATS), ints)
    for note, top in _beside_book(replay, OrderNotification):
        row = note._asdict()
        row["maker"] = {True: 1, False: 0, None: -1}[note.maker]
        row["book_bid"] = top.bid_price if top else None
        row["book_ask"] = top.ask_price if top else None
        table.add(row)
    return table


E = TypeVar("E", OtcQuote, OrderNotification)


def _beside_book(replay: Replay, kind: type[E]) -> Iterator[tuple[E, TopOfBook | None]]:
    """Each event of `kind` with the newest top of its symbol's book (None while that
    book is out of sync, or was never recorded)."""
    tops: dict[str, TopOfBook | None] = {}
    for event in replay.events():
        if type(event) is kind:
            yield event, tops.get(event.symbol)  # type: ignore[misc,attr-defined]
        elif type(event) is TopOfBook or type(event) is StatusChanged:
            _track(tops, event)


def _track(tops: dict[str, TopOfBook | None], event: object) -> None:
    """The newest top of each symbol's full-precision book; None while it is out of sync."""
    if type(event) is TopOfBook:
        if event.grouping in (0, None):
            tops[event.symbol] = event
    elif type(event) is StatusChanged and event.topic.startswith("update:"):
        if event.status is not SyncStatus.SYNCED and event.grouping in (0, None):
            tops[event.symbol] = None


def _otc_row(replay: Replay, quote: OtcQuote, top: TopOfBook | None) -> dict[str, Any]:
    row: dict[str, Any] = quote._asdict()
    buy, sell = quote.buy_unit_price, quote.sell_unit_price
    row["otc_spread_bps"] = _bps(sell, buy)
    row["book_synced"] = top is not None
    if top is None:
        return row
    row.update(
        book_seq=replay.last_seq(quote.symbol),
        book_bid=top.bid_price,
        book_ask=top.ask_price,
        book_spread_bps=_bps(top.bid_price, top.ask_price),
    )
    book = replay.book(quote.symbol)
    if book is not None:
        in_base = quote.currency == quote.symbol.split("-")[0]
        for side, levels, price in (("buy", book.asks(), buy), ("sell", book.bids(), sell)):
            filled = fill_cost(levels, quote.quantity, in_base)
            lit = None if filled is None else filled[1] / filled[0]
            row[f"book_{side}_price"] = lit
            if lit is not None and price is not None:
                sign = 1 if side == "buy" else -1
                row[f"{side}_markup_bps"] = sign * (price - lit) / lit * 1e4
    return row


def _bps(low: float | None, high: float | None) -> float | None:
    if low is None or high is None or low + high <= 0:
        return None
    return (high - low) / ((high + low) / 2) * 1e4
