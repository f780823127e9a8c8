"""A replayed book as the level-by-level changes backtesters want, holes explicit.

    for change in book_changes(Replay(paths, symbols=["BTC-PERP"], book_updates=True), "BTC-PERP"):
        ...

The engine's events say *that* a book changed; a backtester (hftbacktest, a tardis-format
tool) wants *which levels* changed. This walks the replay, keeps a mirror of the book it
has handed out, and yields:

- `Snapshot`: the whole book, when it (re)synced: the first time, and after every hole;
- `Level`: one level's new size (0: deleted) between two synced states;
- `Clear`: the book left sync (a gap, a lost connection, a recorder hole): the mirror is
  emptied, and nothing follows until the next `Snapshot`;
- `TradeEvent`: a trade (when trades were recorded);
- `Updated`: after the `Snapshot` or the `Level`s of one update: the book is now whole
  (a sampler takes its rows here, never between two levels of one update);
- with `tops=True`, the engine's own `TopOfBook` events too, in order.

So a consumer never splices across a hole: it sees a clear, then a fresh snapshot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

from bookengine import naming
from bookengine.book import OrderBook
from bookengine.events import BookUpdate, StatusChanged, SyncStatus, TopOfBook, Trade
from recorder.replay import Replay

BID, ASK = 1, -1


class Snapshot(NamedTuple):
    arrival_ns: int
    exchange_ms: int | None
    bids: list[tuple[float, float]]  # best first
    asks: list[tuple[float, float]]


class Level(NamedTuple):
    arrival_ns: int
    exchange_ms: int | None
    side: int  # BID or ASK
    price: float
    size: float  # 0.0: the level is gone


class Clear(NamedTuple):
    arrival_ns: int
    exchange_ms: int | None  # of the last update before the hole
    bids: list[float]  # the prices the consumer holds, to be cleared
    asks: list[float]
    reason: str


class TradeEvent(NamedTuple):
    trade: Trade


class Updated(NamedTuple):
    arrival_ns: int
    exchange_ms: int | None
    book: OrderBook  # the whole book after the update (live: read it now, do not keep)


Change = Snapshot | Level | Clear | TradeEvent | Updated | TopOfBook
# a stream left sync, or was subscribed afresh (a new recording session: never carried on)
_GONE = (SyncStatus.OUT_OF_SYNC, SyncStatus.FAILING, SyncStatus.UNSUBSCRIBED, SyncStatus.WAITING)
_TRADE_IDS_KEPT = 200_000  # trade ids remembered across sessions (a batch repeats ~50)


def book_changes(
    replay: Replay, symbol: str, grouping: int | None = 0, *, tops: bool = False
) -> Iterator[Change]:
    """The changes of `symbol`'s book (and its trades) in `replay`, which must have
    `book_updates=True`."""
    if not replay.book_updates:
        raise ValueError("book_changes needs Replay(..., book_updates=True)")
    symbol = naming.canonical(symbol)
    bids: set[tuple[float, float]] = set()  # the levels handed out, as (price, size)
    asks: set[tuple[float, float]] = set()
    synced = False
    last_exchange: int | None = None
    stops_seen = 0
    trade_ids: set[int] = set()  # across sessions: a new session's batch repeats trades
    trade_order: deque[int] = deque()

    def clear(arrival_ns: int, reason: str) -> Clear:
        nonlocal synced, bids, asks
        synced = False
        change = Clear(arrival_ns, last_exchange, sorted((p for p, _ in bids), reverse=True),
                       sorted(p for p, _ in asks), reason)  # fmt: skip
        bids, asks = set(), set()
        return change

    for event in replay.events():
        if len(replay.stopped) > stops_seen:  # a session ended cleanly: its book ends too
            for ns, core in replay.stopped[stops_seen:]:
                if synced and core.status(symbol, grouping) is not None:
                    yield clear(ns, "session_end")
            stops_seen = len(replay.stopped)
        kind = type(event)
        if kind is BookUpdate:
            assert isinstance(event, BookUpdate)
            if event.symbol != symbol or event.grouping != grouping:
                continue
            book = event.book
            last_exchange = event.exchange_ms
            new_bids, new_asks = book.bids(), book.asks()
            if not synced:
                bids, asks = set(new_bids), set(new_asks)
                synced = True
                yield Snapshot(event.arrival_ns, event.exchange_ms, new_bids, new_asks)
                yield Updated(event.arrival_ns, event.exchange_ms, book)
                continue
            for side, held, levels in ((BID, bids, new_bids), (ASK, asks, new_asks)):
                now = set(levels)
                if now == held:
                    continue
                added = now - held  # new levels and new sizes (set operations run in C)
                for price, size in sorted(added, reverse=side == BID):
                    yield Level(event.arrival_ns, event.exchange_ms, side, price, size)
                kept = {price for price, _ in added}
                for price in sorted({p for p, _ in held - now} - kept, reverse=side == BID):
                    yield Level(event.arrival_ns, event.exchange_ms, side, price, 0.0)
                held.clear()
                held.update(now)
            yield Updated(event.arrival_ns, event.exchange_ms, book)
        elif kind is StatusChanged:
            assert isinstance(event, StatusChanged)
            if (
                synced
                and event.symbol == symbol
                and event.grouping == grouping
                and event.topic.startswith("update:")
                and event.status in _GONE
            ):
                yield clear(event.arrival_ns, str(event.reason))
        elif kind is Trade:
            assert isinstance(event, Trade)
            if event.symbol == symbol and event.trade_id not in trade_ids:
                trade_ids.add(event.trade_id)
                trade_order.append(event.trade_id)
                if len(trade_order) > _TRADE_IDS_KEPT:
                    trade_ids.discard(trade_order.popleft())
                yield TradeEvent(event)
        elif tops and kind is TopOfBook:
            assert isinstance(event, TopOfBook)
            if event.symbol == symbol and event.grouping == grouping:
                yield event
