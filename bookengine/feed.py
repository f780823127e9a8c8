"""`Feed`: the live I/O around `BookSync`: sockets, keepalive, watchdogs, reconnects, callbacks.

    async with Feed(["BTC-USD", "BTC-PERP"], url="production", on_top=print) as feed:
        await feed.run_forever()

Topics are spread over connections (<= 100 topics each, spot and futures apart), each
with its own `BookSync`. The reader task of a connection only stamps, parses and hands
off; callbacks run on one dispatcher task, so a slow or failing callback never stalls a
socket.

Callbacks run on the event loop: an `async def` callback that awaits lets the readers
run meanwhile, but a plain function that blocks (sleep, heavy compute) blocks the readers
too until it returns. Keep them short, or hand the work to a thread or process.

Hand-off policy (bounded): top-of-book events are *conflated* per topic: if the
dispatcher is behind, only the newest top of each topic is kept, and it is always
delivered (counted in `stats().conflated`). Every other event waits in one queue of at
most `queue_size`: when it is full, the oldest event that is not a status change (a book
update, L1 quote, bad frame, exchange error) is dropped and counted in
`stats().dropped`; only if the queue holds nothing but status changes is the oldest of
those dropped (`stats().dropped_status`; `feed.status()` always has the current one).
`async for event in feed` has its own queue of `queue_size`, dropping oldest first.
`close()` delivers what is pending for at most `close_timeout` seconds.

Symbols and topics may be given in any spelling `bookengine.naming` knows (`btc-usd`,
`BTC-PERP-USDT`, `BTCPFC`, `snapshotL1:BTC-PERP_0`): the feed subscribes with the socket
name, and every query (`book`, `status`, `last_seq`, `quote`, `wait_synced`) takes the
spelling you used. Events carry the socket name (`symbol`) and the stream key (`topic`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from bookengine import clients, naming
from bookengine.auth import Credentials, RedactAuthFilter, is_auth_request, redact_auth
from bookengine.book import OrderBook
from bookengine.errors import ArgumentError, BookEngineError, ExchangeError
from bookengine.events import (
    BadFrame,
    BookUpdate,
    Event,
    ExchangeErrors,
    L1Quote,
    OrderNotification,
    OtcQuote,
    StatusChanged,
    Subscribed,
    SyncStatus,
    TopOfBook,
    Trade,
    TradeGap,
    _topic,
)
from bookengine.instruments import Instruments
from bookengine.private import NOTIFICATIONS, PrivateSync, is_private, otc_request
from bookengine.readers import Readers
from bookengine.sync import BookSync, RecoveryPolicy, TopicStats, Units
from bookengine.trades import TradeSync
from bookengine.wire import (
    HOSTS,
    MAX_TOPICS_PER_CONNECTION,
    PATHS,
    Topic,
    encode_ping,
    encode_subscribe,
    encode_unsubscribe,
    parse_item,
    stream_key,
)

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 2**20  # BTSE frames are ~1 kB; a frame past this closes the socket
MAX_CONNECTIONS = 50  # BTSE allows 50 connections per IP (PROTOCOL.md)
CLOSED_BY_APP = "closed by the application"  # the close reason recorded when we stop
_LATENCY_SAMPLES = 4096


# under "websockets": its frames show at -vv only, as every socket's do
_PRIVATE_LOG = logging.getLogger("websockets.client.private")
_PRIVATE_LOG.addFilter(RedactAuthFilter())


class FeedTap(Protocol):
    """What the recorder (or anyone) sees of every connection, on the reader task.

    Must be cheap and never block: it runs before the frame is even parsed."""

    def on_open(self, conn_id: int, now_ns: int, url: str) -> None: ...
    def on_frame(self, conn_id: int, arrival_ns: int, raw: bytes) -> None: ...
    def on_sent(self, conn_id: int, now_ns: int, payload: str) -> None: ...
    def on_close(self, conn_id: int, now_ns: int, code: int | None, reason: str) -> None: ...
    def on_event(self, conn_id: int, event: Event) -> None: ...
    def on_call(self, conn_id: int, now_ns: int, call: str, topics: list[str]) -> None:
        """A call the Feed makes into the connection's BookSync (`subscribe`,
        `connection_lost`, `check_timeouts` when something is waiting): every input the
        core gets besides frames, so a replay can make the very same calls. Optional."""


class Connected(NamedTuple):
    """A connection is open and its topics were subscribed."""

    conn_id: int
    url: str
    topics: tuple[str, ...]


class Reconnecting(NamedTuple):
    """A connection dropped; the feed retries after `delay_s` (attempt counts from 1)."""

    conn_id: int
    url: str
    attempt: int
    delay_s: float
    reason: str


FeedEvent = Event | Connected | Reconnecting
"""What the feed hands out: `BookSync`'s events and its own connection news."""

