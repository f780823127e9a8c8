"""The fan-out consumer's rules, as plain calls (no Redis): `StreamFollower` against the
publisher's own `BookSync` as the reference. A follower may be out of sync, but whenever
it hands out a book, that book is the publisher's at the same seq."""

from __future__ import annotations

from typing import NamedTuple

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookengine.errors import FrameError
from bookengine.events import BookUpdate, Reason, StatusChanged, SyncStatus
from bookengine.fanout.entries import (
    CALL,
    CHECKPOINT,
    FRAME,
    STOP,
    Entry,
    Keys,
    decode_entry,
    decode_top,
    decode_trade,
    encode_call,
    encode_entry,
    encode_top,
    encode_trade,
)
from bookengine.fanout.follower import StreamFollower
from bookengine.simulator import MarketModel
from bookengine.sync import BookSync
from bookengine.wire import encode_checkpoint

TOPIC = "update:BTC-PERP_0"


class Seen(NamedTuple):
    """A book the follower handed out (a BookUpdate), by seq and digest."""

    seq: int
    digest: str


def publish(steps: list[str], seed: int = 1, epoch: bytes = b"e1", final: list | None = None):
    """Run a publisher's BookSync on a script of steps and return the entries it would
    write, with the reference digests {seq: digest} of its book.

    Steps: "d" a delta, "x" a delta the publisher never received (a gap on its socket),
    "s" a fresh snapshot (as after a resubscribe), "c" a checkpoint, "l" connection lost,
    then a resubscribe."""
    model = MarketModel("BTC-PERP", seed=seed)
    sync = BookSync()
    entries: list[Entry] = []
    digests: dict[int, str] = {}
    ns = 1_000

    def put(kind: bytes, payload: bytes, seq: int | None = None, digest: str | None = None):
        entries.append(Entry(kind, ns, epoch, len(entries) + 1, payload, seq, digest))

    def feed(raw: bytes) -> None:
        put(FRAME, raw)
        sync.feed(ns, raw)
        book = sync.book(TOPIC)
        if book is not None:
            digests[sync.last_seq(TOPIC)] = book.digest()

    put(CALL, encode_call("subscribe", [TOPIC]))
    sync.subscribe([TOPIC], ns)
    feed(model.snapshot_frame())
    for step in steps:
        ns += 1_000
        if step == "d":
            feed(model.next_delta_frame())
        elif step == "x":
            model.next_delta_frame()
        elif step == "s":
            feed(model.snapshot_frame())
        elif step == "c":
            book = sync.book(TOPIC)
            if book is not None:
                seq = sync.last_seq(TOPIC)
                frame = encode_checkpoint(TOPIC, "BTC-PERP", book, seq, ns)
                put(CHECKPOINT, frame, seq, book.digest())
        elif step == "l":
            put(CALL, encode_call("connection_lost", []))
            sync.connection_lost(ns)
            put(CALL, encode_call("subscribe", [TOPIC]))
            sync.subscribe([TOPIC], ns)
        sync.take_actions()
    if final is not None:  # the publisher's status and book at the end
        book = sync.book(TOPIC)
        final.extend([sync.status(TOPIC), book and book.digest()])
    return entries, digests


def follow(entries: list[Entry]) -> tuple[StreamFollower, list]:
    follower = StreamFollower(TOPIC, book_updates=True)
    events = []
    for entry in entries:
        for event in follower.apply(entry):
            if type(event) is BookUpdate:
                events.append(Seen(event.seq, event.book.digest()))
            else:
                events.append(event)
    return follower, events


def assert_books_are_the_publishers(events: list, digests: dict[int, str]) -> int:
    checked = 0
    for item in events:
        if type(item) is Seen:
            seq, digest = item
            assert digests[seq] == digest, f"a book at seq {seq} that the publisher never had"
            checked += 1
    return checked


def test_a_follower_from_the_first_entry_has_the_publishers_book_at_every_seq():
    entries, digests = publish(["d"] * 200 + ["c"] + ["d"] * 100)
    follower, events = follow(entries)
    assert assert_books_are_the_publishers(events, digests) == 301
    assert follower.status is SyncStatus.SYNCED
    assert follower.stats.digests_checked == 1 and follower.stats.digest_mismatches == 0
    assert follower.stats.holes == 0 and follower.stats.skipped == 0


def test_a_late_follower_skips_to_the_next_checkpoint_and_takes_the_book_from_it():
    entries, digests = publish(["d"] * 100 + ["c"] + ["d"] * 50)
    follower, events = follow(entries[40:])  # joined mid-stream: no n == 1
    assert follower.stats.skipped == 100 + 2 - 40  # everything before the checkpoint
    assert follower.stats.checkpoints_adopted == 1
    assert assert_books_are_the_publishers(events, digests) == 51  # checkpoint + 50
    assert follower.book().digest() == digests[max(digests)]


