"""The BTSE OSS wire codec: topics, requests, and typed decoding of server frames.

`BookSync` reads book frames straight from the parsed dict on its hot path; everything
else (acks, errors, pong, tools and tests) goes through `decode`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from bookengine import naming
from bookengine.errors import ExchangeError, FrameError, TopicError

if TYPE_CHECKING:
    from bookengine.book import OrderBook

PING = "ping"
PONG = "pong"
MAX_GROUPING = 8
MAX_TOPICS_PER_CONNECTION = 100

ERROR_CODES = {
    1000: "unsupported market",
    1001: "unsupported operation",
    1002: "invalid request",
    1005: "unknown topic",
    1007: "outbound buffer full",
    1008: "too many failures",
}

SPOT_PATH = "/ws/oss/spot"
FUTURES_PATH = "/ws/oss/futures"
# The main endpoints: public trades (and private topics); book topics are not served there.
MAIN_SPOT_PATH = "/ws/spot"
MAIN_FUTURES_PATH = "/ws/futures"
PATHS = {
    ("oss", "spot"): SPOT_PATH,
    ("oss", "futures"): FUTURES_PATH,
    ("main", "spot"): MAIN_SPOT_PATH,
    ("main", "futures"): MAIN_FUTURES_PATH,
}
HOSTS = {"production": "wss://ws.btse.com", "testnet": "wss://testws.btse.io"}
ENDPOINTS = {
    ("production", "spot"): "wss://ws.btse.com" + SPOT_PATH,
    ("production", "futures"): "wss://ws.btse.com" + FUTURES_PATH,
    ("testnet", "spot"): "wss://testws.btse.io" + SPOT_PATH,
    ("testnet", "futures"): "wss://testws.btse.io" + FUTURES_PATH,
}

# every spelling of the public trade topic; `trades:SYM` is this project's shorthand
TRADE_TOPIC_KINDS = ("trades", "tradeHistoryApi", "tradeHistoryApiV2", "tradeHistoryApiV3")
_MAX_TOPIC_LENGTH = 80  # `snapshotL1:` + a symbol + `_G`; longer ones are never parsed
_GROUPING_RE = re.compile(r"_(\d{1,2})\Z")  # a trailing `_G`; symbols never end so


# --- topics ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed OSS topic; `symbol` is always the socket name (`bookengine.naming`).

    `grouping` is None when the topic has no `_G` suffix. Two spellings name one stream
    (PROTOCOL.md): `update:SYM` carries the `_0` chain, and `snapshotL1:SYM` is
    `snapshotL1:SYM_0`; `key` is the same for both, and BookSync keeps one state per key.
    """

    kind: str  # "update", "snapshotL1" or "trades"
    symbol: str
    grouping: int | None = 0

    def __str__(self) -> str:
        """The topic as spelled, with the socket name for its symbol."""
        suffix = "" if self.grouping is None else f"_{self.grouping}"
        return f"{self.kind}:{self.symbol}{suffix}"

    @property
    def wire(self) -> str:
        """The spelling to send: the socket name, and `_0` on an unsuffixed book topic
        (the form documented on both endpoints; the stream is the same); public trades
        as each main endpoint names them (`tradeHistoryApi:` spot, `...V3:` futures)."""
        if self.kind == "trades":
            version = "V3" if naming.market(self.symbol) == "futures" else ""
            return f"tradeHistoryApi{version}:{self.symbol}"
        return self.key if self.kind == "update" else str(self)

    @property
    def stream(self) -> str:
        """Which endpoint family serves it: "oss" (books, L1) or "main" (trades)."""
        return "main" if self.kind == "trades" else "oss"

    @property
    def key(self) -> str:
        """One name per stream, whatever the spelling: `update:SYM_G`, `snapshotL1:SYM`
        or `snapshotL1:SYM_G` (G >= 1)."""
        if self.kind == "update":
            return f"update:{self.symbol}_{self.grouping or 0}"
        if self.kind == "trades":
            return f"trades:{self.symbol}"
        if not self.grouping:
            return f"snapshotL1:{self.symbol}"
        return f"snapshotL1:{self.symbol}_{self.grouping}"

    @property
    def book_grouping(self) -> int:
        """The grouping of the book this stream keeps (0 for an unsuffixed topic)."""
        return self.grouping or 0

    @classmethod
    def parse(cls, text: str) -> Topic:
        """Parse any spelling of a topic (symbols fold to their socket names; `_9` is legal
        syntax that the server acknowledges and then never serves)."""
        if not isinstance(text, str) or len(text) > _MAX_TOPIC_LENGTH:
            return _not_a_topic(text[:60] if isinstance(text, str) else text)
        return _parse_topic(text)


def _not_a_topic(text: object) -> Topic:
    raise TopicError(f"not a topic: {text!r} (expected e.g. 'update:BTC-USD_0')")