# A callback may be a plain function or an `async def` (its awaitable is awaited); what
# either returns is ignored.
TopCallback = Callable[[TopOfBook], object] | Callable[[TopOfBook], Awaitable[object]]
BookCallback = Callable[[BookUpdate], object] | Callable[[BookUpdate], Awaitable[object]]
StatusCallback = (
    Callable[[StatusChanged | Connected | Reconnecting], object]
    | Callable[[StatusChanged | Connected | Reconnecting], Awaitable[object]]
)
ErrorCallback = (
    Callable[[BadFrame | ExchangeErrors | TradeGap], object]
    | Callable[[BadFrame | ExchangeErrors | TradeGap], Awaitable[object]]
)
L1Callback = Callable[[L1Quote], object] | Callable[[L1Quote], Awaitable[object]]
TradeCallback = Callable[[Trade], object] | Callable[[Trade], Awaitable[object]]
OtcCallback = Callable[[OtcQuote], object] | Callable[[OtcQuote], Awaitable[object]]
NotificationCallback = (
    Callable[[OrderNotification], object] | Callable[[OrderNotification], Awaitable[object]]
)

_E = TypeVar("_E", bound=FeedEvent)


@dataclass
class TopicLatency:
    """Latency samples of one topic (the most recent 4096)."""

    exchange_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_SAMPLES))
    callback_us: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCY_SAMPLES))

    def summary(self) -> dict[str, float | None]:
        exchange = sorted(self.exchange_ms)  # once per series, for both percentiles
        callback = sorted(self.callback_us)
        return {
            "exchange_ms_p50": percentile(exchange, 50),
            "exchange_ms_p99": percentile(exchange, 99),
            "callback_us_p50": percentile(callback, 50),
            "callback_us_p99": percentile(callback, 99),
        }


