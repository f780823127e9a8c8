"""TradeSync: public trades in exchange order, each once, holes said out loud (plain calls)."""

import orjson
import pytest

from bookengine import BadFrame, StatusChanged, SyncStatus
from bookengine.events import Trade, TradeGap
from bookengine.trades import TradeSync

T = "tradeHistoryApiV3:BTC-PERP"


def frame(*trades, topic="tradeHistoryApiV3:BTC-PERP", symbol="BTC-PERP") -> bytes:
    data = [
        {"price": p, "size": s, "side": side, "symbol": symbol, "tradeId": i, "timestamp": ts}
        for i, ts, p, s, side in trades
    ]
    return orjson.dumps({"topic": topic, "data": data})


def trades_of(events):
    return [e for e in events if isinstance(e, Trade)]


def subscribed() -> TradeSync:
    sync = TradeSync()
    sync.subscribe([T], 0)
    return sync


def test_the_batch_is_flagged_sorted_to_exchange_order_and_syncs_the_stream():
    sync = subscribed()
    # newest first, as BTSE may send the post-subscribe batch
    events = sync.feed(1, frame((12, 1002, 86641.9, 70, "SELL"), (11, 1001, 86642.0, 5, "BUY")))
    status = [e for e in events if isinstance(e, StatusChanged)]
    assert status[0].status is SyncStatus.SYNCED and status[0].topic == "trades:BTC-PERP"
    got = trades_of(events)
    assert [t.trade_id for t in got] == [11, 12] and all(t.batch for t in got)
    assert got[1] == Trade(1, 1002, "BTC-PERP", 86641.9, 70.0, "SELL", 12, True)
    (live,) = trades_of(sync.feed(2, frame((13, 1003, 86641.5, 1, "SELL"))))
    assert not live.batch and sync.last_trade("BTC-PERP") == live


def test_repeats_across_the_batch_and_a_reconnect_come_out_once_and_holes_are_said():
    sync = subscribed()
    sync.feed(1, frame((11, 1001, 1.5, 1, "BUY"), (12, 1002, 1.5, 1, "BUY")))
    sync.connection_lost(2)
    sync.subscribe([T], 3)
    # the new batch overlaps: only the new trade comes out, no hole
    events = sync.feed(4, frame((12, 1002, 1.5, 1, "BUY"), (13, 1003, 1.5, 1, "BUY")))
    assert [t.trade_id for t in trades_of(events)] == [13]
    assert not [e for e in events if isinstance(e, TradeGap)]
    sync.connection_lost(5)
    sync.subscribe([T], 6)
    events = sync.feed(7, frame((20, 1010, 1.5, 1, "BUY")))  # does not reach back to 13
    (gap,) = [e for e in events if isinstance(e, TradeGap)]
    assert (gap.last_trade_id, gap.first_trade_id) == (13, 20)
    stats = sync.stats.topics["trades:BTC-PERP"]
    assert stats.duplicate_trades == 1 and stats.trade_gaps == 1 and stats.trades == 4


def test_legacy_bare_topic_routes_by_data_symbol_and_spellings_fold():
    sync = TradeSync()
    sync.subscribe(["tradeHistoryApi:BTCPFC"], 0)
    events = sync.feed(1, frame((1, 1, 2.5, 3, "SELL"), topic="tradeHistoryApi", symbol="BTCPFC"))
    assert [t.symbol for t in trades_of(events)] == ["BTC-PERP"]
    assert sync.status("BTC-PERP-USDT") is SyncStatus.SYNCED


@pytest.mark.parametrize(
    "bad",
    [
        {"price": "1.5"},
        {"size": 0},
        {"side": "HOLD"},
        {"tradeId": "7"},
        {"timestamp": None},
        {"price": True},
        {"symbol": None},
    ],
)
def test_a_malformed_trade_is_reported_and_the_rest_of_its_frame_counts(bad):
    sync = subscribed()
    good = {"price": 1.5, "size": 1, "side": "BUY", "symbol": "BTC-PERP", "tradeId": 1}
    broken = {**good, "tradeId": 2, **bad}
    raw = orjson.dumps({"topic": T, "data": [{**good, "timestamp": 5}, {"timestamp": 6, **broken}]})
    events = sync.feed(1, raw)
    assert [t.trade_id for t in trades_of(events)] == [1]
    assert [e for e in events if isinstance(e, BadFrame)]


def test_garbage_never_raises_and_unsolicited_trades_make_no_state():
    sync = subscribed()
    for raw in (b"{", b"[]", b'{"data":[1,2]}', None, 5, b"pong"):
        sync.feed(1, raw)
    sync.feed(2, frame((1, 1, 1.0, 1, "BUY"), symbol="ETH-PERP"))
    assert sync.stats.unsolicited == 1 and list(sync.stats.topics) == ["trades:BTC-PERP"]


def test_a_rejected_trade_topic_is_unsubscribed():
    sync = subscribed()
    raw = (
        b'{"severity":"ERROR","errors":[{"arg":"tradeHistoryApiV3:BTC-PERP","error":'
        b'{"code":1000,"message":"Market pair provided is currently not supported."}}]}'
    )
    events = sync.feed(1, raw)
    assert [e.status for e in events if isinstance(e, StatusChanged)] == [SyncStatus.UNSUBSCRIBED]


def test_a_late_trade_is_put_out_and_counted():
    sync = subscribed()
    sync.feed(1, frame((7, 1007, 1.0, 1, "BUY")))
    (late,) = trades_of(sync.feed(2, frame((6, 1006, 1.0, 1, "BUY"))))
    assert late.trade_id == 6 and sync.stats.topics["trades:BTC-PERP"].late_trades == 1


def test_a_checkpoint_restores_what_live_put_out():
    live = subscribed()
    live.feed(1, frame((11, 1001, 1.0, 1, "BUY"), (12, 1002, 1.0, 1, "BUY")))
    (entry,) = live.checkpoint()
    seeking = subscribed()  # a replay that starts mid-session
    seeking.restore(entry, 5)
    # a reconnect's batch after the seek: only what live had not put out comes out
    seeking.connection_lost(6)
    seeking.subscribe([T], 7)
    events = seeking.feed(8, frame((12, 1002, 1.0, 1, "BUY"), (13, 1003, 1.0, 1, "BUY")))
    assert [t.trade_id for t in trades_of(events)] == [13]
