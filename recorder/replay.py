"""Replay: recordings through the very `BookSync` the live Feed uses.

    replay = Replay(["recordings/"], symbols=["BTC-PERP"])
    stats = replay.run(on_top=print)            # as fast as possible
    for event in Replay(paths, speed=10).events(): ...   # paced at 10x recorded time

One `BookSync` per recorded connection slot of each recording session, fed the recorded
bytes with the recorded arrival stamps, and told what the live Feed told it at the same
points (subscribe when a session opened, connection lost when it closed): the same code
fed the same bytes, so the same events. Digests the recorder wrote live are recomputed and
compared. Each file's header names its session: conn ids restart at 0 in every session,
and the files of overlapping sessions interleave by name, so sessions never share books.

Seeking (`start_ns`) reads from one checkpoint interval before the start, warms the books
up silently from the recorder's checkpoints, and emits events from `start_ns` on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bookengine import naming
from bookengine.errors import ArgumentError, CorruptBlock, NoRecordings
from bookengine.events import (
    BadFrame,
    BookUpdate,
    Event,
    ExchangeErrors,
    L1Quote,
    OrderNotification,
    OtcQuote,
    StatusChanged,
    TopOfBook,
    Trade,
    TradeGap,
)
from bookengine.feed import CLOSED_BY_APP
from bookengine.instruments import Instruments
from bookengine.private import PrivateSync, is_private
from bookengine.sync import BookSync, RecoveryPolicy, Units
from bookengine.trades import TradeSync
from bookengine.wire import Topic
from recorder import format as fmt
from recorder.reader import (
    RecordingReader,
    file_header,
    frame_topic,
    header_session,
    recording_files,
    scan,
)

log = logging.getLogger(__name__)


@dataclass
class DigestMismatch:
    arrival_ns: int
    topic: str
    seq: int
    live: str
    replay: str


@dataclass
class ReplayStats:
    """What a replay read and produced. `frames` counts every frame read (the throughput
    figure); `selected_frames` only those of the selected symbols inside the window;
    `warmup_frames` those read before `start_ns` to warm the books up."""

    records: int = 0  # records read: counted a block at a time, as each block is decoded
    frames: int = 0
    frame_bytes: int = 0
    selected_frames: int = 0
    warmup_frames: int = 0
    symbols_seen: set[str] = field(default_factory=set)  # with symbols=: those found
    # gaps and resyncs among the events put out (not the warm-up before start_ns): what
    # the windows of a parallel export add up
    window_gaps: int = 0
    window_resyncs: int = 0
    window_lost_records: int = 0  # loss records inside the window
    window_digests_checked: int = 0
    checkpoint_adoptions: int = 0  # books a full replay took from a checkpoint (after a hole)
    first_ns: int | None = None
    last_ns: int | None = None
    wall_s: float = 0.0
    gaps: int = 0
    resyncs: int = 0
    bad_frames: int = 0
    top_events: int = 0
    trades: int = 0  # Trade events (of the selected symbols)
    otc_quotes: int = 0  # OtcQuote events (authenticated OTC streams)
    notifications: int = 0  # OrderNotification events (your own orders)
    digests_checked: int = 0
    digests_unverified: int = 0  # the replayed book was not at that seqNum (e.g. warming up)
    mismatches: list[DigestMismatch] = field(default_factory=list)
    lost_records: int = 0  # holes the recorder marked in the files
    duplicate_blocks: int = 0  # blocks repeated in a file, read once
    damaged_blocks: int = 0  # blocks that did not decode, skipped (their records are lost)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0


@dataclass
class _Session:
    """What the live Feed of one recording session had: a BookSync per connection slot,
    the opens awaiting their subscribe, its once-a-second watchdog, its retry policy."""

    syncs: dict[int, BookSync | TradeSync | PrivateSync] = field(default_factory=dict)
    opened: dict[int, int] = field(default_factory=dict)  # conn -> open ns, until subscribe
    next_timeouts: int = 0
    recovery: RecoveryPolicy | None = None  # None: BookSync's default
    snapshot_timeout_s: float | None = None  # the live one, if the header says
    # sessions whose header says `calls` hold the Feed's calls into BookSync (CALL
    # records, format v2): replayed as they are; others are replayed by inference
    # (subscribe from SENT, connection lost from CLOSE, a 1 s timeout tick)
    calls_recorded: bool = False
    connections: dict[int, list[str]] = field(default_factory=dict)  # header: conn -> topics
    seek_subscribed: bool = False  # the first record was read (a join subscribed there)
    joined: bool = False  # the replay began after the session did: checkpoints give books
    lost: bool = False  # a loss record (recorder hole, damaged block) was read in it
    start_ns: int | None = None  # header: when the session began
    units: dict[str, Units] = field(default_factory=dict)  # sizes="base": from the header


class Replay:
    """Events of recorded sessions, optionally limited to `symbols` and a time range.

    `speed`: None = as fast as possible; 1.0 = as recorded; 10.0 = ten times faster.
    `skip_damaged`: a block that does not decode is a hole (counted in `lost_records` and
    `damaged_blocks`, logged) instead of a CorruptBlock that ends the replay.

    Raises `NoRecordings` if `paths` hold no recording, `ArgumentError` for a bad speed or
    symbol; iterating raises `CorruptBlock` on damage unless `skip_damaged`.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        *,
        start_ns: int | None = None,
        end_ns: int | None = None,
        symbols: Iterable[str] | None = None,
        speed: float | None = None,
        book_updates: bool = False,
        snapshot_timeout_s: float | None = None,
        skip_damaged: bool = False,
        sizes: str = "contracts",
        checkpoint_interval_s: float | None = None,
    ) -> None:
        self.checkpoint_interval_s = checkpoint_interval_s
        self.files = recording_files(paths)
        if not self.files:
            raise NoRecordings(f"no recordings (*{fmt.SUFFIX}) found")
        if speed is not None and speed <= 0:
            raise ArgumentError("speed must be > 0 (or None: as fast as possible)")
        self.start_ns = start_ns
        self.end_ns = end_ns
        # any spelling (btc-perp, BTC-PERP-USDT, BTCPFC): events carry the socket name
        self.symbols = None if symbols is None else {naming.canonical(s) for s in symbols}
        self.speed = speed
        self.book_updates = book_updates
        self.snapshot_timeout_s = snapshot_timeout_s
        self.skip_damaged = skip_damaged
        if sizes not in ("contracts", "base"):
            raise ArgumentError(f"sizes must be 'contracts' (as sent) or 'base', got {sizes!r}")
        self.sizes = sizes
        self.stats = ReplayStats()
        self.damaged: list[CorruptBlock] = []  # the blocks skipped as damaged (skip_damaged)
        # (ns, core) of every connection a live feed closed as it stopped, in order
        self.stopped: list[tuple[int, BookSync | TradeSync | PrivateSync]] = []
        self._sessions: dict[str | None, _Session] = {}
        self._session = _Session()  # the session being replayed

    def sync(
        self, conn_id: int, topics: Sequence[str] = ()
    ) -> BookSync | TradeSync | PrivateSync:
        """The replayed core of a connection slot of the session being replayed (the last
        one read, after a run): a TradeSync where the live one carried trades (its
        topics, from the header or the first subscribe), else a BookSync."""
        sync: BookSync | TradeSync | PrivateSync | None = self._session.syncs.get(conn_id)
        if sync is None:
            topics = self._session.connections.get(conn_id) or topics
            if topics and all(is_private(t) for t in topics):
                sync = PrivateSync(topics)  # OTC quotes, own notifications
            elif topics and all(Topic.parse(t).kind == "trades" for t in topics):
                sync = TradeSync()
            else:
                timeout = self.snapshot_timeout_s or self._session.snapshot_timeout_s or 10.0
                sync = BookSync(
                    book_updates=self.book_updates,
                    snapshot_timeout_s=timeout,
                    recovery=self._session.recovery,
                )
            if self._session.units:
                sync.set_units(self._session.units)
            self._session.syncs[conn_id] = sync
        return sync

    def book(self, symbol: str, grouping: int | None = 0):  # noqa: ANN201
        """The synced book of `symbol`, latest session first."""
        for session in reversed(self._sessions.values()):
            for sync in session.syncs.values():
                book = sync.book(symbol, grouping)
                if book is not None:
                    return book
        return None

    def last_seq(self, symbol: str, grouping: int | None = 0) -> int | None:
        """The seqNum the synced book of `symbol` is at, latest session first."""
        for session in reversed(self._sessions.values()):
            for sync in session.syncs.values():
                if sync.book(symbol, grouping) is not None:
                    return sync.last_seq(symbol, grouping)
        return None

    def status(self, symbol: str, grouping: int | None = 0) -> str | None:
        """The sync status of `symbol`'s book in the latest session that follows it."""
        for session in reversed(self._sessions.values()):
            for sync in session.syncs.values():
                if isinstance(sync, TradeSync):
                    continue  # a trade stream has no grouping: never a book's status
                status = sync.status(symbol, grouping)
                if status is not None:
                    return str(status)
        return None

    def _enter(self, header: dict | None) -> None:
        """A file begins: go on with the session its header names (a file whose header
        block is damaged most likely continues the session being replayed)."""
        key = header_session(header)
        if key is None and self._sessions:
            return
        if key not in self._sessions:
            timeout = (header or {}).get("snapshot_timeout_s")
            self._sessions[key] = _Session(
                recovery=_recovery(header),
                snapshot_timeout_s=timeout if isinstance(timeout, int | float) else None,
                calls_recorded=(header or {}).get("calls") is True,
                connections=_connections(header),
                start_ns=_int((header or {}).get("start_ns")),
                units=self._units(header),
            )
        self._session = self._sessions[key]

    def run(
        self,
        *,
        on_top: Callable[[TopOfBook], object] | None = None,
        on_book: Callable[[BookUpdate], object] | None = None,
        on_status: Callable[[StatusChanged], object] | None = None,
        on_error: Callable[[Event], object] | None = None,
        on_l1: Callable[[L1Quote], object] | None = None,
        on_trade: Callable[[Trade], object] | None = None,
        on_otc_quote: Callable[[OtcQuote], object] | None = None,
        on_notification: Callable[[OrderNotification], object] | None = None,
        progress: Callable[[ReplayStats], object] | None = None,
    ) -> ReplayStats:
        """Call the same callbacks a live Feed would; return the stats."""
        # by exact event type, so each callback only ever gets the type it takes (which
        # a dict's value type cannot say: Any)
        routes: dict[type, Callable[[Any], object] | None] = {
            TopOfBook: on_top,
            BookUpdate: on_book,
            StatusChanged: on_status,
            BadFrame: on_error,
            ExchangeErrors: on_error,
            TradeGap: on_error,
            L1Quote: on_l1,
            Trade: on_trade,
            OtcQuote: on_otc_quote,
            OrderNotification: on_notification,
        }
        every = 0
        for event in self.events():
            callback = routes.get(type(event))
            if callback is not None:
                callback(event)
            every += 1
            if progress is not None and every % 20_000 == 0:
                progress(self.stats)
        if progress is not None:
            progress(self.stats)
        return self.stats

    def events(self) -> Iterator[Event]:
        stats = self.stats
        start, end = self.start_ns, self.end_ns
        read_from = None
        if start is not None:
            interval = self._checkpoint_interval()
            read_from = start - int(interval * 1.5e9)
        wanted = self.symbols
        symbol_of = _FrameSymbols()
        pace_origin: tuple[int, float] | None = None
        started = time.perf_counter()
        frame_kind = fmt.FRAME
        warm_until = -1 if start is None else start  # frames before start warm the books up
        speed = self.speed
        reader = RecordingReader(self.files, read_from, end, skip_damaged=self.skip_damaged)
        for info, blocks in reader.by_file():
            self._enter(file_header(info.path, info))
            session = self._session
            syncs, opened, next_timeouts = session.syncs, session.opened, session.next_timeouts
            by_calls = session.calls_recorded
            for records in blocks:
                stats.records += len(records)  # counted as read, a block at a time
                if not session.seek_subscribed and records:
                    # a replay that joins a session which began earlier (a seek, or files
                    # from the middle of a session) starts after its subscribe: make it at
                    # the first record read, as live had, so every stream (resyncing ones,
                    # L1) is followed, and let checkpoints give the books; a session that
                    # begins inside the read subscribes itself
                    session.seek_subscribed = True
                    ns = records[0].arrival_ns
                    if session.start_ns is not None and session.start_ns < (
                        ns if read_from is None else read_from
                    ):
                        session.joined = True
                        for conn_id, topics in session.connections.items():
                            self.sync(conn_id).subscribe(topics, ns)
                for kind, ns, conn, payload in records:
                    warm = ns < warm_until
                    if kind == frame_kind:
                        stats.frames += 1
                        stats.frame_bytes += len(payload)
                        if warm:
                            stats.warmup_frames += 1
                        elif wanted is None:
                            stats.selected_frames += 1
                        else:
                            symbol = symbol_of(payload)
                            if symbol in wanted:
                                stats.selected_frames += 1
                                stats.symbols_seen.add(symbol)
                        sync = syncs.get(conn) or self.sync(conn)
                        events = sync.feed(ns, payload)
                        if sync.pending_actions:  # a live feed's to-do: the recording holds
                            sync.take_actions()  # what followed, so they are dropped here
                    elif kind == fmt.CALL:
                        events = self._call(conn, ns, payload)
                    elif by_calls and kind in _TOLD_BY_CALLS:
                        if kind == fmt.CLOSE:
                            self._note_stop(conn, ns, payload)
                        continue  # the CALL records say all the live core was told
                    elif kind == fmt.OPEN:
                        opened[conn] = ns
                        continue
                    elif kind == fmt.SENT:
                        events = self._sent(conn, ns, payload, opened)
                    elif kind == fmt.CLOSE:
                        if self._note_stop(conn, ns, payload):
                            continue  # the live feed was stopping: it reported nothing either
                        events = self.sync(conn).connection_lost(ns)
                    elif kind == fmt.DIGEST:
                        self._check_digest(conn, ns, payload)
                        continue
                    elif kind == fmt.CHECKPOINT:
                        events = self._checkpoint(conn, ns, payload, start)
                    elif kind == fmt.LOSS:
                        count = orjson.loads(payload).get("count", 0)
                        stats.lost_records += count
                        if not warm:
                            stats.window_lost_records += count
                        session.lost = True  # its books may be adopted from checkpoints now
                        continue
                    else:  # header, status: information only
                        continue
                    if not by_calls and ns >= next_timeouts:  # old files: a 1 s watchdog
                        next_timeouts = session.next_timeouts = ns + 1_000_000_000
                        for sync in syncs.values():
                            timeouts = sync.check_timeouts(ns)
                            events = [*events, *timeouts] if events else timeouts
                            # resubscribes are a live feed's to-do: the recording holds what
                            # followed them (drained here, so they never pile up)
                            sync.take_actions()
                    if warm or not events:
                        continue
                    if stats.first_ns is None:
                        stats.first_ns = ns
                    stats.last_ns = ns
                    if speed is not None:
                        pace_origin = _pace(pace_origin, ns, speed)
                    private_counted = wanted is None  # a private frame: selected by its events
                    for event in events:
                        kind_of = type(event)
                        if wanted is not None and getattr(event, "symbol", None) not in wanted:
                            continue
                        if kind_of is TopOfBook:
                            stats.top_events += 1
                        elif kind_of is Trade:
                            stats.trades += 1
                        elif kind_of is OtcQuote or kind_of is OrderNotification:
                            if kind_of is OtcQuote:
                                stats.otc_quotes += 1
                            else:
                                stats.notifications += 1
                            # their frames name no symbol in a topic: the event does
                            stats.symbols_seen.add(event.symbol)  # type: ignore[union-attr]
                            if not private_counted and kind == frame_kind:
                                stats.selected_frames += 1
                                private_counted = True
                        elif isinstance(event, StatusChanged) and event.status == "out_of_sync":
                            stats.window_resyncs += 1  # as emitted: inside the window only
                            stats.window_gaps += event.reason == "gap"
                        yield event
        stats.wall_s = time.perf_counter() - started
        stats.duplicate_blocks += reader.duplicates
        stats.damaged_blocks += len(reader.damaged)
        self.damaged.extend(reader.damaged)
        for session in self._sessions.values():
            for sync in session.syncs.values():
                stats.bad_frames += sync.stats.bad_frames
                if wanted is None:
                    stats.gaps += sync.stats.gaps
                    stats.resyncs += sync.stats.resyncs
                    continue
                for key, counts in sync.stats.topics.items():  # the selected symbols' only
                    parsed = _topic(key)
                    if parsed is not None and parsed[0] in wanted:
                        stats.gaps += counts.gaps
                        stats.resyncs += counts.resyncs

    # --- the rarer records --------------------------------------------------------------

    def _note_stop(self, conn: int, ns: int, payload: bytes) -> bool:
        """A connection the live feed closed as it stopped (the session ended cleanly):
        noted in `stopped` (events say nothing, as live), for consumers that must not
        carry a book across sessions (book_changes). True if it was such a close."""
        if orjson.loads(payload).get("reason") != CLOSED_BY_APP:
            return False
        sync = self._session.syncs.get(conn)
        if sync is not None:
            self.stopped.append((ns, sync))
        return True

    def _call(self, conn: int, ns: int, payload: bytes) -> Sequence[Event]:
        """Make the call the live Feed made into this connection's BookSync (v2 files)."""
        call = orjson.loads(payload)
        name, topics = call.get("call"), call.get("topics") or []
        sync = self.sync(conn, topics if name == "subscribe" else ())
        if name == "subscribe":
            events: Sequence[Event] = sync.subscribe(topics, ns)
        elif name == "unsubscribe":
            events = sync.unsubscribe(topics, ns)
        elif name == "connection_lost":
            events = sync.connection_lost(ns)
        elif name == "check_timeouts":
            events = sync.check_timeouts(ns)
        elif name == "give_up" and isinstance(sync, PrivateSync):  # a key refused too often
            events = sync.give_up(ns)
        else:
            log.warning("replay: unknown recorded call %r skipped", name)
            events = ()
        sync.take_actions()
        return events

    def _units(self, header: dict[str, Any] | None) -> dict[str, Units]:
        """With sizes="base": the units of the instruments the recorder stored (the
        metadata of that day, offline); none stored: sizes as sent, with a warning."""
        if self.sizes != "base":
            return {}
        stored = (header or {}).get("instruments")
        problem = "no instruments in its header"
        if isinstance(stored, dict) and isinstance(stored.get("markets"), list):
            reply = orjson.dumps({"data": {"symbols": stored["markets"]}})
            try:
                fetched_at = float(stored.get("fetched_at") or 0.0)
                instruments = Instruments(reply, fetched_at, str(stored.get("source")))
            except (TypeError, ValueError, ArgumentError) as exc:
                problem = str(exc)
            else:
                problem = ""
        if problem:
            log.warning("replay: a session without usable instrument metadata (%s): "
                        "sizes stay as sent", problem)  # fmt: skip
            return {}
        return {
            i.symbol: Units(i.tick, i.contract_size if i.futures else None) for i in instruments
        }

    def _sent(self, conn: int, ns: int, payload: bytes, opened: dict[int, int]) -> list[Event]:
        """The live Feed calls BookSync.subscribe once per session, with the open time."""
        if conn not in opened or not payload.startswith(b"{"):
            return []
        request = orjson.loads(payload)
        if request.get("op") != "subscribe":
            return []
        args = request.get("args", [])
        return list(self.sync(conn, args).subscribe(args, opened.pop(conn)))

    def _check_digest(self, conn: int, ns: int, payload: bytes) -> None:
        digest = orjson.loads(payload)
        topic, seq = digest["topic"], digest["seq"]
        parsed = _topic(topic)
        if self.symbols is not None and (parsed is None or parsed[0] not in self.symbols):
            return  # counted for the selected symbols only
        sync = self.sync(conn)
        book = None
        if parsed is not None and sync.last_seq(*parsed) == seq:
            book = sync.book(*parsed)
        if book is None:
            self.stats.digests_unverified += 1
            return
        self.stats.digests_checked += 1
        if self.start_ns is None or ns >= self.start_ns:
            self.stats.window_digests_checked += 1
        mine = book.digest()
        if mine != digest["digest"]:
            self.stats.mismatches.append(DigestMismatch(ns, topic, seq, digest["digest"], mine))

    def _checkpoint(self, conn: int, ns: int, payload: bytes, start: int | None) -> list[Event]:
        """A replay that started mid-session warms up from checkpoints. A full replay
        rebuilds every synced book from the frames (or a divergence could hide); it takes
        a checkpoint only for a book it lost to a hole in the file (a recorder loss
        record, a damaged block), where the live book went on: the checkpoint is that live
        book, so the replay is whole again as soon as the recorder wrote one, as a replay
        starting there would be. A replay that joins a session after its start (files from
        its middle) warms up from them as a seek does. Each adoption is counted
        (`checkpoint_adoptions`)."""
        session = self._session
        if start is None and not (session.joined or session.lost):
            return []
        checkpoint = orjson.loads(payload)
        text = checkpoint["topic"]
        sync = self.sync(conn)
        if isinstance(sync, TradeSync):  # a trade stream's published ids
            return sync.restore(checkpoint, ns) if start is not None else []
        topic = _topic(text)
        if topic is None or sync.book(*topic) is not None:
            return []
        if sync.status(*topic) is None:
            # the session's subscribe lies before the window: BookSync follows only
            # subscribed streams, so subscribe it here, as live had
            sync.subscribe([text], ns)
        if start is None:
            self.stats.checkpoint_adoptions += 1
        return list(sync.feed(ns, payload))

    def _checkpoint_interval(self) -> float:
        """How far back a seek reads: 1.5 of these. `checkpoint_interval_s` when given
        (a caller that knows the largest of every session's), else the first file's."""
        if self.checkpoint_interval_s is not None:
            return self.checkpoint_interval_s
        header = file_header(self.files[0]) or {}
        return float(header.get("checkpoint_interval_s", 60.0))