@lru_cache(maxsize=4096)
def _parse_topic(text: str) -> Topic:
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        _not_a_topic(text)
    if kind in TRADE_TOPIC_KINDS:
        kind = "trades"
    elif kind not in ("update", "snapshotL1"):
        raise TopicError(
            f"unknown topic kind {kind!r} in {text!r} (update, snapshotL1, or trades / "
            "tradeHistoryApi)"
        )
    grouping = None
    match = _GROUPING_RE.search(rest)
    if match:
        grouping = int(match.group(1))
        rest = rest[: match.start()]
    elif "_" in rest and "-" not in rest.rpartition("_")[2]:
        raise TopicError(f"bad grouping in {text!r} (expected _0 .. _{MAX_GROUPING})")
    try:
        symbol = naming.canonical(rest)
    except TopicError as exc:
        raise TopicError(f"{exc} (in topic {text!r})") from None
    return Topic(kind, symbol, grouping)


def book_topic(symbol: str, grouping: int | None = 0) -> str:
    """`update:SYM_G` (grouping 0 = full precision, 1..8 coarser) for any spelling."""
    if grouping is not None and not (
        isinstance(grouping, int) and 0 <= grouping <= MAX_GROUPING
    ):
        raise TopicError(f"grouping must be 0..{MAX_GROUPING}, got {grouping!r}")
    return str(Topic("update", naming.canonical(symbol), grouping))


def l1_topic(symbol: str, grouping: int | None = None) -> str:
    """`snapshotL1:SYM` (or `snapshotL1:SYM_G`, as futures v2.3 documents it)."""
    return str(Topic("snapshotL1", naming.canonical(symbol), grouping))


def is_futures(symbol: str) -> bool:
    """Futures live on the futures OSS path (see `bookengine.naming.market`)."""
    return naming.is_futures(symbol)


def parse_item(item: str) -> Topic:
    """A topic, or a bare symbol meaning its full-precision book `update:SYM_0`."""
    if not isinstance(item, str):
        raise TopicError(f"expected a symbol or topic string, got {type(item).__name__}")
    if ":" in item:
        return Topic.parse(item)
    return Topic("update", naming.canonical(item), 0)


def stream_key(item: str, grouping: int | None = 0) -> str:
    """The stream key (`Topic.key`) of a topic, or of a symbol + grouping, any spelling:
    what BookSync and the Feed index their state by. Raises `TopicError`."""
    if isinstance(item, str) and ":" in item:
        return Topic.parse(item).key
    return Topic("update", naming.canonical(item), grouping).key


def topic_list(topics: Iterable[str]) -> list[str]:
    """A list of topics; a lone string is refused (it is not a list of its letters)."""
    if isinstance(topics, str):
        raise TopicError(f"expected a list of topics, got the string {topics!r}")
    return list(topics)


def to_topic(item: str) -> str:
    """The topic to send for a topic or a bare symbol (see `parse_item`)."""
    return parse_item(item).wire


# --- requests -------------------------------------------------------------------------


def encode_subscribe(topics: list[str]) -> str:
    return _encode_op("subscribe", topics)


def encode_unsubscribe(topics: list[str]) -> str:
    return _encode_op("unsubscribe", topics)


def encode_ping() -> str:
    """BTSE keepalive is the plain text `ping`, not JSON."""
    return PING


def _encode_op(op: str, topics: list[str]) -> str:
    if isinstance(topics, str) or not topics:
        raise TopicError(f"{op} needs a non-empty list of topics")
    for t in topics:
        Topic.parse(t)
    return orjson.dumps({"op": op, "args": list(topics)}).decode()


def plain_decimal(number: float) -> str:
    """A price or size as BTSE (and tardis) spell it: a plain decimal, never `5e-05`.
    `repr` gives the shortest exact spelling; Decimal expands its exponent."""
    text = repr(number)
    if "e" not in text:
        return text
    plain = format(Decimal(text), "f")
    return plain if "." in plain else plain + ".0"  # "1e16": zeros after a point say nothing


def encode_checkpoint(topic: str, symbol: str, book: OrderBook, seq: int, now_ns: int) -> bytes:
    """A synced book as a snapshot frame of its stream: fed to a `BookSync` subscribed to
    `topic`, it gives that very book at `seq` (how replays seek and how a fan-out consumer
    joins mid-stream). Sizes as sent, as the frames applied next are."""
    frame = {
        "topic": topic,
        "data": {
            "bids": [[plain_decimal(p), plain_decimal(s)] for p, s in book.bids(as_sent=True)],
            "asks": [
                [plain_decimal(p), plain_decimal(s)] for p, s in reversed(book.asks(as_sent=True))
            ],
            "seqNum": seq,
            "prevSeqNum": seq - 1,
            "type": "snapshot",
            "symbol": symbol,
            "timestamp": now_ns // 1_000_000,
        },
    }
    return orjson.dumps(frame)


# --- decoding -------------------------------------------------------------------------