def percentile(ordered: list[float], pct: float) -> float | None:
    """The `pct` percentile of sorted values (None if there are none)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


@dataclass
class FeedStats:
    """Counters of a whole feed (`Feed.stats()`); per-stream ones are `topic_stats()`."""

    frames: int = 0
    bytes: int = 0
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0
    bad_frames: int = 0
    error_frames: int = 0
    callback_errors: int = 0
    conflated: int = 0
    dropped: int = 0
    dropped_status: int = 0
    dropped_trades: int = 0  # only ever when the queue held nothing but trades
    unsolicited: int = 0
    resubscribes: int = 0
    _latency_of: Callable[[], dict[str, dict[str, float | None]]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def latency(self) -> dict[str, dict[str, float | None]]:
        """Per-topic percentiles of the last 4096 exchange lags (ms) and arrival ->
        callback times (us), computed when read: the counters above are cheap enough to
        poll every millisecond, this sorts every series, so read it when it is needed."""
        return {} if self._latency_of is None else self._latency_of()


class Feed:
    """Live books for `topics` (bare symbols mean `update:SYM_0`) from a BTSE OSS endpoint.

    `url`: "production" (default), "testnet", a base such as "ws://127.0.0.1:8765" (the
    spot/futures path is added per symbol), or a full URL with a path (used for all).

    Raises `TopicError` for a symbol or topic no spelling rule knows, and `ArgumentError`
    for other bad arguments (a bad url, timeouts <= 0, more topics than 50 connections
    carry). Once running, nothing the exchange sends raises: it becomes events.
    """

    def __init__(
        self,
        topics: Iterable[str] | str,
        *,
        url: str = "production",
        on_top: TopCallback | None = None,
        on_book: BookCallback | None = None,
        on_status: StatusCallback | None = None,
        on_error: ErrorCallback | None = None,
        on_l1: L1Callback | None = None,
        on_trade: TradeCallback | None = None,
        on_otc_quote: OtcCallback | None = None,
        on_notification: NotificationCallback | None = None,
        trades: bool = False,
        otc_quotes: Iterable[tuple[Any, ...] | str] = (),
        notifications: bool = False,
        credentials: Credentials | None = None,
        auth_attempts: int = 5,
        delivery: str = "queued",
        client: str = "websockets",
        book_updates: bool = False,
        ping_interval: float = 15.0,
        snapshot_timeout: float = 10.0,
        silence_timeout: float = 30.0,
        backoff: tuple[float, float] = (0.25, 30.0),
        recovery: RecoveryPolicy | None = None,
        queue_size: int = 10_000,
        close_timeout: float = 5.0,
        tap: FeedTap | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_connections: int = MAX_CONNECTIONS,
        sizes: str = "contracts",
        instruments: Instruments | None = None,
    ) -> None:
        if isinstance(topics, str):
            topics = [topics]  # one symbol, not its letters
        topics = list(topics)
        named = [t for t in topics if is_private(t)]  # private streams named as topics
        named_otc = [t for t in named if t.startswith("otc:")]
        private = [otc_request(q).topic for q in [*otc_quotes, *named_otc]]
        if notifications or on_notification is not None or any(
            not t.startswith("otc:") for t in named
        ):
            private.append(NOTIFICATIONS)
        if private and credentials is None:
            raise ArgumentError(
                "OTC quotes and notifications need credentials: "
                "Feed(..., credentials=Credentials.from_env())"
            )
        if auth_attempts < 1:
            raise ArgumentError("auth_attempts must be >= 1")
        if delivery not in ("queued", "inline"):
            raise ArgumentError(f"delivery must be 'queued' or 'inline', got {delivery!r}")
        self.inline = delivery == "inline"
        clients.check_client(client)
        self.client = client  # the WebSocket client of the public streams (clients.py)
        callbacks = (on_top, on_book, on_status, on_error, on_l1, on_trade, on_otc_quote,
                     on_notification)  # fmt: skip
        if self.inline and any(inspect.iscoroutinefunction(c) for c in callbacks):
            raise ArgumentError(
                "delivery='inline' runs callbacks on the socket reader: they must be plain "
                "functions (an async def one would stall the socket while it awaits)"
            )
        self.credentials = credentials
        self.auth_attempts = auth_attempts
        self._last_nonce = 0
        parsed = [parse_item(t) for t in topics if not is_private(t)]
        if trades or on_trade is not None:  # the public trades of every symbol listed
            parsed += [Topic("trades", t.symbol, None) for t in parsed]
        # one subscription per stream, whatever spellings name it
        wanted = list(dict.fromkeys(t.wire for t in {t.key: t for t in parsed}.values()))
        wanted += list(dict.fromkeys(private))
        if not wanted:
            raise ArgumentError("Feed needs at least one symbol or topic")
        if queue_size < 1 or ping_interval <= 0 or snapshot_timeout <= 0 or silence_timeout <= 0:
            raise ArgumentError("queue_size, ping_interval and the timeouts must be > 0")
        if not 0 < backoff[0] <= backoff[1]:
            raise ArgumentError("backoff must be (first delay, cap) with 0 < first <= cap")
        self.topics = wanted
        self._on_top = on_top
        self._on_book = on_book
        self._on_status = on_status
        self._on_error = on_error
        self._on_l1 = on_l1
        self._on_trade = on_trade
        self._on_otc_quote = on_otc_quote
        self._on_notification = on_notification
        self.book_updates = book_updates or on_book is not None
        self.ping_interval = ping_interval
        self.snapshot_timeout = snapshot_timeout
        self.silence_timeout = silence_timeout
        self.backoff = backoff
        self.recovery = recovery
        self.queue_size = queue_size
        self.close_timeout = close_timeout
        self.tap = tap
        self.max_frame_bytes = max_frame_bytes
        if sizes not in ("contracts", "base"):
            raise ArgumentError(f"sizes must be 'contracts' (as sent) or 'base', got {sizes!r}")
        self.sizes = sizes  # what the events carry: "base" falls back to "contracts" (warned)
        self.instruments = instruments
        self._url = url
        plan = _plan(wanted, url)
        if len(plan) > max_connections:
            raise ArgumentError(
                f"{len(wanted)} topics need {len(plan)} connections (100 topics each); BTSE "
                f"allows {max_connections} per IP: subscribe fewer, or split them over hosts"
            )
        self._connections = [
            _Connection(self, i, conn_url, chunk) for i, (conn_url, chunk) in enumerate(plan)
        ]
        self._stats = FeedStats(_latency_of=self._latency_summary)
        # by (symbol, grouping): an event's topic name is built only when asked
        self._latency: dict[tuple[str, int | None], TopicLatency] = {}
        self._tops: dict[tuple[str, int | None], TopOfBook] = {}  # conflated, to dispatch
        self._others: deque[FeedEvent] = deque()
        self._readers: Readers[FeedEvent] = Readers(queue_size)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._logged: set[tuple[str, str]] = set()
        self._closed = asyncio.Event()
        self._close_deadline: float | None = None
        self._starting = False
        self._stopping = False

    def nonce(self, now_ns: int) -> int:
        """A fresh auth nonce: the time in ms, strictly increasing over every socket of
        this feed (two sockets authenticating in one millisecond must not share one)."""
        self._last_nonce = max(now_ns // 1_000_000, self._last_nonce + 1)
        return self._last_nonce

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks or self._starting:
            return
        self._starting = True  # before the await below: a second start() returns
        await self._load_units()
        if self._stopping:  # close() came while the metadata was fetched
            return
        self._tasks.append(asyncio.create_task(self._dispatch(), name="bookengine-dispatch"))
        for conn in self._connections:
            self._tasks.append(asyncio.create_task(conn.run(), name=f"bookengine-conn-{conn.id}"))

    async def _load_units(self) -> None:
        """With `sizes="base"` (or given instruments): every book learns its tick and, for
        futures, its contract size. Without metadata the feed runs in contracts, warned."""
        if self.instruments is None and self.sizes == "base":
            try:
                self.instruments = await asyncio.to_thread(
                    Instruments.fetch, self._url, timeout=5.0, retries=2
                )
            except BookEngineError as exc:
                log.warning("sizes='base' needs instrument metadata: %s; sizes stay in "
                            "contracts, as sent", exc)  # fmt: skip
                self.sizes = "contracts"
                return
        if self.instruments is None:
            return
        units: dict[str, Units] = {}
        missing = []
        for conn in self._connections:
            if isinstance(conn.sync, PrivateSync):
                continue
            for topic in conn.topics:
                symbol = Topic.parse(topic).symbol
                instrument = self.instruments.get(symbol)
                if instrument is None:
                    missing.append(symbol)
                    continue
                factor = instrument.contract_size if instrument.futures else None
                units[symbol] = Units(instrument.tick, factor if self.sizes == "base" else None)
        if missing and self.sizes == "base":
            log.warning("no instrument metadata for %s: their sizes stay in contracts",
                        ", ".join(sorted(set(missing))))  # fmt: skip
        for conn in self._connections:
            conn.sync.set_units(units)

    async def close(self) -> None:
        """Close every socket and stop; pending callbacks are delivered first, for at most
        `close_timeout` seconds (what is left then is counted in `stats().dropped`)."""
        self._stopping = True  # a start() still fetching metadata stops there
        for conn in self._connections:  # first, so no connection opens a new session
            conn.stopping = True
        # every socket's close handshake at once (each waits at most its close_timeout)
        await asyncio.gather(*(conn.close() for conn in self._connections))
        if self._tasks:
            dispatcher, *readers = self._tasks
            if readers:  # let them see their sockets close
                await asyncio.wait(readers, timeout=2.0)
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for conn in self._connections:
                conn.abort()  # whatever is still open (a handshake that raced the stop)
            self._close_deadline = time.monotonic() + self.close_timeout
            self._wake.set()
            self._closed.set()
            if dispatcher is not asyncio.current_task():  # close() from a callback: the
                # dispatcher is this very task; it ends on its own once the callback returns
                done, _ = await asyncio.wait({dispatcher}, timeout=self.close_timeout + 0.5)
                if not done:  # a callback that never returns
                    dispatcher.cancel()
                    await asyncio.gather(dispatcher, return_exceptions=True)
            self._tasks = []
        self._readers.close()

    async def __aenter__(self) -> Feed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run_forever(self) -> None:
        """Run until cancelled (Ctrl-C in the CLI) or `close()`."""
        await self.start()
        await self._closed.wait()

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until every subscribed stream is synced (a book has its snapshot, an L1
        stream its first quote). `TimeoutError` names those that are not; `ExchangeError`
        as soon as the exchange rejected one."""
        deadline = time.monotonic() + timeout
        while True:
            # trade streams are not waited for: a quiet market may have no recent trades
            every = {t: self.status(t) for t in self.topics}
            rejected = [t for t, s in every.items() if s is SyncStatus.UNSUBSCRIBED]
            if rejected:
                raise ExchangeError(None, f"rejected: {', '.join(rejected[:10])}", rejected[0])
            statuses = {t: s for t, s in every.items() if is_private(t) or _stream_of(t) == "oss"}
            missing = [t for t, s in statuses.items() if s is not SyncStatus.SYNCED]
            if not missing:
                return
            if time.monotonic() > deadline:
                shown = ", ".join(f"{t} ({statuses[t] or 'not subscribed yet'})" for t in missing)
                raise TimeoutError(f"not synced after {timeout}s: {shown[:1000]}")
            await asyncio.sleep(0.01)

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        return self._readers.reader()

    # --- queries --------------------------------------------------------------------------

    def book(self, symbol: str, grouping: int | None = 0) -> OrderBook | None:
        """The synced book of `symbol` (any spelling, or a topic), or None while it is not
        in sync."""
        conn = self._conn_of(symbol, grouping)
        return None if conn is None else conn.sync.book(symbol, grouping)

    def last_seq(self, symbol: str, grouping: int | None = 0) -> int | None:
        conn = self._conn_of(symbol, grouping)
        return None if conn is None else conn.sync.last_seq(symbol, grouping)

    def status(self, symbol: str, grouping: int | None = 0) -> SyncStatus | None:
        """The sync status of a book or L1 stream (any spelling), or of a private stream
        (`otc:BTC-USD:1:BTC`, `notificationApiV4`); None if not subscribed."""
        if is_private(symbol):
            for slot in self._connections:
                if symbol in slot.keys:
                    return slot.sync.status(symbol)
            return None
        conn = self._conn_of(symbol, grouping)
        return None if conn is None else conn.sync.status(symbol, grouping)

    def last_trade(self, symbol: str) -> Trade | None:
        """The newest trade of `symbol` (any spelling), with `trades=True`."""
        conn = self._conn_of(f"trades:{symbol}", None)
        if conn is None or not isinstance(conn.sync, TradeSync):
            return None
        return conn.sync.last_trade(symbol)

    def trade_checkpoints(self) -> list[tuple[int, dict[str, Any]]]:
        """(conn id, TradeSync.checkpoint() entry) of every trade stream (the recorder
        writes them beside its book checkpoints)."""
        return [
            (conn.id, entry)
            for conn in self._connections
            if isinstance(conn.sync, TradeSync)
            for entry in conn.sync.checkpoint()
        ]

    def quote(self, topic: str) -> L1Quote | None:
        """The latest quote of a `snapshotL1:` stream (any spelling)."""
        conn = self._conn_of(topic, None)
        return None if conn is None else conn.sync.quote(topic)

    def _conn_of(self, item: str, grouping: int | None) -> _Connection | None:
        """The connection that carries the stream `item` names."""
        try:
            key = stream_key(item, grouping)
        except (ValueError, TypeError):
            return None
        for conn in self._connections:
            if key in conn.keys:
                return conn
        return None

    @property
    def connections(self) -> list[tuple[int, str, list[str]]]:
        """(conn_id, url, topics) of every connection slot."""
        return [(c.id, c.url, c.topics) for c in self._connections]

    def topic_stats(self) -> dict[str, TopicStats]:
        """Per-book counters (frames, gaps, resyncs, ...) by canonical topic."""
        merged: dict[str, TopicStats] = {}
        for conn in self._connections:
            merged.update(conn.sync.stats.topics)
        return merged

    def stats(self) -> FeedStats:
        """The feed's counters, summed now (cheap: fine to poll every millisecond);
        `.latency` computes the percentiles when it is read."""
        stats = self._stats
        stats.gaps = sum(c.sync.stats.gaps for c in self._connections)
        stats.resyncs = sum(c.sync.stats.resyncs for c in self._connections)
        stats.bad_frames = sum(c.sync.stats.bad_frames for c in self._connections)
        stats.error_frames = sum(c.sync.stats.error_frames for c in self._connections)
        stats.unsolicited = sum(c.sync.stats.unsolicited for c in self._connections)
        stats.resubscribes = sum(c.sync.stats.resubscribes for c in self._connections)
        return stats

    def _latency_summary(self) -> dict[str, dict[str, float | None]]:
        return {_topic(*key): lat.summary() for key, lat in self._latency.items()}

    # --- events from the connections (reader tasks) -----------------------------------

    def _handle(self, conn: _Connection, events: Iterable[Event]) -> None:
        tap = self.tap
        if self.inline:
            for event in events:
                if tap is not None:
                    tap.on_event(conn.id, event)
                if type(event) is StatusChanged:
                    conn.status_changed(event)
                elif type(event) is Subscribed and isinstance(conn.sync, TradeSync):
                    conn.synced_once = True
                self._deliver_inline(event)
            return
        tops = self._tops
        for event in events:
            if tap is not None:
                tap.on_event(conn.id, event)
            if type(event) is TopOfBook:  # per frame: kept short
                key = event.symbol, event.grouping
                if key in tops:
                    self._stats.conflated += 1
                tops[key] = event
                if event.exchange_ms is not None:
                    latency = self._latency.get(key) or self._latency_of(key)
                    latency.exchange_ms.append(event.arrival_ns / 1e6 - event.exchange_ms)
            else:
                if type(event) is StatusChanged:
                    conn.status_changed(event)
                elif type(event) is Subscribed and isinstance(conn.sync, TradeSync):
                    conn.synced_once = True  # a quiet market may send no trade for long
                self._queue(event)
        self._wake.set()

    def _notify(self, event: Connected | Reconnecting) -> None:
        """Feed-level news (connected, reconnecting) for on_status and iterators."""
        if self.inline:
            self._deliver_inline(event)
            return
        self._queue(event)
        self._wake.set()

    def _deliver_inline(self, event: FeedEvent) -> None:
        """`delivery="inline"`: the callback runs now, on the reader, before the next
        frame is read: no hand-off, no conflation, nothing dropped."""
        if self._readers.queues:  # put() is a call; usually nobody iterates
            self._stats.dropped += self._readers.put(event)
        callback: Callable[[Any], object] | None
        if type(event) is TopOfBook:  # per frame: kept short
            on_top = self._on_top
            if event.exchange_ms is None and on_top is None:
                return  # nothing to measure, nobody to call
            key = event.symbol, event.grouping
            latency = self._latency.get(key) or self._latency_of(key)
            if event.exchange_ms is not None:
                latency.exchange_ms.append(event.arrival_ns / 1e6 - event.exchange_ms)
            if on_top is None:
                return
            # arrival -> callback, as the queued delivery's
            latency.callback_us.append((time.time_ns() - event.arrival_ns) / 1e3)
            name, callback = "top", cast(Callable[[Any], object], on_top)
        else:
            name, callback = self._route(event)
            if callback is None:
                return
        try:
            callback(event)
        except Exception as exc:  # a strategy's bug must not kill the reader
            self._callback_failed(name, exc, event)

    def _route(self, event: FeedEvent) -> tuple[str, Callable[[Any], object] | None]:
        """The callback of an event, by its exact type (and its name for the logs)."""
        kind = type(event)
        if kind is TopOfBook:
            return "top", self._on_top
        if kind is BookUpdate:
            return "book", self._on_book
        if kind is L1Quote:
            return "l1", self._on_l1
        if kind is Trade:
            return "trade", self._on_trade
        if kind is OtcQuote:
            return "otc_quote", self._on_otc_quote
        if kind is OrderNotification:
            return "notification", self._on_notification
        if kind is BadFrame or kind is ExchangeErrors or kind is TradeGap:
            return "error", self._on_error
        if kind is StatusChanged or kind is Connected or kind is Reconnecting:
            return "status", self._on_status
        return "", None  # Subscribed, Unsubscribed and Pong have no callback

    def _queue(self, event: FeedEvent) -> None:
        """Queue a non-top event within `queue_size` (the policy is in the module doc)."""
        others = self._others
        if len(others) >= self.queue_size:
            for i, queued in enumerate(others):
                if type(queued) not in _KEPT:
                    del others[i]
                    self._stats.dropped += 1
                    break
            else:  # nothing but statuses and trades: a status goes first, a trade last
                for i, queued in enumerate(others):
                    if type(queued) not in _TRADES:
                        del others[i]
                        self._stats.dropped_status += 1
                        break
                else:
                    others.popleft()
                    self._stats.dropped_trades += 1
                    if self._stats.dropped_trades == 1:
                        log.warning("the consumer is so slow that trades are being dropped "
                                    "(stats().dropped_trades)")  # fmt: skip
        others.append(event)

    def _latency_of(self, key: tuple[str, int | None]) -> TopicLatency:
        """The latency samples of a book stream, by (symbol, grouping)."""
        latency = self._latency.get(key)
        if latency is None:
            latency = self._latency[key] = TopicLatency()
        return latency

    # --- the dispatcher -------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._others or self._tops:
                if self._close_deadline is not None and time.monotonic() > self._close_deadline:
                    self._stats.dropped += len(self._others) + len(self._tops)
                    self._others.clear()
                    self._tops.clear()
                    break
                if self._others:
                    event = self._others.popleft()
                else:
                    event = self._tops.pop(next(iter(self._tops)))
                await self._deliver(event)
            if self._closed.is_set():
                return

    async def _deliver(self, event: FeedEvent) -> None:
        self._stats.dropped += self._readers.put(event)
        name, callback = self._route(event)
        if callback is None:
            return
        if type(event) is TopOfBook:
            self._latency_of((event.symbol, event.grouping)).callback_us.append(
                (time.time_ns() - event.arrival_ns) / 1e3
            )
        await self._call(name, callback, event)

    async def _call(self, name: str, callback: Callable[[_E], object], event: _E) -> None:
        """Run one callback (awaiting what an `async def` one returns); what it raises is
        counted and logged, never propagated."""
        try:
            result = callback(event)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a strategy's bug must not kill the feed
            self._callback_failed(name, exc, event)

    def _callback_failed(self, name: str, exc: Exception, event: object) -> None:
        self._stats.callback_errors += 1
        key = (name, type(exc).__name__)
        if key not in self._logged:
            self._logged.add(key)
            log.error(
                "on_%s callback raised %s on %r (logged once per callback and exception "
                "type; see stats().callback_errors)",
                name,
                type(exc).__name__,
                event,
                exc_info=exc,
            )