class _FrameSymbols:
    """The symbol a raw frame is about (None for acks, pongs, errors), from its topic,
    found without parsing the frame; cached per topic spelling."""

    def __init__(self) -> None:
        self._by_topic: dict[str | None, str | None] = {None: None}

    def __call__(self, raw: bytes) -> str | None:
        topic = frame_topic(raw)
        try:
            return self._by_topic[topic]
        except KeyError:
            parsed = _topic(topic) if topic is not None else None
            symbol = self._by_topic[topic] = None if parsed is None else parsed[0]
            return symbol


def _topic(text: str) -> tuple[str, int | None] | None:
    from bookengine.errors import TopicError
    from bookengine.wire import Topic

    try:
        parsed = Topic.parse(text)
    except TopicError:
        return None
    return parsed.symbol, parsed.grouping


# What a v2 session's CALL records already tell the core (OPEN/SENT/CLOSE are kept as
# information only).
_TOLD_BY_CALLS = (fmt.OPEN, fmt.SENT, fmt.CLOSE)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _connections(header: dict[str, Any] | None) -> dict[int, list[str]]:
    """The header's conn id -> topics (record_session writes it; {} for older files)."""
    raw = (header or {}).get("connections")
    if not isinstance(raw, dict):
        return {}
    out: dict[int, list[str]] = {}
    for conn, topics in raw.items():
        if str(conn).lstrip("-").isdigit() and isinstance(topics, list):
            out[int(conn)] = [t for t in topics if isinstance(t, str)]
    return out


def _recovery(header: dict | None) -> RecoveryPolicy | None:
    """The retry policy the live books had (header `recovery`, written by record_session);
    None (BookSync's default) for older recordings or an unreadable one."""
    fields = (header or {}).get("recovery")
    try:
        return RecoveryPolicy(**fields) if isinstance(fields, dict) else None
    except (TypeError, ValueError):
        return None


def _pace(origin: tuple[int, float] | None, ns: int, speed: float) -> tuple[int, float]:
    """Sleep until recorded time `ns` is due at `speed` (the driver sleeps, never the core)."""
    if origin is None:
        return ns, time.monotonic()
    first_ns, wall0 = origin
    due = wall0 + (ns - first_ns) / 1e9 / speed
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return origin


def recording_span(paths: Iterable[str | Path]) -> tuple[int | None, int | None]:
    """(first ns, last ns) of recordings, from block headers only."""
    first: int | None = None
    last: int | None = None
    for path in recording_files(paths):
        info = scan(path)
        first_ns, last_ns = info.first_ns, info.last_ns
        if first_ns is not None and last_ns is not None:  # both None: no blocks
            first = first_ns if first is None else min(first, first_ns)
            last = last_ns if last is None else max(last, last_ns)
    return first, last
