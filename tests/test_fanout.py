"""Fan-out over a real redis-server on loopback (tests/redis_server.py) and the real
simulator: consumers, in this process and in others, get the publisher's books or say
they are out of sync, through Redis restarts, lag, trimming and publisher restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bookengine.events import BookUpdate, Reason, StatusChanged, SyncStatus, Trade
from bookengine.feed import Feed
from bookengine.simulator import Faults, Simulator
from tests.conftest import need_extra
from tests.redis_server import redis_server  # noqa: F401  (the fixture)
from tests.simclient import FAST, run

need_extra("redis", "fanout")

from bookengine.fanout import RedisFeed, RedisPublisher  # noqa: E402
from bookengine.fanout.entries import Keys, decode_top  # noqa: E402

pytestmark = pytest.mark.integration
SYMBOLS = ["BTC-USD", "BTC-PERP"]
HERE = Path(__file__).parent


class DigestTap:
    """The publisher's side of the comparison: the digest of its book at every seq, taken
    on the reader as the frame is applied (callbacks run later, on a moved-on book)."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self.trades: dict[int, Trade] = {}

    def on_open(self, *args: object) -> None: ...
    def on_frame(self, *args: object) -> None: ...
    def on_sent(self, *args: object) -> None: ...
    def on_close(self, *args: object) -> None: ...

    def on_event(self, conn_id: int, event: object) -> None:
        if type(event) is BookUpdate:
            self.digests[f"{event.topic}|{event.seq}"] = event.book.digest()
        elif type(event) is Trade:
            self.trades[event.trade_id] = event


def publisher_feed(url: str, redis_url: str, **kw) -> tuple[Feed, RedisPublisher, DigestTap]:
    tap = DigestTap()
    feed = Feed(SYMBOLS, url=url, book_updates=True, tap=tap, **FAST, **kw)
    publisher = RedisPublisher(feed, redis_url, checkpoint_interval=0.3)
    return feed, publisher, tap


class Seen:
    """What an in-process consumer saw."""

    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self.statuses: list[StatusChanged] = []
        self.slow = 0.0

    async def on_book(self, update: BookUpdate) -> None:
        self.digests[f"{update.topic}|{update.seq}"] = update.book.digest()
        if self.slow:
            await asyncio.sleep(self.slow)

    def on_status(self, event: object) -> None:
        if isinstance(event, StatusChanged):
            self.statuses.append(event)


def assert_same_books(mine: dict[str, str], publishers: dict[str, str], at_least: int) -> None:
    common = set(mine) & set(publishers)
    wrong = [k for k in common if mine[k] != publishers[k]]
    assert not wrong, f"{len(wrong)} books differ from the publisher's, e.g. {wrong[:3]}"
    assert len(common) >= at_least, f"only {len(common)} books compared"
    assert set(mine) <= set(publishers), "a book at a seq the publisher never had"


def test_three_consumer_processes_keep_the_publishers_books_through_a_redis_restart(
    redis_server, tmp_path  # noqa: F811
):
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=200) as sim:
            feed, publisher, tap = publisher_feed(sim.url, redis_server.url)
            async with publisher, feed:
                await feed.wait_synced(5)
                await asyncio.sleep(0.5)  # checkpoints exist: the consumers join late
                outs = [tmp_path / f"consumer{i}.json" for i in range(3)]
                procs = [
                    subprocess.Popen(
                        [sys.executable, str(HERE / "fanout_consumer.py"), redis_server.url,
                         str(out), *SYMBOLS],
                        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(HERE.parent)},
                    )  # fmt: skip
                    for out in outs
                ]
                for proc in procs:
                    line = await asyncio.to_thread(proc.stdout.readline)
                    assert line.strip() == b"ready"
                await asyncio.sleep(1.5)
                await asyncio.to_thread(redis_server.restart, 0.5)  # every stream is lost
                await asyncio.sleep(3.0)
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    assert await asyncio.to_thread(proc.wait, 30) == 0
            assert publisher.stats.reconnects >= 1 and publisher.stats.unpublished > 0
            return tap.digests, [orjson.loads(out.read_bytes()) for out in outs]

    publishers, consumers = run(body(), timeout=40)
    for seen in consumers:
        assert_same_books(seen["digests"], publishers, at_least=500)
        stats = seen["stats"]
        # the restart: every book dropped while Redis could not be read, then joined
        # again at a checkpoint the publisher wrote once Redis was back
        assert stats["reconnects"] >= 1
        assert stats["checkpoints_adopted"] >= 4  # the late join, then after the restart
        assert stats["digests_checked"] > 0 and stats["digest_mismatches"] == 0
        assert seen["final"] == {"BTC-USD": "synced", "BTC-PERP": "synced"}
        for topic in ("update:BTC-USD_0", "update:BTC-PERP_0"):  # books again after it
            mine = [s[1:] for s in seen["statuses"] if s[0] == topic]
            lost = max(i for i, s in enumerate(mine) if s == ["out_of_sync", "connection_lost"])
            assert ["synced", "snapshot"] in mine[lost:]


