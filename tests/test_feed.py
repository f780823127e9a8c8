"""The live Feed against the simulator over real loopback sockets."""

import asyncio
import logging

import pytest
from conftest import need_extra
from simclient import FAST, run

from bookengine import ArgumentError, Reason, StatusChanged, SyncStatus, TopOfBook
from bookengine.feed import Connected, Feed, Reconnecting
from bookengine.simulator import Faults, Simulator

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC-USD", "ETH-USD", "BTC-PERP", "ETH-PERP"]


@pytest.fixture(params=["websockets", "picows"])
def client(request):
    """The WebSocket client the Feed reads with: the default, and the [picows] extra."""
    if request.param == "picows":
        need_extra("picows", "picows")
    return request.param


def as_floats(truth):
    bids, asks = truth
    return {float(p): float(s) for p, s in bids.items()}, {
        float(p): float(s) for p, s in asks.items()
    }


def books_equal_truth(feed, sim, symbols):
    """Every synced book equals the simulator's truth at the book's seqNum."""
    checked = 0
    for symbol in symbols:
        book, seq = feed.book(symbol), feed.last_seq(symbol)
        if book is not None:
            assert book.as_dict() == as_floats(sim.book_at(symbol, 0, seq)), symbol
            checked += 1
    return checked


def test_books_equal_truth_and_top_events_match_truth(client):
    async def body():
        tops = []
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            async with Feed(
                SYMBOLS, url=sim.url, on_top=tops.append, client=client, **FAST
            ) as feed:
                await feed.wait_synced(5)
                await asyncio.sleep(1.0)
                assert books_equal_truth(feed, sim, SYMBOLS) == 4
                assert {t.symbol for t in tops} == set(SYMBOLS)
                for top in tops[-200:]:  # each published top is the truth's top at its seq
                    bids, asks = as_floats(sim.book_at(top.symbol, 0, top.seq))
                    assert (top.bid_price, top.bid_size) == (max(bids), bids[max(bids)])
                    assert (top.ask_price, top.ask_size) == (min(asks), asks[min(asks)])
                # spot and futures went to their own endpoints
                assert sorted(url.rsplit("/", 1)[1] for _, url, _ in feed.connections) == [
                    "futures",
                    "spot",
                ]

    run(body())


def test_every_fault_on_books_stay_true_and_gaps_are_detected(client):
    async def body():
        faults = Faults(
            drop=0.01,
            duplicate=0.01,
            reorder=0.01,
            malformed=0.005,
            oversized=0.002,
            error_frame=0.005,
            crossed=0.005,
            stale_snapshot=0.3,
            stall=0.1,
            stall_s=0.3,
            oversized_bytes=50_000,
        )
        tops = []
        out_of_sync: set[str] = set()

        def on_top(top):
            # never a top from a book that is out of sync
            assert top.topic not in out_of_sync, top
            tops.append(top)

        def on_status(event):
            if isinstance(event, StatusChanged):
                if event.status is SyncStatus.SYNCED:
                    out_of_sync.discard(event.topic)
                else:
                    out_of_sync.add(event.topic)

        async with Simulator(symbols=SYMBOLS, rate=400, faults=faults, seed=11) as sim:
            async with Feed(
                SYMBOLS, url=sim.url, on_top=on_top, on_status=on_status, client=client, **FAST
            ) as feed:
                await asyncio.sleep(4.0)
                sim.set_faults(Faults())  # let every book resync, then compare with the truth
                await feed.wait_synced(10)
                await asyncio.sleep(0.3)
                assert books_equal_truth(feed, sim, SYMBOLS) == 4
                stats = feed.stats()
                injected = sim.stats()["injected"]
                assert injected.get("drop", 0) > 0 and stats.gaps > 0
                assert stats.bad_frames >= injected.get("malformed", 0) > 0
                assert stats.gaps + stats.resyncs > 0 and len(tops) > 100
                # every published top (faults on) is the truth's top at its seqNum: a drop,
                # duplicate or reorder that went unnoticed would sooner or later break this
                for top in tops[-400:]:
                    bids, asks = as_floats(sim.book_at(top.symbol, 0, top.seq))
                    assert (top.bid_price, top.bid_size) == (max(bids), bids[max(bids)]), top
                    assert (top.ask_price, top.ask_size) == (min(asks), asks[min(asks)]), top

    run(body(), timeout=40)


