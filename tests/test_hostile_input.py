"""Hostile frames through the sans-I/O core: it never raises, never storms, never goes
silent, and the C and pure-Python builds read every frame alike (plain calls, no network).
"""

import orjson
import pytest
from frames import delta, snapshot

from bookengine import (
    BadFrame,
    BookSync,
    Reason,
    Resubscribe,
    StatusChanged,
    SyncStatus,
    TopOfBook,
)
from bookengine.sync import RecoveryPolicy

pytestmark = pytest.mark.usefixtures("book_impl")

T = "update:BTC-PERP_0"
BIDS = [["100.0", "5"], ["99.5", "3"]]
ASKS = [["101.5", "1"], ["101.0", "2"]]
SEC = 1_000_000_000


def synced(**kw) -> BookSync:
    sync = BookSync(**kw)
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(10, BIDS, ASKS))
    assert sync.status(T) is SyncStatus.SYNCED
    return sync


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def never_silent(sync: BookSync) -> None:
    """A subscribed book that is not synced is waiting for a snapshot with a clock
    running, or has a resubscribe scheduled: never neither."""
    for key in sync.subscribed:
        if sync.status(key) is not SyncStatus.SYNCED and not key.startswith("snapshotL1:"):
            assert key in sync._pending or key in sync._retries, (key, sync.status(key))


# --- 1. sequence poison and restarted chains ---------------------------------------


def test_an_absurd_seqnum_costs_one_resubscribe_and_the_next_snapshot_resyncs():
    sync = synced()
    events = sync.feed(2, delta(2**62, [["100.0", "1"]]))
    assert sync.take_actions() == [Resubscribe(T, Reason.GAP)]
    # the resubscribe's snapshot has an ordinary (lower) seqNum: it is taken
    events = sync.feed(3, snapshot(11, BIDS, ASKS))
    assert of(events, StatusChanged)[0].status is SyncStatus.SYNCED
    (top,) = sync.feed(4, delta(12, [["100.5", "1"]]))
    assert top.bid_price == 100.5 and sync.stats.topics[T].resubscribes == 1


def test_a_restarted_chain_is_a_new_chain():
    sync = synced()
    sync.feed(2, delta(11))
    sync.feed(3, delta(5_001, prev=5_000))  # the server restarted its sequence: a gap
    events = sync.feed(4, snapshot(5_002, BIDS, ASKS))
    assert sync.status(T) is SyncStatus.SYNCED and of(events, TopOfBook)
    assert sync.feed(5, delta(5_003)) == ()


def test_only_an_unsolicited_older_snapshot_while_synced_is_stale():
    sync = synced()
    sync.feed(2, delta(11))
    events = sync.feed(3, snapshot(9, BIDS, ASKS))
    assert of(events, StatusChanged)[0].reason is Reason.STALE_SNAPSHOT
    events = sync.feed(4, snapshot(8, BIDS, ASKS))  # the answer: whatever its seqNum
    assert of(events, StatusChanged)[0].status is SyncStatus.SYNCED


# --- 2. a malformed resync snapshot never leaves a topic waiting forever -------------


@pytest.mark.parametrize(
    "bids",
    [
        [["100.0", "-5"]],  # a negative size
        [["100.0"]],  # a one-element level
        [["100.000000000000001", "1"]],  # more than 15 significant digits
        [["1e2", "1"]],
    ],
)
def test_a_malformed_resync_snapshot_is_a_failed_recovery_not_a_silent_topic(bids):
    sync = synced(snapshot_timeout_s=2)
    sync.feed(2, delta(13, prev=12))  # gap: resubscribe
    events = sync.feed(3, snapshot(20, bids, ASKS))
    assert of(events, BadFrame) and sync.status(T) is SyncStatus.OUT_OF_SYNC
    assert len(sync.take_actions()) == 1  # the gap's; the bad snapshot's waits its turn
    never_silent(sync)
    # the budget's second try comes on the clock, then a good snapshot syncs
    for t in range(1, 6):
        sync.check_timeouts(3 + t * SEC)
    actions = sync.take_actions()
    assert actions and actions[0] == Resubscribe(T, Reason.BAD_FRAME)  # the delayed one
    sync.feed(7 * SEC, snapshot(21, BIDS, ASKS))
    assert sync.status(T) is SyncStatus.SYNCED