def test_the_publisher_never_waits_for_redis_and_consumers_recover_when_it_is_back(
    redis_server,  # noqa: F811
):
    async def body():
        redis_server.kill()  # Redis is down from the start
        async with Simulator(symbols=SYMBOLS, rate=200) as sim:
            feed, publisher, tap = publisher_feed(sim.url, redis_server.url)
            async with publisher, feed:
                await feed.wait_synced(5)
                frames = feed.stats().frames
                await asyncio.sleep(1.0)
                assert feed.stats().frames > frames + 200  # the BTSE reader went on
                assert not publisher.stats.connected and publisher.stats.unpublished > 100
                assert "ConnectionError" in publisher.stats.last_error
                await asyncio.to_thread(redis_server.start)
                seen = Seen()
                async with RedisFeed(SYMBOLS, redis_server.url, on_book=seen.on_book) as consumer:
                    await consumer.wait_synced(8)
                    await asyncio.sleep(0.5)
                assert publisher.stats.connected and publisher.stats.published > 0
            return tap.digests, seen

    publishers, seen = run(body(), timeout=30)
    assert_same_books(seen.digests, publishers, at_least=50)


def test_a_slow_consumer_past_maxlen_says_out_of_sync_and_never_shows_a_wrong_book(
    redis_server,  # noqa: F811
):
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            tap = DigestTap()
            feed = Feed(SYMBOLS, url=sim.url, book_updates=True, tap=tap, **FAST)
            publisher = RedisPublisher(feed, redis_server.url, maxlen=100, checkpoint_interval=0.3)
            seen = Seen()
            seen.slow = 0.01  # 100 books/s against 600 frames/s
            async with publisher, feed:
                await feed.wait_synced(5)
                async with RedisFeed(SYMBOLS, redis_server.url, on_book=seen.on_book,
                                     on_status=seen.on_status, count=50) as consumer:  # fmt: skip
                    await asyncio.sleep(3.0)
                    holes = consumer.stats().holes
                    seen.slow = 0.0  # it keeps up again
                    await asyncio.sleep(1.5)
                    await consumer.wait_synced(5)
                    stats = consumer.stats()
            return tap.digests, seen, holes, stats

    publishers, seen, holes, stats = run(body(), timeout=30)
    assert holes >= 1, "the consumer fell behind MAXLEN: its entries were trimmed"
    assert any(s.reason is Reason.STREAM_HOLE for s in seen.statuses)
    assert_same_books(seen.digests, publishers, at_least=100)
    assert stats.digest_mismatches == 0


