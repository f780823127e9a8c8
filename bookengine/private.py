"""`PrivateSync`: the sans-I/O core of one authenticated connection: OTC quotes on
`/ws/otc`, or your own order notifications (`notificationApiV4`) on `/ws/spot`.

The Feed opens the socket, sends `requests()` (the signed `authKeyExpires` first, with a
fresh nonce on every socket, then the subscriptions) and feeds every frame here, as
`BookSync` is fed. Streams are named like topics so that files and events can say which:
`otc:BTC-USD:1:BTC` (a quote stream for 1 BTC; `otc:BTC-USD:50000:USD:buy` for one side
of 50,000 USD) and `notificationApiV4`.

Authentication. BTSE documents no reply to `authKeyExpires`. A session counts as
authenticated at its first private answer (the subscribe ack of the notification topic,
a quote with quote ids). It counts as refused on an error frame naming `authKeyExpires`,
a private topic or authentication; on a quote without quote ids (BTSE's docs: "empty /
null means your websocket stream is not authenticated"); when no private answer came
within `answer_timeout_s`; or when the socket closed before any. A refusal is the status
`failing`, reason `auth_failed`, with what happened: the Feed closes the socket, retries
with backoff, and gives up after `auth_attempts` refusals in a row (`unsubscribed`).
Refusals stop counting as "in a row" only after a session that was authenticated and
ended without one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from bookengine.auth import AUTH_OP, Credentials, auth_request
from bookengine.book import OrderBook
from bookengine.errors import ArgumentError, ExchangeError
from bookengine.events import (
    BadFrame,
    Event,
    ExchangeErrors,
    L1Quote,
    OrderNotification,
    OtcQuote,
    Pong,
    Reason,
    Resubscribe,
    StatusChanged,
    Subscribed,
    SyncStatus,
    Trade,
)
from bookengine.framing import SAMPLE
from bookengine.sync import SyncStats, TopicStats, Units
from bookengine.wire import decode_errors, plain_decimal

OTC_PATH = "/ws/otc"
NOTIFICATION_TOPICS = ("notificationApiV4", "notificationApiV3", "notificationApiV2")
NOTIFICATIONS = "notificationApiV4"
ORDER_STATUS = {
    1: "MARKET_UNAVAILABLE",
    2: "ORDER_INSERTED",
    4: "ORDER_FULLY_TRANSACTED",
    5: "ORDER_PARTIALLY_TRANSACTED",
    6: "ORDER_CANCELLED",
    8: "INSUFFICIENT_BALANCE",
    9: "TRIGGER_INSERTED",
    10: "TRIGGER_ACTIVATED",
    12: "ERROR_UPDATE_RISK_LIMIT",
    15: "ORDER_REJECTED",
    27: "TRANSFER_SUCCESSFUL",
    28: "TRANSFER_UNSUCCESSFUL",
    41: "ERROR_INVALID_RISK_LIMIT",
    64: "STATUS_LIQUIDATION",
    101: "FUTURES_ORDER_PRICE_OUTSIDE_LIQUIDATION_PRICE",
    1003: "ORDER_LIQUIDATION",
    1004: "ORDER_ADL",
}


class OtcRequest(NamedTuple):
    """One OTC quote stream: `quantity` of `currency` (base or quote) on `symbol`, both
    sides or one (`side` "buy" / "sell")."""

    symbol: str
    quantity: float
    currency: str
    side: str | None = None

    @property
    def topic(self) -> str:
        tail = f":{self.side}" if self.side else ""
        amount = plain_decimal(self.quantity).removesuffix(".0")  # 1, not 1.0
        return f"otc:{self.symbol}:{amount}:{self.currency}{tail}"

    @property
    def cl_order_id(self) -> str:
        """Sent with the request and echoed in every quote: how a quote finds its stream."""
        return f"be-{self.topic[4:]}"

    def request(self, op: str = "quote") -> dict[str, Any]:
        body: dict[str, Any] = {"op": op, "symbol": self.symbol}
        if self.side:
            body["side"] = self.side
        body["clOrderId"] = self.cl_order_id
        body["quantity"] = {"quantity": self.quantity, "currency": self.currency}
        return body


def otc_request(item: tuple[Any, ...] | OtcRequest | str) -> OtcRequest:
    """(symbol, quantity, currency[, side]) or `otc:SYM:QTY:CUR[:side]`, checked."""
    from bookengine import naming

    if isinstance(item, str):
        parts = item.split(":")
        if parts[0] != "otc" or len(parts) not in (4, 5):
            raise ArgumentError(f"not an OTC stream: {item!r} (otc:BTC-USD:1:BTC)")
        item = tuple(parts[1:])
    if not isinstance(item, tuple) or len(item) not in (3, 4):
        raise ArgumentError(f"an OTC quote is (symbol, quantity, currency[, side]), got {item!r}")
    symbol, quantity, currency, *side = item
    try:
        amount = float(quantity)
    except (TypeError, ValueError):
        raise ArgumentError(f"OTC quantity must be a number, got {quantity!r}") from None
    if not amount > 0 or amount == float("inf"):
        raise ArgumentError(f"OTC quantity must be > 0 and finite, got {quantity!r}")
    if not isinstance(currency, str) or not currency.isalnum():
        raise ArgumentError(f"OTC currency must be a currency code such as BTC, got {currency!r}")
    chosen = side[0] if side else None
    if chosen not in (None, "buy", "sell"):
        raise ArgumentError(f"OTC side must be 'buy' or 'sell' (or absent), got {chosen!r}")
    canonical = naming.canonical(str(symbol))
    if naming.market(canonical) != "spot":
        raise ArgumentError(f"OTC quotes are for spot markets, not {canonical}")
    return OtcRequest(canonical, amount, currency.upper(), chosen)


def fill_cost(
    levels: Iterable[tuple[float, float]], quantity: float, in_base: bool = True
) -> tuple[float, float] | None:
    """Walk one side of a book, best level first, for `quantity` of base coin (or of the
    quote currency): (base filled, quote paid), or None if the side is too thin. What the
    same size costs on the lit book, beside an OTC quote for it."""
    left, base, cost = quantity, 0.0, 0.0
    for price, size in levels:
        take = min(size, left) if in_base else min(size * price, left) / price
        base += take
        cost += take * price
        left -= take if in_base else take * price
        if left <= quantity * 1e-12:
            return base, cost
    return None


def is_private(topic: str) -> bool:
    """Whether a stream name is a private one (an OTC quote stream, notifications)."""
    return topic.startswith("otc:") or topic in NOTIFICATION_TOPICS


def stream_name(topic: str) -> str:
    """The key of any stream: a public topic's `Topic.key`, a private stream's name."""
    from bookengine.wire import Topic

    return topic if is_private(topic) else Topic.parse(topic).key


class _Private:
    __slots__ = ("topic", "status", "stats", "otc")

    def __init__(self, topic: str, otc: OtcRequest | None) -> None:
        self.topic = topic
        self.status: SyncStatus | None = None
        self.stats = TopicStats()
        self.otc = otc


class PrivateSync:
    """The private streams of one connection: all OTC quote streams, or notifications."""

    def __init__(self, topics: Iterable[str], *, answer_timeout_s: float = 10.0) -> None:
        self.answer_timeout_ns = int(answer_timeout_s * 1e9)
        self._since: int | None = None  # when the session's requests went out, unanswered
        self._streams: dict[str, _Private] = {}
        self._by_client_id: dict[str, _Private] = {}
        for topic in topics:
            otc = otc_request(topic) if topic.startswith("otc:") else None
            if otc is None and topic not in NOTIFICATION_TOPICS:
                raise ArgumentError(f"not a private stream: {topic!r}")
            state = _Private(otc.topic if otc else topic, otc)
            self._streams[state.topic] = state
            if otc is not None:
                self._by_client_id[otc.cl_order_id] = state
        kinds = {s.otc is None for s in self._streams.values()}
        if len(kinds) != 1:
            raise ArgumentError("one connection carries OTC quotes or notifications, not both")
        self.is_otc = not kinds.pop()
        self.path = OTC_PATH if self.is_otc else "/ws/spot"
        self.stats = SyncStats()
        self.pending_actions: list[Resubscribe] = []  # never any: kept for the Feed's loop
        self.auth_failed: str | None = None  # why the current session was refused
        self.auth_failures = 0  # sessions refused so far
        self.authenticated = False
        for state in self._streams.values():
            self.stats.topics[state.topic] = state.stats

    # --- what the I/O layer tells us -------------------------------------------------

    def requests(
        self, credentials: Credentials, nonce_ms: int, path: str | None = None
    ) -> list[str]:
        """What to send on a new socket, in order: the signed auth, then the
        subscriptions. `nonce_ms` must be fresh (the time now): BTSE refuses old ones."""
        out = [auth_request(credentials, path or self.path, nonce_ms)]
        if self.is_otc:
            out += [orjson.dumps(s.otc.request()).decode() for s in self._streams.values() if s.otc]
        else:
            topics = list(self._streams)
            out.append(orjson.dumps({"op": "subscribe", "args": topics}).decode())
        return out

    def subscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        """A new socket sent `requests()`: every stream waits for its first answer."""
        events: list[Event] = []
        self.auth_failed = None
        self.authenticated = False
        self._since = now_ns
        for topic in topics:
            state = self._streams.get(topic)
            if state is not None:
                self._set(state, SyncStatus.WAITING, Reason.SUBSCRIBED, now_ns, events)
        return events

    def unsubscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        events: list[Event] = []
        for topic in topics:
            state = self._streams.get(topic)
            if state is not None:
                self._set(state, SyncStatus.UNSUBSCRIBED, Reason.UNSUBSCRIBED, now_ns, events)
        return events

    def connection_lost(self, now_ns: int) -> list[Event]:
        events: list[Event] = []
        if self._since is not None and not self.authenticated and self.auth_failed is None:
            # closed on us before any private answer: as BTSE may refuse a key
            self._refused(now_ns, "the socket closed before any private answer", events)
        elif self.authenticated and self.auth_failed is None:
            self.auth_failures = 0  # a session that worked: refusals start counting afresh
        for state in self._streams.values():
            if state.status not in (None, SyncStatus.UNSUBSCRIBED, SyncStatus.FAILING):
                self._set(state, SyncStatus.OUT_OF_SYNC, Reason.CONNECTION_LOST, now_ns, events)
        self.authenticated = False
        self._since = None
        return events

    def give_up(self, now_ns: int) -> list[Event]:
        """The Feed stops retrying after repeated refusals: every stream is unsubscribed."""
        events: list[Event] = []
        detail = f"authentication refused {self.auth_failures} times; not retried: check the key"
        for state in self._streams.values():
            self._set(state, SyncStatus.UNSUBSCRIBED, Reason.AUTH_FAILED, now_ns, events, detail)
        return events

    def check_timeouts(self, now_ns: int) -> list[Event]:
        """No private answer within `answer_timeout_s` of the requests: a refusal."""
        events: list[Event] = []
        since = self._since
        if since is not None and now_ns - since >= self.answer_timeout_ns:
            self._since = None
            waited = (now_ns - since) / 1e9
            self._refused(now_ns, f"no private answer {waited:.1f}s after authenticating",
                          events)  # fmt: skip
        return events

    @property
    def has_timers(self) -> bool:
        return self._since is not None and not self.authenticated and self.auth_failed is None

    def take_actions(self) -> list[Resubscribe]:
        return []

    def set_units(self, units: dict[str, Units]) -> None:
        """OTC quotes and notifications carry base sizes: nothing to convert."""

    # --- queries ------------------------------------------------------------------------

    def status(self, item: str, grouping: int | None = 0) -> SyncStatus | None:
        state = self._streams.get(item)
        return None if state is None else state.status

    def book(self, symbol: str, grouping: int | None = 0) -> OrderBook | None:
        return None

    def last_seq(self, symbol: str, grouping: int | None = 0) -> int | None:
        return None

    def quote(self, topic: str) -> L1Quote | None:
        return None

    def last_trade(self, symbol: str) -> Trade | None:
        return None

    @property
    def subscribed(self) -> dict[str, str]:
        return {t: t for t, s in self._streams.items() if s.status is not SyncStatus.UNSUBSCRIBED}

    # --- frames -------------------------------------------------------------------------

    def feed(self, arrival_ns: int, raw: bytes | str) -> Sequence[Event]:
        """One received frame; never raises for bad input."""
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if raw in (b"pong", "pong"):
                return [Pong(arrival_ns)]
            return self._bad(arrival_ns, raw, "invalid JSON")
        if type(msg) is not dict:
            return self._bad(arrival_ns, raw, "not a JSON object")
        try:
            if msg.get("topic") == "quote" and self.is_otc:
                return self._quote(arrival_ns, raw, msg)
            topic = msg.get("topic")
            if isinstance(topic, str) and topic in self._streams and not self.is_otc:
                return self._notifications(arrival_ns, raw, topic, msg.get("data"))
            if "errors" in msg or msg.get("severity") == "ERROR":
                return self._errors(arrival_ns, msg)
            if msg.get("event") == "subscribe":
                return self._ack(arrival_ns, msg.get("channel"))
        except (KeyError, TypeError, ValueError) as exc:
            return self._bad(arrival_ns, raw, f"{type(exc).__name__}: {exc}")
        self.stats.unsolicited += 1
        return self._bad(arrival_ns, raw, "a frame of no private stream here")

    def _quote(self, arrival_ns: int, raw: bytes | str, msg: dict[str, Any]) -> list[Event]:
        state = self._by_client_id.get(msg.get("clOrderId") or "")
        if state is None:
            if len(self._by_client_id) != 1:  # without our id, a quote names no stream
                self.stats.unsolicited += 1
                return self._bad(arrival_ns, raw, "a quote with an unknown clOrderId")
            state = next(iter(self._by_client_id.values()))
        otc = state.otc
        assert otc is not None  # every stream of an OTC connection has its request
        events: list[Event] = []
        buy_id, sell_id = _text(msg.get("buyQuoteId")), _text(msg.get("sellQuoteId"))
        if not buy_id and not sell_id and not msg.get("reason"):
            # BTSE: no quote id "means that your websocket stream is not authenticated"
            # (a quote it refuses says why, in `reason`, and is handed out as it is)
            why = "quotes without quote ids: the session is not authenticated"
            self._refused(arrival_ns, f"{why} (wrong key or secret, or a clock far off?)", events)
            return events
        state.stats.private += 1
        quote = OtcQuote(
            arrival_ns,
            _int(msg.get("timestamp")),
            otc.symbol,
            otc.quantity,
            otc.currency,
            buy_id,
            sell_id,
            _num(msg.get("buyQuantity")),
            _num(msg.get("buyUnitPrice")),
            _num(msg.get("buyTotalAmount")),
            _num(msg.get("sellQuantity")),
            _num(msg.get("sellUnitPrice")),
            _num(msg.get("sellTotalAmount")),
            _text(msg.get("status")),
            _text(msg.get("reason")),
            state.topic,
        )
        if buy_id or sell_id:  # a firm quote: the session is authenticated
            self._authenticated(arrival_ns, events)
            if state.status is not SyncStatus.SYNCED:
                self._set(state, SyncStatus.SYNCED, Reason.AUTHENTICATED, arrival_ns, events)
        events.append(quote)
        return events

    def _notifications(
        self, arrival_ns: int, raw: bytes | str, topic: str, data: Any
    ) -> list[Event]:
        items = data if isinstance(data, list) else [data]
        state = self._streams[topic]
        events: list[Event] = []
        self._authenticated(arrival_ns, events)
        if state.status is not SyncStatus.SYNCED:
            self._set(state, SyncStatus.SYNCED, Reason.AUTHENTICATED, arrival_ns, events)
        for item in items:
            if not isinstance(item, dict):
                events.extend(self._bad(arrival_ns, raw, "a notification that is not an object"))
                continue
            state.stats.private += 1
            events.append(_notification(arrival_ns, topic, item))
        return events

    def _errors(self, arrival_ns: int, msg: dict[str, Any]) -> list[Event]:
        errors = decode_errors(msg)
        self.stats.error_frames += 1
        events: list[Event] = [ExchangeErrors(arrival_ns, tuple(errors))]
        about_us = [
            e for e in errors
            if e.arg == AUTH_OP or (e.arg or "") in self._streams or "auth" in e.message.lower()
        ]  # fmt: skip
        if about_us:  # other errors (a size below the minimum, ...) are only reported
            said = "; ".join(f"{e.code}: {e.message}" for e in errors) or "an error frame"
            self._refused(arrival_ns, f"refused by the exchange ({said})", events)
        return events

    def _ack(self, arrival_ns: int, channels: Any) -> list[Event]:
        events: list[Event] = []
        names = [c for c in channels or () if isinstance(c, str)]
        ours = [self._streams[c] for c in names if c in self._streams]
        if ours:
            self._authenticated(arrival_ns, events)
            for state in ours:
                if state.status is not SyncStatus.SYNCED:
                    self._set(state, SyncStatus.SYNCED, Reason.AUTHENTICATED, arrival_ns, events)
        events.append(Subscribed(arrival_ns, tuple(names)))
        return events

    def _authenticated(self, arrival_ns: int, events: list[Event]) -> None:
        self.authenticated = True
        self._since = None

    def _refused(self, arrival_ns: int, detail: str, events: list[Event]) -> None:
        if self.auth_failed is not None:
            return  # once per session: the Feed is closing it
        self.auth_failed = detail
        self._since = None
        self.auth_failures += 1
        for state in self._streams.values():
            if state.status is not SyncStatus.UNSUBSCRIBED:
                self._set(state, SyncStatus.FAILING, Reason.AUTH_FAILED, arrival_ns, events, detail)

    def _set(
        self,
        state: _Private,
        status: SyncStatus,
        reason: Reason,
        now_ns: int,
        events: list[Event],
        detail: str = "",
    ) -> None:
        state.status = status
        if status is SyncStatus.FAILING:
            state.stats.failing += 1
        symbol = state.otc.symbol if state.otc else ""
        events.append(StatusChanged(now_ns, symbol, None, status, reason, detail, state.topic))

    def _bad(self, arrival_ns: int, raw: object, reason: str) -> list[Event]:
        self.stats.bad_frames += 1
        sample = raw[:SAMPLE] if isinstance(raw, bytes) else str(raw)[:SAMPLE].encode()
        return [BadFrame(arrival_ns, reason, sample)]


def _notification(arrival_ns: int, topic: str, item: dict[str, Any]) -> OrderNotification:
    status = _int(item.get("status")) or 0
    fill_size = _num(item.get("filledBaseSize", item.get("filledSize"))) or 0.0
    price = _num(item.get("price"))
    fill_price = _num(item.get("filledPrice")) if "filledPrice" in item else None
    if fill_price is None and fill_size > 0:
        fill_price = price  # BTSE: "order price or executed transaction price"
    maker = item.get("maker")
    return OrderNotification(
        arrival_ns,
        _int(item.get("timestamp")),
        str(item["symbol"]),
        str(item["orderID"]),
        _text(item.get("clOrderID")),
        str(item.get("side", "")).upper(),
        status,
        ORDER_STATUS.get(status, f"STATUS_{status}"),
        price,
        _num(item.get("originalOrderBaseSize", item.get("originalOrderSize", item.get("size")))),
        fill_size,
        fill_price,
        _num(item.get("totalFilledBaseSize", item.get("totalFilledSize"))),
        _num(item.get("remainingBaseSize", item.get("remainingSize"))),
        _num(item.get("avgFilledPrice")),
        maker if isinstance(maker, bool) else None,
        topic,
    )


def _num(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def _int(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    return int(value)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


__all__ = [
    "NOTIFICATIONS",
    "OTC_PATH",
    "ORDER_STATUS",
    "ExchangeError",
    "OtcRequest",
    "PrivateSync",
    "is_private",
    "otc_request",
]
