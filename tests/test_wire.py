import orjson
import pytest

from bookengine.errors import FrameError, TopicError
from bookengine.wire import (
    Ack,
    BookMessage,
    ErrorMessage,
    L1Message,
    Pong,
    Topic,
    book_topic,
    decode,
    encode_ping,
    encode_subscribe,
    encode_unsubscribe,
    is_futures,
    l1_topic,
    to_topic,
)


def test_topic_round_trip_for_every_grouping():
    for g in range(9):
        text = book_topic("BTC-USD", g)
        assert text == f"update:BTC-USD_{g}"
        assert Topic.parse(text) == Topic("update", "BTC-USD", g)
        assert str(Topic.parse(text)) == text


def test_topic_without_grouping_and_l1():
    assert Topic.parse("update:BTC-USD") == Topic("update", "BTC-USD", None)
    assert book_topic("BTC-USD", None) == "update:BTC-USD"
    assert Topic.parse(l1_topic("ETH-PERP")) == Topic("snapshotL1", "ETH-PERP", None)


def test_out_of_range_grouping_parses_but_cannot_be_built():
    # The server acknowledges `_9` and then stays silent: legal to receive, wrong to ask for.
    assert Topic.parse("update:BTC-PERP_9").grouping == 9
    with pytest.raises(TopicError, match="grouping must be 0..8"):
        book_topic("BTC-PERP", 9)


@pytest.mark.parametrize(
    "bad", ["", "update", "foo:BTC-PERP", "update:BTC_x", "update:BTC-USD_123", "update:BTCUSD_0"]
)
def test_bad_topics_are_refused_with_a_clear_error(bad):
    with pytest.raises(TopicError):
        Topic.parse(bad)


def test_futures_and_spot_symbols():
    assert is_futures("BTC-PERP") and is_futures("BTC-PERP-USDT") and is_futures("BTC-261225")
    assert not is_futures("BTC-USD") and not is_futures("ETH-USDT")
    assert to_topic("btc-usd") == "update:BTC-USD_0"
    assert to_topic("snapshotL1:ETH-PERP") == "snapshotL1:ETH-PERP"


def test_requests():
    assert orjson.loads(encode_subscribe(["update:BTC-USD_0", "update:ETH-USD_0"])) == {
        "op": "subscribe",
        "args": ["update:BTC-USD_0", "update:ETH-USD_0"],
    }
    assert orjson.loads(encode_unsubscribe(["update:ETH-USD_0"]))["op"] == "unsubscribe"
    assert encode_ping() == "ping"
    with pytest.raises(TopicError):
        encode_subscribe([])
    with pytest.raises(TopicError):
        encode_subscribe("update:BTC-USD_0")  # a bare string is a classic mistake


def test_decode_snapshot_delta_l1():
    snap = (
        b'{"topic":"update:SNDK-PERP_0","data":{"bids":[["1876.90","44"]],"asks":[["1880.19","900"],'
        b'["1880.00","450"]],"seqNum":8896865,"prevSeqNum":8896864,"type":"snapshot",'
        b'"symbol":"SNDK-PERP","timestamp":1790134937297}}'
    )
    msg = decode(snap)
    assert isinstance(msg, BookMessage)
    assert (msg.type, msg.symbol, msg.seq, msg.asks[-1]) == (
        "snapshot",
        "SNDK-PERP",
        8896865,
        ["1880.00", "450"],
    )
    l1 = decode(
        b'{"topic":"snapshotL1:ETH-PERP","data":{"bids":[["2766.67","165900"]],"asks":'
        b'[["2766.68","2366"]],"type":"snapshotL1","symbol":"ETH-PERP","timestamp":1790134133193}}'
    )
    assert isinstance(l1, L1Message) and l1.bids == [["2766.67", "165900"]]


def test_decode_ack_error_pong():
    ack = decode(b'{"event":"subscribe","channel":["update:ETH-USD_0","update:BTC-USD_0"]}')
    assert ack == Ack("subscribe", ["update:ETH-USD_0", "update:BTC-USD_0"])
    err = decode(
        b'{"severity":"ERROR","errors":[{"arg":"foo:BTC-PERP","error":{"code":1005,"message":'
        b'"Topic provided does not exist."}},{"arg":"update:NOPE-PERP_0","error":{"code":1000,'
        b'"message":"Market pair provided is currently not supported."}}]}'
    )
    assert isinstance(err, ErrorMessage)
    assert [(e.code, e.arg) for e in err.errors] == [
        (1005, "foo:BTC-PERP"),
        (1000, "update:NOPE-PERP_0"),
    ]
    op_err = decode(
        b'{"severity":"ERROR","errors":[{"error":{"code":1001,"message":"Operation"}}]}'
    )
    assert op_err.errors[0].code == 1001 and op_err.errors[0].arg is None
    assert decode(b"pong") == Pong() and decode("pong") == Pong()


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "invalid JSON"),
        (b"[1,2]", "expected a JSON object"),
        (b'{"hello":1}', "unrecognised frame"),
        (
            b'{"topic":"update:BTC-PERP_0","data":{"symbol":"BTC-PERP","bids":[],"asks":[],"type":"weird"}}',
            "unknown book frame type",
        ),
        (
            b'{"topic":"update:BTC-PERP_0","data":{"symbol":"BTC-PERP","bids":[],"asks":[],"type":"delta","seqNum":"5"}}',
            "integer seqNum",
        ),
        (b'{"topic":"update:BTC-PERP_0","data":{"bids":[],"asks":[]}}', "data.symbol missing"),
    ],
)
def test_decode_bad_frames_say_why(raw, reason):
    with pytest.raises(FrameError, match=reason):
        decode(raw)