def _stream_of(topic: str) -> str:
    return Topic.parse(topic).stream


def _plan(topics: list[str], url: str) -> list[tuple[str, list[str]]]:
    """Split topics over connections: one endpoint per market and stream (books on OSS,
    trades on the main socket), <= 100 topics each."""
    by_url: dict[tuple[str, str], list[str]] = {}
    for topic in topics:
        if is_private(topic):  # OTC quotes on /ws/otc, notifications on /ws/spot
            # one socket per OTC stream: BTSE's quote frames may not echo the clOrderId
            # that would tell two streams of one socket apart
            otc = topic.startswith("otc:")
            path = "/ws/otc" if otc else PATHS[("main", "spot")]
            key = (_private_endpoint(url, path), topic if otc else "private")
            by_url.setdefault(key, []).append(topic)
            continue
        parsed = Topic.parse(topic)
        market = naming.market(parsed.symbol)
        endpoint = _endpoint(url, market, parsed.stream)
        by_url.setdefault((endpoint, parsed.stream), []).append(topic)  # never mixed
    if {e for e, s in by_url if s == "main"} & {e for e, s in by_url if s == "oss"}:
        raise ArgumentError(
            f"{url!r} is one full URL for books and trades, which BTSE serves on different "
            "sockets: give a base URL (ws://host:port) or an OSS path (.../ws/oss/spot)"
        )
    plan = []
    for (conn_url, _), group in by_url.items():
        for i in range(0, len(group), MAX_TOPICS_PER_CONNECTION):
            plan.append((conn_url, group[i : i + MAX_TOPICS_PER_CONNECTION]))
    return plan