def test_resync_of_one_symbol_does_not_interrupt_another():
    async def body():
        tops = []
        statuses = []
        async with Simulator(symbols=SYMBOLS, rate=300, seed=5) as sim:
            sim.set_faults(Faults(drop=0.05), topic="update:BTC-PERP_0")
            async with Feed(
                ["BTC-PERP", "ETH-PERP"],
                url=sim.url,
                on_top=tops.append,
                on_status=statuses.append,
                **FAST,
            ) as feed:
                await feed.wait_synced(5)
                await asyncio.sleep(2.0)
        btc_gaps = [
            s
            for s in statuses
            if isinstance(s, StatusChanged) and s.symbol == "BTC-PERP" and s.reason is Reason.GAP
        ]
        eth_trouble = [
            s
            for s in statuses
            if isinstance(s, StatusChanged)
            and s.symbol == "ETH-PERP"
            and s.status is not SyncStatus.SYNCED
            and s.reason is not Reason.SUBSCRIBED
        ]
        assert btc_gaps and not eth_trouble
        eth = [t.seq for t in tops if t.symbol == "ETH-PERP"]
        assert len(eth) > 100 and eth == sorted(eth)  # ETH kept flowing, in order
        # only one snapshot for ETH: it was never resubscribed
        assert feed.stats().resyncs == len(btc_gaps) + sum(
            1
            for s in statuses
            if isinstance(s, StatusChanged)
            and s.symbol == "BTC-PERP"
            and s.reason in (Reason.CROSSED, Reason.STALE_SNAPSHOT, Reason.SNAPSHOT_TIMEOUT)
        )

    run(body())


def test_server_restart_and_refused_connections_are_survived(client):
    async def body():
        statuses = []
        sim = Simulator(symbols=SYMBOLS, rate=200)
        await sim.start()
        async with Feed(
            ["BTC-USD", "BTC-PERP"], url=sim.url, on_status=statuses.append, client=client, **FAST
        ) as feed:
            await feed.wait_synced(5)
            await sim.stop()
            await asyncio.sleep(0.3)
            assert feed.book("BTC-USD") is None  # a dead socket is never a valid book
            await sim.start()
            sim.refuse_connections(0.5)
            await feed.wait_synced(10)
            await sim.disconnect_all(code=None)  # and an abrupt drop
            await asyncio.sleep(0.2)
            await feed.wait_synced(10)
            assert books_equal_truth(feed, sim, ["BTC-USD", "BTC-PERP"]) == 2
            assert feed.stats().reconnects >= 4
        await sim.stop()
        assert any(isinstance(s, Reconnecting) for s in statuses)
        assert sum(isinstance(s, Connected) for s in statuses) >= 4
        assert any(
            isinstance(s, StatusChanged) and s.reason is Reason.CONNECTION_LOST for s in statuses
        )
        assert any(i.kind == "refused" for i in sim.injected)

    run(body(), timeout=40)


def test_silent_socket_is_reconnected_and_snapshot_timeout_resubscribes(client):
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=100) as sim:
            opts = dict(FAST, silence_timeout=0.6, snapshot_timeout=0.5, ping_interval=5.0)
            async with Feed(
                ["update:BTC-PERP_9", "BTC-PERP"], url=sim.url, client=client, **opts
            ) as feed:
                await asyncio.sleep(2.0)
                stats = feed.stats()
                assert feed.book("BTC-PERP") is not None
                assert stats.resyncs >= 2  # _9 never answers: resubscribed on each timeout
            sim.set_faults(Faults(stall=1.0, stall_s=3.0))
            async with Feed(["BTC-PERP"], url=sim.url, client=client, **opts) as feed:
                await asyncio.sleep(3.0)
                assert feed.stats().reconnects >= 1  # silence past silence_timeout

    run(body(), timeout=30)


def test_failing_and_slow_callbacks_do_not_break_the_feed(caplog):
    async def body():
        calls = 0

        def bad(top):
            nonlocal calls
            calls += 1
            raise RuntimeError("strategy bug")

        async def slow(event):
            await asyncio.sleep(0.05)

        async with Simulator(symbols=SYMBOLS, rate=500) as sim:
            async with Feed(SYMBOLS, url=sim.url, on_top=bad, on_status=slow, **FAST) as feed:
                await feed.wait_synced(5)
                await asyncio.sleep(1.5)
                stats = feed.stats()
                assert stats.callback_errors == calls > 10
                assert stats.frames > 1000 and books_equal_truth(feed, sim, SYMBOLS) == 4
        logged = [r for r in caplog.records if "strategy bug" in str(r.exc_info)]
        assert len(logged) == 1  # logged once, counted always

    with caplog.at_level(logging.ERROR, logger="bookengine.feed"):
        run(body())


