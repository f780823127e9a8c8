"""The C delta scanner (`_fastbook.Scanner`) and BookSync's in-sequence path built on it.

The scanner must never change what BookSync decides: it only reads frames whose shape it
fully understands and hands everything else to the orjson path. The differential test
below feeds the same frames, spelled and damaged in many ways, to a BookSync with the
scanner and to one without it, and requires the same events, books and counters.
"""

from __future__ import annotations

import json

import orjson
import pytest
from frames import delta, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bookengine.book as book_module
import bookengine.sync as sync_module
from bookengine import BookSync, TopOfBook

if book_module.Scanner is None:
    pytest.skip("bookengine._fastbook is not built (optional)", allow_module_level=True)

T = "update:BTC-PERP_0"
DELTA = (
    b'{"topic":"update:BTC-PERP_0","data":{"bids":[["86540.0","24"],["86539.9","0"]],'
    b'"asks":[["86540.5","3.25"]],"seqNum":11,"prevSeqNum":10,"type":"delta",'
    b'"symbol":"BTC-PERP","timestamp":1790133628117}}'
)


def scan(raw):
    return book_module.Scanner().scan(raw)


# --- Scanner.scan ----------------------------------------------------------------------


def test_scan_reads_the_head_of_a_delta():
    assert scan(DELTA) == ("update:BTC-PERP_0", "BTC-PERP", 11, 10, 1790133628117)


@pytest.mark.parametrize("kind", [bytes, str, bytearray, memoryview])
def test_scan_takes_every_frame_type_orjson_takes(kind):
    raw = DELTA.decode() if kind is str else kind(DELTA)
    assert scan(raw) == ("update:BTC-PERP_0", "BTC-PERP", 11, 10, 1790133628117)


def test_scan_any_key_order_and_json_whitespace():
    data = orjson.loads(DELTA)
    text = json.dumps(
        {"data": dict(reversed(list(data["data"].items()))), "topic": data["topic"]},
        indent="\t",
        separators=(" ,\r\n", " : "),
    )
    assert scan(" \n" + text + "\n ") == ("update:BTC-PERP_0", "BTC-PERP", 11, 10, 1790133628117)


def test_scan_without_timestamp():
    raw = DELTA.replace(b',"timestamp":1790133628117', b"")
    assert scan(raw) == ("update:BTC-PERP_0", "BTC-PERP", 11, 10, None)


def test_scan_repeated_strings_are_one_object():
    scanner = book_module.Scanner()
    first, second = scanner.scan(DELTA), scanner.scan(DELTA)
    assert first[0] is second[0] and first[1] is second[1]
    other = scanner.scan(DELTA.replace(b"BTC-PERP", b"ETH-PERP"))
    assert other[:2] == ("update:ETH-PERP_0", "ETH-PERP")


@pytest.mark.parametrize(
    "old, new",
    [
        (b'"type":"delta"', b'"type":"snapshot"'),  # snapshots take the general path
        (b'"type":"delta"', b'"type":"delta","mversion":1'),  # an unknown key
        (b'"type":"delta"', b'"type":"delta","seqNum":12'),  # a duplicate key
        (b'{"topic"', b'{"extra":0,"topic"'),  # an unknown top-level key
        (b'"seqNum":11', b'"seqNum":11.0'),  # not an integer
        (b'"seqNum":11', b'"seqNum":1.1e1'),
        (b'"seqNum":11', b'"seqNum":011'),  # not JSON
        (b'"seqNum":11', b'"seqNum":"11"'),
        (b'"seqNum":11', b'"seqNum":1234567890123456789'),  # 19 digits
        (b'"timestamp":1790133628117', b'"timestamp":null'),
        (b'"86540.0"', b"86540.0"),  # a number, not a string
        (b'"86540.0"', b'"8654\\u0030.0"'),  # an escape
        (b'"BTC-PERP"', b'"BTC-P\xc3\x89RP"'),  # non-ASCII
        (b'"86540.0"', b'"1.0000000000000001"'),  # 17 significant digits
        (b'"86540.0"', b'"-1"'),
        (b'"86540.0"', b'"1e3"'),
        (b'"86540.0"', b'"86540."'),
        (b'"24"', b'"-24"'),
        (b'"24"', b'"24","1"'),  # three items in a level
        (b'"24"]', b'"24"],]'),  # trailing comma
        (b'"symbol":"BTC-PERP",', b""),  # missing symbol
        (b"}}", b"}},"),  # trailing garbage
        (b"}}", b"}"),  # truncated
        (b'"asks":[[', b'"asks":{[['),
    ],
)
def test_scan_declines_what_it_does_not_fully_understand(old, new):
    assert old in DELTA
    assert scan(DELTA.replace(old, new, 1)) is None


