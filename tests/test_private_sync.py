"""PrivateSync, the core of an authenticated connection, as plain calls: what each frame
BTSE may send becomes, and how a refused authentication is told apart."""

from __future__ import annotations

import orjson
import pytest

from bookengine.auth import Credentials, sign
from bookengine.errors import ArgumentError
from bookengine.events import (
    BadFrame,
    ExchangeErrors,
    OrderNotification,
    OtcQuote,
    Reason,
    StatusChanged,
    SyncStatus,
)
from bookengine.private import NOTIFICATIONS, PrivateSync

BTC = "otc:BTC-USD:1:BTC"
ETH = "otc:ETH-USD:50000:USD:buy"


def quote(client_id: str, buy: str | None = "b1", sell: str | None = "s1", **extra) -> bytes:
    frame = {"topic": "quote", "buyQuoteId": buy, "sellQuoteId": sell, "clOrderId": client_id,
             "buyQuantity": 1, "buyUnitPrice": 86583.45, "buyTotalAmount": 86583.45,
             "sellQuantity": 1, "sellUnitPrice": 86496.43, "sellTotalAmount": 86496.43,
             "status": None, "reason": None, **extra}  # fmt: skip
    return orjson.dumps(frame)


def statuses(events) -> list[tuple[str, SyncStatus, Reason]]:
    return [(e.topic, e.status, e.reason) for e in events if isinstance(e, StatusChanged)]


def test_the_requests_are_a_signed_auth_then_the_quote_streams():
    sync = PrivateSync([BTC, ETH])
    creds = Credentials("key", "secret")
    auth, *quotes = sync.requests(creds, 1_700_000_000_000)
    args = orjson.loads(auth)["args"]
    assert args == ["key", "1700000000000", sign("secret", "/ws/otc", 1_700_000_000_000)]
    ids = [orjson.loads(q)["clOrderId"] for q in quotes]
    assert ids == ["be-BTC-USD:1:BTC", "be-ETH-USD:50000:USD:buy"]
    notes = PrivateSync([NOTIFICATIONS])
    auth, subscribe = notes.requests(creds, 5)
    assert orjson.loads(auth)["args"][2] == sign("secret", "/ws/spot", 5)
    assert orjson.loads(subscribe) == {"op": "subscribe", "args": [NOTIFICATIONS]}
    with pytest.raises(ArgumentError, match="not both"):
        PrivateSync([BTC, NOTIFICATIONS])


def test_quotes_become_events_of_their_stream_and_the_first_says_authenticated():
    sync = PrivateSync([BTC, ETH])
    waiting = (SyncStatus.WAITING, Reason.SUBSCRIBED)
    assert statuses(sync.subscribe([BTC, ETH], 1)) == [(BTC, *waiting), (ETH, *waiting)]
    events = sync.feed(2, quote("be-ETH-USD:50000:USD:buy", sell=None, sellUnitPrice=None))
    assert statuses(events) == [(ETH, SyncStatus.SYNCED, Reason.AUTHENTICATED)]
    got = events[-1]
    assert isinstance(got, OtcQuote) and got.topic == ETH and got.symbol == "ETH-USD"
    assert (got.quantity, got.currency, got.buy_quote_id, got.sell_quote_id) == (
        50000.0, "USD", "b1", None)  # fmt: skip
    assert got.buy_unit_price == 86583.45 and got.sell_unit_price is None
    assert sync.authenticated and sync.status(ETH) is SyncStatus.SYNCED
    assert sync.status(BTC) is SyncStatus.WAITING
    assert [type(e) for e in sync.feed(3, quote("be-BTC-USD:1:BTC"))] == [StatusChanged, OtcQuote]
    assert sync.stats.topics[BTC].frames == 1


def test_quotes_without_ids_mean_the_session_is_not_authenticated():
    sync = PrivateSync([BTC])
    sync.subscribe([BTC], 1)
    events = sync.feed(2, quote("be-BTC-USD:1:BTC", buy=None, sell=None))
    assert statuses(events) == [(BTC, SyncStatus.FAILING, Reason.AUTH_FAILED)]
    assert "not authenticated" in events[0].detail and sync.auth_failures == 1
    assert sync.auth_failed is not None
    assert sync.feed(3, quote("be-BTC-USD:1:BTC", buy=None, sell=None)) == []  # once only
    sync.connection_lost(4)
    sync.subscribe([BTC], 5)  # a new socket: a new chance
    assert sync.auth_failed is None
    refused = quote("be-BTC-USD:1:BTC", buy=None, sell=None, status="error",
                    reason="not enough buy liquidity")  # fmt: skip
    events = sync.feed(6, refused)  # a quote refused for a reason is a quote, not an auth
    assert isinstance(events[-1], OtcQuote) and events[-1].reason == "not enough buy liquidity"
    assert sync.auth_failures == 1
    assert statuses(sync.give_up(7)) == [(BTC, SyncStatus.UNSUBSCRIBED, Reason.AUTH_FAILED)]


def test_an_error_frame_about_the_auth_is_a_refusal_with_the_exchanges_words():
    sync = PrivateSync([NOTIFICATIONS])
    sync.subscribe([NOTIFICATIONS], 1)
    error = {"severity": "ERROR", "errors": [{"arg": "authKeyExpires", "error": {
        "code": 1002, "message": "Authentication failed: signature does not match"}}]}  # fmt: skip
    events = sync.feed(2, orjson.dumps(error))
    assert isinstance(events[0], ExchangeErrors)
    assert statuses(events) == [(NOTIFICATIONS, SyncStatus.FAILING, Reason.AUTH_FAILED)]
    assert "signature does not match" in events[1].detail


