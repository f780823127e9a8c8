"""`BookSync`: the sans-I/O state machine that keeps every book of one connection in sync.

It never awaits, sleeps, reads a clock or touches a socket: the caller passes the arrival
time with each frame and carries out the `Resubscribe` actions it returns. The same bytes
fed in the same order give the same events, which is what makes replay equal live.

Per book (routed by `data.symbol` + grouping, never by the topic's spelling):

    waiting_for_snapshot --snapshot--> synced --gap / crossed / bad frame--> out_of_sync
            ^                                                                   |
            +----------------- Resubscribe action (unsubscribe + subscribe) ----+

While a book is not synced its deltas are counted and ignored and no top-of-book is
published: only a new snapshot makes it valid again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from bookengine import book as _book_module
from bookengine.book import OrderBook, to_number
from bookengine.errors import BookEngineError, FrameError
from bookengine.events import (
    BadFrame,
    BookUpdate,
    Event,
    ExchangeErrors,
    L1Quote,
    Pong,
    Reason,
    Resubscribe,
    StatusChanged,
    Subscribed,
    SyncStatus,
    TopOfBook,
    Unsubscribed,
)
from bookengine.wire import Ack, ErrorMessage, Topic, decode_parsed

_loads = orjson.loads
_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (~2x faster)
_NO_EVENTS: tuple = ()
_SYNCED = SyncStatus.SYNCED
_SAMPLE = 200  # bytes of a bad frame kept in its event


@dataclass(slots=True)
class TopicStats:
    """Counters of one book (one symbol + grouping)."""

    snapshots: int = 0
    deltas: int = 0
    ignored: int = 0  # deltas received while not synced
    gaps: int = 0
    crossed: int = 0
    stale_snapshots: int = 0
    bad_frames: int = 0
    resyncs: int = 0
    timeouts: int = 0
    top_changes: int = 0
    l1: int = 0

    @property
    def frames(self) -> int:
        return self.snapshots + self.deltas + self.l1 + self.bad_frames


@dataclass
class SyncStats:
    """Counters of a whole `BookSync`; `topics` maps canonical topic -> TopicStats."""

    bad_frames: int = 0
    error_frames: int = 0
    acks: int = 0
    pongs: int = 0
    l1_frames: int = 0
    topics: dict[str, TopicStats] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Every frame fed (derived: the hot path counts per topic only)."""
        routed = sum(t.frames for t in self.topics.values())
        unrouted_bad = self.bad_frames - sum(t.bad_frames for t in self.topics.values())
        return routed + unrouted_bad + self.error_frames + self.acks + self.pongs

    @property
    def gaps(self) -> int:
        return sum(t.gaps for t in self.topics.values())

    @property
    def resyncs(self) -> int:
        return sum(t.resyncs for t in self.topics.values())


class _Book:
    """Sync state of one symbol + grouping."""

    __slots__ = ("symbol", "grouping", "book", "status", "last_seq", "top", "topic", "stats")

    def __init__(self, symbol: str, grouping: int | None, topic: str) -> None:
        self.symbol = symbol
        self.grouping = grouping
        self.book = OrderBook(symbol)
        self.status = SyncStatus.WAITING
        self.last_seq = -1  # seq of the last snapshot/delta applied; -1: none on this socket
        self.top: tuple | None = None
        self.topic = topic  # the spelling we subscribed with: what a resubscribe must send
        self.stats = TopicStats()


