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
import dataclasses
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Sequence
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
from bookengine.sync import RecoveryPolicy
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


def redis_namespace(redis_url: str, prefix: str) -> tuple[Any, Keys]:
    """redis-py's asyncio module and the key names under `prefix`, once both are checked
    (a publisher's and a consumer's arguments alike)."""
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ArgumentError(f"not a Redis URL: {redis_url!r} (redis://host:6379/0)")
    aioredis = import_redis()
    try:
        return aioredis, Keys(prefix)
    except ValueError as exc:
        raise ArgumentError(str(exc)) from None


def redacted(url: str) -> str:
    """A Redis URL fit for a log line: a password (in the authority or as `?password=`)
    replaced by `***`."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        auth, _, host = netloc.rpartition("@")
        user, colon, _ = auth.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"{user}@{host}"
    query = urlencode(
        [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)],
        safe="*",
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


@dataclass
class PublisherStats:
    queued: int = 0  # raw entries numbered and queued
    published: int = 0  # raw entries Redis acknowledged
    unpublished: int = 0  # raw records lost to a Redis failure (consumers see a hole)
    dropped: int = 0  # raw records dropped by a full queue (Redis too slow)
    refused: int = 0  # writes Redis refused (a key of the wrong type, out of memory...)
    dropped_others: int = 0  # trades and status changes dropped by their full queue
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
        self._aioredis, self.keys = redis_namespace(redis_url, prefix)
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
        # what a consumer's BookSync needs to report the same statuses as the Feed's
        recovery = feed.recovery or RecoveryPolicy()
        self._settings = {
            "snapshot_timeout_s": feed.snapshot_timeout,
            "recovery": dataclasses.asdict(recovery),
        }
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
        self._stopping = False
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._redis = self._aioredis.from_url(
            self.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self._closing = False  # a publisher closed and started again publishes again
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="bookengine-publish"),
            asyncio.create_task(self._checkpoint_loop(), name="bookengine-checkpoints"),
        ]

    async def close(self) -> None:
        """Write what is queued (for at most `close_timeout` seconds), tell consumers the
        streams stop here, and disconnect. What could not be written in time is counted
        (`unpublished`) and dropped before the stop records, whose numbers then show
        consumers the hole; no checkpoint is taken once closing began."""
        if self._closing or not self._tasks:
            return
        self._closing = True
        writer, *others = self._tasks
        for task in others:  # the checkpoints first: a stopped Feed's books are not live
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._drain(self.close_timeout)
        left = len(self._queue)
        if left:
            log.warning("publisher: %d records not written before close: dropped, the "
                        "stop records follow", left)  # fmt: skip
            self._lose_queue(count_inflight=False)
        for key in sorted(set().union(*self._conn_keys.values()) if self._conn_keys else ()):
            self._queue_entry(key, STOP, time.time_ns(), b"publisher stopped")
        await self._drain(min(1.0, self.close_timeout))
        self._stopping = True  # redis-py may turn a cancelled write into one of its errors
        writer.cancel()
        await asyncio.wait({writer}, timeout=2.0)
        self._stopping = False
        self._tasks = []
        self.stats.unpublished += len(self._queue) + self._inflight  # never half-counted
        self._queue.clear()
        self._inflight = 0
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
        return bool(self._queue or self._tops or self._others or self._inflight)

    async def _drain(self, timeout: float) -> None:
        """Wait until the writer wrote everything queued (or `timeout`, or it died)."""
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._pending() and time.monotonic() < deadline and not self._tasks[0].done():
            await asyncio.sleep(0.005)

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
        if topics:  # subscribe: each stream gets its own name only, and the core's settings
            settings = self._settings
            for topic in topics:
                key = self._key_of(topic)
                if key in keys:
                    self._queue_entry(key, CALL, now_ns, encode_call(call, [topic], settings))
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
            self._other(self.keys.trades(event.symbol), encode_trade(event))
        elif type(event) is StatusChanged:
            self._other(self.keys.status(), encode_status(event))
        else:
            return
        self._wake.set()

    def _other(self, key: str, fields: dict[bytes, bytes]) -> None:
        others = self._others
        if len(others) == others.maxlen:
            self.stats.dropped_others += 1  # the oldest trade or status goes
        others.append((key, fields))

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
        if self._closing and kind != STOP:
            return  # closing: the stop records are the streams' last
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
        while not self._stopping:
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
                if self._stopping:
                    return
                failures += 1
                self._down(exc)
                first, cap = self.backoff
                await asyncio.sleep(min(cap, first * 2 ** (failures - 1)) * random.uniform(0.5, 1))
            except self._aioredis.RedisError as exc:  # refused whole (a broken pipeline...)
                if self._stopping:
                    return
                self._refused(str(exc), self._inflight)
                self._lose_queue()
                self.checkpoint()  # consumers see a hole: give them a join point
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

    def _refused(self, error: str, count: int) -> None:
        """Redis refused writes (a key of the wrong type, out of memory...): counted and
        logged, once per kind of error until a write succeeds again."""
        self.stats.refused += count
        if error != self.stats.last_error:
            log.error("publisher: Redis refused %d write(s): %s", count, error)
        self.stats.last_error = error

    def _lose_queue(self, count_inflight: bool = True) -> None:
        """What is queued when Redis fails is not kept: consumers would only replay stale
        entries across the hole anyway."""
        self.stats.unpublished += len(self._queue)
        if count_inflight:  # else the write in flight is still the writer's to count
            self.stats.unpublished += self._inflight
            self._inflight = 0
        self._queue.clear()
        self._tops.clear()
        self._others.clear()

    async def _write_some(self) -> None:
        """One pipeline: up to `batch` records, one entry per stream, plus the conflated
        tops, trades and status changes. A checkpoint is an entry of its own, written
        alone to learn its id (after what was queued before it). Each command's result is
        counted on its own: one refused write (a key of the wrong type, out of memory)
        loses its records only, and a checkpoint follows it."""
        redis, keys, queue = self._redis, self.keys, self._queue
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
                await self._execute(groups, {}, ())
                groups = {}
            try:
                entry_id = await redis.xadd(
                    keys.raw(key), encode_entry(entry), maxlen=self.maxlen, approximate=True
                )
                await redis.set(keys.checkpoint(key), entry_id)
            except self._aioredis.ResponseError as exc:
                self._inflight -= 1
                self.stats.unpublished += 1
                self._refused(str(exc), 1)
                continue
            self._published(1)
            self.stats.checkpoints += 1
        tops, self._tops = self._tops, {}
        others = list(self._others)
        self._others.clear()
        await self._execute(groups, tops, others)

    async def _execute(
        self,
        groups: dict[str, list[Entry]],
        tops: dict[str, TopOfBook],
        others: Sequence[tuple[str, dict[bytes, bytes]]],
    ) -> None:
        keys, maxlen = self.keys, self.maxlen
        pipe = self._redis.pipeline(transaction=False)
        counts = []
        for key, records in groups.items():
            pipe.xadd(keys.raw(key), encode_batch(records), maxlen=maxlen, approximate=True)
            counts.append(len(records))
        for key, top in tops.items():
            pipe.xadd(keys.top(key), encode_top(top), maxlen=self.top_maxlen, approximate=True)
        for key, fields in others:
            pipe.xadd(key, fields, maxlen=maxlen, approximate=True)
        results = await pipe.execute(raise_on_error=False)
        refused_raw = 0
        for count, result in zip(counts, results, strict=False):
            self._inflight -= count
            if isinstance(result, Exception):
                refused_raw += count
                self.stats.unpublished += count
                self._refused(str(result), count)
            else:
                self.stats.published += count
        status_key = keys.status()
        for (key, _), result in zip(others, results[len(counts) + len(tops) :], strict=False):
            if isinstance(result, Exception):
                self._refused(str(result), 1)
            elif key == status_key:
                self.stats.statuses += 1
            else:
                self.stats.trades += 1
        top_results = results[len(counts) : len(counts) + len(tops)]
        self.stats.tops += sum(not isinstance(r, Exception) for r in top_results)
        if refused_raw:
            self.checkpoint()  # the records lost leave a hole: a join point after it

    def _published(self, count: int) -> None:
        self.stats.published += count
        self._inflight -= count