# dropped last when the queue is full (trades: never conflated, never dropped silently)
_KEPT = (StatusChanged, Connected, Reconnecting, Trade, TradeGap, OrderNotification)
_TRADES = (Trade, TradeGap, OrderNotification)


def _private_endpoint(url: str, path: str) -> str:
    """The URL of a private socket: `path` on the host `url` names."""
    if url in HOSTS:
        return HOSTS[url] + path
    if not url.startswith(("ws://", "wss://")):
        raise ArgumentError(f"url must be 'production', 'testnet' or ws(s)://..., got {url!r}")
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.partition('/')[0]}{path}"


def _endpoint(url: str, market: str, stream: str = "oss") -> str:
    """The URL of one endpoint: `url` is "production", "testnet", a base
    (ws://host:port: each endpoint's path is added) or a full OSS URL (used as given for
    books; its main twin, /ws/spot or /ws/futures on the same host, for trades)."""
    if url in HOSTS:
        return HOSTS[url] + PATHS[(stream, market)]
    if not url.startswith(("ws://", "wss://")):
        raise ArgumentError(f"url must be 'production', 'testnet' or ws(s)://..., got {url!r}")
    scheme, rest = url.split("://", 1)
    host, slash, path = rest.partition("/")
    if not slash or not path.strip("/"):
        return f"{scheme}://{host}" + PATHS[(stream, market)]
    if stream == "main":
        for (kind, mkt), oss_path in PATHS.items():
            if kind == "oss" and ("/" + path).rstrip("/").endswith(oss_path):
                return url.rstrip("/")[: -len(oss_path)] + PATHS[("main", mkt)]
    return url  # a full URL: used as given