def test_a_hole_drops_the_book_until_the_next_checkpoint_and_nothing_is_applied_across_it():
    entries, digests = publish(["d"] * 50 + ["c"] + ["d"] * 50 + ["c"] + ["d"] * 20)
    holed = entries[:70] + entries[80:]  # ten deltas trimmed away
    follower, events = follow(holed)
    statuses = [e for e in events if isinstance(e, StatusChanged)]
    lost = [s for s in statuses if s.reason is Reason.STREAM_HOLE]
    assert len(lost) == 1 and lost[0].status is SyncStatus.OUT_OF_SYNC
    assert "entries 71..80 are missing" in lost[0].detail
    # the deltas between the hole and the checkpoint are skipped, not applied
    assert follower.stats.skipped == 103 - 81 + 1  # n 81..103, up to the checkpoint (104)
    assert statuses[-1].status is SyncStatus.SYNCED
    assert assert_books_are_the_publishers(events, digests) > 0
    assert follower.book().digest() == digests[max(digests)]
    assert follower.stats.holes == 1


def test_the_publishers_own_gaps_and_reconnects_are_followed_as_it_lived_them():
    entries, digests = publish(["d"] * 30 + ["x"] + ["d"] * 5 + ["s"] + ["d"] * 10 + ["l", "s"]
                               + ["d"] * 10)  # fmt: skip
    follower, events = follow(entries)
    reasons = [e.reason for e in events if isinstance(e, StatusChanged)]
    assert reasons == [Reason.SUBSCRIBED, Reason.SNAPSHOT, Reason.GAP, Reason.SNAPSHOT,
                       Reason.CONNECTION_LOST, Reason.SUBSCRIBED, Reason.SNAPSHOT]  # fmt: skip
    assert assert_books_are_the_publishers(events, digests) == 30 + 1 + 10 + 1 + 10 + 1
    assert follower.stats.holes == 0


def test_a_new_publisher_run_is_a_hole_and_the_follower_starts_over_with_it():
    first, _ = publish(["d"] * 20, seed=1, epoch=b"run1")
    second, digests = publish(["d"] * 20, seed=2, epoch=b"run2")
    follower, events = follow(first + second)
    lost = [e for e in events if isinstance(e, StatusChanged) and e.reason is Reason.STREAM_HOLE]
    assert len(lost) == 1 and lost[0].detail == "a new publisher run"
    assert follower.status is SyncStatus.SYNCED and follower.stats.skipped == 0
    assert follower.book().digest() == digests[max(digests)]


def test_a_stop_marker_says_the_publisher_stopped():
    entries, _ = publish(["d"] * 5)
    entries.append(Entry(STOP, 9, b"e1", len(entries) + 1, b"publisher stopped"))
    follower, events = follow(entries)
    assert events[-1].reason is Reason.PUBLISHER_STOPPED and follower.book() is None


def test_a_checkpoint_that_disagrees_with_the_book_replaces_it_and_is_counted():
    entries, digests = publish(["d"] * 10 + ["c"])
    cp = entries[-1]
    wrong = cp._replace(digest="0" * 16)
    follower, events = follow(entries[:-1] + [wrong])
    assert follower.stats.digest_mismatches == 1 and follower.stats.digests_checked == 1
    assert any(isinstance(e, StatusChanged) and "differs" in e.detail for e in events)
    assert follower.status is SyncStatus.SYNCED  # the checkpoint's book, the publisher's


def test_an_unreadable_entry_is_a_hole():
    entries, digests = publish(["d"] * 10 + ["c"] + ["d"] * 5)
    follower = StreamFollower(TOPIC)
    for entry in entries[:6]:
        follower.apply(entry)
    with pytest.raises(FrameError):
        decode_entry({b"k": b"f", b"t": b"oops"})
    events = follower.bad_entry(5, "entry without field b'n'")
    assert events[0].reason is Reason.STREAM_HOLE and follower.book() is None
    for entry in entries[7:]:
        follower.apply(entry)
    assert follower.book().digest() == digests[max(digests)]
    assert follower.stats.bad_entries == 1


@pytest.mark.parametrize(
    "fields, message",
    [
        ({b"k": b"f", b"t": b"1", b"e": b"a", b"d": b""}, "without field"),
        ({b"k": b"?", b"t": b"1", b"e": b"a", b"n": b"1", b"d": b""}, "unknown entry kind"),
        ({b"k": b"f", b"t": b"x", b"e": b"a", b"n": b"1", b"d": b""}, "malformed"),
        ({b"k": b"f", b"t": b"1", b"e": b"a", b"n": b"0", b"d": b""}, "< 1"),
    ],
)
def test_malformed_entries_are_refused_with_a_reason(fields, message):
    with pytest.raises(FrameError, match=message):
        decode_entry(fields)