def test_scan_declines_buffers_orjson_refuses():
    import array

    class Frame(bytes):
        pass

    for raw in (array.array("B", DELTA), Frame(DELTA)):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        assert scan(raw) is None


def test_scan_declines_absurdly_long_decimals():
    price = "0." + "0" * 5000 + "1"
    assert scan(DELTA.replace(b'"86540.0"', f'"{price}"'.encode())) is None
    assert scan(DELTA.replace(b'"24"', f'"{price}"'.encode())) is None


def test_scan_declines_non_frames():
    for raw in (b"", b"pong", b"[]", b"{}", b"{", 12, None, "h\u00e9llo"):
        assert scan(raw) is None


def test_scan_declines_every_truncation():
    scanner = book_module.Scanner()
    for cut in range(len(DELTA)):
        assert scanner.scan(DELTA[:cut]) is None, cut


# --- Scanner.apply ----------------------------------------------------------------------


def sides(bids: dict, asks: dict):
    """A book's two C sides holding these levels."""
    side = book_module._fastbook.Side
    return fill(side(True), bids), fill(side(False), asks)


def fill(side, levels: dict):
    for key, size in levels.items():
        side[key] = size
    return side


def test_apply_needs_a_scanned_frame():
    scanner = book_module.Scanner()
    with pytest.raises(RuntimeError):
        scanner.apply(*sides({}, {}), 1)
    assert scanner.scan(b"{}") is None
    with pytest.raises(RuntimeError):  # a declined frame leaves nothing to apply
        scanner.apply(*sides({}, {}), 1)


def test_apply_declines_dicts_and_refuses_swapped_sides():
    scanner = book_module.Scanner()
    scanner.scan(DELTA)
    bids_dict: dict = {}
    assert scanner.apply(bids_dict, {}, 1) is None  # a pure-Python book: the general path
    assert bids_dict == {}
    bids, asks = sides({}, {})
    scanner.scan(DELTA)
    with pytest.raises(ValueError, match="swapped"):
        scanner.apply(asks, bids, 1)
    assert len(bids) == len(asks) == 0


def test_apply_sets_deletes_and_keeps_the_best():
    scanner = book_module.Scanner()
    bids, asks = sides({865399: 5.0, 865380: 1.0}, {865410: 2.0})
    scanner.scan(DELTA)
    # 86540.0 -> key 865400 (new best bid), 86539.9 deleted, 86540.5 -> new best ask
    # the new top, as OrderBook.top_keys(): (bid key, size, ask key, size)
    assert scanner.apply(bids, asks, 1) == (865400, 24.0, 865405, 3.25)
    assert bids.items() == [(865400, 24.0), (865380, 1.0)]  # best first
    assert asks.items() == [(865405, 3.25), (865410, 2.0)]


def test_apply_rescans_when_the_best_level_is_deleted():
    scanner = book_module.Scanner()
    raw = delta(11, [["100.2", "0"]], [["100.3", "0"], ["100.5", "0"]])
    bids, asks = sides({1002: 1.0, 1001: 1.0, 999: 1.0}, {1003: 1.0, 1005: 1.0})
    scanner.scan(raw)
    assert scanner.apply(bids, asks, 1) == (1001, 1.0, float("inf"), None)
    assert bids.items() == [(1001, 1.0), (999, 1.0)] and len(asks) == 0