def test_one_fine_grained_snapshot_does_not_break_the_next_books_precision():
    sync = BookSync()
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(1, [["0.000000000000001", "1"]], [["0.000000000000002", "1"]]))
    sync.connection_lost(2)
    sync.subscribe([T], 3)
    sync.feed(4, snapshot(5, [["86626.5", "1"]], [["86627", "1"]]))
    (top,) = sync.feed(5, delta(6, [["86626.7", "2"]]))
    assert top.bid_price == 86626.7 and sync.book(T).bids() == [(86626.7, 2.0), (86626.5, 1.0)]


# --- 3. frames that used to raise out of feed() ------------------------------------

RAISED_BEFORE = [
    b'{"topic":["update:BTC-PERP_0"],"data":{"symbol":"BTC-PERP","type":"delta"}}',
    b'{"topic":{"a":1},"data":{"symbol":"BTC-PERP"}}',
    b'{"severity":"ERROR","errors":[{"arg":["update:BTC-PERP_0"],"error":{"code":1000}}]}',
    b'{"severity":"ERROR","errors":[{"arg":"update:BTC-PERP_0","error":{"code":[1000]}}]}',
    b'{"topic":"snapshotL1:BTC-PERP","data":{"bids":[["1"]],"asks":[],"symbol":"BTC-PERP"}}',
    b'{"topic":"update:BTC-PERP_' + b"9" * 4300 + b'","data":{"symbol":"BTC-PERP"}}',
    b'{"topic":"update:BTC-PERP_0","data":{"symbol":["BTC-PERP"],"type":"delta"}}',
    b'{"topic":"update:BTC-PERP_0","data":{"symbol":"BTC-PERP","type":["delta"]}}',
]


@pytest.mark.parametrize("raw", RAISED_BEFORE, ids=range(len(RAISED_BEFORE)))
def test_frames_that_raised_before_are_bad_frames_or_harmless(raw):
    sync = synced()
    sync.subscribe(["snapshotL1:BTC-PERP"], 1)
    events = sync.feed(2, raw)  # must not raise
    assert all(not isinstance(e, TopOfBook) for e in events)
    never_silent(sync)


def test_a_non_numeric_timestamp_never_reaches_an_event():
    sync = BookSync()
    sync.subscribe([T], 0)
    frame = orjson.loads(snapshot(10, BIDS, ASKS))
    frame["data"]["timestamp"] = "soon"
    (_, top) = sync.feed(1, orjson.dumps(frame))
    assert top.exchange_ms is None
    frame = orjson.loads(delta(11, [["100.5", "1"]]))
    frame["data"]["timestamp"] = [1]
    (top,) = sync.feed(2, orjson.dumps(frame))
    assert top.exchange_ms is None and top.bid_price == 100.5


def test_old_and_new_error_formats_both_reject_the_named_topic():
    for raw in (
        b'{"severity":"ERROR","errors":[{"arg":"update:BTC-PERP_0","error":{"code":1000,'
        b'"message":"Market pair provided is currently not supported."}}]}',
        b'{"error":[{"arg":"update:BTC-PERP_0","errorCode":"MARKET_PAIR_NOT_SUPPORT"}]}',
    ):
        sync = BookSync()
        sync.subscribe(["update:BTC-PERP-USDT_0"], 0)  # rejected under another spelling
        events = sync.feed(1, raw)
        (status,) = of(events, StatusChanged)
        assert status.reason is Reason.REJECTED and status.topic == T
        assert sync.status(T) is SyncStatus.UNSUBSCRIBED and sync.pending == {}
        assert events[0].errors[0].code == 1000


# --- the recovery budget -----------------------------------------------------------


