"""BookSync against every trap PROTOCOL.md lists: plain function calls, no network."""

import pytest
from frames import delta, snapshot

from bookengine import (
    BadFrame,
    BookSync,
    BookUpdate,
    ExchangeErrors,
    L1Quote,
    Pong,
    Reason,
    Resubscribe,
    StatusChanged,
    Subscribed,
    SyncStatus,
    TopOfBook,
)

pytestmark = pytest.mark.usefixtures("book_impl")

T = "update:BTC-PERP_0"
BIDS = [["100.0", "5"], ["99.5", "3"]]
ASKS = [["101.5", "1"], ["101.0", "2"]]  # worst-first, as BTSE sends them


def synced(**kw) -> BookSync:
    sync = BookSync(**kw)
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(10, BIDS, ASKS))
    assert sync.status("BTC-PERP") is SyncStatus.SYNCED
    return sync


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def test_snapshot_syncs_and_publishes_top():
    sync = BookSync()
    sync.subscribe([T], 0)
    events = sync.feed(5, snapshot(10, BIDS, ASKS))
    assert of(events, StatusChanged)[0].status is SyncStatus.SYNCED
    assert of(events, TopOfBook) == [
        TopOfBook(5, 1790133628076, "BTC-PERP", 0, 10, 100.0, 5.0, 101.0, 2.0)
    ]
    assert sync.pending == {}


def test_snapshot_before_ack_is_fine():
    sync = BookSync()
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(10, BIDS, ASKS))
    events = sync.feed(2, b'{"event":"subscribe","channel":["update:BTC-PERP_0"]}')
    assert events == [Subscribed(2, ("update:BTC-PERP_0",))]
    assert sync.book("BTC-PERP") is not None


def test_ack_channel_order_may_differ():
    sync = BookSync()
    sync.subscribe([T, "update:ETH-PERP_0"], 0)
    events = sync.feed(
        2, b'{"event":"subscribe","channel":["update:ETH-PERP_0","update:BTC-PERP_0"]}'
    )
    assert set(events[0].channels) == {T, "update:ETH-PERP_0"}


def test_top_of_book_only_when_best_price_or_size_changes():
    sync = synced()
    assert sync.feed(2, delta(11, [["99.0", "1"]], [["105.0", "1"]])) == ()  # below the top
    (top,) = sync.feed(3, delta(12, [["100.0", "6"]]))  # size at best bid changed
    assert (top.bid_price, top.bid_size, top.seq) == (100.0, 6.0, 12)
    (top,) = sync.feed(4, delta(13, [], [["101.0", "0"]]))  # best ask removed
    assert (top.ask_price, top.ask_size) == (101.5, 1.0)


def test_unordered_delta_with_trailing_zero_spellings():
    sync = synced()
    sync.feed(2, delta(11, [["99.5", "0"], ["100", "9"], ["100.50", "1"]]))
    assert sync.book("BTC-PERP").bids() == [(100.5, 1.0), (100.0, 9.0)]


def test_gap_invalidates_book_and_resubscribes_that_topic_only():
    sync = synced()
    sync.subscribe(["update:ETH-PERP_0"], 0)
    sync.feed(1, snapshot(500, [["10.0", "1"]], [["11.0", "1"]], symbol="ETH-PERP"))
    events = sync.feed(2, delta(13, [["100.0", "1"]], prev=12))
    (status,) = of(events, StatusChanged)
    assert status.status is SyncStatus.OUT_OF_SYNC and status.reason is Reason.GAP
    assert "expected prevSeqNum 10, got 12" in status.detail
    assert sync.take_actions() == [Resubscribe(T, Reason.GAP)]
    assert of(events, TopOfBook) == []
    assert sync.book("BTC-PERP") is None
    # further deltas of the gapped topic are ignored, never published
    assert sync.feed(3, delta(14, [["200.0", "1"]])) == ()
    assert sync.stats.topics[T].ignored == 1
    # the other topic is untouched
    (top,) = sync.feed(4, delta(501, [["10.5", "1"]], symbol="ETH-PERP"))
    assert top.symbol == "ETH-PERP" and top.bid_price == 10.5
    assert sync.stats.topics[T].gaps == 1 and sync.stats.topics["update:ETH-PERP_0"].gaps == 0


