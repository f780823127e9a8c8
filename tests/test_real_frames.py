"""Real BTSE frames that others published, fed through BookSync.

The corpus is tests/data/btse_corpus.json: each frame verbatim, with its source
(repository, path, commit and date, or the docs page) beside it; what the corpus confirms
or refutes of the wire contract is in tests/data/btse_corpus_NOTES.md and
docs/PROTOCOL.md. The expected outcome of each frame is derived from the frame itself
by PROTOCOL.md's rules, never written down per frame.
"""

import json
from pathlib import Path

import orjson
import pytest

from bookengine import (
    BadFrame,
    BookSync,
    ExchangeErrors,
    L1Quote,
    Pong,
    Reason,
    StatusChanged,
    Subscribed,
    SyncStatus,
    Unsubscribed,
)
from bookengine.errors import TopicError
from bookengine.wire import ERROR_NAMES, Topic

CORPUS = json.loads((Path(__file__).parent / "data" / "btse_corpus.json").read_text())

pytestmark = pytest.mark.usefixtures("book_impl")


def test_the_corpus_is_cited_and_varied():
    assert len(CORPUS) >= 15
    for entry in CORPUS:
        source = entry["source"]
        assert (source.get("repo") and source.get("path")) or source.get("url"), entry["id"]
        assert source.get("date") or source.get("commit"), entry["id"]
    kinds = {e["kind"] for e in CORPUS}
    assert {"snapshot", "delta", "l1", "ack", "error"} <= kinds


def _stream(msg: dict) -> Topic | None:
    """The stream a book/L1 frame belongs to, by PROTOCOL.md's routing (data.symbol)."""
    data = msg.get("data")
    topic, symbol = msg.get("topic"), data.get("symbol") if isinstance(data, dict) else None
    if not isinstance(topic, str) or not isinstance(symbol, str):
        return None
    try:
        parsed = Topic.parse(topic)
        return Topic(parsed.kind, Topic.parse(f"update:{symbol}").symbol, parsed.grouping)
    except TopicError:
        return None


def _floats(levels: list) -> dict[float, float]:
    return {float(p): float(s) for p, s in levels if float(s)}


@pytest.mark.parametrize("entry", CORPUS, ids=[e["id"] for e in CORPUS])
def test_each_real_frame_gives_what_the_protocol_says(entry):
    raw = entry["frame"].encode()
    msg = orjson.loads(raw) if raw not in (b"pong", b"ping") else raw.decode()
    sync = BookSync()
    stream = _stream(msg) if isinstance(msg, dict) else None
    if stream is not None:
        sync.subscribe([msg["topic"]], 0)
    events = sync.feed(1, raw)  # never raises: whatever the frame, it returns events
    bad = [e for e in events if isinstance(e, BadFrame)]
    kind = entry["kind"]

    if kind == "pong":
        assert events == [Pong(1)]
    elif kind == "ack":
        (ack,) = events
        expected = Subscribed if msg["event"] == "subscribe" else Unsubscribed
        assert type(ack) is expected and list(ack.channels) == msg["channel"]
    elif kind == "error":
        (errors,) = [e for e in events if isinstance(e, ExchangeErrors)]
        items = msg.get("errors", msg.get("error"))
        assert len(errors.errors) == len(items)
        for item, error in zip(items, errors.errors, strict=True):
            assert error.arg == item.get("arg")
            name = item.get("errorCode")
            code = item["error"]["code"] if isinstance(item.get("error"), dict) else None
            assert error.code == (ERROR_NAMES.get(name) if name else code)
    elif stream is None:  # no routable topic/symbol (a trade, an old format): counted, said
        assert bad and bad[0].reason and not any(isinstance(e, StatusChanged) for e in events)
    elif kind == "l1":
        (quote,) = [e for e in events if isinstance(e, L1Quote)]
        data = msg["data"]
        assert (quote.bid_price, quote.bid_size) == tuple(map(float, data["bids"][0]))
        assert (quote.ask_price, quote.ask_size) == tuple(map(float, data["asks"][0]))
    elif kind == "snapshot":
        data = msg["data"]
        bids, asks = _floats(data["bids"]), _floats(data["asks"])
        statuses = [e for e in events if isinstance(e, StatusChanged)]
        if bids and asks and max(bids) >= min(asks):  # BTSE's own example can be crossed
            assert statuses[-1].reason is Reason.CROSSED and sync.book(stream.key) is None
        else:
            assert statuses[-1].status is SyncStatus.SYNCED, events
            assert sync.book(stream.key).as_dict() == (bids, asks)
    elif kind == "delta":  # before any snapshot: counted and ignored, nothing applied
        assert not bad and sync.stats.topics[stream.key].ignored == 1
    else:
        assert bad, events