def test_apply_declines_finer_prices_and_changes_nothing():
    scanner = book_module.Scanner()
    scanner.scan(delta(11, [["100.25", "1"]], [["100.3", "2"]]))
    bids, asks = sides({1001: 1.0}, {1004: 1.0})
    assert scanner.apply(bids, asks, 1) is None  # 100.25 needs 2 decimals
    assert bids.items() == [(1001, 1.0)] and asks.items() == [(1004, 1.0)]


def test_apply_declines_keys_that_do_not_fit():
    scanner = book_module.Scanner()
    scanner.scan(delta(11, [["999999999999999", "1"]]))
    bids, asks = sides({}, {})
    assert scanner.apply(bids, asks, 10) is None
    assert len(bids) == 0


def test_apply_repeated_price_spellings_are_one_level():
    scanner = book_module.Scanner()
    scanner.scan(delta(11, [["100.5", "1"], ["100.50", "2"], ["100.500", "0"], ["100.5", "4"]]))
    bids, asks = sides({}, {})
    top = scanner.apply(bids, asks, 3)
    assert top == (100500, 4.0, float("inf"), None)
    assert bids.items() == [(100500, 4.0)]


# --- BookSync on the scanner ----------------------------------------------------------


def test_in_sequence_deltas_never_reach_orjson(monkeypatch):
    calls = []

    def counting_loads(raw):
        calls.append(raw)
        return orjson.loads(raw)

    monkeypatch.setattr(sync_module, "_loads", counting_loads)
    sync = BookSync()
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(10, [["100.0", "1"]], [["100.5", "1"]]))
    events = []
    for seq in range(11, 21):
        events += sync.feed(seq, delta(seq, [["100.1", str(seq)]], [["100.4", "1"]]))
    assert len(calls) == 1  # the snapshot only
    assert [type(e) for e in events] == [TopOfBook] * 10
    assert events[-1].bid_size == 20.0 and events[-1].ask_price == 100.4
    assert sync.last_seq("BTC-PERP") == 20
    # A gap is still a gap: the general path parses it and resyncs.
    gap = sync.feed(30, delta(30, [["100.2", "1"]]))
    assert len(calls) == 2
    assert sync.status("BTC-PERP") is not None and sync.book("BTC-PERP") is None
    assert any(type(e).__name__ == "StatusChanged" for e in gap) and sync.take_actions()


def test_finer_prices_rescale_then_stay_on_the_fast_path():
    sync = BookSync()
    sync.subscribe([T], 0)
    sync.feed(1, snapshot(10, [["100.0", "1"]], [["100.5", "1"]]))
    sync.feed(2, delta(11, [["100.25", "3"]]))  # declined by apply: the general path rescales
    (event,) = sync.feed(3, delta(12, [["100.26", "4"]]))
    assert (event.bid_price, event.bid_size) == (100.26, 4.0)
    assert sync.book("BTC-PERP").bids() == [(100.26, 4.0), (100.25, 3.0), (100.0, 1.0)]


# --- differential: with and without the scanner ----------------------------------------

TICKS = st.integers(0, 40)
SIZES = st.sampled_from(["0", "0", "1", "2.5", "17", "0.001", "1.0000000000000001", "3.10"])


def spelled(tick: int, style: int) -> str:
    """Bids below 100, asks above: tick -> one of several spellings of the same price."""
    whole, frac = divmod(tick, 10)
    return [f"{whole}.{frac}", f"{whole}.{frac}0", f"{whole}.{frac}5", f"0{whole}.{frac}"][style]


levels = st.lists(st.tuples(TICKS, st.integers(0, 3), SIZES), max_size=6)
damage = st.sampled_from(
    [
        None, None, None, None, None, None,
        "gap", "stale", "wrong-symbol", "other-spelling", "extra-key", "duplicate-key",
        "escape", "float-seq", "number-price", "no-timestamp", "truncate", "flip",
        "long-price", "snapshot", "whitespace", "str", "memoryview", "crossed",
    ]
)  # fmt: skip