def test_a_hostile_stream_cannot_make_a_resubscribe_storm():
    """Snapshot, then a crossing delta, over and over for 10 simulated seconds (the old
    code answered each with a resubscribe: thousands per second)."""
    policy = RecoveryPolicy(first_delay_s=1.0, max_delay_s=60.0, report_after=5)
    sync = BookSync(recovery=policy)
    sync.subscribe([T], 0)
    resubscribes, failing = [], []
    now = 0
    for i in range(20_000):
        now = i * 500_000  # 2,000 frames/s
        events = [*sync.feed(now, snapshot(10 + i, BIDS, ASKS))]
        events += sync.feed(now + 1, delta(11 + i, [["101.0", "9"]]))  # crosses
        if i % 2000 == 0:
            events += sync.check_timeouts(now)
        resubscribes += sync.take_actions()
        failing += [e for e in of(events, StatusChanged) if e.status is SyncStatus.FAILING]
    # 1 at once, then 1 s, 2 s, 4 s ... apart (jittered 0.5-1x), and none while unasked
    # snapshots keep coming: a handful at most, not 20,000
    assert 1 <= len(resubscribes) <= 8
    # reported once (then every further snapshot/cross is a plain status change)
    assert "5 recoveries failed in a row" in failing[0].detail
    assert sync.stats.topics[T].failing == 1


def test_a_failing_book_is_retried_at_the_documented_pace_forever():
    policy = RecoveryPolicy(first_delay_s=0.1, max_delay_s=2.0, report_after=3)
    sync = BookSync(snapshot_timeout_s=1.0, recovery=policy)
    sync.subscribe(["update:BTC-PERP_9"], 0)  # acknowledged, never served
    sent = []
    for tick in range(1, 601):  # ten minutes, checked each second as the Feed does
        sync.check_timeouts(tick * SEC)
        sent += [tick for _ in sync.take_actions()]
    assert sync.status("BTC-PERP", 9) is SyncStatus.FAILING
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert len(sent) > 100  # never abandoned
    assert min(gaps[3:]) >= 1 + 2  # the timeout (1 s) + never less than max_delay_s
    never_silent(sync)


def test_a_book_that_stayed_synced_gets_a_fresh_budget():
    policy = RecoveryPolicy(first_delay_s=1.0, report_after=3, stable_s=30)
    sync = synced(recovery=policy)
    for i in range(3):  # three quick failures: reported failing
        sync.feed(2 + i, snapshot(20 + i, BIDS, ASKS))
        sync.feed(2 + i, delta(99, prev=98))
    assert sync.status(T) is SyncStatus.FAILING
    sync.feed(10, snapshot(50, BIDS, ASKS))
    sync.take_actions()
    sync.feed(10 + 40 * SEC, delta(99, prev=98))  # 40 s later: resubscribed at once
    assert sync.take_actions() and sync.status(T) is SyncStatus.OUT_OF_SYNC


# --- 9. both builds read sizes alike; a fuzz of mutated realistic frames --------------

BAD_SIZES = ["1e5", "-0", " 5 ", "1_000", "+6", "٣", "5.", ".5", "0x10", "0." + "0" * 400 + "1"]


@pytest.mark.parametrize("size", [*BAD_SIZES, True, False, None, [], {}], ids=repr)
def test_sizes_either_build_refuses(size):
    sync = synced()
    frame = orjson.loads(delta(11, [["100.0", "1"]]))
    frame["data"]["bids"][0][1] = size
    events = sync.feed(2, orjson.dumps(frame))
    assert of(events, BadFrame) and sync.book(T) is None


def test_a_snapshot_with_a_negative_seqnum_is_a_bad_frame():
    sync = BookSync()
    sync.subscribe([T], 0)
    events = sync.feed(1, snapshot(-5, BIDS, ASKS))
    assert of(events, BadFrame) and sync.book(T) is None and sync.last_seq(T) is None
    never_silent(sync)


