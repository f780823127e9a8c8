"""`RedisFeed`: the books a `RedisPublisher` fans out, as if from a local `Feed`.

    async with RedisFeed(["BTC-PERP"], "redis://127.0.0.1:6379/0", on_top=print) as feed:
        await feed.run_forever()

Each stream gets a `StreamFollower`: the same `BookSync` on the same inputs as the
publisher's, so books, seqs and events are the publisher's. A consumer starting late
joins at the latest checkpoint; one that falls behind past the stream's MAXLEN, or
meets a publisher restart or a Redis restart that lost entries, says `out_of_sync`
(reason `stream_hole`) and joins again at the next checkpoint: it never applies a frame
across a hole. Callbacks run on the reader task, one at a time: a slow callback slows
this consumer only (Redis keeps the stream for it, up to MAXLEN).
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
from types import TracebackType
from typing import Any

from bookengine.book import OrderBook
from bookengine.errors import ArgumentError, FrameError
from bookengine.events import (
    BadFrame,
    BookUpdate,
    Event,
    ExchangeErrors,
    L1Quote,
    Reason,
    StatusChanged,
    SyncStatus,
    TopOfBook,
    Trade,
)
from bookengine.fanout.entries import decode_records, decode_trade
from bookengine.fanout.follower import FollowerStats, StreamFollower
from bookengine.fanout.publisher import redacted, redis_namespace
from bookengine.feed import Connected, Reconnecting, percentile
from bookengine.readers import Readers
from bookengine.wire import parse_item, stream_key

log = logging.getLogger(__name__)

ConsumerEvent = Event | Connected | Reconnecting
Callback = Callable[[Any], object] | Callable[[Any], Awaitable[object]]
_LATENCY_SAMPLES = 4096


@dataclass
class RedisFeedStats:
    entries: int = 0
    holes: int = 0
    joins: int = 0
    checkpoints_adopted: int = 0
    digests_checked: int = 0
    digest_mismatches: int = 0
    bad_entries: int = 0
    trades: int = 0
    reconnects: int = 0
    last_error: str = ""
    callback_errors: int = 0
    dropped: int = 0  # events an `async for` reader did not take in time (oldest first)
    # publisher arrival -> callback, microseconds, over the last 4096 tops
    latency_us_p50: float | None = None
    latency_us_p99: float | None = None
    streams: dict[str, FollowerStats] = field(default_factory=dict)


class RedisFeed:
    """Books of `topics` (bare symbols mean `update:SYM_0`) from a publisher's Redis.

    `join`: "checkpoint" (default) starts from each stream's latest checkpoint, so a
    book is there at once; "live" starts with the next checkpoint the publisher writes.
    `trades=True` also follows the symbols' trades (new ones, from now on).
    `stale_after`: a synced book whose publisher wrote nothing for this long (its
    checkpoints come every few seconds) goes out of sync; so does every book while Redis
    cannot be read (then they join again at the latest checkpoint).
    """

    def __init__(
        self,
        topics: Iterable[str] | str,
        redis_url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "btse",
        on_top: Callback | None = None,
        on_book: Callback | None = None,
        on_status: Callback | None = None,
        on_trade: Callback | None = None,
        on_l1: Callback | None = None,
        on_error: Callback | None = None,
        trades: bool = False,
        book_updates: bool = False,
        join: str = "checkpoint",
        block: float = 1.0,
        count: int = 1000,
        stale_after: float = 15.0,
        queue_size: int = 10_000,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        if isinstance(topics, str):
            topics = [topics]
        parsed = [parse_item(t) for t in topics]
        wanted = list(dict.fromkeys(t.wire for t in parsed if t.kind in ("update", "snapshotL1")))
        if not wanted:
            raise ArgumentError("RedisFeed needs at least one book or L1 stream")
        if join not in ("checkpoint", "live"):
            raise ArgumentError(f"join must be 'checkpoint' or 'live', got {join!r}")
        if block <= 0 or count < 1 or queue_size < 1 or not 0 < backoff[0] <= backoff[1]:
            raise ArgumentError("block > 0, count >= 1, queue_size >= 1, 0 < backoff[0] <= [1]")
        self._aioredis, self.keys = redis_namespace(redis_url, prefix)
        self.redis_url = redis_url
        self.book_updates = book_updates or on_book is not None
        self.followers = {
            t.key: StreamFollower(t.wire, book_updates=self.book_updates)
            for t in (parse_item(w) for w in wanted)
        }
        self._by_raw_key = {self.keys.raw(k): f for k, f in self.followers.items()}
        symbols = dict.fromkeys(t.symbol for t in parsed)
        self._trade_keys = {self.keys.trades(s) for s in symbols} if trades or on_trade else set()
        self.join = join
        self.block_ms = int(block * 1000)
        if stale_after <= 0:
            raise ArgumentError("stale_after must be > 0 seconds")
        self.stale_after = stale_after
        self.count = count
        self.queue_size = queue_size
        self.backoff = backoff
        self._callbacks: dict[type, Callback | None] = {
            TopOfBook: on_top,
            BookUpdate: on_book,
            StatusChanged: on_status,
            Connected: on_status,
            Reconnecting: on_status,
            Trade: on_trade,
            L1Quote: on_l1,
            BadFrame: on_error,
            ExchangeErrors: on_error,
        }
        self._last_trades: dict[str, Trade] = {}
        self._stats = RedisFeedStats()
        self._latency: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._readers: Readers[ConsumerEvent] = Readers(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._redis: Any = None
        self.positions: dict[str, bytes | str] = {}  # stream key -> last entry id read
        self._joining = True
        self._stopping = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._closed.clear()  # a feed closed and started again runs again
            # a hung Redis must not block XREAD forever: the block time plus a margin
            self._redis = self._aioredis.from_url(
                self.redis_url,
                socket_timeout=self.block_ms / 1000 + 5.0,
                socket_connect_timeout=2.0,
                socket_keepalive=True,
            )
            self._task = asyncio.create_task(self._read_loop(), name="bookengine-redisfeed")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # redis-py may turn a cancelled read into one of its errors: the loop then
            # sees `_stopping` and ends, and is waited for a bounded time only
            self._stopping = True
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
            self._stopping = False
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None
        self._closed.set()
        self._readers.close()

    async def __aenter__(self) -> RedisFeed:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def run_forever(self) -> None:
        await self.start()
        await self._closed.wait()

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait until every stream has a book; `TimeoutError` names those without."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [k for k, f in self.followers.items() if f.status is not SyncStatus.SYNCED]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not synced after {timeout}s: {', '.join(missing)}")
            await asyncio.sleep(0.01)

    def __aiter__(self) -> AsyncIterator[ConsumerEvent]:
        return self._readers.reader()

    # --- queries --------------------------------------------------------------------------

    def _follower(self, symbol: str, grouping: int | None) -> StreamFollower | None:
        try:
            return self.followers.get(stream_key(symbol, grouping))
        except ValueError:
            return None

    def book(self, symbol: str, grouping: int | None = 0) -> OrderBook | None:
        """The synced book (any spelling, or a topic), None while it is not in sync."""
        follower = self._follower(symbol, grouping)
        return None if follower is None else follower.book()

    def status(self, symbol: str, grouping: int | None = 0) -> SyncStatus | None:
        follower = self._follower(symbol, grouping)
        return None if follower is None else follower.status

    def last_seq(self, symbol: str, grouping: int | None = 0) -> int | None:
        follower = self._follower(symbol, grouping)
        return None if follower is None else follower.last_seq()

    def last_trade(self, symbol: str) -> Trade | None:
        """The newest trade of `symbol` (any spelling) read so far, with `trades=True`."""
        try:
            return self._last_trades.get(parse_item(symbol).symbol)
        except ValueError:
            return None

    def stats(self) -> RedisFeedStats:
        """Counters summed over the streams (and each stream's), latency percentiles."""
        stats = self._stats
        streams = {k: f.stats for k, f in self.followers.items()}
        for name in ("entries", "holes", "joins", "checkpoints_adopted", "digests_checked",
                     "digest_mismatches", "bad_entries"):  # fmt: skip
            setattr(stats, name, sum(getattr(s, name) for s in streams.values()))
        stats.streams = streams
        ordered = sorted(self._latency)
        stats.latency_us_p50 = percentile(ordered, 50)
        stats.latency_us_p99 = percentile(ordered, 99)
        return stats

    # --- reading --------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        aioredis = self._aioredis
        url = redacted(self.redis_url)
        attempt = 0
        while not self._stopping:
            try:
                if attempt:
                    await self._redis.ping()
                    attempt = 0
                    await self._deliver([Connected(0, url, tuple(self.followers))])
                if self._joining:
                    await self._join()
                reply = await self._redis.xread(
                    self.positions, count=self.count, block=self.block_ms
                )
                for name, entries in reply or ():
                    await self._take(name.decode(), entries)
                await self._check_stale()
            except aioredis.RedisError as exc:  # lost, hung, or refused (a key's type...)
                if self._stopping:
                    return
                attempt += 1
                self._stats.reconnects += 1
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
                first, cap = self.backoff
                delay = min(cap, first * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                if attempt == 1:
                    log.warning("redisfeed: %s: %s; retrying", url, self._stats.last_error)
                # the books cannot be trusted while the stream cannot be read: dropped, and
                # joined again (at the latest checkpoint) once it can
                now = time.time_ns()
                lost = [e for f in self.followers.values()
                        for e in f.lost(now, Reason.CONNECTION_LOST, f"redis: {exc}")]  # fmt: skip
                if not self._joining:  # joined: join afresh; mid-join: go on where it was
                    self.positions.clear()
                self._joining = True
                await self._deliver([*lost, Reconnecting(0, url, attempt, delay, str(exc))])
                await asyncio.sleep(delay)

    async def _check_stale(self) -> None:
        """A book whose publisher wrote nothing for `stale_after` seconds (checkpoints come
        every few seconds even on a quiet market) is dropped: the publisher is gone."""
        now = time.time_ns()
        limit = int(self.stale_after * 1e9)
        for follower in self.followers.values():
            if (
                not follower.is_l1
                and follower.status is SyncStatus.SYNCED
                and now - follower.last_ns > limit
            ):
                silent = (now - follower.last_ns) / 1e9
                detail = f"nothing from the publisher for {silent:.0f}s"
                await self._deliver(follower.lost(now, Reason.STREAM_HOLE, detail))

    async def _join(self) -> None:
        """Where each stream starts: its latest checkpoint (or the start of what Redis
        keeps, where a publisher run may begin), or only what comes next (`join="live"`,
        and L1 streams: a quote is whole, old ones are of no use). Each stream's start is
        kept as soon as it is known: a retry after a failure here does not apply a
        checkpoint twice."""
        redis, positions = self._redis, self.positions
        for raw_key, follower in self._by_raw_key.items():
            if raw_key in positions:
                continue
            start: bytes | str = "0-0"
            if self.join == "live" or follower.is_l1:
                start = await self._last_id(raw_key)
            else:
                entry_id = await redis.get(self.keys.checkpoint(follower.key))
                found = await redis.xrange(raw_key, entry_id, entry_id) if entry_id else []
                if found:
                    await self._take(raw_key, found)
                    start = entry_id
            positions[raw_key] = start
        for trade_key in self._trade_keys:
            if trade_key not in positions:
                positions[trade_key] = await self._last_id(trade_key)
        self._joining = False

    async def _last_id(self, key: str) -> bytes | str:
        """The id of a stream's newest entry: reading after it is "from now on" (XREAD's
        `$` would be, at every call, and lose what came between two calls)."""
        newest = await self._redis.xrevrange(key, count=1)
        return newest[0][0] if newest else "0-0"

    async def _take(self, key: str, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        follower = self._by_raw_key.get(key)
        for entry_id, fields in entries:
            self.positions[key] = entry_id
            if follower is None:  # a trade stream
                try:
                    trade = decode_trade(fields)
                except FrameError as exc:
                    self._stats.bad_entries += 1
                    log.warning("redisfeed: %s: %s", key, exc)
                    continue
                self._stats.trades += 1
                self._last_trades[trade.symbol] = trade
                await self._deliver([trade])
                continue
            try:
                records = decode_records(fields)
            except FrameError as exc:
                log.warning("redisfeed: %s: %s", key, exc)
                events = follower.bad_entry(time.time_ns(), str(exc))
                if events:
                    await self._deliver(events)
                continue
            for record in records:
                events = follower.apply(record)
                if events:
                    await self._deliver(events)

    async def _deliver(self, events: Iterable[ConsumerEvent]) -> None:
        callbacks = self._callbacks
        for event in events:
            kind = type(event)
            callback = callbacks.get(kind)
            if kind is TopOfBook:
                self._latency.append((time.time_ns() - event.arrival_ns) / 1000)  # type: ignore[union-attr]
            if callback is not None:
                try:
                    result = callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    self._stats.callback_errors += 1
                    log.exception("redisfeed: callback for %s failed", kind.__name__)
            self._stats.dropped += self._readers.put(event)
