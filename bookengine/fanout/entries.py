"""What a publisher writes into Redis Streams, and how a consumer reads it back (pure).

Keys, for a `prefix` (default `btse`):

- `{prefix}:raw:{stream}` (`btse:raw:update:BTC-PERP_0`): everything the publisher's
  `BookSync` of that stream was given, in order: frames with their arrival stamps, the
  calls the Feed made (subscribe, connection_lost, ...), checkpoints (the book as a
  snapshot frame, with its seq and digest) and a stop marker. A consumer running
  `BookSync` on these gets the publisher's books, byte for byte.
- `{prefix}:checkpoint:{stream}`: the entry id of the latest checkpoint (late join).
- `{prefix}:top:{stream}`: conflated top of book, for consumers that need no book.
- `{prefix}:trades:{symbol}`: public trades, once each (`TradeSync`'s output).
- `{prefix}:status`: every stream's status changes.

A raw stream holds *records* (a frame, a call, a checkpoint, a stop), each numbered `n`
(1, 2, 3, ...: counted when the publisher *queued* it) within the publisher's `epoch` (one
per publisher run). Records written in one go share one Redis entry (a batch: `e`, the
first `n`, and the records packed in `r`), because a Redis command costs far more than a
frame; a checkpoint is an entry of its own (its id is what late joiners look up). A
consumer that sees a new epoch or a skipped `n` knows records are missing (trimmed by
MAXLEN, lost while Redis was down, dropped by a full queue) and never applies a frame
across the hole.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import orjson

from bookengine.errors import FrameError
from bookengine.events import StatusChanged, TopOfBook, Trade

FRAME = b"f"  # a received frame, as received
CALL = b"c"  # a call into BookSync: {"call": name, "topics": [...]}
CHECKPOINT = b"p"  # the synced book as a snapshot frame; `seq` and `digest` beside it
STOP = b"x"  # the publisher stopped (cleanly); payload is why
KINDS = (FRAME, CALL, CHECKPOINT, STOP)
_RECORD = struct.Struct("<cqI")  # kind, ns, payload length; then the payload


class Keys:
    """Redis key names under one prefix: every name is made here."""

    def __init__(self, prefix: str = "btse") -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"a key prefix must be non-empty, without spaces: {prefix!r}")
        self.prefix = prefix

    def raw(self, stream: str) -> str:
        return f"{self.prefix}:raw:{stream}"

    def checkpoint(self, stream: str) -> str:
        return f"{self.prefix}:checkpoint:{stream}"

    def top(self, stream: str) -> str:
        return f"{self.prefix}:top:{stream}"

    def trades(self, symbol: str) -> str:
        return f"{self.prefix}:trades:{symbol}"

    def status(self) -> str:
        return f"{self.prefix}:status"


class Entry(NamedTuple):
    """One entry of a raw stream."""

    kind: bytes
    ns: int  # arrival (frames) or call time, wall clock ns of the publisher
    epoch: bytes
    n: int
    payload: bytes
    seq: int | None = None  # checkpoints: the book's seq
    digest: str | None = None  # checkpoints: OrderBook.digest() of the publisher's book


def encode_entry(entry: Entry) -> dict[bytes, bytes]:
    fields = {
        b"k": entry.kind,
        b"t": b"%d" % entry.ns,
        b"e": entry.epoch,
        b"n": b"%d" % entry.n,
        b"d": entry.payload,
    }
    if entry.seq is not None:
        fields[b"s"] = b"%d" % entry.seq
    if entry.digest is not None:
        fields[b"g"] = entry.digest.encode()
    return fields


def decode_entry(fields: dict[bytes, bytes]) -> Entry:
    """An entry read from Redis; `FrameError` says what is wrong with one that is not ours
    (a consumer counts it and treats it as a hole)."""
    try:
        kind = fields[b"k"]
        if kind not in KINDS:
            raise FrameError(f"unknown entry kind {kind!r}")
        seq = fields.get(b"s")
        digest = fields.get(b"g")
        n = int(fields[b"n"])
        if n < 1:
            raise FrameError(f"entry number {n} < 1")
        return Entry(
            kind,
            int(fields[b"t"]),
            fields[b"e"],
            n,
            fields[b"d"],
            None if seq is None else int(seq),
            None if digest is None else digest.decode(),
        )
    except KeyError as exc:
        raise FrameError(f"entry without field {exc.args[0]!r}") from None
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed entry: {exc}") from None


def encode_batch(records: list[Entry]) -> dict[bytes, bytes]:
    """Consecutive records of one stream (frames, calls, stops; one epoch) as one entry."""
    pack = _RECORD.pack
    blob = b"".join(
        pack(r.kind, r.ns, len(r.payload)) + r.payload for r in records
    )
    return {b"e": records[0].epoch, b"n": b"%d" % records[0].n, b"r": blob}


def decode_records(fields: dict[bytes, bytes]) -> list[Entry]:
    """The records of one entry (a batch, or a single record such as a checkpoint);
    `FrameError` if it is not a publisher's."""
    blob = fields.get(b"r")
    if blob is None:
        return [decode_entry(fields)]
    try:
        epoch = fields[b"e"]
        n = int(fields[b"n"])
    except KeyError as exc:
        raise FrameError(f"entry without field {exc.args[0]!r}") from None
    except ValueError as exc:
        raise FrameError(f"malformed entry: {exc}") from None
    if n < 1:
        raise FrameError(f"entry number {n} < 1")
    records: list[Entry] = []
    unpack, size, offset, end = _RECORD.unpack_from, _RECORD.size, 0, len(blob)
    try:
        while offset < end:
            kind, ns, length = unpack(blob, offset)
            offset += size
            if kind not in KINDS or offset + length > end:
                raise FrameError(f"malformed record {len(records) + 1} in a batch")
            records.append(Entry(kind, ns, epoch, n, blob[offset : offset + length]))
            offset += length
            n += 1
    except struct.error:
        raise FrameError(f"truncated record {len(records) + 1} in a batch") from None
    if not records:
        raise FrameError("an empty batch")
    return records


