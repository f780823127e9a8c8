"""What `BookSync` reports: events for callbacks, and `Resubscribe`, the one action the
I/O layer must take (kept apart from events: `BookSync.take_actions()`).

Events are NamedTuples: cheap to create on the hot path, immutable, comparable (replay
tests compare live and replayed event streams one by one) and printable.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from bookengine.book import OrderBook
    from bookengine.errors import ExchangeError


class SyncStatus(StrEnum):
    WAITING = "waiting_for_snapshot"
    SYNCED = "synced"
    OUT_OF_SYNC = "out_of_sync"
    FAILING = "failing"  # recovery keeps failing: retried slowly (BookSync's RecoveryPolicy)
    UNSUBSCRIBED = "unsubscribed"


class Reason(StrEnum):
    SUBSCRIBED = "subscribed"
    SNAPSHOT = "snapshot"
    GAP = "gap"
    CROSSED = "crossed"
    STALE_SNAPSHOT = "stale_snapshot"
    DELTA_BEFORE_SNAPSHOT = "delta_before_snapshot"
    SNAPSHOT_TIMEOUT = "snapshot_timeout"
    BAD_FRAME = "bad_frame"
    CONNECTION_LOST = "connection_lost"
    REJECTED = "rejected"
    UNSUBSCRIBED = "unsubscribed"
    # fan-out consumers (bookengine.fanout): entries are missing, or the publisher stopped
    STREAM_HOLE = "stream_hole"
    PUBLISHER_STOPPED = "publisher_stopped"
    # private streams (bookengine.private): the session is (not) authenticated
    AUTHENTICATED = "authenticated"
    AUTH_FAILED = "auth_failed"


def _topic(symbol: str, grouping: int | None) -> str:
    return f"update:{symbol}" if grouping is None else f"update:{symbol}_{grouping}"


class TopOfBook(NamedTuple):
    """Best bid/ask of a synced book changed (price or size). None = empty side."""

    arrival_ns: int
    exchange_ms: int | None
    symbol: str
    grouping: int | None
    seq: int
    bid_price: float | None
    bid_size: float | None
    ask_price: float | None
    ask_size: float | None

    @property
    def topic(self) -> str:
        return _topic(self.symbol, self.grouping)


class BookUpdate(NamedTuple):
    """A synced book changed (opt-in: `BookSync(book_updates=True)`). `book` is live:
    read it in the callback, copy what you keep."""

    arrival_ns: int
    exchange_ms: int | None
    symbol: str
    grouping: int | None
    seq: int
    book: OrderBook

    @property
    def topic(self) -> str:
        return _topic(self.symbol, self.grouping)


class StatusChanged(NamedTuple):
    """A stream's sync status changed; `detail` explains (e.g. expected vs received seq).

    `topic` is the stream's key (`update:BTC-PERP_0`, `snapshotL1:BTC-PERP`): the same in
    every status event of that stream, whatever spelling it was subscribed with."""

    arrival_ns: int
    symbol: str
    grouping: int | None
    status: SyncStatus
    reason: Reason
    detail: str = ""
    topic: str = ""


class Resubscribe(NamedTuple):
    """An *action*, not an event: the driver must unsubscribe + subscribe this one topic
    (gap, crossed, timeout...). `BookSync.take_actions()` hands them out."""

    topic: str
    reason: Reason


class Subscribed(NamedTuple):
    arrival_ns: int
    channels: tuple[str, ...]


class Unsubscribed(NamedTuple):
    arrival_ns: int
    channels: tuple[str, ...]


class ExchangeErrors(NamedTuple):
    """An error frame: one or more errors (codes in PROTOCOL.md)."""

    arrival_ns: int
    errors: tuple[ExchangeError, ...]


class BadFrame(NamedTuple):
    """A frame we could not use; counted, never fatal. `sample` is its first bytes."""

    arrival_ns: int
    reason: str
    sample: bytes
    topic: str | None = None


class Pong(NamedTuple):
    arrival_ns: int


class L1Quote(NamedTuple):
    """A `snapshotL1:` frame: best bid/ask as the exchange reports it, no sequence.
    `topic` is the stream's key (`snapshotL1:BTC-PERP`, or `snapshotL1:BTC-PERP_3`)."""

    arrival_ns: int
    exchange_ms: int | None
    symbol: str
    bid_price: float | None
    bid_size: float | None
    ask_price: float | None
    ask_size: float | None
    topic: str = ""


class Trade(NamedTuple):
    """One public trade, in exchange order, never twice (`TradeSync`). Futures sizes are
    contracts, spot sizes base coin, as on the wire; `side` is the taker's."""

    arrival_ns: int
    exchange_ms: int
    symbol: str
    price: float
    size: float
    side: str  # "BUY" | "SELL"
    trade_id: int
    batch: bool  # came in the batch of recent trades sent right after a (re)subscribe

    @property
    def topic(self) -> str:
        return f"trades:{self.symbol}"


class TradeGap(NamedTuple):
    """Trades may be missing: the batch after a reconnect does not reach back to the
    last trade seen (`last_trade_id`); the first new one is `first_trade_id`."""

    arrival_ns: int
    symbol: str
    last_trade_id: int
    first_trade_id: int
    detail: str = ""

    @property
    def topic(self) -> str:
        return f"trades:{self.symbol}"


class OtcQuote(NamedTuple):
    """A firm two-way OTC quote for `quantity` of `currency` (BTSE's `/ws/otc` quote
    stream, authenticated). A side not asked for, or not quoted, is None; `status` and
    `reason` are BTSE's when a quote is refused. BTSE's documented frame carries no
    exchange time: `exchange_ms` is None unless a frame has a `timestamp`."""

    arrival_ns: int
    exchange_ms: int | None
    symbol: str
    quantity: float
    currency: str
    buy_quote_id: str | None
    sell_quote_id: str | None
    buy_quantity: float | None
    buy_unit_price: float | None
    buy_total: float | None
    sell_quantity: float | None
    sell_unit_price: float | None
    sell_total: float | None
    status: str | None
    reason: str | None
    topic: str = ""  # the stream: otc:BTC-USD:1:BTC


class OrderNotification(NamedTuple):
    """One of your own order events (`notificationApiV4`, authenticated): inserted,
    filled, partly filled, cancelled... `fill_size`/`fill_price` are this event's fill
    (0 and None when it is not a fill). Sizes in base coin, as BTSE's base-size fields."""

    arrival_ns: int
    exchange_ms: int | None
    symbol: str
    order_id: str
    cl_order_id: str | None
    side: str  # "BUY" | "SELL"
    status: int  # BTSE's status code (2 inserted, 4 filled, 5 partly filled, 6 cancelled, ...)
    status_name: str
    price: float | None  # the order's price (or the transaction price BTSE reports)
    size: float | None  # the order's original size
    fill_size: float
    fill_price: float | None
    total_filled: float | None
    remaining: float | None
    avg_fill_price: float | None
    maker: bool | None
    topic: str = ""


Event = (
    TopOfBook
    | BookUpdate
    | StatusChanged
    | Subscribed
    | Unsubscribed
    | ExchangeErrors
    | BadFrame
    | Pong
    | L1Quote
    | Trade
    | TradeGap
    | OtcQuote
    | OrderNotification
)
