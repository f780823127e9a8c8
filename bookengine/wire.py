"""The BTSE OSS wire codec: topics, requests, and typed decoding of server frames.

`BookSync` reads book frames straight from the parsed dict on its hot path; everything
else (acks, errors, pong, tools and tests) goes through `decode`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from bookengine.errors import ExchangeError, FrameError, TopicError

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
ENDPOINTS = {
    ("production", "spot"): "wss://ws.btse.com" + SPOT_PATH,
    ("production", "futures"): "wss://ws.btse.com" + FUTURES_PATH,
    ("testnet", "spot"): "wss://testws.btse.io" + SPOT_PATH,
    ("testnet", "futures"): "wss://testws.btse.io" + FUTURES_PATH,
}

_SYMBOL_RE = re.compile(r"[A-Z0-9]+(?:-[A-Z0-9]+)+\Z")
_DATED_RE = re.compile(r"-\d{6}\Z")


# --- topics ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic. `grouping` is None for `update:SYM` and for `snapshotL1:SYM`."""

    kind: str  # "update" or "snapshotL1"
    symbol: str
    grouping: int | None = 0

    def __str__(self) -> str:
        if self.kind == "update" and self.grouping is not None:
            return f"update:{self.symbol}_{self.grouping}"
        return f"{self.kind}:{self.symbol}"

    @classmethod
    def parse(cls, text: str) -> Topic:
        """Parse a topic as the server spells it; any grouping digit is accepted (`_9` is legal
        syntax that the server acknowledges and then never serves)."""
        kind, sep, rest = text.partition(":") if isinstance(text, str) else ("", "", "")
        if not sep or not rest:
            raise TopicError(f"not a topic: {text!r} (expected e.g. 'update:BTC-USD_0')")
        if kind == "snapshotL1":
            return cls("snapshotL1", _check_symbol(rest, text), None)
        if kind != "update":
            raise TopicError(f"unknown topic kind {kind!r} in {text!r}")
        symbol, us, group = rest.rpartition("_")
        if not us:
            return cls("update", _check_symbol(rest, text), None)
        if not group.isdigit():
            raise TopicError(f"grouping must be a number in {text!r}")
        return cls("update", _check_symbol(symbol, text), int(group))


def _check_symbol(symbol: str, text: str) -> str:
    if not _SYMBOL_RE.match(symbol):
        raise TopicError(f"bad symbol {symbol!r} in {text!r} (expected e.g. BTC-USD or BTC-PERP)")
    return symbol


def book_topic(symbol: str, grouping: int | None = 0) -> str:
    """`update:SYM_G` (grouping 0 = full precision, 1..8 coarser); None gives `update:SYM`."""
    _check_symbol(symbol, symbol)
    if grouping is None:
        return f"update:{symbol}"
    if not (isinstance(grouping, int) and 0 <= grouping <= MAX_GROUPING):
        raise TopicError(f"grouping must be 0..{MAX_GROUPING}, got {grouping!r}")
    return f"update:{symbol}_{grouping}"


def l1_topic(symbol: str) -> str:
    return f"snapshotL1:{_check_symbol(symbol, symbol)}"


def is_futures(symbol: str) -> bool:
    """Futures live on the futures OSS path: perpetuals (`-PERP`) and dated (`-YYMMDD`)."""
    return "-PERP" in symbol or bool(_DATED_RE.search(symbol)) or symbol.endswith("PFC")


def to_topic(item: str) -> str:
    """Accept a topic or a bare symbol (meaning its full-precision book `update:SYM_0`)."""
    if ":" in item:
        Topic.parse(item)
        return item
    return book_topic(item.upper(), 0)


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


# --- decoding -------------------------------------------------------------------------


class BookMessage(NamedTuple):
    """An `update:` frame: a snapshot or a delta. Levels stay strings, exactly as sent."""

    topic: str
    type: str  # "snapshot" | "delta"
    symbol: str
    seq: int
    prev_seq: int | None
    bids: list
    asks: list
    timestamp: int | None


class L1Message(NamedTuple):
    topic: str
    symbol: str
    bids: list
    asks: list
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
    if "errors" in msg or msg.get("severity") == "ERROR":
        return ErrorMessage(decode_errors(msg))
    raise FrameError(f"unrecognised frame with keys {sorted(msg)[:8]}")


def decode_errors(msg: dict) -> list[ExchangeError]:
    errors = msg.get("errors")
    if not isinstance(errors, list):
        raise FrameError("error frame without an errors list")
    out = []
    for item in errors:
        item = item if isinstance(item, dict) else {}
        err = item.get("error") if isinstance(item.get("error"), dict) else {}
        code = err.get("code")
        message = err.get("message") or ERROR_CODES.get(code, "unknown error")
        code = code if isinstance(code, int) else None
        out.append(ExchangeError(code, str(message), item.get("arg")))
    return out


def _decode_data(msg: dict, data: Any) -> Message:
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
