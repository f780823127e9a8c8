"""Builders of BTSE OSS frames for tests that need no network (plain bytes, as on the wire)."""

from __future__ import annotations

import orjson


def book_frame(
    typ: str,
    seq: int,
    bids: list | None = None,
    asks: list | None = None,
    *,
    symbol: str = "BTC-PERP",
    grouping: int | None = 0,
    topic: str | None = None,
    prev: int | None = None,
    ts: int = 1790133628076,
) -> bytes:
    if topic is None:
        topic = f"update:{symbol}" if grouping is None else f"update:{symbol}_{grouping}"
    data = {
        "bids": bids or [],
        "asks": asks or [],
        "seqNum": seq,
        "prevSeqNum": seq - 1 if prev is None else prev,
        "type": typ,
        "symbol": symbol,
        "timestamp": ts,
    }
    return orjson.dumps({"topic": topic, "data": data})


def snapshot(seq: int, bids: list, asks: list, **kw) -> bytes:
    return book_frame("snapshot", seq, bids, asks, **kw)


def delta(seq: int, bids: list | None = None, asks: list | None = None, **kw) -> bytes:
    return book_frame("delta", seq, bids, asks, **kw)
