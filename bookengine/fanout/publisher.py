"""`RedisPublisher`: one Feed's streams into Redis, for many consumer processes.

    feed = Feed(["BTC-PERP", "ETH-USD"], trades=True)
    async with RedisPublisher(feed, "redis://127.0.0.1:6379/0"), feed:
        await feed.run_forever()

It is the Feed's tap (a tap the Feed already had, such as the recorder's, still gets
everything first). The tap only appends to a bounded queue, so Redis never slows the BTSE
reader; one task writes the queue out in pipelines. If Redis is down or slow, what cannot
be written is counted (`stats.unpublished`, `stats.dropped`), never waited for: the
entries' numbers skip, and consumers see a hole. After a reconnect every synced book is
checkpointed at once, so consumers recover without waiting for the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson

from bookengine import book as _book_module
from bookengine.errors import ArgumentError, MissingExtra
from bookengine.events import Event, StatusChanged, TopOfBook, Trade
from bookengine.fanout.entries import (
    CALL,
    CHECKPOINT,
    FRAME,
    STOP,
    Entry,
    Keys,
    encode_batch,
    encode_call,
    encode_entry,
    encode_status,
    encode_top,
    encode_trade,
)
from bookengine.private import is_private
from bookengine.wire import Topic, encode_checkpoint

if TYPE_CHECKING:
    from bookengine.feed import Feed, FeedTap

log = logging.getLogger(__name__)

_ALL = "*"  # route of a control frame (ack, error): every book stream of its connection
_BOOK_KINDS = ("update", "snapshotL1")


def import_redis() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise MissingExtra("fan-out needs redis-py: pip install 'bookengine[fanout]'") from None
    return aioredis


def redacted(url: str) -> str:
    """A Redis URL fit for a log line: its password replaced."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user = auth.split(":", 1)[0] if ":" in auth else ""
    return f"{scheme}{sep}{user}:***@{host}"


@dataclass
class PublisherStats:
    queued: int = 0  # raw entries numbered and queued
    published: int = 0  # raw entries Redis acknowledged
    unpublished: int = 0  # raw entries lost to a Redis failure (consumers see a hole)
    dropped: int = 0  # raw entries dropped by a full queue (Redis too slow)
    checkpoints: int = 0
    tops: int = 0  # conflated top-of-book entries written
    trades: int = 0
    statuses: int = 0
    reconnects: int = 0
    connected: bool = False
    last_error: str = ""