def test_duplicate_delta_is_a_gap():
    sync = synced()
    sync.feed(2, delta(11, [["100.0", "1"]]))
    events = sync.feed(3, delta(11, [["100.0", "1"]]))
    assert sync.take_actions() and "duplicate" in of(events, StatusChanged)[0].detail


def test_resubscribe_snapshot_continues_the_chain_and_resyncs():
    sync = synced()
    sync.feed(2, delta(13, prev=12))  # gap
    events = sync.feed(3, snapshot(20, [["90.0", "1"]], [["91.0", "1"]]))
    assert of(events, StatusChanged)[0].status is SyncStatus.SYNCED
    assert of(events, TopOfBook)[0].bid_price == 90.0
    (top,) = sync.feed(4, delta(21, [["90.5", "1"]]))
    assert top.seq == 21


def test_fresh_snapshot_on_resubscribe_while_synced_replaces_the_book():
    sync = synced()
    sync.feed(2, delta(11, [["99.0", "1"]]))
    events = sync.feed(3, snapshot(11, [["100.0", "5"]], [["101.0", "2"]]))
    assert of(events, StatusChanged) == []  # still synced: no status noise
    assert of(events, TopOfBook) == []  # same top: nothing to publish
    assert sync.book("BTC-PERP").bids() == [(100.0, 5.0)]


def test_stale_snapshot_is_refused():
    sync = synced()
    sync.feed(2, delta(11))
    events = sync.feed(3, snapshot(5, BIDS, ASKS))
    assert of(events, StatusChanged)[0].reason is Reason.STALE_SNAPSHOT
    assert sync.take_actions() and sync.book("BTC-PERP") is None


def test_crossed_book_resyncs():
    sync = synced()
    events = sync.feed(2, delta(11, [["101.0", "1"]]))
    assert of(events, StatusChanged)[0].reason is Reason.CROSSED
    assert of(events, TopOfBook) == [] and sync.book("BTC-PERP") is None
    crossed_snapshot = snapshot(12, [["102.0", "1"]], [["101.0", "1"]])
    events = sync.feed(3, crossed_snapshot)
    assert of(events, StatusChanged)[0].reason is Reason.CROSSED and of(events, TopOfBook) == []


def test_routing_by_symbol_not_topic_spelling():
    sync = BookSync()
    sync.subscribe(["update:BTC-PERP-USDT_0"], 0)
    sync.feed(1, snapshot(10, BIDS, ASKS, topic="update:BTC-PERP-USDT_0"))
    (top,) = sync.feed(2, delta(11, [["100.5", "1"]], topic="update:BTC-PERP_0"))
    assert top.bid_price == 100.5 and sync.stats.topics[T].gaps == 0
    # a resync asks again with the spelling we subscribed with
    sync.feed(3, delta(13, prev=12, topic="update:BTC-PERP_0"))
    assert sync.take_actions() == [Resubscribe("update:BTC-PERP-USDT_0", Reason.GAP)]


def test_groupings_have_their_own_chains_and_the_ungrouped_topic_is_the_0_chain():
    sync = BookSync()
    sync.subscribe([T, "update:BTC-PERP_1"], 0)
    sync.feed(1, snapshot(10, BIDS, ASKS))
    sync.feed(1, snapshot(777, [["100.0", "9"]], [["102.0", "9"]], grouping=1))
    sync.feed(2, delta(11))
    sync.feed(2, delta(778, grouping=1))
    # BTSE's documented examples: deltas on `update:SYM` for an `update:SYM_0`
    # subscription. The rule: `update:SYM` is the _0 chain, so they update the one book.
    (top,) = sync.feed(3, delta(12, [["100.5", "1"]], grouping=None))
    assert top.topic == T and top.seq == 12
    assert sync.stats.gaps == 0 and sync.last_seq("BTC-PERP") == 12
    assert sync.book("BTC-PERP", 1).best_bid == (100.0, 9.0)
    assert sync.book("update:BTC-PERP") is sync.book("BTC-PERP", 0)
    assert list(sync.books()) == [T, "update:BTC-PERP_1"]  # no second, never-synced book


def test_subscribing_the_ungrouped_topic_syncs_the_0_book():
    sync = BookSync()
    sync.subscribe(["update:BTC-PERP"], 0)
    sync.feed(1, snapshot(10, BIDS, ASKS, grouping=None))
    (top,) = sync.feed(2, delta(11, [["100.5", "1"]]))  # on the _0 spelling
    assert top.bid_price == 100.5 and sync.status("update:BTC-PERP") is SyncStatus.SYNCED