class BookSync:
    """Keeps the books of one connection; feed it every frame that connection receives.

    `book_updates=True` also emits a `BookUpdate` for every applied snapshot/delta (off by
    default: most strategies want top-of-book only, and the event costs per frame).
    `snapshot_timeout_s`: a subscribed topic with no snapshot after this long is
    resubscribed (an out-of-range grouping is acknowledged and then stays silent).
    """

    def __init__(self, *, book_updates: bool = False, snapshot_timeout_s: float = 10.0) -> None:
        if snapshot_timeout_s <= 0:
            raise ValueError("snapshot_timeout_s must be > 0")
        self._book_updates = book_updates
        self._timeout_ns = int(snapshot_timeout_s * 1e9)
        self._books: dict[tuple[str, int | None], _Book] = {}
        # Frames are routed by data.symbol + grouping; these caches map what was sent to it.
        self._routes: dict[str, _Book] = {}  # topic as sent -> book (symbol checked per frame)
        self._routes_by_pair: dict[tuple[str, str], _Book] = {}  # (topic as sent, data.symbol)
        self._subscribed: set[str] = set()
        self._pending: dict[str, int] = {}  # topic -> since when we wait for its snapshot
        self.stats = SyncStats()
        # Reads well-formed deltas straight from the bytes (C accelerator; None without it).
        scanner = _book_module.Scanner
        self._scanner = scanner() if scanner is not None else None

    # --- what the I/O layer tells us -------------------------------------------------

    def subscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        """We sent a subscribe for `topics`: expect a snapshot for each."""
        events: list[Event] = []
        for text in topics:
            topic = Topic.parse(text)
            self._subscribed.add(text)
            if topic.kind != "update":
                continue
            self._pending[text] = now_ns
            state = self._books.get((topic.symbol, topic.grouping))
            if state is not None:
                self._set_status(state, SyncStatus.WAITING, Reason.SUBSCRIBED, now_ns, events)
            else:
                events.append(
                    StatusChanged(
                        now_ns, topic.symbol, topic.grouping, SyncStatus.WAITING, Reason.SUBSCRIBED
                    )
                )
        return events

    def unsubscribe(self, topics: Iterable[str], now_ns: int) -> list[Event]:
        """We sent an unsubscribe: those books stop being valid and stop being watched."""
        events: list[Event] = []
        for text in topics:
            topic = Topic.parse(text)
            self._subscribed.discard(text)
            self._pending.pop(text, None)
            for state in self._books.values():
                if state.topic == text or (state.symbol, state.grouping) == (
                    topic.symbol,
                    topic.grouping,
                ):
                    state.book.clear()
                    state.last_seq = -1
                    self._set_status(
                        state, SyncStatus.UNSUBSCRIBED, Reason.UNSUBSCRIBED, now_ns, events
                    )
        return events

    def connection_lost(self, now_ns: int) -> list[Event]:
        """The socket is gone: every book is invalid until the new socket's snapshots.

        Sequence history is forgotten too: a restarted server may start a new chain."""
        events: list[Event] = []
        for state in self._books.values():
            state.book.clear()
            state.last_seq = -1
            if state.status is not SyncStatus.UNSUBSCRIBED:
                self._set_status(
                    state, SyncStatus.OUT_OF_SYNC, Reason.CONNECTION_LOST, now_ns, events
                )
        self._pending.clear()
        return events

    def check_timeouts(self, now_ns: int) -> list[Event]:
        """Call now and then (the Feed does once a second): resubscribe silent topics."""
        events: list[Event] = []
        for text, since in list(self._pending.items()):
            if now_ns - since < self._timeout_ns:
                continue
            self._pending[text] = now_ns  # the resubscribe restarts the clock
            topic = Topic.parse(text)
            state = self._state_for(topic.symbol, topic.grouping, text)
            state.stats.timeouts += 1
            state.stats.resyncs += 1
            waited = (now_ns - since) / 1e9
            events.append(
                StatusChanged(
                    now_ns,
                    topic.symbol,
                    topic.grouping,
                    SyncStatus.OUT_OF_SYNC,
                    Reason.SNAPSHOT_TIMEOUT,
                    f"no snapshot {waited:.1f}s after subscribe",
                )
            )
            state.status = SyncStatus.WAITING
            events.append(Resubscribe(text, Reason.SNAPSHOT_TIMEOUT))
        return events

    # --- queries --------------------------------------------------------------------

    def book(self, symbol: str, grouping: int | None = 0) -> OrderBook | None:
        """The book if it is synced, else None: an unsynced book is never handed out."""
        state = self._books.get((symbol, grouping))
        if state is None or state.status is not _SYNCED:
            return None
        return state.book

    def status(self, symbol: str, grouping: int | None = 0) -> SyncStatus | None:
        state = self._books.get((symbol, grouping))
        return None if state is None else state.status

    def last_seq(self, symbol: str, grouping: int | None = 0) -> int | None:
        state = self._books.get((symbol, grouping))
        return None if state is None or state.last_seq < 0 else state.last_seq

    def books(self) -> dict[str, OrderBook]:
        """Every synced book by canonical topic."""
        return {
            _canonical(s.symbol, s.grouping): s.book
            for s in self._books.values()
            if s.status is _SYNCED
        }

    @property
    def pending(self) -> dict[str, int]:
        """Subscribed topics still waiting for their first snapshot (topic -> since ns)."""
        return dict(self._pending)

    # --- the hot path ----------------------------------------------------------------

    def feed(self, arrival_ns: int, raw: bytes | str) -> Sequence[Event]:
        """Process one received frame. Never raises for bad input: it returns a BadFrame.

        Returns the events it caused, often none; the sequence must not be mutated.
        """
        scanner = self._scanner
        if scanner is not None:
            head = scanner.scan(raw)
            if head is not None:
                # A well-formed delta, read without orjson (see _fastbook.c). If it is the
                # next one of a synced book, apply it here; anything else takes the
                # general path below, which parses the frame again and decides.
                topic, symbol, seq, prev, timestamp = head
                state = self._routes.get(topic)
                if (
                    state is not None
                    and state.status is _SYNCED
                    and prev == state.last_seq
                    and state.symbol == symbol
                ):
                    book = state.book
                    bests = scanner.apply(
                        book._bids, book._asks, book._best_bid, book._best_ask, book._decimals
                    )
                    if bests is not None:
                        book._best_bid, book._best_ask = bests
                        return self._delta_applied(state, arrival_ns, timestamp, seq)
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
        state = self._routes.get(msg.get("topic"))
        if state is None or state.symbol != data.get("symbol"):
            state = self._learn_route(msg, data)
            if type(state) is str:
                return self._bad(arrival_ns, raw, state, msg.get("topic"))
        try:
            # The hot path, inline (a call costs ~0.1 us): the next delta of a synced book.
            if data["type"] == "delta" and state.status is _SYNCED:
                seq = data["seqNum"]
                if data["prevSeqNum"] == state.last_seq and type(seq) is int:
                    return self._apply_delta(state, data, arrival_ns, seq)
            return self._book_frame(state, data, arrival_ns)
        except (KeyError, TypeError, ValueError, BookEngineError) as exc:
            return self._bad_book_frame(state, arrival_ns, raw, exc)

    def _apply_delta(self, state: _Book, data: dict, arrival_ns: int, seq: int) -> Sequence[Event]:
        state.book.apply_delta(data["bids"], data["asks"])
        return self._delta_applied(state, arrival_ns, data.get("timestamp"), seq)

    def _delta_applied(
        self, state: _Book, arrival_ns: int, timestamp: int | None, seq: int
    ) -> Sequence[Event]:
        """The events of an in-sequence delta just applied to a synced book."""
        book = state.book
        state.stats.deltas += 1  # counted once applied: a frame that raised is a bad frame
        state.last_seq = seq
        bid = book._best_bid
        ask = book._best_ask
        if bid >= ask:
            return self._crossed(state, arrival_ns, seq)
        top = (bid, book._bids.get(bid), ask, book._asks.get(ask))
        if top == state.top:
            if self._book_updates:
                return [BookUpdate(arrival_ns, timestamp, state.symbol, state.grouping, seq, book)]
            return _NO_EVENTS
        state.top = top
        state.stats.top_changes += 1
        event = _new(
            TopOfBook,
            (
                arrival_ns,
                timestamp,
                state.symbol,
                state.grouping,
                seq,
                bid / book._scale if top[1] is not None else None,
                top[1],
                ask / book._scale if top[3] is not None else None,
                top[3],
            ),
        )
        if self._book_updates:
            return [
                event,
                BookUpdate(arrival_ns, event.exchange_ms, state.symbol, state.grouping, seq, book),
            ]
        return [event]

    def _book_frame(self, state: _Book, data: dict, arrival_ns: int) -> Sequence[Event]:
        """Every book frame but the in-sequence delta of a synced book."""
        typ = data["type"]
        if typ != "delta":
            return self._other(state, data, arrival_ns)
        stats = state.stats
        stats.deltas += 1
        if state.status is _SYNCED:
            return self._gap(state, arrival_ns, data["prevSeqNum"], data["seqNum"])
        stats.ignored += 1
        if state.last_seq < 0 and not self._pending and state.status is SyncStatus.WAITING:
            # Nobody asked for this book and no snapshot is on its way (e.g. a replay
            # that starts mid-stream): say so once and ask for one.
            return self._out_of_sync(
                state, arrival_ns, Reason.DELTA_BEFORE_SNAPSHOT, "delta before any snapshot"
            )
        return _NO_EVENTS

    def _other(self, state: _Book, data: dict, arrival_ns: int) -> Sequence[Event]:
        typ = data["type"]
        if typ == "snapshot":
            return self._snapshot(state, data, arrival_ns)
        if typ == "snapshotL1":
            return self._l1(state, data, arrival_ns)
        raise FrameError(f"unknown frame type {typ!r}")

    def _snapshot(self, state: _Book, data: dict, arrival_ns: int) -> Sequence[Event]:
        stats = state.stats
        seq = data["seqNum"]
        if type(seq) is not int:
            raise FrameError(f"snapshot seqNum must be an integer, got {seq!r}")
        bids, asks = data["bids"], data["asks"]
        self._pending.pop(state.topic, None)
        if seq < state.last_seq:
            stats.snapshots += 1
            stats.stale_snapshots += 1
            state.book.clear()
            return self._out_of_sync(
                state,
                arrival_ns,
                Reason.STALE_SNAPSHOT,
                f"snapshot seqNum {seq} is older than {state.last_seq} already seen",
            )
        book = state.book
        book.apply_snapshot(bids, asks)
        stats.snapshots += 1
        state.last_seq = seq
        if book.crossed:
            return self._crossed(state, arrival_ns, seq)
        events: list[Event] = []
        if state.status is not _SYNCED:
            self._set_status(state, _SYNCED, Reason.SNAPSHOT, arrival_ns, events, f"seqNum {seq}")
        top = (
            book._best_bid,
            book._bids.get(book._best_bid),
            book._best_ask,
            book._asks.get(book._best_ask),
        )
        if top != state.top:
            state.top = top
            stats.top_changes += 1
            events.append(
                TopOfBook(
                    arrival_ns,
                    data.get("timestamp"),
                    state.symbol,
                    state.grouping,
                    seq,
                    top[0] / book._scale if top[1] is not None else None,
                    top[1],
                    top[2] / book._scale if top[3] is not None else None,
                    top[3],
                )
            )
        if self._book_updates:
            events.append(
                BookUpdate(
                    arrival_ns, data.get("timestamp"), state.symbol, state.grouping, seq, book
                )
            )
        return events

    def _l1(self, state: _Book, data: dict, arrival_ns: int) -> Sequence[Event]:
        bids, asks = data["bids"], data["asks"]
        bid = bids[0] if bids else (None, None)
        ask = asks[0] if asks else (None, None)
        quote = L1Quote(
            arrival_ns,
            data.get("timestamp"),
            state.symbol,
            None if bid[0] is None else to_number(bid[0]),
            None if bid[1] is None else to_number(bid[1]),
            None if ask[0] is None else to_number(ask[0]),
            None if ask[1] is None else to_number(ask[1]),
        )
        self.stats.l1_frames += 1
        state.stats.l1 += 1
        return [quote]

    # --- the rare paths ----------------------------------------------------------------

    def _learn_route(self, msg: dict, data: dict) -> _Book | str:
        """A (topic spelling, data.symbol) pair seen for the first time: find its book.
        Returns the reason as a string if the frame cannot be routed."""
        text, symbol = msg.get("topic"), data.get("symbol")
        if not isinstance(text, str) or not isinstance(symbol, str):
            return "data frame without a topic string and data.symbol"
        try:
            topic = Topic.parse(text)
        except BookEngineError as exc:
            return str(exc)
        state = self._routes_by_pair.get((text, symbol))
        if state is None:
            # L1 quotes get a state of their own (grouping -1), apart from every book.
            grouping = -1 if topic.kind == "snapshotL1" else topic.grouping
            state = self._routes_by_pair[(text, symbol)] = self._state_for(symbol, grouping, text)
        self._routes[text] = state
        return state

    def _state_for(self, symbol: str, grouping: int | None, topic: str) -> _Book:
        key = (symbol, grouping)
        state = self._books.get(key)
        if state is None:
            state = self._books[key] = _Book(symbol, grouping, topic)
            self.stats.topics[_canonical(symbol, grouping)] = state.stats
        if topic in self._subscribed:
            state.topic = topic  # resubscribe with the spelling we subscribed with
        return state

    def _control(self, arrival_ns: int, raw: bytes | str, msg: object) -> Sequence[Event]:
        try:
            message = decode_parsed(msg)
        except BookEngineError as exc:
            return self._bad(arrival_ns, raw, str(exc))
        if isinstance(message, Ack):
            self.stats.acks += 1
            cls = Subscribed if message.event == "subscribe" else Unsubscribed
            return [cls(arrival_ns, tuple(message.channels))]
        if isinstance(message, ErrorMessage):
            return self._errors(arrival_ns, message)
        return self._bad(arrival_ns, raw, f"unexpected frame {type(message).__name__}")

    def _errors(self, arrival_ns: int, message: ErrorMessage) -> Sequence[Event]:
        self.stats.error_frames += 1
        events: list[Event] = [ExchangeErrors(arrival_ns, tuple(message.errors))]
        for error in message.errors:
            if error.arg in self._subscribed:
                # The exchange refused this topic: no snapshot will ever come.
                self._subscribed.discard(error.arg)
                self._pending.pop(error.arg, None)
                try:
                    topic = Topic.parse(error.arg)
                except BookEngineError:
                    continue
                detail = f"{error.code}: {error.message}"
                state = self._books.get((topic.symbol, topic.grouping))
                if state is not None:
                    state.book.clear()
                    self._set_status(
                        state, SyncStatus.UNSUBSCRIBED, Reason.REJECTED, arrival_ns, events, detail
                    )
                else:
                    events.append(
                        StatusChanged(
                            arrival_ns,
                            topic.symbol,
                            topic.grouping,
                            SyncStatus.UNSUBSCRIBED,
                            Reason.REJECTED,
                            detail,
                        )
                    )
        return events

    def _gap(self, state: _Book, arrival_ns: int, prev: object, seq: object) -> Sequence[Event]:
        state.stats.gaps += 1
        if type(seq) is int and seq > state.last_seq:
            detail = f"expected prevSeqNum {state.last_seq}, got {prev} (seqNum {seq})"
        else:
            detail = f"stale or duplicate delta: seqNum {seq} after {state.last_seq}"
        if type(seq) is int:
            state.last_seq = max(state.last_seq, seq)
        state.book.clear()
        return self._out_of_sync(state, arrival_ns, Reason.GAP, detail)

    def _crossed(self, state: _Book, arrival_ns: int, seq: int) -> Sequence[Event]:
        state.stats.crossed += 1
        bid, ask = state.book.best_bid, state.book.best_ask
        detail = f"best bid {bid[0]!r} >= best ask {ask[0]!r} at seqNum {seq}"
        state.book.clear()
        return self._out_of_sync(state, arrival_ns, Reason.CROSSED, detail)

    def _bad_book_frame(
        self, state: _Book, arrival_ns: int, raw: bytes | str, exc: Exception
    ) -> Sequence[Event]:
        """A frame for a known book that we could not apply: its content is lost, so the
        book is as good as gapped."""
        state.stats.bad_frames += 1
        reason = exc.reason if isinstance(exc, FrameError) else f"{type(exc).__name__}: {exc}"
        events: list[Event] = list(self._bad(arrival_ns, raw, reason, state.topic))
        if state.status is _SYNCED:
            state.book.clear()
            events.extend(self._out_of_sync(state, arrival_ns, Reason.BAD_FRAME, reason))
        return events

    def _out_of_sync(
        self, state: _Book, arrival_ns: int, reason: Reason, detail: str
    ) -> list[Event]:
        events: list[Event] = []
        self._set_status(state, SyncStatus.OUT_OF_SYNC, reason, arrival_ns, events, detail)
        state.status = SyncStatus.WAITING  # the resubscribe below brings a snapshot
        state.stats.resyncs += 1
        state.top = None
        self._pending[state.topic] = arrival_ns
        events.append(Resubscribe(state.topic, reason))
        return events

    def _set_status(
        self,
        state: _Book,
        status: SyncStatus,
        reason: Reason,
        now_ns: int,
        events: list[Event],
        detail: str = "",
    ) -> None:
        if status is not _SYNCED:
            state.top = None
        state.status = status
        events.append(StatusChanged(now_ns, state.symbol, state.grouping, status, reason, detail))

    def _bad(
        self, arrival_ns: int, raw: object, reason: str, topic: str | None = None
    ) -> list[Event]:
        self.stats.bad_frames += 1
        sample = (
            raw[:_SAMPLE]
            if isinstance(raw, bytes)
            else str(raw)[:_SAMPLE].encode("utf-8", "replace")
        )
        return [BadFrame(arrival_ns, reason, sample, topic)]


def _canonical(symbol: str, grouping: int | None) -> str:
    if grouping == -1:
        return f"snapshotL1:{symbol}"
    return f"update:{symbol}" if grouping is None else f"update:{symbol}_{grouping}"
