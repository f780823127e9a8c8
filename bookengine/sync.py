"""`BookSync`: the sans-I/O state machine that keeps every book of one connection in sync.

It never awaits, sleeps, reads a clock or touches a socket: the caller passes the arrival
time with each frame. Its two outputs are kept apart, as in websockets' sans-I/O
`Protocol`: `feed()` (and the other calls) return *events*, what happened; the actions
the driver must carry out (`Resubscribe`) wait in `pending_actions` until
`take_actions()` drains them. The same calls with the same bytes in the same order give
the same events, which is what makes replay equal live.

Streams. One state per stream *key* (`Topic.key`): `update:SYM_G` for a book and
`snapshotL1:SYM[_G]` for L1 quotes. Frames are routed by `data.symbol` (folded to its
socket name by `bookengine.naming`) + the topic's kind and grouping, never by the topic's
spelling. `update:SYM` carries the `_0` chain (PROTOCOL.md), so a frame on `update:SYM`
updates the book of an `update:SYM_0` subscription and vice versa: one book, one chain.
Frames of streams nobody subscribed are counted (`stats.unsolicited`) and dropped: they
create no state and never cause a resubscribe.

Per book:

    waiting_for_snapshot --snapshot--> synced --gap / crossed / bad frame--> out_of_sync
            ^                            ^                                      |
            | subscribe                  +-------- any snapshot ----------------+
                                                                                | budget
                                                     failing <------------------+ spent

What a snapshot means: while a book is not synced, the snapshot that follows is the
answer to our (re)subscribe and replaces the book *whatever its seqNum*: a restarted
chain is a new chain. Only a snapshot that arrives while the book is synced and is older
than what the book already holds is stale.

Recovery budget (`RecoveryPolicy`): the first failure resubscribes at once; each further
failure in a row waits twice as long (0.25 s, 0.5 s, 1 s, ... jittered 0.5-1x); from the
`report_after`-th failure in a row the book is reported `failing` (one status event, a
counter) and retried every 1x-1.5x `max_delay_s` (60 s): never faster, never abandoned.
A book that stayed synced for `stable_s`, or applied `stable_deltas` deltas (not counting
the one that broke it), starts with a fresh budget: the odd gap of a healthy book is
always answered at once. A snapshot timeout (subscribed, acked, then silent: an
out-of-range grouping) is a failure like any other. Errors 1007/1008 are about the
socket and never reject the topic they name; any other error naming a subscribed topic
does.

While a book is not synced its deltas are counted and ignored and no top-of-book is
published: only a new snapshot makes it valid again. L1 streams are `synced` from their
first quote on (a first quote that never comes is a snapshot timeout, like a book's);
they have no sequence, so only a lost connection or a rejection ends that (an L1 stream
may stall for seconds while its book flows: that is not a failure).

Every status change goes through one function (`_set_status`) and emits exactly one
`StatusChanged`, so `status()` always equals the last event. What may cause what:

    reason                                   from                         to
    subscribed                               any (or none yet)            waiting_for_snapshot
    snapshot (a book's, or an L1 quote)      waiting, out_of_sync, failing  synced
    gap, crossed, stale_snapshot,            synced, waiting,             out_of_sync, failing
      bad_frame, snapshot_timeout              out_of_sync, failing
    connection_lost                          waiting, synced,             out_of_sync
                                               out_of_sync, failing
    rejected, unsubscribed                   any subscribed               unsubscribed

Anything else is a bug: `IllegalTransition`, which `feed()` turns into a `BadFrame` like
any internal error, unless `STRICT` is set (the tests set it, so a bug fails them).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from bookengine import book as _book_module
from bookengine import framing, naming
from bookengine.book import OrderBook, TopKeys, multiply_decimal, size_value, to_number
from bookengine.errors import (
    ArgumentError,
    BookEngineError,
    FrameError,
    IllegalTransition,
    TopicError,
)
from bookengine.events import (
    BookUpdate,
    Event,
    L1Quote,
    Pong,
    Reason,
    Resubscribe,
    StatusChanged,
    SyncStatus,
    TopOfBook,
)
from bookengine.wire import Topic, stream_key, topic_list

_loads = orjson.loads
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (~2x faster)
_NO_EVENTS: tuple[Event, ...] = ()
_SYNCED = SyncStatus.SYNCED
_MAX_ROUTES = 10_000  # (topic spelling, data.symbol) pairs remembered
STRICT = False  # re-raise internal errors from feed() instead of reporting a BadFrame

_S = SyncStatus
_ANY = frozenset(SyncStatus)
_FAILED = frozenset({_S.OUT_OF_SYNC, _S.FAILING})
_SUBSCRIBED = frozenset({_S.WAITING, _S.SYNCED, _S.OUT_OF_SYNC, _S.FAILING})


# reason -> (the statuses it may leave, the statuses it may lead to): the table above
class Units(NamedTuple):
    """What instruments metadata tells a book: its tick, and the factor its sizes are
    handed out times (a futures contract size, for sizes in base coin)."""

    tick: str | None
    size_factor: str | None


_NO_UNITS = Units(None, None)
_TRANSITIONS: dict[Reason, tuple[frozenset[SyncStatus], frozenset[SyncStatus]]] = {
    Reason.SUBSCRIBED: (_ANY, frozenset({_S.WAITING})),
    Reason.SNAPSHOT: (frozenset({_S.WAITING, *_FAILED}), frozenset({_S.SYNCED})),
    Reason.CONNECTION_LOST: (_SUBSCRIBED, frozenset({_S.OUT_OF_SYNC})),
    Reason.REJECTED: (_SUBSCRIBED, frozenset({_S.UNSUBSCRIBED})),
    Reason.UNSUBSCRIBED: (_SUBSCRIBED, frozenset({_S.UNSUBSCRIBED})),
    **{
        reason: (_SUBSCRIBED, _FAILED)
        for reason in (
            Reason.GAP,
            Reason.CROSSED,
            Reason.STALE_SNAPSHOT,
            Reason.BAD_FRAME,
            Reason.SNAPSHOT_TIMEOUT,
        )
    },
}


@dataclass(frozen=True)
class RecoveryPolicy:
    """How a book that keeps failing is retried (see the module docstring)."""

    first_delay_s: float = 0.25  # the wait before the second resubscribe in a row
    max_delay_s: float = 60.0  # the cap, and the pace of a failing book
    report_after: int = 5  # failures in a row before the book is reported failing
    stable_s: float = 30.0  # synced this long: the next failure starts a fresh budget
    stable_deltas: int = 3  # ... or this many deltas applied since the last snapshot

    def __post_init__(self) -> None:
        if not 0 < self.first_delay_s <= self.max_delay_s:
            raise ArgumentError("RecoveryPolicy: need 0 < first_delay_s <= max_delay_s")
        if self.report_after < 1 or self.stable_s < 0 or self.stable_deltas < 1:
            raise ArgumentError(
                "RecoveryPolicy: need report_after >= 1, stable_s >= 0, stable_deltas >= 1"
            )

    def delay_ns(self, failures: int, key: str) -> int:
        """The wait before resubscribing after `failures` failures in a row: doubling,
        jittered 0.5x-1x by a hash of the key (so many failing books spread out, and the
        same inputs always give the same waits: replay, tests); once failing, 1x-1.5x
        `max_delay_s`, never less."""
        if failures <= 1:
            return 0
        spread = (zlib.crc32(f"{key}#{failures}".encode()) % 1000) / 2000  # 0 .. 0.5
        if failures >= self.report_after:  # failing: never faster than max_delay_s
            return int(self.max_delay_s * (1 + spread) * 1e9)
        base = min(self.max_delay_s, self.first_delay_s * 2 ** (failures - 2))
        return int(base * (0.5 + spread) * 1e9)


@dataclass(slots=True)
class TopicStats:
    """Counters of one stream (one book, or one L1 stream)."""

    snapshots: int = 0
    deltas: int = 0
    ignored: int = 0  # deltas received while not synced
    gaps: int = 0
    crossed: int = 0
    stale_snapshots: int = 0
    bad_frames: int = 0
    resyncs: int = 0  # times the book went out of sync
    resubscribes: int = 0  # Resubscribe actions emitted
    timeouts: int = 0
    failing: int = 0  # times the book was reported failing
    top_changes: int = 0
    l1: int = 0
    trade_frames: int = 0  # trade streams (TradeSync)
    trades: int = 0  # trades published
    duplicate_trades: int = 0  # seen before (the post-subscribe batch, a reconnect)
    trade_gaps: int = 0  # batches that did not reach back to the last trade seen
    late_trades: int = 0  # trades older than one already put out (late frames)
    private: int = 0  # OTC quotes, own order notifications (PrivateSync)

    @property
    def frames(self) -> int:
        return (
            self.snapshots + self.deltas + self.l1 + self.trade_frames + self.bad_frames
            + self.private
        )  # fmt: skip


@dataclass
class SyncStats:
    """Counters of a whole `BookSync`; `topics` maps stream key -> TopicStats."""

    bad_frames: int = 0
    error_frames: int = 0
    acks: int = 0
    pongs: int = 0
    l1_frames: int = 0
    unsolicited: int = 0  # frames of streams nobody subscribed (dropped)
    topics: dict[str, TopicStats] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Every frame fed (derived: the hot path counts per topic only)."""
        routed = sum(t.frames for t in self.topics.values())
        unrouted_bad = self.bad_frames - sum(t.bad_frames for t in self.topics.values())
        return routed + unrouted_bad + self.error_frames + self.acks + self.pongs + self.unsolicited

    @property
    def gaps(self) -> int:
        return sum(t.gaps for t in self.topics.values())

    @property
    def resyncs(self) -> int:
        return sum(t.resyncs for t in self.topics.values())

    @property
    def resubscribes(self) -> int:
        return sum(t.resubscribes for t in self.topics.values())