def render(seq: int, prev: int, bids: list, asks: list, how: str | None, rnd: int) -> object:
    topic = "update:BTC-PERP" if how == "other-spelling" else T
    data = {
        "bids": [[spelled(t, s), z] for t, s, z in bids],
        "asks": [[spelled(400 - t, s), z] for t, s, z in asks],
        "seqNum": float(seq) if how == "float-seq" else seq,
        "prevSeqNum": prev,
        "type": "snapshot" if how == "snapshot" else "delta",
        "symbol": "ETH-PERP" if how == "wrong-symbol" else "BTC-PERP",
        "timestamp": 1790133628000 + seq,
    }
    if how == "extra-key":
        data["mversion"] = 7
    if how == "no-timestamp":
        del data["timestamp"]
    if how == "number-price" and data["bids"]:
        data["bids"][0][0] = float(data["bids"][0][0])
    if how == "long-price" and data["asks"]:
        data["asks"][0][0] = "40.00000000000001234"
    if how == "crossed":
        data["bids"].append(["99.9", "1"])
    raw = orjson.dumps({"topic": topic, "data": data})
    if how == "whitespace":
        raw = json.dumps(orjson.loads(raw), indent=rnd % 3, separators=(" , ", " :\n")).encode()
    elif how == "duplicate-key":
        raw = raw.replace(b'"data":{', b'"data":{"seqNum":%d,' % (seq + 5), 1)
    elif how == "escape":
        raw = raw.replace(b'"BTC-PERP"', b'"BTC-\\u0050ERP"', 1)
    elif how == "truncate":
        raw = raw[: rnd % len(raw)]
    elif how == "flip":
        at = rnd % len(raw)
        raw = raw[:at] + bytes([raw[at] ^ (1 << (rnd % 7))]) + raw[at + 1 :]
    elif how == "str":
        return raw.decode()
    elif how == "memoryview":
        return memoryview(raw)
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(levels, levels, damage, st.integers(0, 10**6)), min_size=1, max_size=40),
    st.booleans(),
)
def test_the_scanner_never_changes_what_booksync_decides(steps, book_updates):
    fast, slow = BookSync(book_updates=book_updates), BookSync(book_updates=book_updates)
    slow._scanner = None
    assert fast._scanner is not None
    for sync in (fast, slow):
        sync.subscribe([T], 0)
    start = snapshot(100, [["9.0", "1"]], [["40.0", "1"]])
    frames = [start]
    seq = 100
    for bids, asks, how, rnd in steps:
        prev = seq + 3 if how == "gap" else seq - 2 if how == "stale" else seq
        seq += 1
        frames.append(render(seq, prev, bids, asks, how, rnd))
        if how in ("gap", "stale", "crossed", "truncate", "flip"):
            frames.append(snapshot(seq, [["9.0", "1"]], [["40.0", "1"]]))  # a resync
    for i, raw in enumerate(frames):
        got, want = fast.feed(i, raw), slow.feed(i, raw)
        assert [_comparable(e) for e in got] == [_comparable(e) for e in want], (i, raw)
        assert _state(fast) == _state(slow), (i, raw)
    assert fast.stats == slow.stats


def _comparable(event):
    if type(event).__name__ == "BookUpdate":
        return (event[:5], event.book.as_dict())
    return event


def _state(sync: BookSync):
    book = sync.book("BTC-PERP")
    return (
        sync.status("BTC-PERP"),
        sync.last_seq("BTC-PERP"),
        None if book is None else (book.as_dict(), book.top, book.depth(5)),
    )