class RedisPublisher:
    """Publishes `feed`'s book streams (raw frames and calls, checkpoints), conflated top
    of book, trades and status changes into Redis Streams under `prefix`.

    `maxlen`: entries kept per raw stream (approximate, `MAXLEN ~`; an entry holds the
    records of one write, up to `batch`); a consumer that falls further behind than this
    sees a hole. `checkpoint_interval`: seconds between
    checkpoints, the points where a late or lagging consumer (re)joins.
    """

    def __init__(
        self,
        feed: Feed,
        redis_url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "btse",
        maxlen: int = 100_000,
        top_maxlen: int = 10_000,
        checkpoint_interval: float = 5.0,
        queue_size: int = 100_000,
        batch: int = 1000,
        backoff: tuple[float, float] = (0.1, 5.0),
        close_timeout: float = 5.0,
    ) -> None:
        if maxlen < 1 or top_maxlen < 1 or queue_size < 1 or batch < 1:
            raise ArgumentError("maxlen, top_maxlen, queue_size and batch must be >= 1")
        if checkpoint_interval <= 0 or not 0 < backoff[0] <= backoff[1]:
            raise ArgumentError("checkpoint_interval must be > 0, backoff (first, cap) with "
                                "0 < first <= cap")  # fmt: skip
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ArgumentError(f"not a Redis URL: {redis_url!r} (redis://host:6379/0)")
        self._aioredis = import_redis()
        try:
            self.keys = Keys(prefix)
        except ValueError as exc:
            raise ArgumentError(str(exc)) from None
        self.feed = feed
        self.redis_url = redis_url
        self.maxlen = maxlen
        self.top_maxlen = top_maxlen
        self.checkpoint_interval = checkpoint_interval
        self.batch = batch
        self.backoff = backoff
        self.close_timeout = close_timeout
        self.stats = PublisherStats()
        self.epoch = secrets.token_hex(6).encode()
        self._inner: FeedTap | None = feed.tap
        feed.tap = self
        # conn id -> the book streams it carries (trade connections carry none here)
        self._conn_keys: dict[int, frozenset[str]] = {}
        for conn_id, _, topics in feed.connections:
            parsed = [Topic.parse(t) for t in topics if not is_private(t)]  # not fanned out
            self._conn_keys[conn_id] = frozenset(t.key for t in parsed if t.kind in _BOOK_KINDS)
        self._topic_keys: dict[str, str | None] = {}
        scanner = _book_module.Scanner
        self._scanner = scanner() if scanner is not None else None
        self._n: dict[str, int] = {}
        self._queue: deque[tuple[str, Entry]] = deque(maxlen=queue_size)
        self._tops: dict[str, TopOfBook] = {}
        self._others: deque[tuple[str, dict[bytes, bytes]]] = deque(maxlen=queue_size)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Any = None
        self._down_since: float | None = None
        self._inflight = 0  # entries taken from the queue, not yet acknowledged
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._redis = self._aioredis.from_url(
            self.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="bookengine-publish"),
            asyncio.create_task(self._checkpoint_loop(), name="bookengine-checkpoints"),
        ]

    async def close(self) -> None:
        """Tell consumers the streams stop here, write what is queued (for at most
        `close_timeout` seconds), and disconnect."""
        if self._closing:
            return
        self._closing = True
        for key in sorted(set().union(*self._conn_keys.values()) if self._conn_keys else ()):
            self._queue_entry(key, STOP, time.time_ns(), b"publisher stopped")
        self._wake.set()
        deadline = time.monotonic() + self.close_timeout
        while self._pending() and self._tasks and time.monotonic() < deadline:
            if self._tasks[0].done():
                break
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        left = len(self._queue)
        if left:
            self.stats.unpublished += left
            log.warning("publisher: %d entries not written before close", left)
            self._queue.clear()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        self._redis = None

    async def __aenter__(self) -> RedisPublisher:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _pending(self) -> bool:
        return bool(self._queue or self._tops or self._others)

    # --- the tap: runs on the Feed's reader, so only queues ---------------------------

    def on_open(self, conn_id: int, now_ns: int, url: str) -> None:
        if self._inner is not None:
            self._inner.on_open(conn_id, now_ns, url)

    def on_frame(self, conn_id: int, arrival_ns: int, raw: bytes) -> None:
        if self._inner is not None:
            self._inner.on_frame(conn_id, arrival_ns, raw)
        keys = self._conn_keys.get(conn_id)
        if not keys:
            return
        route = self._route(raw)
        if route is None:
            return
        if route == _ALL:
            for key in keys:
                self._queue_entry(key, FRAME, arrival_ns, raw)
        elif route in keys:
            self._queue_entry(route, FRAME, arrival_ns, raw)

    def on_sent(self, conn_id: int, now_ns: int, payload: str) -> None:
        if self._inner is not None:
            self._inner.on_sent(conn_id, now_ns, payload)

    def on_call(self, conn_id: int, now_ns: int, call: str, topics: list[str]) -> None:
        inner = getattr(self._inner, "on_call", None)
        if inner is not None:
            inner(conn_id, now_ns, call, topics)
        keys = self._conn_keys.get(conn_id)
        if not keys:
            return
        if topics:  # subscribe: each stream gets its own name only
            for topic in topics:
                key = self._key_of(topic)
                if key in keys:
                    self._queue_entry(key, CALL, now_ns, encode_call(call, [topic]))
        else:  # connection_lost, check_timeouts: about every stream of the connection
            payload = encode_call(call, [])
            for key in keys:
                self._queue_entry(key, CALL, now_ns, payload)

    def on_close(self, conn_id: int, now_ns: int, code: int | None, reason: str) -> None:
        if self._inner is not None:
            self._inner.on_close(conn_id, now_ns, code, reason)

    def on_event(self, conn_id: int, event: Event) -> None:
        if self._inner is not None:
            self._inner.on_event(conn_id, event)
        if type(event) is TopOfBook:
            self._tops[event.topic] = event  # conflated: the newest of each stream
        elif type(event) is Trade:
            self._others.append((self.keys.trades(event.symbol), encode_trade(event)))
        elif type(event) is StatusChanged:
            self._others.append((self.keys.status(), encode_status(event)))
        else:
            return
        self._wake.set()

    def _route(self, raw: bytes) -> str | None:
        """The stream a frame belongs to, `_ALL` for a control frame, None for a frame
        that changes no book (pong, not JSON, no topic)."""
        scanner = self._scanner
        if scanner is not None:
            head = scanner.scan(raw)
            if head is not None:
                return self._key_of(head[0])
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(msg) is dict and type(msg.get("data")) is dict:
            topic = msg.get("topic")
            return self._key_of(topic) if type(topic) is str else None
        return _ALL

    def _key_of(self, topic: str) -> str | None:
        key = self._topic_keys.get(topic, "")
        if key == "":
            try:
                key = Topic.parse(topic).key
            except ValueError:
                key = None
            if len(self._topic_keys) < 10_000:
                self._topic_keys[topic] = key
        return key

    def _queue_entry(
        self,
        key: str,
        kind: bytes,
        ns: int,
        payload: bytes,
        seq: int | None = None,
        digest: str | None = None,
    ) -> None:
        n = self._n.get(key, 0) + 1
        self._n[key] = n
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.stats.dropped += 1  # the oldest goes: consumers see the hole by its number
        queue.append((key, Entry(kind, ns, self.epoch, n, payload, seq, digest)))
        self.stats.queued += 1
        self._wake.set()

    # --- checkpoints ----------------------------------------------------------------------

    def checkpoint(self) -> int:
        """Queue a checkpoint of every synced book now; how many."""
        feed = self.feed
        now = time.time_ns()
        count = 0
        for _, _, topics in feed.connections:
            for text in topics:
                if is_private(text):
                    continue
                topic = Topic.parse(text)
                if topic.kind != "update":
                    continue
                book = feed.book(topic.key)
                seq = feed.last_seq(topic.symbol, topic.grouping)
                if book is None or seq is None:
                    continue
                payload = encode_checkpoint(text, topic.symbol, book, seq, now)
                self._queue_entry(topic.key, CHECKPOINT, now, payload, seq, book.digest())
                count += 1
        return count

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            if self._down_since is None:  # while Redis is down they would only be lost
                self.checkpoint()

    # --- writing ---------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        redis_errors = (self._aioredis.ConnectionError, self._aioredis.TimeoutError, OSError)
        failures = 0
        while True:
            if not self._pending():
                self._wake.clear()
                await self._wake.wait()
            try:
                if self._down_since is not None or not self.stats.connected:
                    await self._redis.ping()
                    self._up()
                await self._write_some()
                failures = 0
            except redis_errors as exc:
                failures += 1
                self._down(exc)
                first, cap = self.backoff
                await asyncio.sleep(min(cap, first * 2 ** (failures - 1)) * random.uniform(0.5, 1))
            except self._aioredis.RedisError as exc:  # refused by Redis (wrong type, OOM...)
                self.stats.last_error = str(exc)
                log.error("publisher: Redis refused a write: %s", exc)
                self._lose_queue()
                await asyncio.sleep(self.backoff[0])

    def _up(self) -> None:
        was_down = self._down_since is not None
        self.stats.connected = True
        if was_down:
            self.stats.reconnects += 1
            log.warning("publisher: Redis %s is back after %.1fs; checkpointing every book",
                        redacted(self.redis_url), time.monotonic() - self._down_since)  # type: ignore[operator]  # fmt: skip
            self._down_since = None
            # consumers will see a hole: what was queued meanwhile lies after it and is of
            # no use to them, a checkpoint is: it goes first
            self._lose_queue()
            self.checkpoint()
        else:
            log.info("publisher: connected to %s", redacted(self.redis_url))

    def _down(self, exc: BaseException) -> None:
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("publisher: Redis %s unreachable (%s); entries are counted as "
                        "unpublished until it is back", redacted(self.redis_url), exc)  # fmt: skip
        self.stats.connected = False
        self._lose_queue()

    def _lose_queue(self) -> None:
        """What is queued when Redis fails is not kept: consumers would only replay stale
        entries across the hole anyway."""
        self.stats.unpublished += len(self._queue) + self._inflight
        self._inflight = 0
        self._queue.clear()
        self._tops.clear()
        self._others.clear()

    async def _write_some(self) -> None:
        """One pipeline: up to `batch` records, one entry per stream, plus the conflated
        tops, trades and status changes. A checkpoint is an entry of its own, written
        alone to learn its id (after what was queued before it)."""
        redis, keys, queue = self._redis, self.keys, self._queue
        pipe = redis.pipeline(transaction=False)
        groups: dict[str, list[Entry]] = {}
        taken = 0
        while queue and taken < self.batch:
            key, entry = queue.popleft()
            self._inflight += 1
            taken += 1
            if entry.kind != CHECKPOINT:
                groups.setdefault(key, []).append(entry)
                continue
            if groups:
                count = self._add_groups(pipe, groups)
                await pipe.execute()
                self._published(count)
                groups = {}
            entry_id = await redis.xadd(
                keys.raw(key), encode_entry(entry), maxlen=self.maxlen, approximate=True
            )
            await redis.set(keys.checkpoint(key), entry_id)
            self._published(1)
            self.stats.checkpoints += 1
        count = self._add_groups(pipe, groups)
        tops, self._tops = self._tops, {}
        for key, top in tops.items():
            pipe.xadd(keys.top(key), encode_top(top), maxlen=self.top_maxlen, approximate=True)
        others = self._others
        trades = statuses = 0
        while others:
            key, fields = others.popleft()
            pipe.xadd(key, fields, maxlen=self.maxlen, approximate=True)
            if key == keys.status():
                statuses += 1
            else:
                trades += 1
        await pipe.execute()
        self._published(count)
        self.stats.tops += len(tops)
        self.stats.trades += trades
        self.stats.statuses += statuses

    def _add_groups(self, pipe: Any, groups: dict[str, list[Entry]]) -> int:
        """One entry per stream for its records; how many records."""
        count = 0
        for key, records in groups.items():
            fields = encode_batch(records)
            pipe.xadd(self.keys.raw(key), fields, maxlen=self.maxlen, approximate=True)
            count += len(records)
        return count

    def _published(self, count: int) -> None:
        self.stats.published += count
        self._inflight -= count