class _Book:
    """Sync state of one stream."""

    __slots__ = (
        "key",
        "is_l1",
        "symbol",
        "grouping",
        "topic",
        "book",
        "status",
        "last_seq",
        "top",
        "stats",
        "failures",
        "synced_ns",
        "synced_deltas",
    )

    def __init__(self, topic: Topic, spelled: str) -> None:
        self.key = topic.key
        self.is_l1 = topic.kind == "snapshotL1"
        self.symbol = topic.symbol
        # a book's grouping (0..); an L1 stream's as subscribed (None: unsuffixed)
        self.grouping = topic.grouping if self.is_l1 else topic.book_grouping
        self.topic = spelled  # what a resubscribe sends
        self.book = OrderBook(topic.symbol)
        self.status = SyncStatus.WAITING
        self.last_seq = -1  # seq of the last snapshot/delta applied; -1: none
        self.top: TopKeys | L1Quote | None = None
        self.stats = TopicStats()
        self.failures = 0  # failed recoveries in a row
        self.synced_ns: int | None = None  # since when synced
        self.synced_deltas = 0  # stats.deltas when it synced


class BookSync:
    """Keeps the books of one connection; feed it every frame that connection receives.

    `book_updates=True` also emits a `BookUpdate` for every applied snapshot/delta (off by
    default: most strategies want top-of-book only, and the event costs per frame).
    `snapshot_timeout_s`: a subscribed book with no snapshot after this long counts as a
    failed recovery (an out-of-range grouping is acknowledged and then stays silent).
    `recovery`: how failing books are retried (`RecoveryPolicy`).

    Raises `ArgumentError` for a timeout <= 0; `subscribe`/`unsubscribe` raise
    `TopicError` for a topic no spelling rule knows; `feed` never raises.
    """

    def __init__(
        self,
        *,
        book_updates: bool = False,
        snapshot_timeout_s: float = 10.0,
        recovery: RecoveryPolicy | None = None,
    ) -> None:
        if snapshot_timeout_s <= 0:
            raise ArgumentError("snapshot_timeout_s must be > 0")
        self._book_updates = book_updates
        self._timeout_ns = int(snapshot_timeout_s * 1e9)
        self.recovery = recovery or RecoveryPolicy()
        self._books: dict[str, _Book] = {}  # stream key -> state (subscribed once)
        self._subscribed: dict[str, _Book] = {}  # stream key -> state, while subscribed
        # Frames are routed by data.symbol; these caches map what arrives to the state.
        self._routes: dict[str, _Book] = {}  # topic as sent -> book (symbol checked per frame)
        self._routes_by_pair: dict[tuple[str, str], _Book] = {}  # (topic, data.symbol)
        self._pending: dict[str, int] = {}  # key -> since when we wait for its snapshot
        self._retries: dict[str, tuple[int, Reason]] = {}  # key -> (when, why) to resubscribe
        self.pending_actions: list[Resubscribe] = []  # for the driver: see take_actions()
        self._units: dict[str, Units] = {}  # symbol -> its tick and size factor
        self.stats = SyncStats()
        # Reads well-formed deltas straight from the bytes (C accelerator; None without it).
        scanner = _book_module.Scanner
        self._scanner = scanner() if scanner is not None else None

    # --- what the I/O layer tells us -------------------------------------------------

    def set_units(self, units: dict[str, Units]) -> None:
        """Instrument metadata per socket name: each book learns its tick, and hands out
        sizes times `size_factor` (contracts -> base coin), in its queries and in the
        TopOfBook / L1Quote events (`Feed(sizes="base")` sets it)."""
        self._units = dict(units)
        for state in self._books.values():
            state.book.tick, state.book.size_factor = self._units.get(state.symbol, _NO_UNITS)

    def take_actions(self) -> list[Resubscribe]:
        """Drain what the driver must do now (resubscribe these topics), oldest first.
        A driver checks `pending_actions` after each call and carries these out."""
        actions, self.pending_actions = self.pending_actions, []
        return actions

    def subscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        """We sent a subscribe for `topics` (any spelling): expect a snapshot for each."""
        events: list[Event] = []
        for text in topic_list(topics):
            topic = Topic.parse(text)
            if topic.kind == "trades":
                raise ArgumentError(f"{text}: trades are TradeSync's (bookengine.trades)")
            state = self._books.get(topic.key)
            if state is None:
                state = self._books[topic.key] = _Book(topic, text)
                state.book.tick, state.book.size_factor = self._units.get(state.symbol, _NO_UNITS)
                self.stats.topics[topic.key] = state.stats
            state.topic = text
            self._subscribed[topic.key] = state
            self._retries.pop(topic.key, None)
            self._pending[topic.key] = now_ns  # a book's snapshot, an L1 stream's first quote
            state.book.clear()
            state.last_seq = -1
            self._set_status(state, SyncStatus.WAITING, Reason.SUBSCRIBED, now_ns, events)
        return events

    def unsubscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        """We sent an unsubscribe: those streams stop being valid and stop being watched."""
        events: list[Event] = []
        for text in topic_list(topics):
            state = self._subscribed.get(Topic.parse(text).key)
            if state is not None:
                self._drop(state, Reason.UNSUBSCRIBED, now_ns, events)
        return events

    def connection_lost(self, now_ns: int) -> list[Event]:
        """The socket is gone: every stream is invalid until the new socket's snapshots.

        Sequence history is forgotten too: a restarted server may start a new chain."""
        events: list[Event] = []
        for state in self._subscribed.values():
            self._settle(state, now_ns)  # a book that was fine keeps a fresh budget
            state.book.clear()
            state.last_seq = -1
            state.synced_ns = None
            self._set_status(state, SyncStatus.OUT_OF_SYNC, Reason.CONNECTION_LOST, now_ns, events)
        self._pending.clear()
        self._retries.clear()  # the next socket subscribes every topic anyway
        self.pending_actions.clear()
        return events

    def check_timeouts(self, now_ns: int) -> list[Event]:
        """Call now and then (the Feed does once a second): books still without a snapshot
        after `snapshot_timeout_s` fail; resubscribes that the budget delayed fall due."""
        events: list[Event] = []
        for key, since in list(self._pending.items()):
            if now_ns - since < self._timeout_ns:
                continue
            del self._pending[key]
            state = self._subscribed[key]
            state.stats.timeouts += 1
            waited = (now_ns - since) / 1e9
            detail = f"no snapshot {waited:.1f}s after (re)subscribing"
            events.extend(self._out_of_sync(state, now_ns, Reason.SNAPSHOT_TIMEOUT, detail))
        for key, (due, reason) in list(self._retries.items()):
            if now_ns >= due:
                del self._retries[key]
                self._resubscribe(self._subscribed[key], now_ns, reason)
        return events

    # --- queries: any spelling of a symbol or topic ---------------------------------

    def book(self, symbol: str, grouping: int | None = 0) -> OrderBook | None:
        """The book if it is synced, else None: an unsynced book is never handed out."""
        state = self._books.get(_key(symbol, grouping))
        if state is None or state.status is not _SYNCED or state.is_l1:
            return None
        return state.book

    def status(self, symbol: str, grouping: int | None = 0) -> SyncStatus | None:
        state = self._books.get(_key(symbol, grouping))
        return None if state is None else state.status

    def last_seq(self, symbol: str, grouping: int | None = 0) -> int | None:
        state = self._books.get(_key(symbol, grouping))
        return None if state is None or state.last_seq < 0 else state.last_seq

    def quote(self, topic: str) -> L1Quote | None:
        """The latest quote of a subscribed `snapshotL1:` stream (None before the first)."""
        state = self._books.get(_key(topic, None))
        if state is None or not state.is_l1 or state.status is not _SYNCED:
            return None
        return state.top  # type: ignore[return-value]

    def books(self) -> dict[str, OrderBook]:
        """Every synced book by stream key."""
        return {s.key: s.book for s in self._books.values() if s.status is _SYNCED and not s.is_l1}

    def topic_stats(self, topic: str) -> TopicStats | None:
        """Counters of one stream (any spelling)."""
        return self.stats.topics.get(_key(topic, 0))

    @property
    def subscribed(self) -> dict[str, str]:
        """Subscribed streams: key -> the spelling sent."""
        return {key: state.topic for key, state in self._subscribed.items()}

    @property
    def has_timers(self) -> bool:
        """Whether `check_timeouts` has anything to check (a snapshot awaited, a retry
        scheduled): a driver may skip (and not record) the calls that would do nothing."""
        return bool(self._pending or self._retries)

    @property
    def pending(self) -> dict[str, int]:
        """Subscribed books waiting for a snapshot (key -> since ns)."""
        return dict(self._pending)

    # --- the hot path ----------------------------------------------------------------

    def feed(self, arrival_ns: int, raw: bytes | str) -> Sequence[Event]:
        """Process one received frame. Never raises for bad input: it returns a BadFrame.

        Returns the events it caused, often none; the sequence must not be mutated.
        """
        try:
            scanner = self._scanner
            if scanner is not None:
                head = scanner.scan(raw)
                if head is not None:
                    # A well-formed delta, read without orjson (see _fastbook.c). If it is
                    # the next one of a synced book, apply it here; anything else takes the
                    # general path below, which parses the frame again and decides.
                    topic, symbol, seq, prev, timestamp = head
                    state = self._routes.get(topic)
                    if (
                        state is not None
                        and state.status is _SYNCED
                        and prev == state.last_seq
                        and seq > prev
                        and state.symbol == symbol
                    ):
                        # The scanner applies the levels to the book's C sides and gives
                        # the new top_keys(); None (nothing changed) if a finer price needs
                        # a rescale, which the general path does.
                        book = state.book
                        top = scanner.apply(book._bids, book._asks, book._decimals)
                        if top is not None:
                            book._best_bid = top[0]
                            book._best_ask = top[2]
                            # _delta_applied, inline (a call less), and its usual case
                            state.stats.deltas += 1
                            state.last_seq = book.seq = seq
                            book.exchange_ms = timestamp
                            if (
                                top[0] < top[2]
                                and top != state.top
                                and not self._book_updates
                                and book.size_factor is None
                            ):
                                state.top = top
                                state.stats.top_changes += 1
                                return [
                                    _c_top_event(  # _top_of_book(), one C call
                                        TopOfBook, arrival_ns, timestamp, symbol,
                                        state.grouping, seq, top, book._scale,
                                    )  # fmt: skip
                                ]
                            return self._delta_events(state, arrival_ns, timestamp, seq, top)
            try:
                msg = _loads(raw)
            except orjson.JSONDecodeError as exc:
                if raw == b"pong" or raw == "pong":
                    self.stats.pongs += 1
                    return [Pong(arrival_ns)]
                return self._bad(arrival_ns, raw, f"invalid JSON: {exc}")
            except TypeError:
                return self._bad(
                    arrival_ns, raw, f"frame must be bytes or str, got {type(raw).__name__}"
                )
            if type(msg) is not dict:
                return self._control(arrival_ns, raw, msg)
            data = msg.get("data")
            if type(data) is not dict:
                return self._control(arrival_ns, raw, msg)
            topic_text = msg.get("topic")
            state = self._routes.get(topic_text) if type(topic_text) is str else None
            if state is None or state.symbol != data.get("symbol"):
                routed = self._route(arrival_ns, raw, topic_text, data)
                if not isinstance(routed, _Book):
                    return routed  # events: bad frame, unsolicited, or an L1 quote
                state = routed
            try:
                # The hot path, inline (a call costs ~0.1 us): the next delta of a synced book.
                if data["type"] == "delta" and state.status is _SYNCED:
                    seq = data["seqNum"]
                    prev = data["prevSeqNum"]
                    if prev == state.last_seq and type(seq) is int and seq > prev:
                        return self._apply_delta(state, data, arrival_ns, seq)
                return self._book_frame(state, data, arrival_ns)
            except (KeyError, IndexError, TypeError, ValueError, BookEngineError) as exc:
                return self._bad_book_frame(state, data, arrival_ns, raw, exc)
        except Exception as exc:  # a bug of ours: still never fatal to the feed
            if STRICT:
                raise
            return self._bad(arrival_ns, raw, f"internal error {type(exc).__name__}: {exc}")

    def _apply_delta(
        self, state: _Book, data: dict[str, Any], arrival_ns: int, seq: int
    ) -> Sequence[Event]:
        book = state.book
        scale = book._scale
        book.apply_delta(data["bids"], data["asks"])
        if book._scale != scale:  # finer prices rescaled the keys: compare like with like
            self._rescale_top(state, scale)
        return self._delta_applied(state, arrival_ns, _timestamp(data), seq, book.top_keys())

    def _delta_applied(
        self, state: _Book, arrival_ns: int, timestamp: int | None, seq: int, top: TopKeys
    ) -> Sequence[Event]:
        """The events of an in-sequence delta just applied to a synced book (`top`: the
        book's `top_keys()` after it)."""
        book = state.book
        state.stats.deltas += 1  # counted once applied: a frame that raised is a bad frame
        state.last_seq = book.seq = seq
        book.exchange_ms = timestamp
        return self._delta_events(state, arrival_ns, timestamp, seq, top)

    def _delta_events(
        self, state: _Book, arrival_ns: int, timestamp: int | None, seq: int, top: TopKeys
    ) -> Sequence[Event]:
        """_delta_applied's events, once the delta is counted and the book stamped."""
        book = state.book
        if top[0] >= top[2]:
            return self._crossed(state, arrival_ns, seq, by_delta=True)
        if top == state.top:
            if self._book_updates:
                return [BookUpdate(arrival_ns, timestamp, state.symbol, state.grouping, seq, book)]
            return _NO_EVENTS
        state.top = top
        state.stats.top_changes += 1
        event = _top_of_book(state, arrival_ns, timestamp, seq, top)
        if self._book_updates:
            return [
                event,
                BookUpdate(arrival_ns, event.exchange_ms, state.symbol, state.grouping, seq, book),
            ]
        return [event]

    def _book_frame(self, state: _Book, data: dict[str, Any], arrival_ns: int) -> Sequence[Event]:
        """Every book frame but the in-sequence delta of a synced book."""
        typ = data["type"]
        if typ == "snapshot":
            return self._snapshot(state, data, arrival_ns)
        if typ != "delta":
            raise FrameError(f"unknown book frame type {str(typ)[:40]!r}")
        stats = state.stats
        stats.deltas += 1
        if state.status is _SYNCED:
            return self._gap(state, arrival_ns, data["prevSeqNum"], data["seqNum"])
        stats.ignored += 1
        return _NO_EVENTS

    def _snapshot(self, state: _Book, data: dict[str, Any], arrival_ns: int) -> Sequence[Event]:
        stats = state.stats
        seq = data["seqNum"]
        if type(seq) is not int or seq < 0:  # BTSE's are positive; -1 means "none" here
            raise FrameError(f"snapshot seqNum must be an integer >= 0, got {str(seq)[:40]!r}")
        stats.snapshots += 1
        book = state.book
        if state.status is _SYNCED and seq < state.last_seq:
            # Unsolicited and older than what we hold. (While not synced, the snapshot is
            # the answer to our resubscribe and is taken whatever its seqNum.)
            stats.stale_snapshots += 1
            return self._out_of_sync(
                state,
                arrival_ns,
                Reason.STALE_SNAPSHOT,
                f"snapshot seqNum {seq} is older than {state.last_seq} already seen",
            )
        scale = book._scale
        book.apply_snapshot(data["bids"], data["asks"])
        if book._scale != scale:
            self._rescale_top(state, scale)  # compare like with like
        timestamp = _timestamp(data)
        state.last_seq = book.seq = seq
        book.exchange_ms = timestamp
        self._pending.pop(state.key, None)
        self._retries.pop(state.key, None)
        if book.crossed:
            return self._crossed(state, arrival_ns, seq)
        events: list[Event] = []
        if state.status is not _SYNCED:
            state.synced_ns = arrival_ns
            state.synced_deltas = stats.deltas
            self._set_status(state, _SYNCED, Reason.SNAPSHOT, arrival_ns, events, f"seqNum {seq}")
        top = book.top_keys()
        if top != state.top:
            state.top = top
            stats.top_changes += 1
            events.append(_top_of_book(state, arrival_ns, timestamp, seq, top))
        if self._book_updates:
            events.append(
                BookUpdate(arrival_ns, timestamp, state.symbol, state.grouping, seq, book)
            )
        return events

    def _l1(self, state: _Book, data: dict[str, Any], arrival_ns: int) -> Sequence[Event]:
        bids, asks = data.get("bids"), data.get("asks")
        if type(bids) is not list or type(asks) is not list:
            raise FrameError("snapshotL1: bids/asks must be lists")
        bid_price, bid_size = _l1_level(bids)
        ask_price, ask_size = _l1_level(asks)
        factor = state.book.size_factor
        if factor is not None:  # contracts -> base coin, exactly
            bid_size = None if bid_size is None else multiply_decimal(bid_size, factor)
            ask_size = None if ask_size is None else multiply_decimal(ask_size, factor)
        quote = L1Quote(
            arrival_ns,
            _timestamp(data),
            state.symbol,
            bid_price,
            bid_size,
            ask_price,
            ask_size,
            state.key,
        )
        self.stats.l1_frames += 1
        state.stats.l1 += 1
        state.top = quote
        events: list[Event] = []
        if state.status is not _SYNCED:
            self._pending.pop(state.key, None)
            self._retries.pop(state.key, None)
            self._set_status(state, _SYNCED, Reason.SNAPSHOT, arrival_ns, events, "first quote")
        events.append(quote)
        return events

    # --- the rare paths ----------------------------------------------------------------

    def _route(
        self, arrival_ns: int, raw: bytes | str, text: object, data: dict[str, Any]
    ) -> _Book | Sequence[Event]:
        """A data frame the route cache does not know: its book, or the events it makes
        (a bad frame, an L1 quote, or nothing for an unsolicited stream)."""
        symbol = data.get("symbol")
        if type(text) is not str or type(symbol) is not str:
            return self._bad(arrival_ns, raw, "data frame without a topic string and data.symbol")
        state = self._routes_by_pair.get((text, symbol))
        if state is None:
            try:
                topic = Topic.parse(text)
                key = Topic(topic.kind, naming.canonical(symbol), topic.grouping).key
            except TopicError as exc:
                return self._bad(arrival_ns, raw, str(exc)[:300], text[:100])
            state = self._subscribed.get(key)
            if state is None:
                self.stats.unsolicited += 1
                return _NO_EVENTS
            if len(self._routes_by_pair) >= _MAX_ROUTES:
                self._routes_by_pair.clear()
            self._routes_by_pair[(text, symbol)] = state
        if state.is_l1:
            try:
                return self._l1(state, data, arrival_ns)
            except (KeyError, IndexError, TypeError, ValueError, BookEngineError) as exc:
                state.stats.bad_frames += 1
                return self._bad(arrival_ns, raw, _reason(exc), state.key)
        if len(self._routes) >= _MAX_ROUTES:
            self._routes.clear()
        self._routes[text] = state
        return state

    def _control(self, arrival_ns: int, raw: bytes | str, msg: object) -> Sequence[Event]:
        return framing.control(self.stats, arrival_ns, raw, msg, self._reject)

    def _reject(self, topic: str, detail: str, arrival_ns: int, events: list[Event]) -> None:
        """The exchange refused `topic` (any spelling): no snapshot will ever come."""
        try:
            key = Topic.parse(topic).key
        except TopicError:
            return
        state = self._subscribed.get(key)
        if state is not None:
            self._drop(state, Reason.REJECTED, arrival_ns, events, detail)

    def _drop(
        self, state: _Book, reason: Reason, now_ns: int, events: list[Event], detail: str = ""
    ) -> None:
        """The stream is no longer subscribed (unsubscribed or rejected)."""
        key = state.key
        del self._subscribed[key]
        self._pending.pop(key, None)
        self._retries.pop(key, None)
        self._routes.clear()  # rare: cheaper to relearn than to find every alias
        self._routes_by_pair.clear()
        self.pending_actions = [a for a in self.pending_actions if a.topic != state.topic]
        state.book.clear()
        state.last_seq = -1
        state.failures = 0
        state.synced_ns = None
        self._set_status(state, SyncStatus.UNSUBSCRIBED, reason, now_ns, events, detail)

    def _gap(self, state: _Book, arrival_ns: int, prev: object, seq: object) -> Sequence[Event]:
        state.stats.gaps += 1
        if type(seq) is int and seq > state.last_seq:
            detail = f"expected prevSeqNum {state.last_seq}, got {str(prev)[:40]} (seqNum {seq})"
        else:
            detail = f"stale or duplicate delta: seqNum {str(seq)[:40]} after {state.last_seq}"
        return self._out_of_sync(state, arrival_ns, Reason.GAP, detail, failed_delta=True)

    def _crossed(
        self, state: _Book, arrival_ns: int, seq: int, by_delta: bool = False
    ) -> Sequence[Event]:
        state.stats.crossed += 1
        bid, _, ask, _ = state.book.top
        detail = f"best bid {bid!r} >= best ask {ask!r} at seqNum {seq}"
        return self._out_of_sync(state, arrival_ns, Reason.CROSSED, detail, by_delta)

    def _bad_book_frame(
        self, state: _Book, data: dict[str, Any], arrival_ns: int, raw: bytes | str, exc: Exception
    ) -> Sequence[Event]:
        """A frame for a known book that we could not apply: its content is lost, so a
        synced book is as good as gapped, and a bad snapshot is a failed recovery."""
        state.stats.bad_frames += 1
        reason = _reason(exc)
        events: list[Event] = list(self._bad(arrival_ns, raw, reason, state.key))
        if state.status is _SYNCED or data.get("type") == "snapshot":
            events.extend(self._out_of_sync(state, arrival_ns, Reason.BAD_FRAME, reason))
        return events

    def _rescale_top(self, state: _Book, old_scale: int) -> None:
        """The book's keys changed scale: bring the last published top to the new one."""
        top = state.top
        if top is not None and not isinstance(top, L1Quote):
            state.top = _rescaled(top, old_scale, state.book._scale)

    def _settle(self, state: _Book, now_ns: int, failed_delta: bool = False) -> None:
        """A synced book that stayed synced `stable_s`, or applied `stable_deltas` deltas
        (not counting `failed_delta`, the one that just broke it), starts a fresh budget."""
        policy = self.recovery
        if state.synced_ns is None:
            return
        applied = state.stats.deltas - state.synced_deltas - failed_delta
        if now_ns - state.synced_ns >= policy.stable_s * 1e9 or applied >= policy.stable_deltas:
            state.failures = 0

    def _out_of_sync(
        self,
        state: _Book,
        arrival_ns: int,
        reason: Reason,
        detail: str,
        failed_delta: bool = False,
    ) -> list[Event]:
        """The book is invalid: report it and resubscribe within the recovery budget."""
        policy = self.recovery
        self._settle(state, arrival_ns, failed_delta)
        state.failures += 1
        state.synced_ns = None
        state.book.clear()
        state.last_seq = -1
        stats = state.stats
        stats.resyncs += 1
        self._pending.pop(state.key, None)
        events: list[Event] = []
        if state.failures >= policy.report_after:
            if state.failures == policy.report_after:  # reported once per episode
                stats.failing += 1
                detail = (
                    f"{state.failures} recoveries failed in a row, the last: {reason}: {detail}; "
                    f"retrying at most every {policy.max_delay_s:g}s"
                )
            if state.status is not SyncStatus.FAILING:
                self._set_status(state, SyncStatus.FAILING, reason, arrival_ns, events, detail)
        else:
            self._set_status(state, SyncStatus.OUT_OF_SYNC, reason, arrival_ns, events, detail)
        delay = policy.delay_ns(state.failures, state.key)
        if delay:
            self._retries[state.key] = (arrival_ns + delay, reason)
        else:
            self._resubscribe(state, arrival_ns, reason)
        return events

    def _resubscribe(self, state: _Book, now_ns: int, reason: Reason) -> None:
        state.stats.resubscribes += 1
        self._pending[state.key] = now_ns  # the snapshot timeout runs from now
        self.pending_actions.append(Resubscribe(state.topic, reason))

    def _set_status(
        self,
        state: _Book,
        status: SyncStatus,
        reason: Reason,
        now_ns: int,
        events: list[Event],
        detail: str = "",
    ) -> None:
        allowed = _TRANSITIONS.get(reason)
        if allowed is None or state.status not in allowed[0] or status not in allowed[1]:
            raise IllegalTransition(
                f"{state.key}: {state.status} -> {status} on {reason} is not in the table"
            )
        if status is not _SYNCED:
            state.top = None
        state.status = status
        grouping = state.grouping
        events.append(
            StatusChanged(now_ns, state.symbol, grouping, status, reason, detail, state.key)
        )

    def _bad(
        self, arrival_ns: int, raw: object, reason: str, topic: str | None = None
    ) -> list[Event]:
        return framing.bad(self.stats, arrival_ns, raw, reason, topic)