def encode_call(call: str, topics: list[str], settings: dict[str, object] | None = None) -> bytes:
    """A call into BookSync; a subscribe carries the core's settings (snapshot timeout,
    recovery policy) so that a consumer's core reports the same statuses."""
    return orjson.dumps({"call": call, "topics": topics, **(settings or {})})


def _num(value: float | None) -> bytes:
    return b"" if value is None else repr(value).encode()


def _opt(value: bytes) -> float | None:
    return None if value == b"" else float(value)


def encode_top(top: TopOfBook) -> dict[bytes, bytes]:
    return {
        b"t": b"%d" % top.arrival_ns,
        b"x": b"" if top.exchange_ms is None else b"%d" % top.exchange_ms,
        b"sym": top.symbol.encode(),
        b"grp": b"" if top.grouping is None else b"%d" % top.grouping,
        b"s": b"%d" % top.seq,
        b"bp": _num(top.bid_price),
        b"bs": _num(top.bid_size),
        b"ap": _num(top.ask_price),
        b"as": _num(top.ask_size),
    }


def decode_top(fields: dict[bytes, bytes]) -> TopOfBook:
    try:
        return TopOfBook(
            int(fields[b"t"]),
            None if fields[b"x"] == b"" else int(fields[b"x"]),
            fields[b"sym"].decode(),
            None if fields[b"grp"] == b"" else int(fields[b"grp"]),
            int(fields[b"s"]),
            _opt(fields[b"bp"]),
            _opt(fields[b"bs"]),
            _opt(fields[b"ap"]),
            _opt(fields[b"as"]),
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"malformed top-of-book entry: {exc!r}") from None


def encode_trade(trade: Trade) -> dict[bytes, bytes]:
    return {b"j": orjson.dumps(trade[:8])}


def decode_trade(fields: dict[bytes, bytes]) -> Trade:
    try:
        values = orjson.loads(fields[b"j"])
        return Trade(*values)
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise FrameError(f"malformed trade entry: {exc!r}") from None


def encode_status(event: StatusChanged) -> dict[bytes, bytes]:
    return {
        b"t": b"%d" % event.arrival_ns,
        b"topic": event.topic.encode(),
        b"status": event.status.value.encode(),
        b"reason": event.reason.value.encode(),
        b"detail": event.detail.encode(),
    }