def test_a_trimmed_stream_a_bad_entry_and_a_publisher_restart_are_holes_then_books_again(
    redis_server,  # noqa: F811
):
    async def body():
        import redis.asyncio as aioredis

        keys = Keys()
        client = aioredis.from_url(redis_server.url)
        seen = Seen()
        async with Simulator(symbols=SYMBOLS, rate=200) as sim:
            consumer = RedisFeed(SYMBOLS, redis_server.url, on_book=seen.on_book,
                                 on_status=seen.on_status)  # fmt: skip
            async with consumer:  # before any publisher: it starts with the first run
                feed, publisher, tap = publisher_feed(sim.url, redis_server.url)
                async with publisher, feed:
                    await consumer.wait_synced(5)
                    assert consumer.stats().checkpoints_adopted == 0  # from n == 1
                    # trimmed while the consumer was away
                    await consumer.close()
                    await asyncio.sleep(0.3)
                    await client.xtrim(keys.raw("update:BTC-PERP_0"), maxlen=3, approximate=False)
                    await consumer.start()
                    await asyncio.sleep(1.0)
                    await consumer.wait_synced(5)
                    assert consumer.stats().streams["update:BTC-PERP_0"].holes == 1
                    # something that is not a publisher's entry
                    await client.xadd(keys.raw("update:BTC-USD_0"), {b"k": b"f", b"junk": b"1"})
                    await asyncio.sleep(1.0)
                    await consumer.wait_synced(5)
                    assert consumer.stats().bad_entries == 1
                stopped = [s for s in seen.statuses if s.reason is Reason.PUBLISHER_STOPPED]
                assert {s.topic for s in stopped} == {"update:BTC-USD_0", "update:BTC-PERP_0"}
                assert consumer.book("BTC-PERP") is None
                # a new publisher run
                feed2, publisher2, tap2 = publisher_feed(sim.url, redis_server.url)
                async with publisher2, feed2:
                    await consumer.wait_synced(5)
                    await asyncio.sleep(0.5)
                    assert consumer.status("BTC-PERP") is SyncStatus.SYNCED
        await client.aclose()
        return {**tap.digests, **tap2.digests}, seen

    publishers, seen = run(body(), timeout=30)
    assert_same_books(seen.digests, publishers, at_least=200)
    holes = [s for s in seen.statuses if s.reason is Reason.STREAM_HOLE]
    assert any("are missing" in s.detail for s in holes)
    assert any("unreadable entry" in s.detail for s in holes)


def test_tops_trades_and_statuses_are_published_for_light_consumers(redis_server):  # noqa: F811
    async def body():
        import redis.asyncio as aioredis

        keys = Keys()
        client = aioredis.from_url(redis_server.url)
        async with Simulator(symbols=SYMBOLS, rate=200, trade_tape=True) as sim:
            tap = DigestTap()
            feed = Feed(SYMBOLS, url=sim.url, trades=True, tap=tap, **FAST)
            received: list[Trade] = []
            async with RedisPublisher(feed, redis_server.url), feed:
                await feed.wait_synced(5)
                async with RedisFeed(SYMBOLS, redis_server.url, on_trade=received.append):
                    await asyncio.sleep(2.0)
            # read once the feed stopped (and the publisher wrote its last top)
            book = feed._conn_of("BTC-PERP", 0).sync.book("BTC-PERP")
            seq = feed.last_seq("BTC-PERP")
            _, fields = (await client.xrevrange(keys.top("update:BTC-PERP_0"), count=1))[0]
            statuses = await client.xrange(keys.status())
        await client.aclose()
        return tap, received, decode_top(fields), book, seq, statuses

    tap, received, top, book, seq, statuses = run(body(), timeout=20)
    assert top.seq == seq and (top.bid_price, top.bid_size) == book.best_bid
    assert (top.ask_price, top.ask_size) == book.best_ask
    assert len(received) > 5
    assert all(tap.trades[t.trade_id] == t for t in received)  # the publisher's, once each
    assert len({t.trade_id for t in received}) == len(received)
    assert {(f[b"topic"], f[b"status"]) for _, f in statuses} >= {
        (b"update:BTC-PERP_0", b"synced"), (b"update:BTC-USD_0", b"synced")}  # fmt: skip


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder", *args], capture_output=True, text=True, timeout=timeout
    )