def test_entries_tops_and_trades_round_trip():
    from bookengine.events import TopOfBook, Trade

    entry = Entry(CHECKPOINT, 123, b"ep", 7, b'{"x":1}', 42, "abcd")
    assert decode_entry(encode_entry(entry)) == entry
    top = TopOfBook(1, 2, "BTC-PERP", 0, 3, 86500.5, 10.0, None, None)
    assert decode_top(encode_top(top)) == top
    trade = Trade(1, 2, "BTC-USD", 86500.5, 0.25, "BUY", 99, False)
    assert decode_trade(encode_trade(trade)) == trade
    assert Keys("desk").raw(TOPIC) == "desk:raw:update:BTC-PERP_0"
    with pytest.raises(ValueError):
        Keys("two words")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(st.sampled_from("dddddddxscl"), min_size=5, max_size=120),
    cuts=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 30)), max_size=4),
    start=st.integers(0, 60),
)
def test_property_whatever_is_lost_a_follower_never_hands_out_a_book_the_publisher_did_not_have(
    steps, cuts, start
):
    final: list = []
    entries, digests = publish(steps + ["c"] + ["d"] * 3, final=final)
    delivered = entries[start:]
    for at, length in cuts:  # holes: trimmed, lost while Redis was down, dropped
        delivered = delivered[:at] + delivered[at + length :]
    follower, events = follow(delivered)
    assert_books_are_the_publishers(events, digests)
    book = follower.book()
    if book is not None:
        assert book.digest() == digests[follower.last_seq()]
    # every hole is reported: never silently applied across
    numbers = [e.n for e in delivered]
    breaks = [i for i in range(1, len(numbers)) if numbers[i] != numbers[i - 1] + 1]
    assert follower.stats.holes <= len(breaks) + 1
    # liveness: a join point after the last break, and every entry after it up to the
    # publisher's last, put the follower where the publisher is
    tail = delivered[breaks[-1] if breaks else 0 :]
    whole_tail = bool(tail) and tail[-1] == entries[-1]
    if whole_tail and (tail[0].n == 1 or any(e.kind == CHECKPOINT for e in tail)):
        assert follower.status is final[0]
        assert (book and book.digest()) == final[1]


def test_calls_for_other_streams_are_not_applied():
    follower = StreamFollower(TOPIC)
    follower.apply(Entry(CALL, 1, b"e", 1, encode_call("subscribe", ["update:ETH-USD_0"])))
    assert follower.status is None
    follower.apply(Entry(CALL, 2, b"e", 2, orjson.dumps({"call": "subscribe", "topics": [TOPIC]})))
    assert follower.status is SyncStatus.WAITING


def test_a_batch_entry_carries_consecutive_records_and_a_damaged_one_is_refused():
    from bookengine.fanout.entries import decode_records, encode_batch

    entries, digests = publish(["d"] * 20)
    records = [e for e in entries if e.kind != CHECKPOINT]
    fields = encode_batch(records[3:9])
    decoded = decode_records(fields)
    assert decoded == records[3:9]  # numbers run on from the entry's first
    assert decode_records(encode_entry(records[0])) == [records[0]]
    follower, _ = follow(records[:3] + decoded + records[9:])
    assert follower.book().digest() == digests[max(digests)]
    for broken in (
        {**fields, b"r": fields[b"r"][:-3]},  # truncated payload
        {**fields, b"r": fields[b"r"][:5]},  # truncated header
        {**fields, b"r": b"Z" + fields[b"r"][1:]},  # unknown kind
        {**fields, b"r": b""},
        {b"r": fields[b"r"], b"n": b"1"},
    ):
        with pytest.raises(FrameError):
            decode_records(broken)


def test_an_l1_stream_joins_at_any_quote_and_after_a_hole_at_the_next():
    from bookengine.events import L1Quote

    model = MarketModel("BTC-PERP", seed=3)
    topic = "snapshotL1:BTC-PERP"
    records = []
    for i in range(1, 11):
        model.next_delta_frame()
        records.append(Entry(FRAME, i, b"e", i + 1, model.l1_frame()))
    follower = StreamFollower(topic)
    quotes = [e for r in records[2:5] + records[7:] for e in follower.apply(r)]
    assert follower.stats.holes == 1 and follower.status is SyncStatus.SYNCED
    assert [q.arrival_ns for q in quotes if type(q) is L1Quote] == [3, 4, 5, 8, 9, 10]
    assert any(type(q) is StatusChanged and q.reason is Reason.STREAM_HOLE for q in quotes)