def test_notifications_become_typed_events():
    sync = PrivateSync([NOTIFICATIONS])
    sync.subscribe([NOTIFICATIONS], 1)
    ack = sync.feed(2, orjson.dumps({"event": "subscribe", "channel": [NOTIFICATIONS]}))
    assert statuses(ack) == [(NOTIFICATIONS, SyncStatus.SYNCED, Reason.AUTHENTICATED)]
    fill = {"symbol": "BTC-USD", "orderID": "o1", "clOrderID": "mine", "side": "buy",
            "status": 5, "price": "86500.5", "originalOrderBaseSize": 0.5,
            "filledBaseSize": 0.2, "totalFilledBaseSize": 0.2, "remainingBaseSize": 0.3,
            "avgFilledPrice": 86500.5, "maker": True, "timestamp": 1700000000123}  # fmt: skip
    both = {"topic": NOTIFICATIONS, "data": [fill, {**fill, "status": 4}]}
    events = sync.feed(3, orjson.dumps(both))
    first, second = events
    assert isinstance(first, OrderNotification)
    assert (first.order_id, first.side, first.status_name, first.fill_size, first.fill_price) == (
        "o1", "BUY", "ORDER_PARTIALLY_TRANSACTED", 0.2, 86500.5)  # fmt: skip
    assert (first.size, first.remaining, first.exchange_ms, first.maker) == (
        0.5, 0.3, 1700000000123, True)  # fmt: skip
    assert second.status_name == "ORDER_FULLY_TRANSACTED"
    insert = sync.feed(4, orjson.dumps({"topic": NOTIFICATIONS, "data": {**fill, "status": 2,
                                        "filledBaseSize": 0}}))  # fmt: skip
    assert insert[0].fill_size == 0 and insert[0].fill_price is None


@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[1,2]",
        orjson.dumps({"topic": NOTIFICATIONS, "data": {"symbol": "BTC-USD"}}),  # no orderID
        orjson.dumps({"topic": NOTIFICATIONS, "data": [7]}),
        orjson.dumps({"topic": NOTIFICATIONS, "data": {"symbol": "X", "orderID": "1",
                                                      "price": "NaN"}}),  # fmt: skip
        orjson.dumps({"topic": "quote", "clOrderId": "someone-else", "buyQuoteId": "x"}),
        orjson.dumps({"topic": "mystery", "data": {}}),
    ],
)
def test_hostile_frames_are_bad_frames_never_exceptions(frame):
    notes = PrivateSync([NOTIFICATIONS])
    quotes = PrivateSync([BTC, ETH])
    for sync in (notes, quotes):
        sync.subscribe(list(sync.subscribed), 1)
        events = sync.feed(2, frame)
        assert any(isinstance(e, BadFrame) for e in events), events
        assert sync.stats.bad_frames >= 1


def test_an_error_that_is_not_about_the_key_is_reported_not_a_refusal():
    sync = PrivateSync([BTC])
    sync.subscribe([BTC], 1)
    error = {"severity": "ERROR", "errors": [{"arg": "quote", "error": {
        "code": 1002, "message": "Invalid quantity: below the minimum OTC size"}}]}  # fmt: skip
    events = sync.feed(2, orjson.dumps(error))
    assert [type(e) for e in events] == [ExchangeErrors] and sync.auth_failed is None


def test_no_answer_in_time_or_a_socket_closed_unanswered_is_a_refusal():
    sync = PrivateSync([NOTIFICATIONS], answer_timeout_s=10)
    sync.subscribe([NOTIFICATIONS], 0)
    assert sync.has_timers and sync.check_timeouts(9_000_000_000) == []
    events = sync.check_timeouts(10_000_000_000)
    assert statuses(events) == [(NOTIFICATIONS, SyncStatus.FAILING, Reason.AUTH_FAILED)]
    assert "no private answer 10.0s" in events[0].detail and not sync.has_timers
    sync.connection_lost(11)  # the Feed closed it: not a second refusal
    assert sync.auth_failures == 1
    sync.subscribe([NOTIFICATIONS], 12)
    events = sync.connection_lost(13)  # closed on us before any answer (BTSE may do so)
    assert sync.auth_failures == 2 and "closed before any private answer" in events[0].detail


def test_refusals_in_a_row_count_until_a_session_works_and_ends_well():
    sync = PrivateSync([NOTIFICATIONS])
    ack = orjson.dumps({"event": "subscribe", "channel": [NOTIFICATIONS]})
    error = orjson.dumps({"severity": "ERROR", "errors": [{"arg": "authKeyExpires", "error": {
        "code": 1002, "message": "key revoked"}}]})  # fmt: skip
    for attempt in range(1, 4):  # accepted, then refused (a revoked key): still in a row
        sync.subscribe([NOTIFICATIONS], attempt)
        sync.feed(attempt, ack)
        sync.feed(attempt, error)
        sync.connection_lost(attempt)
        assert sync.auth_failures == attempt
    sync.subscribe([NOTIFICATIONS], 9)
    sync.feed(9, ack)
    sync.connection_lost(10)  # a session that worked and ended without a refusal
    assert sync.auth_failures == 0