def test_slow_coroutine_callback_is_conflated_not_queued():
    async def body():
        seen = []

        async def slow_top(top):
            seen.append(top)
            await asyncio.sleep(0.02)

        async with Simulator(symbols=["BTC-PERP"], rate=1000) as sim:
            async with Feed(["BTC-PERP"], url=sim.url, on_top=slow_top, **FAST) as feed:
                await feed.wait_synced(5)
                await asyncio.sleep(1.5)
                stats = feed.stats()
        assert stats.conflated > 100 and len(seen) < stats.frames / 4
        seqs = [t.seq for t in seen]
        assert seqs == sorted(seqs)  # always the newest, never out of order

    run(body())


def test_async_iteration():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            async with Feed(["ETH-USD"], url=sim.url, **FAST) as feed:
                got = []
                async for event in feed:
                    if isinstance(event, TopOfBook):
                        got.append(event)
                    if len(got) == 20:
                        break
        assert all(e.symbol == "ETH-USD" for e in got)

    run(body())


def test_bad_arguments_fail_at_once():
    with pytest.raises(ValueError, match="at least one"):
        Feed([])
    with pytest.raises(ValueError, match="client must be one of websockets, picows"):
        Feed(["BTC-USD"], client="aiohttp")
    with pytest.raises(ValueError, match="url must be"):
        Feed(["BTC-USD"], url="http://example")
    with pytest.raises(ValueError, match="grouping"):
        Feed(["update:BTC-USD_x"])
    feed = Feed([f"C{i}-PERP" for i in range(250)], url="ws://127.0.0.1:1")
    assert [len(t) for _, _, t in feed.connections] == [100, 100, 50]


def test_a_frame_beyond_max_frame_bytes_reconnects_and_resyncs(client):
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=200) as sim:
            statuses = []
            async with Feed(
                ["BTC-PERP"],
                url=sim.url,
                max_frame_bytes=100_000,
                on_status=statuses.append,
                client=client,
                **FAST,
            ) as feed:
                await feed.wait_synced(5)
                sim.set_faults(Faults(oversized=1.0, oversized_bytes=300_000))
                await asyncio.sleep(0.5)
                sim.set_faults(Faults())
                await feed.wait_synced(10)
                assert feed.stats().reconnects >= 1
                assert books_equal_truth(feed, sim, ["BTC-PERP"]) == 1
        closes = [s for s in statuses if isinstance(s, Reconnecting)]
        assert any("1009" in s.reason for s in closes)  # message too big, said plainly

    run(body())


def test_inline_delivery_calls_back_on_the_reader_every_top_none_conflated(client):
    async def body():
        tops, statuses = [], []

        def on_top(top):
            tops.append(top)
            if len(tops) == 3:
                raise RuntimeError("a strategy's bug")

        async with Simulator(symbols=["BTC-PERP"], rate=400) as sim:
            async with Feed(["BTC-PERP"], url=sim.url, on_top=on_top, on_status=statuses.append,
                            delivery="inline", client=client) as feed:  # fmt: skip
                await feed.wait_synced(5)
                await asyncio.sleep(1.0)
            # read once the feed stopped: nothing moves any more
            changes = feed.topic_stats()["update:BTC-PERP_0"].top_changes
            stats = feed.stats()
        return tops, statuses, changes, stats

    tops, statuses, changes, stats = run(body())
    assert len(tops) == changes > 100  # each top change, none conflated or dropped
    assert stats.conflated == 0 and stats.callback_errors == 1
    assert [t.seq for t in tops] == sorted(t.seq for t in tops)
    assert any(isinstance(s, Connected) for s in statuses)
    assert stats.latency["update:BTC-PERP_0"]["callback_us_p50"] is not None


def test_inline_delivery_refuses_async_callbacks():
    async def on_top(top):
        pass

    with pytest.raises(ArgumentError, match="plain functions"):
        Feed(["BTC-PERP"], on_top=on_top, delivery="inline")
    with pytest.raises(ArgumentError, match="'queued' or 'inline'"):
        Feed(["BTC-PERP"], delivery="now")
