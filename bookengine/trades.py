"""`TradeSync`: the sans-I/O core of public trades (`tradeHistoryApi` on the main sockets).

The same shape as `BookSync`, so one driver runs either: `feed(arrival_ns, raw)` returns
events; `subscribe`, `unsubscribe`, `connection_lost`, `check_timeouts` are what the I/O
layer tells it; `pending_actions` / `take_actions()` (always empty: a trade stream has no
sequence to resync).

What it promises (PROTOCOL.md, "Public trades"):
- Each trade once: trades are de-duplicated by `tradeId` (the batch of recent trades
  BTSE sends after every subscribe repeats trades already seen; so does a reconnect).
- In exchange order: a frame's trades come out sorted by (timestamp, tradeId); a batch
  may list them newest first. A trade that arrives after a newer one was already put out
  (a late frame) is still put out, never lost, and counted (`TopicStats.late_trades`).
- Holes said out loud: the first batch after a reconnect that does not reach back to the
  last trade seen is a possible hole (`TradeGap`), since trades between them may have
  been missed.
- Routed by `data[i].symbol` (legacy futures echo the bare topic `tradeHistoryApi`).
- A malformed trade is counted and reported (`BadFrame`), never raised; the other trades
  of its frame still count.

Status per stream: `waiting_for_snapshot` after subscribe, `synced` from the first frame
(the batch), `out_of_sync` when the connection drops, `unsubscribed` when rejected.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from bookengine import framing, naming
from bookengine.book import OrderBook, multiply_decimal
from bookengine.errors import ArgumentError, TopicError
from bookengine.events import (
    Event,
    L1Quote,
    Reason,
    Resubscribe,
    StatusChanged,
    SyncStatus,
    Trade,
    TradeGap,
)
from bookengine.sync import SyncStats, TopicStats, Units
from bookengine.wire import Topic, stream_key, topic_list

_loads = orjson.loads
_SIDES = ("BUY", "SELL")
_SAMPLE = 200
REMEMBER = 10_000  # trade ids kept per symbol to recognise repeats


class _Stream:
    __slots__ = ("key", "symbol", "topic", "status", "stats", "seen", "order", "last_id",
                 "expect_batch", "last")  # fmt: skip

    def __init__(self, topic: Topic, spelled: str) -> None:
        self.key = topic.key
        self.symbol = topic.symbol
        self.topic = spelled
        self.status = SyncStatus.WAITING
        self.stats = TopicStats()
        self.seen: set[int] = set()
        self.order: deque[int] = deque()
        self.last_id: int | None = None  # the highest trade id published
        self.expect_batch = True  # the next frame answers a (re)subscribe
        self.last: Trade | None = None


class TradeSync:
    """Public trades of one connection; feed it every frame that connection receives.

    `remember`: trade ids kept per symbol to drop repeats (the post-subscribe batch is
    ~50 trades). `subscribe`/`unsubscribe` raise `TopicError` for a topic no spelling
    rule knows; `feed` never raises."""

    def __init__(self, *, remember: int = REMEMBER) -> None:
        if remember < 1:
            raise ArgumentError("remember must be >= 1")
        self._remember = remember
        self._streams: dict[str, _Stream] = {}
        self._subscribed: dict[str, _Stream] = {}
        self.pending_actions: list[Resubscribe] = []  # never any: no sequence to resync
        self._keys: dict[str, str] = {}  # data.symbol as sent -> stream key
        self._factors: dict[str, str] = {}  # symbol -> size factor (contracts -> base)
        self.stats = SyncStats()

    # --- what the I/O layer tells us -------------------------------------------------

    def subscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        events: list[Event] = []
        for text in topic_list(topics):
            topic = Topic.parse(text)
            if topic.kind != "trades":
                raise ArgumentError(f"{text}: TradeSync takes trade topics only")
            stream = self._streams.get(topic.key)
            if stream is None:
                stream = self._streams[topic.key] = _Stream(topic, text)
                self.stats.topics[topic.key] = stream.stats
            stream.topic = text
            stream.expect_batch = True
            self._subscribed[topic.key] = stream
            self._set_status(stream, SyncStatus.WAITING, Reason.SUBSCRIBED, now_ns, events)
        return events

    def unsubscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        events: list[Event] = []
        for text in topic_list(topics):
            stream = self._subscribed.pop(Topic.parse(text).key, None)
            if stream is not None:
                gone = SyncStatus.UNSUBSCRIBED
                self._set_status(stream, gone, Reason.UNSUBSCRIBED, now_ns, events)
        return events

    def connection_lost(self, now_ns: int) -> list[Event]:
        """The socket is gone: what trades happen until the next batch is unknown."""
        events: list[Event] = []
        for stream in self._subscribed.values():
            stream.expect_batch = True
            self._set_status(
                stream, SyncStatus.OUT_OF_SYNC, Reason.CONNECTION_LOST, now_ns, events
            )
        return events

    def set_units(self, units: dict[str, Units]) -> None:
        """Trades hand out sizes times each symbol's `size_factor` (see BookSync)."""
        self._factors = {s: u.size_factor for s, u in units.items() if u.size_factor}

    def check_timeouts(self, now_ns: int) -> list[Event]:
        """Nothing to time: a quiet market sends no trades, and that is not a failure."""
        return []

    @property
    def has_timers(self) -> bool:
        return False

    def take_actions(self) -> list[Resubscribe]:
        actions, self.pending_actions = self.pending_actions, []
        return actions

    # --- checkpoints: where a replay that seeks mid-session starts from -----------------

    def checkpoint(self, keep: int = 200) -> list[dict[str, Any]]:
        """What each stream has published so far (its last trade id, the latest `keep`
        ids): a replay that seeks past a reconnect's batch knows what live already put
        out, so it puts out nothing twice and nothing out of order."""
        out = []
        for stream in self._subscribed.values():
            if stream.last_id is not None:
                recent = list(stream.order)[-keep:]
                out.append({"topic": stream.key, "trades": {"last_id": stream.last_id,
                                                            "recent": recent}})  # fmt: skip
        return out

    def restore(self, checkpoint: dict[str, Any], now_ns: int) -> list[Event]:
        """Load a `checkpoint()` entry into its (subscribed) stream: mid-session, synced,
        no batch expected."""
        stream = self._subscribed.get(str(checkpoint.get("topic")))
        state = checkpoint.get("trades")
        if stream is None or not isinstance(state, dict):
            return []
        last_id, recent = state.get("last_id"), state.get("recent")
        if type(last_id) is not int or not isinstance(recent, list):
            return []
        stream.last_id = max(last_id, stream.last_id or last_id)
        for trade_id in recent:
            if type(trade_id) is int and trade_id not in stream.seen:
                stream.seen.add(trade_id)
                stream.order.append(trade_id)
        while len(stream.order) > self._remember:
            stream.seen.discard(stream.order.popleft())
        stream.expect_batch = False
        events: list[Event] = []
        if stream.status is not SyncStatus.SYNCED:
            self._set_status(stream, SyncStatus.SYNCED, Reason.SNAPSHOT, now_ns, events)
        return events

    # --- queries (the driver-facing shape BookSync has) ------------------------------

    def status(self, item: str, grouping: int | None = 0) -> SyncStatus | None:
        stream = self._streams.get(_key(item))
        return None if stream is None else stream.status

    def last_trade(self, symbol: str) -> Trade | None:
        """The newest trade published for `symbol` (any spelling)."""
        stream = self._streams.get(_key(symbol))
        return None if stream is None else stream.last

    def book(self, symbol: str, grouping: int | None = 0) -> OrderBook | None:
        return None  # trades keep no book

    def last_seq(self, symbol: str, grouping: int | None = 0) -> int | None:
        return None

    def quote(self, topic: str) -> L1Quote | None:
        return None

    @property
    def subscribed(self) -> dict[str, str]:
        return {key: stream.topic for key, stream in self._subscribed.items()}

    # --- frames --------------------------------------------------------------------

    def feed(self, arrival_ns: int, raw: bytes | str) -> Sequence[Event]:
        """Process one received frame. Never raises for bad input: it returns a BadFrame."""
        try:
            msg, done = framing.parse(self.stats, arrival_ns, raw)
            if done is not None:
                return done
            if type(msg) is dict and type(msg.get("data")) is list:
                return self._trades(arrival_ns, raw, msg["data"])
            return framing.control(self.stats, arrival_ns, raw, msg, self._reject)
        except Exception as exc:  # a bug of ours: still never fatal to the feed
            from bookengine import sync

            if sync.STRICT:
                raise
            return self._bad(arrival_ns, raw, f"internal error {type(exc).__name__}: {exc}")

    def _trades(self, arrival_ns: int, raw: bytes | str, items: list[Any]) -> Sequence[Event]:
        by_stream: dict[str, list[tuple[int, int, float, float, str]]] = {}
        bad = 0
        reason = ""
        keys = self._keys
        for item in items:
            parsed = _parse_trade(item, keys)
            if isinstance(parsed, str):
                bad += 1
                reason = reason or parsed
                continue
            key, trade = parsed
            if key not in self._subscribed:
                self.stats.unsolicited += 1
                continue
            by_stream.setdefault(key, []).append(trade)
        events: list[Event] = []
        if bad:
            events += self._bad(arrival_ns, raw, f"{bad} malformed trade(s): {reason}")
        for key, trades in by_stream.items():
            events += self._publish(self._subscribed[key], arrival_ns, trades)
        return events  # (an empty batch names no symbol: nothing to route)

    def _publish(
        self, stream: _Stream, arrival_ns: int, trades: list[tuple[int, int, float, float, str]]
    ) -> list[Event]:
        events: list[Event] = []
        stats = stream.stats
        stats.trade_frames += 1
        batch = stream.expect_batch
        stream.expect_batch = False
        trades.sort()  # (timestamp, tradeId, ...): exchange order, whatever the frame's
        if batch and stream.last_id is not None and trades:
            first = min(t[1] for t in trades)
            if first > stream.last_id:  # the batch does not reach back: a possible hole
                stats.trade_gaps += 1
                events.append(
                    TradeGap(
                        arrival_ns,
                        stream.symbol,
                        stream.last_id,
                        first,
                        f"after a reconnect the first trade is {first}; "
                        f"the last seen was {stream.last_id}",
                    )
                )
        if stream.status is not SyncStatus.SYNCED:
            self._set_status(stream, SyncStatus.SYNCED, Reason.SNAPSHOT, arrival_ns, events)
        seen, order = stream.seen, stream.order
        factor = self._factors.get(stream.symbol)
        for timestamp, trade_id, price, size, side in trades:
            if trade_id in seen:
                stats.duplicate_trades += 1
                continue
            seen.add(trade_id)
            order.append(trade_id)
            if len(order) > self._remember:
                seen.discard(order.popleft())
            if factor is not None:  # contracts -> base coin, exactly
                size = multiply_decimal(size, factor)
            trade = Trade(
                arrival_ns, timestamp, stream.symbol, price, size, side, trade_id, batch
            )
            stream.last = trade
            if stream.last_id is None or trade_id > stream.last_id:
                stream.last_id = trade_id
            else:  # older than one already out (a late frame): kept, counted
                stats.late_trades += 1
            stats.trades += 1
            events.append(trade)
        return events

    def _reject(self, topic: str, detail: str, arrival_ns: int, events: list[Event]) -> None:
        """The exchange refused `topic`: no trades will come."""
        stream = self._subscribed.pop(_key(topic), None)
        if stream is not None:
            gone = SyncStatus.UNSUBSCRIBED
            self._set_status(stream, gone, Reason.REJECTED, arrival_ns, events, detail)

    def _set_status(
        self,
        stream: _Stream,
        status: SyncStatus,
        reason: Reason,
        now_ns: int,
        events: list[Event],
        detail: str = "",
    ) -> None:
        stream.status = status
        event = StatusChanged(now_ns, stream.symbol, None, status, reason, detail, stream.key)
        events.append(event)

    def _bad(self, arrival_ns: int, raw: object, reason: str) -> list[Event]:
        return framing.bad(self.stats, arrival_ns, raw, reason)