def test_delta_while_waiting_for_snapshot_is_ignored_quietly():
    sync = BookSync()
    sync.subscribe([T], 0)
    assert sync.feed(1, delta(11)) == ()
    assert sync.stats.topics[T].ignored == 1


def test_frames_of_streams_nobody_subscribed_make_no_state_and_no_resubscribe():
    sync = BookSync()
    sync.subscribe([T], 0)
    for i in range(1000):
        assert sync.feed(1, delta(11, symbol=f"X{i}-USD")) == ()
        assert sync.feed(1, snapshot(11, BIDS, ASKS, symbol=f"Y{i}-PERP")) == ()
    assert sync.stats.unsolicited == 2000 and list(sync.stats.topics) == [T]
    assert sync.stats.frames == 2000
    assert len(sync._routes) + len(sync._routes_by_pair) == 0


def test_snapshot_timeout():
    sync = BookSync(snapshot_timeout_s=2)
    sync.subscribe(["update:BTC-PERP_9"], 0)
    assert sync.check_timeouts(1_000_000_000) == []
    events = sync.check_timeouts(2_500_000_000)
    assert of(events, StatusChanged)[0].reason is Reason.SNAPSHOT_TIMEOUT
    assert sync.take_actions() == [Resubscribe("update:BTC-PERP_9", Reason.SNAPSHOT_TIMEOUT)]
    assert sync.check_timeouts(3_000_000_000) == []  # the clock restarted at the resubscribe
    assert sync.status("BTC-PERP", 9) is SyncStatus.OUT_OF_SYNC  # as the last event said
    assert sync.stats.topics["update:BTC-PERP_9"].timeouts == 1


def test_bad_frames_never_raise_and_other_topics_carry_on():
    sync = synced()
    junk = [
        b"{not json",
        b"\x00\xff\xfe binary",
        b"[]",
        b'{"topic":"update:BTC-PERP_0","data":"nope"}',
        b'{"topic":"foo:BTC-PERP","data":{"symbol":"BTC-PERP"}}',
        b'{"topic":"update:BTC-PERP_0","data":{"type":"delta"}}',
        12345,
        None,
        b"x" * 5_000_000,
    ]
    for raw in junk:
        events = sync.feed(2, raw)
        assert any(isinstance(e, BadFrame) and e.reason for e in events), raw[:20] if raw else raw
        assert all(len(e.sample) <= 200 for e in of(events, BadFrame))
    assert sync.stats.bad_frames == len(junk)
    assert sync.stats.frames == 1 + len(junk)  # every frame counted once: snapshot + junk
    (top,) = sync.feed(3, delta(11, [["100.5", "1"]]))
    assert top.bid_price == 100.5


def test_bad_level_in_a_delta_invalidates_that_book():
    sync = synced()
    for bad in ([["100.0", "-1"]], [["abc", "1"]], [["100.0"]], "nope", [["1e3", "1"]]):
        sync = synced()
        events = sync.feed(2, delta(11, bad))
        assert sync.stats.frames == 2 and sync.stats.topics[T].deltas == 0
        assert of(events, BadFrame) and of(events, StatusChanged)[0].reason is Reason.BAD_FRAME
        assert sync.book("BTC-PERP") is None and sync.take_actions()


def test_error_frames_surface_and_release_rejected_topics():
    sync = BookSync()
    sync.subscribe(["update:NOPE-PERP_0"], 0)
    events = sync.feed(
        1,
        b'{"severity":"ERROR","errors":[{"arg":"update:NOPE-PERP_0","error":{"code":1000,'
        b'"message":"Market pair provided is currently not supported."}}]}',
    )
    (errors,) = of(events, ExchangeErrors)
    assert errors.errors[0].code == 1000
    assert of(events, StatusChanged)[0].reason is Reason.REJECTED
    assert sync.pending == {} and sync.check_timeouts(10**12) == []


