"""Every spelling BTSE hands out, and hostile servers, against the live Feed over real
loopback sockets to the simulator."""

import asyncio
import logging
import time
import tracemalloc

import pytest
from simclient import FAST, run

from bookengine import StatusChanged, SyncStatus
from bookengine.feed import Feed, Reconnecting
from bookengine.simulator import Faults, Simulator
from bookengine.sync import RecoveryPolicy

pytestmark = pytest.mark.integration

LISTED = ["BTC-PERP", "BTC-USD", "K_PEIPEI-USDT", "BTC-260925"]
SPELLINGS = [
    "BTC-PERP-USDT",
    "btc-usd",
    "BTCPFC",
    "K_PEIPEI-USDT",
    "snapshotL1:BTC-PERP_0",
    "BTC-260925-USDT",
]


class SubscribeCounter:
    """A FeedTap that notes when each subscribe request went out."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def on_open(self, *args: object) -> None: ...
    def on_frame(self, *args: object) -> None: ...
    def on_close(self, *args: object) -> None: ...
    def on_event(self, *args: object) -> None: ...

    def on_sent(self, conn_id: int, now_ns: int, payload: str) -> None:
        if '"subscribe"' in payload:
            self.sent.append(now_ns)


def test_every_spelling_syncs_and_is_a_key_that_works():
    async def body():
        statuses: list[StatusChanged] = []
        async with Simulator(symbols=LISTED, rate=100) as sim:
            feed = Feed(SPELLINGS, url=sim.url, on_status=statuses.append, **FAST)
            async with feed:
                await feed.wait_synced(8)
                # one subscription per stream: BTC-PERP-USDT and BTCPFC are one book
                assert sorted(feed.topics) == [
                    "snapshotL1:BTC-PERP_0",
                    "update:BTC-260925_0",
                    "update:BTC-PERP_0",
                    "update:BTC-USD_0",
                    "update:K_PEIPEI-USDT_0",
                ]
                for spelling in SPELLINGS:
                    assert feed.status(spelling) is SyncStatus.SYNCED, spelling
                for spelling in ("BTC-PERP-USDT", "BTCPFC", "btc-usd", "K_PEIPEI-USDT"):
                    assert feed.book(spelling) is not None and feed.last_seq(spelling), spelling
                assert feed.book("BTC-PERP-USDT") is feed.book("BTCPFC")
                assert feed.book("BTC-260925-USDT") is feed.book("BTC-260925")
                quote = feed.quote("snapshotL1:BTC-PERP_0")
                assert quote is not None and quote.symbol == "BTC-PERP"
                # the dated future went to the futures endpoint, the K_ market to spot
                where = {t: url.rsplit("/", 1)[1] for _, url, ts in feed.connections for t in ts}
                assert where["update:BTC-260925_0"] == "futures"
                assert where["update:K_PEIPEI-USDT_0"] == "spot"
                # the books are the simulator's truth
                for symbol in ("BTC-PERP", "BTC-USD", "K_PEIPEI-USDT", "BTC-260925"):
                    book, seq = feed.book(symbol), feed.last_seq(symbol)
                    bids, _ = sim.book_at(symbol, 0, seq)
                    assert book.bids() and {float(p) for p in bids} == {
                        p for p, _ in book.bids()
                    }
        # waiting and synced were reported under one name per stream
        by_topic: dict[str, list] = {}
        for event in statuses:
            if isinstance(event, StatusChanged):
                by_topic.setdefault(event.topic, []).append(event.status)
        assert set(by_topic) == {
            "update:BTC-PERP_0",
            "update:BTC-USD_0",
            "update:K_PEIPEI-USDT_0",
            "update:BTC-260925_0",
            "snapshotL1:BTC-PERP",
        }
        for topic, seen in by_topic.items():
            assert seen[:2] == [SyncStatus.WAITING, SyncStatus.SYNCED], topic

    run(body())


def test_a_never_served_topic_is_reported_after_a_bounded_number_of_resubscribes(caplog):
    async def body():
        tap = SubscribeCounter()
        sent = tap.sent

        policy = RecoveryPolicy(first_delay_s=0.05, max_delay_s=0.3, report_after=3)
        options = {**FAST, "snapshot_timeout": 0.2}
        async with Simulator(symbols=["BTC-PERP"], rate=50) as sim:
            options["recovery"] = policy
            feed = Feed(["update:BTC-PERP_9", "BTC-PERP"], url=sim.url, tap=tap, **options)
            async with feed:
                for _ in range(200):
                    if feed.status("BTC-PERP", 9) is SyncStatus.FAILING:
                        break
                    await asyncio.sleep(0.02)
                assert feed.status("BTC-PERP", 9) is SyncStatus.FAILING
                reported_after = len(sent)
                await asyncio.sleep(2.0)
                # the healthy book on the same socket was never disturbed
                assert feed.status("BTC-PERP") is SyncStatus.SYNCED
                stats = feed.topic_stats()["update:BTC-PERP_9"]
        # reported at the 3rd failure in a row: the first subscribe + 2 resubscribes
        assert reported_after == 1 + 2
        # then no faster than one per (timeout + half of max_delay_s): the timeout is
        # noticed by the Feed's ~0.75 s watchdog here, so <= 2.0 / 0.75 + 1 more
        assert len(sent) - reported_after <= 4
        assert stats.failing == 1 and stats.timeouts >= 3
        assert any("is failing" in r.message for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="bookengine.feed"):
        run(body())


def test_hostile_server_bounded_subscribes_memory_and_every_topic_synced_or_reported():
    """Sequence poison, restarted chains, malformed resync snapshots and an error flood at
    once: subscribes stay bounded, memory stays bounded, every book ends synced (and
    true) or reported failing."""

    async def body():
        symbols = ["BTC-USD", "ETH-USD", "BTC-PERP", "ETH-PERP"]
        tap = SubscribeCounter()
        subscribes = tap.sent

        faults = Faults(seq_poison=0.01, seq_restart=0.005, bad_snapshot=0.3, error_frame=0.5)
        errors = []

        async def slow_on_error(event):
            errors.append(event)
            await asyncio.sleep(0.01)

        tracemalloc.start()
        async with Simulator(symbols=symbols, rate=300, faults=faults, seed=3) as sim:
            policy = RecoveryPolicy(first_delay_s=0.1, max_delay_s=1.0, report_after=6)
            options = {**FAST, "recovery": policy, "queue_size": 100}
            async with Feed(
                symbols, url=sim.url, tap=tap, on_error=slow_on_error, **options
            ) as feed:
                await asyncio.sleep(1.0)
                base, _ = tracemalloc.get_traced_memory()
                await asyncio.sleep(5.0)
                grown, _ = tracemalloc.get_traced_memory()
                assert len(feed._others) <= 100  # the error flood is bounded
                sim.set_faults(Faults())  # the attack ends: every topic recovers
                await feed.wait_synced(10)
                for symbol in symbols:
                    book, seq = feed.book(symbol), feed.last_seq(symbol)
                    bids, asks = sim.book_at(symbol, 0, seq)
                    assert book.as_dict() == (
                        {float(p): float(s) for p, s in bids.items()},
                        {float(p): float(s) for p, s in asks.items()},
                    )
                stats = feed.stats()
        tracemalloc.stop()
        kinds = sim.stats()["injected"]
        assert kinds.get("seq_poison") and kinds.get("bad_snapshot") and kinds.get("error_frame")
        # bounded subscribes: 4 topics over ~7 s, far from the thousands per second seen
        assert len(subscribes) < 4 * 40
        assert stats.dropped > 0 and errors  # the slow consumer shed errors, counted
        assert grown - base < 20 * 2**20

    run(body(), timeout=60)


def test_a_redirect_to_https_is_a_reconnect_not_a_silent_death():
    async def body():
        events = []
        async with Simulator(symbols=["BTC-USD"], rate=50) as sim:
            sim.refuse_connections(1.0, how="redirect")
            async with Feed(["BTC-USD"], url=sim.url, on_status=events.append, **FAST) as feed:
                await feed.wait_synced(8)
        retries = [e for e in events if isinstance(e, Reconnecting)]
        assert retries and "connect failed" in retries[0].reason
        assert sim.stats()["injected"]["refused"] >= 1

    run(body())


def test_accept_then_close_backs_off_instead_of_hammering():
    async def body():
        events = []
        async with Simulator(symbols=["BTC-USD"], rate=50) as sim:
            sim.refuse_connections(2.5, how="accept_close")
            options = {**FAST, "backoff": (0.05, 0.8)}
            async with Feed(["BTC-USD"], url=sim.url, on_status=events.append, **options) as feed:
                await feed.wait_synced(10)
                accepted = sim.stats()["injected"]["accept_close"]
        attempts = [e.attempt for e in events if isinstance(e, Reconnecting)]
        # every handshake succeeded, yet the backoff grew: 1, 2, 3, ... never back to 1
        assert attempts == list(range(1, len(attempts) + 1)) and len(attempts) >= 3
        assert accepted <= 12  # 0.05 * 2**n capped at 0.8 s over 2.5 s, not ~50

    run(body())


def test_a_string_is_one_symbol_and_too_many_topics_are_refused_up_front():
    feed = Feed("BTC-USD", url="ws://127.0.0.1:1")
    assert feed.topics == ["update:BTC-USD_0"]
    many = [f"X{i}-USD" for i in range(5_001)]
    with pytest.raises(ValueError, match="connections"):
        Feed(many, url="ws://127.0.0.1:1")


def test_close_is_bounded_even_behind_a_slow_error_callback():
    async def body():
        slow = []

        async def on_error(event):
            slow.append(event)
            await asyncio.sleep(0.2)  # far slower than the flood

        async with Simulator(symbols=["BTC-USD"], rate=400, faults=Faults(error_frame=1.0)) as sim:
            options = {**FAST, "queue_size": 50, "close_timeout": 0.5}
            feed = Feed(["BTC-USD"], url=sim.url, on_error=on_error, **options)
            await feed.start()
            await asyncio.sleep(1.0)
            assert len(feed._others) <= 50  # bounded while it runs
            await asyncio.wait_for(feed.close(), 5)  # a hang guard, not a timing claim
            stats = feed.stats()
        assert stats.dropped > 0 and slow

    run(body())


def test_a_new_socket_gets_its_own_silence_clock_after_an_outage():
    """After an outage longer than silence_timeout, the watchdog must time the new socket
    from its own start, not from the last frame of the old one."""
    from websockets.asyncio.server import serve

    async def body():
        lived: list[float] = []

        async def quiet(ws):  # accepts, says nothing for a while, then hangs up
            began = time.monotonic()
            try:
                await asyncio.wait_for(ws.wait_closed(), 1.5)
            except TimeoutError:
                pass
            lived.append(time.monotonic() - began)

        async with serve(quiet, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            options = {**FAST, "silence_timeout": 1.0, "ping_interval": 30.0}
            feed = Feed(["BTC-PERP"], url=f"ws://127.0.0.1:{port}", **options)
            feed._connections[0]._last_rx = time.monotonic() - 100  # a long outage ago
            await feed.start()
            for _ in range(300):
                if lived:
                    break
                await asyncio.sleep(0.01)
            await feed.close()
        assert lived and lived[0] >= 0.9  # dropped for its own silence (1 s), not at once

    run(body())


def test_close_from_inside_a_callback_and_while_connecting():
    async def body():
        async with Simulator(symbols=["BTC-USD"], rate=100) as sim:
            feed: Feed

            async def on_top(event):
                await feed.close()

            feed = Feed(["BTC-USD"], url=sim.url, on_top=on_top, **FAST)
            await asyncio.wait_for(feed.run_forever(), 10)  # close() ends it
            assert feed._tasks == [] and feed.status("BTC-USD") is SyncStatus.SYNCED
            # close() while the handshake is under way leaves no socket open
            feed = Feed(["BTC-USD"], url=sim.url, **FAST)
            await feed.start()
            await asyncio.sleep(0)  # the connection task is inside connect()
            await feed.close()
            await asyncio.sleep(0.3)
            assert sim.stats()["connections"] == 0

    run(body())