class BookMessage(NamedTuple):
    """An `update:` frame: a snapshot or a delta. Levels stay strings, exactly as sent."""

    topic: str
    type: str  # "snapshot" | "delta"
    symbol: str
    seq: int
    prev_seq: int | None
    bids: list[Any]
    asks: list[Any]
    timestamp: int | None


class L1Message(NamedTuple):
    topic: str
    symbol: str
    bids: list[Any]
    asks: list[Any]
    timestamp: int | None


class Ack(NamedTuple):
    event: str  # "subscribe" | "unsubscribe"
    channels: list[str]


class ErrorMessage(NamedTuple):
    errors: list[ExchangeError]


class Pong(NamedTuple):
    pass


Message = BookMessage | L1Message | Ack | ErrorMessage | Pong


def decode(raw: bytes | str) -> Message:
    """Decode one server frame; raise `FrameError` with a one-line reason if it is not one."""
    if raw == PONG or raw == b"pong":
        return Pong()
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"invalid JSON: {exc}") from None
    return decode_parsed(msg)


def decode_parsed(msg: Any) -> Message:
    if not isinstance(msg, dict):
        raise FrameError(f"expected a JSON object, got {type(msg).__name__}")
    data = msg.get("data")
    if data is not None:
        return _decode_data(msg, data)
    event = msg.get("event")
    if event in ("subscribe", "unsubscribe"):
        channels = msg.get("channel")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise FrameError(f"{event} ack without a channel list")
        return Ack(event, channels)
    if _is_error_frame(msg):
        return ErrorMessage(decode_errors(msg))
    raise FrameError(f"unrecognised frame with keys {sorted(map(str, msg))[:8]}")


# Old-format error names (BTSE's pre-2023 frames name the error, not its code).
ERROR_NAMES = {
    "MARKET_PAIR_NOT_SUPPORT": 1000,
    "OPERATION_NOT_SUPPORT": 1001,
    "INVALID_REQUEST": 1002,
    "TOPIC_NOT_EXIST": 1005,
}


def _is_error_frame(msg: dict[str, Any]) -> bool:
    return (
        "errors" in msg
        or msg.get("severity") == "ERROR"
        or msg.get("event") == "error"
        or isinstance(msg.get("error"), (list, dict))
    )


def decode_errors(msg: dict[str, Any]) -> list[ExchangeError]:
    """Both error formats: `{"errors":[{"arg":…,"error":{"code":1000,"message":…}}]}` (now)
    and `{"error":[{"arg":…,"errorCode":"MARKET_PAIR_NOT_SUPPORT"}]}` (old). A field of the
    wrong type is dropped, never trusted: `arg` is a string or None, `code` an int or None."""
    errors = msg.get("errors", msg.get("error"))
    if isinstance(errors, dict):
        errors = [errors]
    if not isinstance(errors, list):
        raise FrameError("error frame without an errors list")
    out = []
    for raw_item in errors[:100]:
        item: dict[str, Any] = raw_item if isinstance(raw_item, dict) else {}
        error = item.get("error")
        inner: dict[str, Any] = error if isinstance(error, dict) else item
        code = inner.get("code", item.get("errorCode"))
        name = item.get("errorCode") if isinstance(item.get("errorCode"), str) else None
        if isinstance(code, str):
            name = name or code
            code = ERROR_NAMES.get(code)
        if not isinstance(code, int) or isinstance(code, bool):
            code = None
        message = inner.get("message", inner.get("msg"))
        if not isinstance(message, str) or not message:
            message = name or ERROR_CODES.get(code or 0, "unknown error")
        arg = item.get("arg", inner.get("arg"))
        out.append(ExchangeError(code, message[:200], arg if isinstance(arg, str) else None))
    return out


def _decode_data(msg: dict[str, Any], data: Any) -> Message:
    topic = msg.get("topic")
    if not isinstance(topic, str) or not isinstance(data, dict):
        raise FrameError("data frame without a topic string and a data object")
    parsed = Topic.parse(topic)
    symbol = data.get("symbol")
    if not isinstance(symbol, str):
        raise FrameError(f"{topic}: data.symbol missing")
    bids, asks = data.get("bids"), data.get("asks")
    if not isinstance(bids, list) or not isinstance(asks, list):
        raise FrameError(f"{topic}: bids/asks must be lists")
    ts = data.get("timestamp")
    if parsed.kind == "snapshotL1":
        return L1Message(topic, symbol, bids, asks, ts)
    typ = data.get("type")
    if typ not in ("snapshot", "delta"):
        raise FrameError(f"{topic}: unknown book frame type {typ!r}")
    seq, prev = data.get("seqNum"), data.get("prevSeqNum")
    if not isinstance(seq, int) or (typ == "delta" and not isinstance(prev, int)):
        raise FrameError(f"{topic}: {typ} without integer seqNum/prevSeqNum")
    return BookMessage(topic, typ, symbol, seq, prev, bids, asks, ts)