def _key(item: str, grouping: int | None) -> str:
    """The stream key of a symbol (+ grouping) or a topic, any spelling; "" if none."""
    try:
        return stream_key(item, grouping)
    except TopicError:
        return ""


def _timestamp(data: dict[str, Any]) -> int | None:
    """Exchange time in ms, or None: a non-integer is never passed on."""
    ts = data.get("timestamp")
    return ts if type(ts) is int else None


def _l1_level(levels: list[Any]) -> tuple[float | None, float | None]:
    if not levels:
        return None, None
    level = levels[0]
    if type(level) not in (list, tuple) or len(level) < 2:
        raise FrameError(f"snapshotL1: a level must be [price, size], got {str(level)[:40]}")
    return to_number(level[0]), size_value(level[1])


def _top_of_book(
    state: _Book, arrival_ns: int, timestamp: int | None, seq: int, top: TopKeys
) -> TopOfBook:
    """The one place a TopOfBook is built: `top` is (bid key, size, ask key, size)."""
    book = state.book
    if book.size_factor is not None:  # contracts -> base coin, exactly
        bid_size, ask_size = top[1], top[3]
        top = (
            top[0],
            None if bid_size is None else book._size(bid_size),
            top[2],
            None if ask_size is None else book._size(ask_size),
        )
    return _top_event_py(
        TopOfBook, arrival_ns, timestamp, state.symbol, state.grouping, seq, top, book._scale
    )


