"""A fuzz of mutated realistic frames through both builds (C accelerator and pure Python):
never raises, the builds agree frame by frame, never a silent topic, never a wrong book."""

import os

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bookengine.book as book_module
from bookengine import BookSync, SyncStatus
from bookengine.simulator.market import MarketModel

T = "update:BTC-PERP_0"
BAD_SIZES = ["1e5", "-0", " 5 ", "1_000", "+6", "\u0663", "5.", ".5", "0x10"]
BAD_SIZES.append("0." + "0" * 400 + "1")  # positive, but below a float's range


def realistic_frames():
    model = MarketModel("BTC-PERP", seed=7)
    head = [model.snapshot_frame()] + [model.next_delta_frame() for _ in range(40)]
    tail = [model.snapshot_frame()] + [model.next_delta_frame() for _ in range(5)]
    return model, head, tail


MODEL, HEAD, TAIL = realistic_frames()


def mutate(raw: bytes, how: str, where: int, junk: str) -> bytes:
    if how == "truncate":
        return raw[: where % len(raw)]
    if how == "flip":
        i = where % len(raw)
        return raw[:i] + bytes([raw[i] ^ (1 << (where % 7))]) + raw[i + 1 :]
    frame = orjson.loads(raw)
    data = frame["data"]
    if how == "size" and data["bids"]:
        data["bids"][where % len(data["bids"])][1] = junk
    elif how == "price" and data["asks"]:
        data["asks"][where % len(data["asks"])][0] = junk
    elif how == "field":
        key = ["seqNum", "prevSeqNum", "type", "symbol", "timestamp", "bids"][where % 6]
        data[key] = [None, "x", 2**62, -1, 1.5, {}, [], junk, True][where % 9]
    elif how == "topic":
        frame["topic"] = [None, 7, ["a"], "update:" + junk, "snapshotL1:BTC-PERP_0"][where % 5]
    elif how == "level":
        data["bids"].append([["1"], "1", ["1", "2", "3"], None, junk, [True, "1"]][where % 6])
    return orjson.dumps(frame)


HOW = ["truncate", "flip", "size", "price", "field", "topic", "level"]
JUNK = st.sampled_from([*BAD_SIZES, "", "1" * 30, "NaN", "Infinity", "update:"])


def run(stream: list[bytes], pure: bool):
    if pure:
        with book_module.pure_python():
            sync = BookSync()
    else:
        sync = BookSync()
    sync.subscribe([T], 0)
    events = [e for i, raw in enumerate(stream) for e in sync.feed(i, raw)]
    return sync, events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    damage=st.lists(
        st.tuples(st.integers(0, len(HEAD) - 1), st.sampled_from(HOW), st.integers(0, 10**6)),
        max_size=12,
    ),
    junk=JUNK,
)
def test_fuzz_never_raises_never_wrong_never_silent_and_builds_agree(damage, junk):
    if not book_module.ACCELERATED:  # CI builds it; conftest's book_impl says the same
        if os.environ.get("CI"):
            pytest.fail("the C accelerator was not built in CI: the builds cannot be compared")
        pytest.skip("compares the C build with pure Python: bookengine._fastbook not built")
    stream = list(HEAD)
    for index, how, where in sorted(damage, reverse=True):
        stream.insert(index + 1, mutate(stream[index], how, where, junk))
    stream += TAIL  # a fresh snapshot, as a resubscribe would bring, then deltas
    (c_sync, c_events), (py_sync, py_events) = run(stream, False), run(stream, True)
    assert c_events == py_events  # the same frames give the same events on both builds
    for sync in (c_sync, py_sync):
        book = sync.book(T)
        if book is None:  # never silent: a resubscribe is on its way or scheduled
            assert sync.status(T) is not SyncStatus.SYNCED
            assert T in sync._pending or T in sync._retries
            continue
        truth = MODEL.book_text_at(sync.last_seq(T))  # never wrong: the truth at its seq
        assert book.as_dict() == (
            {float(p): float(s) for p, s in truth[0].items()},
            {float(p): float(s) for p, s in truth[1].items()},
        )
    assert (c_sync.book(T) is None) == (py_sync.book(T) is None)
    if c_sync.book(T) is not None:
        assert c_sync.book(T).as_dict() == py_sync.book(T).as_dict()