def test_a_huge_delta_takes_the_fast_path_and_matches_the_orjson_path():
    bids = [[f"{50000 - i * 0.5:.1f}", str(i % 7)] for i in range(20_000)]
    asks = [[f"{60000 + i * 0.5:.1f}", str(i % 5)] for i in range(20_000)]
    start = snapshot(10, [["49999.0", "1"]], [["60001.0", "1"]])
    raw = delta(11, bids, asks)
    assert len(raw) > 600_000 and scan(raw) is not None
    fast, slow = BookSync(), BookSync()
    slow._scanner = None
    for sync in (fast, slow):
        sync.subscribe([T], 0)
        sync.feed(0, start)
    assert fast.feed(1, raw) == slow.feed(1, raw)
    assert fast.book("BTC-PERP").as_dict() == slow.book("BTC-PERP").as_dict()
    assert fast.book("BTC-PERP").bid_levels == sum(1 for i in range(20_000) if i % 7)


decimal_texts = st.one_of(
    st.text(alphabet="0123456789.", min_size=0, max_size=24),
    st.from_regex(r"0{0,70}[0-9]{1,20}(\.[0-9]{1,25}0{0,5})?", fullmatch=True),
    st.sampled_from(
        [
            "100.0",
            "0.000",
            "007.50",
            "1.",
            ".5",
            "1..2",
            "9" * 15,
            "9" * 16,
            "1" + "0" * 18,
            "1" + "0" * 19,
            "0." + "0" * 21 + "1",
            "0." + "0" * 22 + "1",
            "123456789012345.0",
            "1234567890123456.0",
            "0" * 65 + "1",
            "0" * 66 + "1",
        ]
    ),
)


@settings(max_examples=500, deadline=None)
@given(price=decimal_texts, size=decimal_texts)
def test_every_spelling_of_a_level_reads_as_the_orjson_path_reads_it(price, size):
    """The scanner reads the usual spellings in one pass and hands the rest to the general
    parsers: either way, books, events and refusals equal those of the orjson path."""
    start = snapshot(10, [["1", "1"]], [["100000000", "1"]])
    raw = delta(11, [[price, size]], [[price, "2"]])
    fast, slow = BookSync(), BookSync()
    slow._scanner = None
    for sync in (fast, slow):
        sync.subscribe([T], 0)
        sync.feed(0, start)
    assert fast.feed(1, raw) == slow.feed(1, raw)
    assert fast.status("BTC-PERP") == slow.status("BTC-PERP")
    fast_book, slow_book = fast.book("BTC-PERP"), slow.book("BTC-PERP")
    assert (fast_book is None) == (slow_book is None)
    if fast_book is not None and slow_book is not None:
        assert fast_book.as_dict() == slow_book.as_dict()
        assert fast_book.top_keys() == slow_book.top_keys()


@pytest.mark.parametrize("text", ["100.0", "007.50", "0.000", "0." + "0" * 21 + "1", "9" * 15])
def test_usual_and_odd_spellings_stay_on_the_fast_path(text):
    assert scan(delta(11, [[text, text]], [])) is not None


def test_a_long_size_is_read_again_from_its_quote_not_from_where_the_quick_read_stopped():
    """A size the one-pass reader will not take (over 15 digits) is re-read from its
    opening quote: two strings in a row are bad JSON, never "the second one"."""
    start = snapshot(10, [["100.5", "1"]], [["101", "1"]])
    good = delta(11, [["100.5", "1.0000000000000000"], ["100.4", "1234567890.123456"]])
    bad = good.replace(b'"1.0000000000000000"', b'"1.0000000000000000" "7"')
    assert scan(good) is not None  # long sizes stay on the fast path
    assert scan(bad) is None
    fast, slow = BookSync(), BookSync()
    slow._scanner = None
    for sync in (fast, slow):
        sync.subscribe([T], 0)
        sync.feed(0, start)
        sync.feed(1, bad)
    assert [type(e).__name__ for e in fast.feed(2, good)] == [
        type(e).__name__ for e in slow.feed(2, good)
    ]
    assert fast.stats.bad_frames == slow.stats.bad_frames == 1
    assert fast.book("BTC-PERP") is None or fast.book("BTC-PERP").as_dict() == slow.book(
        "BTC-PERP"
    ).as_dict()