def test_a_book_that_was_fine_keeps_a_fresh_budget_across_a_reconnect():
    policy = RecoveryPolicy(report_after=5, stable_s=30)
    sync = synced(recovery=policy)
    for i in range(4):  # four quick failures
        sync.feed(2 + i, snapshot(20 + i, BIDS, ASKS))
        sync.feed(2 + i, delta(99, prev=98))
    sync.feed(10, snapshot(50, BIDS, ASKS))
    for seq in range(51, 60):  # then fine for long
        sync.feed(11, delta(seq))
    sync.connection_lost(3600 * SEC)
    sync.subscribe([T], 3600 * SEC)
    sync.take_actions()
    sync.feed(3601 * SEC, snapshot(70, BIDS, ASKS))
    sync.feed(3601 * SEC, delta(99, prev=98))  # one late problem after the reconnect
    assert sync.status(T) is SyncStatus.OUT_OF_SYNC and sync.take_actions()  # at once


def test_the_delta_that_breaks_a_book_does_not_count_towards_its_fresh_budget():
    policy = RecoveryPolicy(stable_deltas=3, report_after=4)
    sync = synced(recovery=policy)
    seq = 10
    for _ in range(6):  # snapshot, two good deltas, a gap: never 3 applied
        seq += 10
        sync.feed(1, snapshot(seq, BIDS, ASKS))
        sync.feed(1, delta(seq + 1))
        sync.feed(1, delta(seq + 2))
        sync.feed(1, delta(seq + 9, prev=seq + 8))
    assert sync.status(T) is SyncStatus.FAILING


def test_a_finer_price_in_a_delta_keeps_the_top_comparison_honest():
    sync = BookSync()
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(1, [["100", "1"]], [["101", "1"]]))
    assert sync.feed(2, delta(2, [["50.5", "1"]])) == ()  # the top did not change
    (top,) = sync.feed(3, delta(3, [["100.25", "2"]]))
    assert top.bid_price == 100.25


def test_an_l1_stream_never_served_times_out_and_is_retried():
    sync = BookSync(snapshot_timeout_s=2)
    sync.subscribe(["snapshotL1:BTC-PERP_9"], 0)
    sync.check_timeouts(3 * SEC)
    assert sync.status("snapshotL1:BTC-PERP_9") is SyncStatus.OUT_OF_SYNC
    assert sync.take_actions() == [Resubscribe("snapshotL1:BTC-PERP_9", Reason.SNAPSHOT_TIMEOUT)]


def test_an_unsubscribe_takes_back_the_resubscribe_it_had_pending():
    sync = synced()
    sync.feed(2, delta(13, prev=12))  # gap: a resubscribe pending
    sync.unsubscribe([T], 3)
    assert sync.take_actions() == []


def test_a_delta_whose_seqnum_does_not_advance_is_a_gap():
    for seq in (-1, 10):
        sync = synced()
        frame = orjson.loads(delta(11, prev=10))
        frame["data"]["seqNum"] = seq
        sync.feed(2, orjson.dumps(frame))
        assert sync.status(T) is SyncStatus.OUT_OF_SYNC and sync.last_seq(T) is None


def test_socket_level_errors_never_reject_the_topic_they_name():
    sync = synced()
    raw = (
        b'{"severity":"ERROR","errors":[{"arg":"update:BTC-PERP_0","error":{"code":1007,'
        b'"message":"Outbound buffer is full"}}]}'
    )
    sync.feed(2, raw)
    assert sync.status(T) is SyncStatus.SYNCED


def test_huge_symbols_and_topics_are_refused_before_anything_is_cached():
    import tracemalloc

    sync = synced()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(60):
        huge = f"X{i}" + "A" * 1_000_000 + "-USD"
        sync.feed(2, delta(11, symbol=huge))
        sync.feed(2, delta(11, topic="update:" + huge + "_0"))
    grown, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert grown - base < 8 * 2**20  # nothing kept: 120 MB went through
    assert sync.status(T) is SyncStatus.SYNCED