def _parse_trade(
    item: object, keys: dict[str, str]
) -> tuple[str, tuple[int, int, float, float, str]] | str:
    """(stream key, (timestamp, tradeId, price, size, side)), or why the item is bad.
    `keys` caches data.symbol -> stream key (bounded: a flood of names is cleared)."""
    if type(item) is not dict:
        return "a trade must be an object"
    symbol = item.get("symbol")
    if type(symbol) is not str:
        return "trade without a symbol"
    key = keys.get(symbol)
    if key is None:
        try:
            key = f"trades:{naming.canonical(symbol)}"
        except TopicError as exc:
            return str(exc)[:120]
        if len(keys) >= 1_000:
            keys.clear()
        keys[symbol] = key
    trade_id, timestamp = item.get("tradeId"), item.get("timestamp")
    price, size, side = item.get("price"), item.get("size"), item.get("side")
    if type(trade_id) is not int or type(timestamp) is not int:
        return "tradeId and timestamp must be integers"
    if not isinstance(price, int | float) or not isinstance(size, int | float) or (
        isinstance(price, bool) or isinstance(size, bool)
    ):
        return "price and size must be numbers"
    price, size = float(price), float(size)
    if not (math.isfinite(price) and price > 0 and math.isfinite(size) and size > 0):
        return f"price and size must be finite and > 0, got {price!r}, {size!r}"
    if side not in _SIDES:
        return f"side must be BUY or SELL, got {str(side)[:20]!r}"
    return key, (timestamp, trade_id, price, size, side)


def _key(item: str) -> str:
    try:
        if isinstance(item, str) and ":" not in item:
            return f"trades:{naming.canonical(item)}"
        return stream_key(item)
    except TopicError:
        return ""