def _top_event_py(
    cls: type[TopOfBook],
    arrival_ns: int,
    timestamp: int | None,
    symbol: str,
    grouping: int | None,
    seq: int,
    top: TopKeys,
    scale: int,
) -> TopOfBook:
    """Pure-Python twin of _fastbook.top_event, the specification: the event of `top`,
    prices = keys / scale (None on an empty side)."""
    return _new(
        cls,
        (
            arrival_ns,
            timestamp,
            symbol,
            grouping,
            seq,
            top[0] / scale if top[1] is not None else None,
            top[1],
            top[2] / scale if top[3] is not None else None,
            top[3],
        ),
    )


# The scanner's path (C mode only) builds its events in one C call and one allocation;
# every other path, and pure-Python mode, uses the twin above.
_c_top_event: Callable[..., TopOfBook]
try:
    from bookengine._fastbook import top_event as _c_top_event
except ImportError:  # not built: then there is no scanner, and this is never called
    _c_top_event = _top_event_py


def _rescaled(top: TopKeys, old: int, new: int) -> TopKeys:
    """A top-of-book of integer keys at scale `old`, at scale `new` (a key that has no
    exact equivalent becomes NaN: it equals no key)."""
    bid, bid_size, ask, ask_size = top

    def key(k: float) -> float:
        if type(k) is not int:
            return k  # -inf / inf: an empty side
        scaled, rest = divmod(k * new, old)
        return math.nan if rest else scaled

    return (key(bid), bid_size, key(ask), ask_size)


def _reason(exc: Exception) -> str:
    if isinstance(exc, FrameError):
        return exc.reason[:300]
    return f"{type(exc).__name__}: {str(exc)[:300]}"