class _Connection:
    """One socket slot: connect, subscribe, read, keep alive, watch, reconnect."""

    def __init__(self, feed: Feed, conn_id: int, url: str, topics: list[str]) -> None:
        self.feed = feed
        self.id = conn_id
        self.url = url
        self.topics = topics
        # books and L1 on an OSS socket, trades on a main one (the plan never mixes them)
        self.sync: BookSync | TradeSync | PrivateSync
        if all(is_private(t) for t in topics):
            self.sync = PrivateSync(topics)
        elif all(Topic.parse(t).kind == "trades" for t in topics):
            self.sync = TradeSync()
        else:
            self.sync = BookSync(
                book_updates=feed.book_updates,
                snapshot_timeout_s=feed.snapshot_timeout,
                recovery=feed.recovery,
            )
        self.keys = {t if is_private(t) else Topic.parse(t).key for t in topics}
        self.gave_up = False  # a private connection whose key was refused too often
        self.synced_once = False  # a book synced on the current socket
        self._failing_logged: dict[str, int] = {}
        self.ws: clients.Socket | None = None
        self.stopping = False
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._last_rx = time.monotonic()

    async def run(self) -> None:
        attempt = 0
        while not self.stopping:
            reason = "closed"
            self.synced_once = False
            try:
                private = isinstance(self.sync, PrivateSync)
                self.ws = await clients.connect(
                    # private streams keep websockets: its frame log is the redacted one
                    "websockets" if private else self.feed.client,
                    self.url,
                    max_size=self.feed.max_frame_bytes,
                    open_timeout=10,
                    close_timeout=2,
                    logger=_PRIVATE_LOG if private else None,
                )
            except Exception as exc:  # refused, a redirect we cannot follow, TLS, DNS...
                reason = f"connect failed: {type(exc).__name__}: {exc}"
            else:
                if self.stopping:  # close() came while the handshake was under way
                    await self.close()
                    return
                try:
                    reason = await self._session(self.ws)
                except Exception as exc:  # a bug (ours or a tap's) must not end the feed
                    log.exception("connection %d: session failed", self.id)
                    reason = f"error: {exc!r}"
                    await self.close()
            if self.stopping:
                return
            sync = self.sync
            if isinstance(sync, PrivateSync) and sync.auth_failed is not None:
                self.synced_once = False  # refused: back off as after a useless socket
            if isinstance(sync, PrivateSync) and sync.auth_failures >= self.feed.auth_attempts:
                log.error("connection %d to %s: authentication refused %d times in a row "
                          "(%s); not retried: check the API key and secret", self.id, self.url,
                          sync.auth_failures, sync.auth_failed)  # fmt: skip
                self.gave_up = True
                now = time.time_ns()
                self._call("give_up", now)  # recorded: a replay gives the same statuses
                self.feed._handle(self, sync.give_up(now))
                return
            # The backoff restarts only after a socket that was of use (a book synced):
            # a server that accepts and then closes at once is retried ever more slowly.
            attempt = 1 if self.synced_once else attempt + 1
            self.feed._stats.reconnects += 1
            first, cap = self.feed.backoff
            delay = min(cap, first * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)  # jitter
            log.warning(
                "connection %d to %s: %s; retry %d in %.2fs",
                self.id,
                self.url,
                reason,
                attempt,
                delay,
            )
            self.feed._notify(Reconnecting(self.id, self.url, attempt, delay, reason))
            await asyncio.sleep(delay)

    def status_changed(self, event: StatusChanged) -> None:
        """Notice what the operator must know of a stream's status."""
        log.debug("connection %d: %s %s (%s) %s", self.id, event.topic, event.status,
                  event.reason, event.detail)  # fmt: skip
        if event.status is SyncStatus.SYNCED:
            self.synced_once = True
        elif event.status is SyncStatus.FAILING:
            stats = self.sync.stats.topics.get(event.topic)
            if stats is not None and stats.failing > self._failing_logged.get(event.topic, 0):
                self._failing_logged[event.topic] = stats.failing  # once per episode
                log.warning("connection %d: %s is failing: %s", self.id, event.topic, event.detail)

    async def _session(self, ws: clients.Socket) -> str:
        """One socket's life: returns why it ended."""
        feed, tap = self.feed, self.feed.tap
        self._last_rx = time.monotonic()  # the silence clock starts with this socket
        now = time.time_ns()
        if tap is not None:
            tap.on_open(self.id, now, self.url)
        log.debug("connection %d: open to %s, subscribing %d topic(s)", self.id, self.url,
                  len(self.topics))  # fmt: skip
        self._outbox = asyncio.Queue()
        sync = self.sync
        if isinstance(sync, PrivateSync):
            assert feed.credentials is not None  # the Feed refuses private streams without
            for payload in sync.requests(feed.credentials, feed.nonce(now)):
                self._send(payload)
        else:
            self._send(encode_subscribe(self.topics))
        self._call("subscribe", now, self.topics)
        feed._handle(self, self.sync.subscribe(self.topics, now))
        feed._notify(Connected(self.id, self.url, tuple(self.topics)))
        helpers = [
            asyncio.create_task(self._writer(ws)),
            asyncio.create_task(self._keepalive()),
            asyncio.create_task(self._watchdog(ws)),
        ]
        code: int | None = None
        reason = ""
        stats = feed._stats
        sync_feed = sync.feed
        handle = feed._handle
        closing: list[asyncio.Task[None]] = []

        def on_message(raw: bytes) -> None:  # every frame, on the socket reader
            arrival = time.time_ns()
            self._last_rx = time.monotonic()
            stats.frames += 1
            stats.bytes += len(raw)
            if tap is not None:
                tap.on_frame(self.id, arrival, raw)
            events = sync_feed(arrival, raw)
            if events:
                handle(self, events)
                if isinstance(sync, PrivateSync) and sync.auth_failed is not None and not closing:
                    # closed, then backoff
                    closing.append(asyncio.create_task(ws.close(1000, "authentication refused")))
            if sync.pending_actions:
                self.carry_out_actions()

        try:
            code, reason = await ws.read(on_message)
        finally:
            # Recorded before anything that awaits: a cancelled reader still records it.
            now = time.time_ns()
            if tap is not None:
                tap.on_close(self.id, now, code, CLOSED_BY_APP if self.stopping else reason)
            if not self.stopping:
                self._call("connection_lost", now)
                feed._handle(self, self.sync.connection_lost(now))
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, *closing, return_exceptions=True)
        return f"closed ({code}): {reason}"

    def _send(self, payload: str) -> None:
        self._outbox.put_nowait(payload)

    async def _writer(self, ws: clients.Socket) -> None:
        tap = self.feed.tap
        while True:
            payload = await self._outbox.get()
            await ws.send(payload)
            if tap is not None:  # a recording keeps the auth request without its secrets
                shown = redact_auth(payload) if is_auth_request(payload) else payload
                tap.on_sent(self.id, time.time_ns(), shown)

    def carry_out_actions(self) -> None:
        """BookSync's resubscribes: one topic each, the others on the socket untouched."""
        for action in self.sync.take_actions():
            self._send(encode_unsubscribe([action.topic]))
            self._send(encode_subscribe([action.topic]))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.feed.ping_interval)
            self._send(encode_ping())

    def _call(self, call: str, now_ns: int, topics: list[str] | None = None) -> None:
        """Tell the tap about a call into the core, just before it is made."""
        on_call = getattr(self.feed.tap, "on_call", None)
        if on_call is not None:
            on_call(self.id, now_ns, call, list(topics or ()))

    async def _watchdog(self, ws: clients.Socket) -> None:
        """Snapshot timeouts (via BookSync) and a socket that went silent."""
        while True:
            await asyncio.sleep(min(0.25, self.feed.silence_timeout / 4))
            if self.sync.has_timers:  # otherwise the call changes nothing: not recorded
                now = time.time_ns()
                self._call("check_timeouts", now)
                self.feed._handle(self, self.sync.check_timeouts(now))
                if isinstance(self.sync, PrivateSync) and self.sync.auth_failed is not None:
                    await ws.close(1000, "authentication refused")  # then backoff
                    return
            self.carry_out_actions()
            silent = time.monotonic() - self._last_rx
            if silent > self.feed.silence_timeout:
                log.warning("connection %d silent for %.1fs: reconnecting", self.id, silent)
                ws.abort()  # the reader sees the socket die and we reconnect
                return

    async def close(self) -> None:
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    def abort(self) -> None:
        """Drop the socket without a handshake (after close() had its chance)."""
        if self.ws is not None:
            self.ws.abort()