def test_pong_and_l1():
    sync = BookSync()
    assert sync.feed(1, b"pong") == [Pong(1)]
    quote = sync.feed(
        2,
        b'{"topic":"snapshotL1:ETH-PERP","data":{"bids":[["2766.67","165900"]],"asks":'
        b'[["2766.68","2366"]],"type":"snapshotL1","symbol":"ETH-PERP","timestamp":1790134133193}}',
    )
    assert quote == ()  # nobody subscribed
    sync.subscribe(["snapshotL1:ETH-PERP"], 2)
    status, quote = sync.feed(
        3,
        b'{"topic":"snapshotL1:ETH-PERP","data":{"bids":[["2766.67","165900"]],"asks":'
        b'[["2766.68","2366"]],"type":"snapshotL1","symbol":"ETH-PERP","timestamp":1790134133193}}',
    )
    assert status.status is SyncStatus.SYNCED and status.topic == "snapshotL1:ETH-PERP"
    assert quote == L1Quote(
        3, 1790134133193, "ETH-PERP", 2766.67, 165900.0, 2766.68, 2366.0, "snapshotL1:ETH-PERP"
    )
    assert sync.quote("snapshotL1:ETH-PERP_0") is quote and sync.book("ETH-PERP") is None


def test_book_updates_are_opt_in():
    assert of(synced().feed(2, delta(11, [["90.0", "1"]])), BookUpdate) == []
    sync = synced(book_updates=True)
    (update,) = sync.feed(2, delta(11, [["90.0", "1"]]))
    assert isinstance(update, BookUpdate) and update.book.size_at("bid", "90") == 1.0


def test_connection_lost_invalidates_everything_and_forgets_seq():
    sync = synced()
    events = sync.connection_lost(5)
    assert of(events, StatusChanged)[0].reason is Reason.CONNECTION_LOST
    assert sync.book("BTC-PERP") is None
    sync.subscribe([T], 6)
    # a restarted server may start a lower chain: that is not a stale snapshot
    events = sync.feed(7, snapshot(3, BIDS, ASKS))
    assert of(events, StatusChanged)[0].status is SyncStatus.SYNCED


def test_unsubscribe():
    sync = synced()
    events = sync.unsubscribe([T], 5)
    assert of(events, StatusChanged)[0].status is SyncStatus.UNSUBSCRIBED
    assert sync.book("BTC-PERP") is None
    assert sync.feed(6, delta(11)) == ()


def test_a_price_past_the_books_precision_is_a_bad_frame_not_a_crash():
    sync = BookSync()
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(1, [["86626.5", "1"]], [["86627", "1"]]))
    events = sync.feed(2, delta(2, [["0.000000000000001", "1"]]))
    assert [type(e).__name__ for e in events] == ["BadFrame", "StatusChanged"]
    assert sync.take_actions() == [Resubscribe(T, Reason.BAD_FRAME)]
    assert "do not fit" in events[0].reason
    assert sync.book("BTC-PERP") is None
    sync.feed(3, snapshot(5, [["86626.5", "2"]], [["86627", "1"]]))
    assert sync.book("BTC-PERP").best_bid == (86626.5, 2.0)


def test_a_book_snapshot_is_an_immutable_copy_with_seq_and_exchange_time():
    sync = synced()
    kept = sync.book(T).snapshot()
    assert (kept.seq, kept.exchange_ms) == (10, 1790133628076)
    assert kept.bids == ((100.0, 5.0), (99.5, 3.0)) and kept.best_ask == (101.0, 2.0)
    sync.feed(2, delta(11, [["100.0", "0"]], ts=1790133628999))
    assert kept.bids == ((100.0, 5.0), (99.5, 3.0))  # unchanged by the delta
    now = sync.book(T).snapshot()
    assert (now.seq, now.exchange_ms, now.best_bid) == (11, 1790133628999, (99.5, 3.0))
    with pytest.raises(AttributeError):
        kept.seq = 12  # frozen


def test_a_transition_outside_the_table_is_a_bug_that_raises():
    from bookengine import IllegalTransition

    sync = synced()
    state = sync._books[T]
    with pytest.raises(IllegalTransition, match="synced -> synced on gap"):
        sync._set_status(state, SyncStatus.SYNCED, Reason.GAP, 5, [])
    sync.unsubscribe([T], 6)
    with pytest.raises(IllegalTransition):  # an unsubscribed book cannot fall out of sync
        sync._set_status(state, SyncStatus.OUT_OF_SYNC, Reason.CONNECTION_LOST, 7, [])