def test_publish_cli_publishes_and_says_when_it_could_not(redis_server):  # noqa: F811
    done = _cli("publish", "BTC-USD", "BTC-PERP", "--sim", "--redis", redis_server.url,
                "--duration", "2s", "--checkpoint-every", "0.5s")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2/2 books synced; redis up" in done.stdout
    import redis

    client = redis.Redis.from_url(redis_server.url)
    assert client.xlen("btse:raw:update:BTC-PERP_0") > 100
    assert client.get("btse:checkpoint:update:BTC-USD_0") is not None
    assert client.xlen("btse:trades:BTC-PERP") > 0
    redis_server.kill()
    done = _cli("publish", "BTC-USD", "--sim", "--redis", redis_server.url, "--duration", "1s")
    assert done.returncode == 4 and "nothing published (is Redis up" in done.stderr
    assert "unreachable" in done.stderr
    done = _cli("publish", "BTC-USD", "--sim", "--redis", "http://127.0.0.1:1")
    assert done.returncode == 2 and "redis:// URL" in done.stderr


def test_watch_follows_a_publisher_through_redis(redis_server):  # noqa: F811
    publisher = subprocess.Popen(
        [sys.executable, "-m", "recorder", "-q", "publish", "BTC-USD", "BTC-PERP", "--sim",
         "--redis", redis_server.url, "--duration", "8s", "--checkpoint-every", "0.5s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        done = _cli("watch", "BTC-USD", "BTC-PERP", "--redis", redis_server.url, "--duration",
                    "3s", "--status-every", "1s", "--trades")  # fmt: skip
    finally:
        out, err = publisher.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]
    synced = {r[1] for r in rows if len(r) > 2 and r[-1] == "synced"}
    assert synced == {"BTC-USD", "BTC-PERP"}
    assert not any(line.split()[1:2] == ["!"] for line in done.stdout.splitlines()), done.stdout
    assert "last trade:" in done.stdout
    assert publisher.returncode == 0, err
    refused = _cli("watch", "BTC-USD", "--redis", redis_server.url, "--sim")
    assert refused.returncode == 2 and "no --url, --sim or --client" in refused.stderr
    refused = _cli("watch", "BTC-USD", "--redis", redis_server.url, "--client", "picows")
    assert refused.returncode == 2 and "no --url, --sim or --client" in refused.stderr


