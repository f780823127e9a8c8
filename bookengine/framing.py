"""What both cores (`BookSync`, `TradeSync`) do with any frame that is not their data:
parse it or say why not, the text pong, acks and error frames, bad-frame events. One
place, so both read the wire alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import orjson

from bookengine.errors import BookEngineError
from bookengine.events import (
    BadFrame,
    Event,
    ExchangeErrors,
    Pong,
    Subscribed,
    Unsubscribed,
)
from bookengine.wire import Ack, ErrorMessage, decode_parsed

SAMPLE = 200  # bytes of a bad frame kept in its event
CONNECTION_ERRORS = (1007, 1008)  # about the socket, not the topic they may name
_loads = orjson.loads


class Counters(Protocol):
    """The counters `parse` and `control` keep (a core's stats object has them)."""

    bad_frames: int
    error_frames: int
    acks: int
    pongs: int


def bad(
    stats: Counters, arrival_ns: int, raw: object, reason: str, topic: str | None = None
) -> list[Event]:
    """A `BadFrame` (counted) holding the frame's first bytes."""
    stats.bad_frames += 1
    if isinstance(raw, bytes | bytearray | memoryview):
        sample = bytes(raw[:SAMPLE])
    else:
        sample = str(raw)[:SAMPLE].encode("utf-8", "replace")
    return [BadFrame(arrival_ns, reason, sample, topic)]


def parse(
    stats: Counters, arrival_ns: int, raw: bytes | str
) -> tuple[object, None] | tuple[None, list[Event]]:
    """(the parsed frame, None), or (None, the events that end its story here: a pong, a
    bad frame). BookSync inlines the same on its hot path."""
    try:
        return _loads(raw), None
    except orjson.JSONDecodeError as exc:
        if raw == b"pong" or raw == "pong":
            stats.pongs += 1
            pong: list[Event] = [Pong(arrival_ns)]
            return None, pong
        return None, bad(stats, arrival_ns, raw, f"invalid JSON: {exc}")
    except TypeError:
        kind = type(raw).__name__
        return None, bad(stats, arrival_ns, raw, f"frame must be bytes or str, got {kind}")


def control(
    stats: Counters,
    arrival_ns: int,
    raw: bytes | str,
    msg: object,
    reject: Callable[[str, str, int, list[Event]], None],
) -> Sequence[Event]:
    """An ack, an error frame (each error naming a topic goes to `reject(topic, detail,
    arrival_ns, events)`, except socket-level ones), or a bad frame."""
    try:
        message = decode_parsed(msg)
    except BookEngineError as exc:
        return bad(stats, arrival_ns, raw, str(exc)[:300])
    if isinstance(message, Ack):
        stats.acks += 1
        cls = Subscribed if message.event == "subscribe" else Unsubscribed
        return [cls(arrival_ns, tuple(message.channels))]
    if isinstance(message, ErrorMessage):
        stats.error_frames += 1
        events: list[Event] = [ExchangeErrors(arrival_ns, tuple(message.errors))]
        for error in message.errors:
            if error.arg is not None and error.code not in CONNECTION_ERRORS:
                reject(error.arg, f"{error.code}: {error}", arrival_ns, events)
        return events
    return bad(stats, arrival_ns, raw, f"unexpected frame {type(message).__name__}")