class StatusTap(DigestTap):
    """The publisher's statuses as its core emitted them."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[tuple[str, str, str]] = []

    def on_event(self, conn_id: int, event: object) -> None:
        super().on_event(conn_id, event)
        if type(event) is StatusChanged:
            self.statuses.append((event.topic, event.status.value, event.reason.value))


def test_a_consumer_lives_the_publishers_faults_as_the_publisher_did(redis_server):  # noqa: F811
    """Gaps, error frames, crossed books, stale snapshots and dropped sockets on the
    publisher's side: a consumer from the first record has the same statuses, in order,
    and the same books."""
    faults = Faults(drop=0.004, error_frame=0.003, crossed=0.002, stale_snapshot=0.05)

    async def body():
        async with Simulator(symbols=SYMBOLS, rate=250, faults=faults) as sim:
            seen = Seen()
            consumer = RedisFeed(SYMBOLS, redis_server.url, on_book=seen.on_book,
                                 on_status=seen.on_status)  # fmt: skip
            async with consumer:
                tap = StatusTap()
                feed = Feed(SYMBOLS, url=sim.url, book_updates=True, tap=tap, **FAST)
                async with RedisPublisher(feed, redis_server.url, checkpoint_interval=0.3), feed:
                    await asyncio.sleep(2.5)
                    await sim.disconnect_all()  # the publisher's sockets drop (1006)
                    await asyncio.sleep(2.5)
                await asyncio.sleep(0.5)
            return tap, seen, feed.stats()

    tap, seen, stats = run(body(), timeout=40)
    assert stats.gaps > 0 and stats.reconnects > 0  # the faults happened
    mine = [(s.topic, s.status.value, s.reason.value) for s in seen.statuses
            if s.reason not in (Reason.PUBLISHER_STOPPED,)]  # fmt: skip
    for topic in ("update:BTC-USD_0", "update:BTC-PERP_0"):  # each stream in its order
        assert [m for m in mine if m[0] == topic] == [t for t in tap.statuses if t[0] == topic]
    assert {r for _, _, r in mine} >= {"gap", "connection_lost", "snapshot"}
    assert_same_books(seen.digests, tap.digests, at_least=500)


def test_refused_writes_and_wrong_keys_are_counted_and_the_books_go_on(redis_server):  # noqa: F811
    async def body():
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_server.url)
        await client.set("btse:trades:BTC-PERP", "not a stream")  # someone else's key
        await client.set("btse:raw:update:BTC-USD_0", "not a stream either")
        async with Simulator(symbols=SYMBOLS, rate=200, trade_tape=True) as sim:
            feed = Feed(SYMBOLS, url=sim.url, trades=True, **FAST)
            publisher = RedisPublisher(feed, redis_server.url, checkpoint_interval=0.3)
            async with publisher, feed:
                await feed.wait_synced(5)
                consumer = RedisFeed(SYMBOLS, redis_server.url, backoff=(0.05, 0.2))
                async with consumer:
                    await asyncio.sleep(1.5)
                    blocked = (consumer.status("BTC-PERP"), consumer.stats().last_error)
                    await client.delete("btse:raw:update:BTC-USD_0")
                    await consumer.wait_synced(8)
        await client.aclose()
        return publisher.stats, blocked

    stats, (status, error) = run(body(), timeout=40)
    # one stream of the wrong type fails every XREAD: said, retried, and over once fixed
    assert status is not SyncStatus.SYNCED and "WRONGTYPE" in error
    assert stats.refused > 0 and "WRONGTYPE" in stats.last_error
    assert stats.published > 0 and stats.trades > 0  # BTC-USD's trades went through
    assert stats.queued == stats.published + stats.unpublished + stats.dropped


def test_live_join_l1_streams_and_a_silent_publisher(redis_server):  # noqa: F811
    async def body():
        from bookengine.events import L1Quote

        async with Simulator(symbols=SYMBOLS, rate=200) as sim:
            feed = Feed([*SYMBOLS, "snapshotL1:BTC-USD"], url=sim.url, **FAST)
            publisher = RedisPublisher(feed, redis_server.url, checkpoint_interval=0.3)
            await publisher.start()
            await feed.start()
            await feed.wait_synced(5)
            await asyncio.sleep(1.0)  # quotes pile up in Redis before the consumers come
            quotes: list[L1Quote] = []
            seen = Seen()
            late = RedisFeed(["snapshotL1:BTC-USD"], redis_server.url, on_l1=quotes.append)
            live = RedisFeed(["BTC-PERP"], redis_server.url, join="live",
                             on_status=seen.on_status, stale_after=1.0)  # fmt: skip
            async with late, live:
                joined = time.time_ns()
                await live.wait_synced(5)
                await asyncio.sleep(0.5)
                # the publisher dies without a word (no stop records)
                for task in publisher._tasks:
                    task.cancel()
                await feed.close()
                await asyncio.sleep(3.5)
                stats = live.stats()
            await publisher.close()
            return quotes, joined, seen, stats

    quotes, joined, seen, stats = run(body(), timeout=30)
    assert quotes and quotes[0].arrival_ns > joined - 500_000_000  # not the backlog
    assert stats.checkpoints_adopted >= 1  # "live": joined at the next checkpoint
    last = seen.statuses[-1]
    assert last.status is SyncStatus.OUT_OF_SYNC and "nothing from the publisher" in last.detail


def test_close_with_redis_gone_counts_every_record_and_returns(redis_server):  # noqa: F811
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            feed = Feed(SYMBOLS, url=sim.url, **FAST)
            publisher = RedisPublisher(feed, redis_server.url, close_timeout=1.0)
            async with feed:
                await publisher.start()
                await feed.wait_synced(5)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(redis_server.kill)
                await asyncio.sleep(0.5)
                await publisher.close()
        return publisher.stats

    stats = run(body(), timeout=30)
    assert stats.published > 0 and stats.unpublished > 0
    assert stats.queued == stats.published + stats.unpublished + stats.dropped
    assert not stats.connected  # and close() returned: run() bounds the whole body
