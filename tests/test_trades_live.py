"""Public trades end to end over real loopback sockets: simulator -> Feed -> recorder ->
replay -> export."""

import asyncio

import numpy as np
import pytest
from simclient import FAST, open_client, run, subscribe, until

from bookengine import Feed, StatusChanged
from bookengine.events import Trade
from bookengine.simulator import Simulator
from bookengine.simulator.market import MarketModel
from recorder.export import export
from recorder.replay import Replay
from recorder.session import record_session

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC-USD", "BTC-PERP"]


def test_the_model_prints_trades_at_the_touch_and_the_delta_takes_that_liquidity():
    model = MarketModel("BTC-PERP", seed=3)
    printed = 0
    for _ in range(2000):
        bids, asks = dict(model.bids), dict(model.asks)
        model.next_delta_frame()
        for price, units, side in model.last_trades:
            printed += 1
            book, best = (bids, max(bids)) if side == "SELL" else (asks, min(asks))
            assert model.price(best) == price  # at the touch
            after = (model.bids if side == "SELL" else model.asks).get(best, 0)
            assert book[best] - after == units  # the delta took exactly that
    assert printed > 100


def test_the_simulator_serves_trades_on_the_main_endpoints_with_a_batch_first():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=200, trade_tape=True) as sim:
            book = await open_client(sim.futures_url)  # the market runs once subscribed
            await book.send(subscribe("update:BTC-PERP_0"))
            await asyncio.sleep(0.5)
            main = await open_client(sim.url + "/ws/futures")
            await main.send(subscribe("tradeHistoryApiV3:BTC-PERP", "update:BTC-PERP_0"))
            ack, _ = await until(main, lambda m: isinstance(m, dict) and m.get("event"))
            # book topics on a main socket are silently left out of the ack (PROTOCOL.md)
            assert ack["channel"] == ["tradeHistoryApiV3:BTC-PERP"]
            batch, _ = await until(main, lambda m: isinstance(m, dict) and "data" in m)
            ids = [t["tradeId"] for t in batch["data"]]
            assert len(ids) > 1 and ids == sorted(ids, reverse=True)  # newest first
            assert isinstance(batch["data"][0]["price"], float)  # numbers, not strings
            legacy = await open_client(sim.url + "/ws/futures")
            await legacy.send(subscribe("tradeHistoryApi:BTC-PERP"))
            frame, _ = await until(legacy, lambda m: isinstance(m, dict) and "data" in m)
            assert frame["topic"] == "tradeHistoryApi"  # the bare legacy echo
            for ws in (book, main, legacy):
                await ws.close()

    run(body())


def test_feed_trades_are_each_once_in_order_and_equal_the_simulators_tape():
    async def body():
        got: list[Trade] = []
        async with Simulator(symbols=SYMBOLS, rate=200, trade_tape=True) as sim:
            feed = Feed(SYMBOLS, url=sim.url, trades=True, on_trade=got.append, **FAST)
            async with feed:
                await feed.wait_synced(5)
                await asyncio.sleep(1.0)
                await sim.disconnect_all()  # the new batches repeat trades: once each
                await asyncio.sleep(1.0)
            for symbol in SYMBOLS:
                mine = [t for t in got if t.symbol == symbol]
                ids = [t.trade_id for t in mine]
                assert len(ids) > 20 and ids == sorted(set(ids))  # each once, in order
                tape = {t["tradeId"]: t for t in sim.trades(symbol)}
                for trade in mine:
                    truth = tape[trade.trade_id]
                    assert (trade.price, trade.size, trade.side) == (
                        truth["price"], truth["size"], truth["side"]
                    )  # fmt: skip
                assert feed.last_trade(symbol) == mine[-1]

    run(body())


def test_replayed_trades_equal_the_live_feeds_under_disconnects_and_export(tmp_path):
    live: list = []

    def capture(conn_id, event):
        if type(event) in (Trade, StatusChanged):
            live.append(event)

    async def body():
        async with Simulator(symbols=SYMBOLS, rate=200, trade_tape=True) as sim:

            async def script():
                await asyncio.sleep(1.0)
                await sim.disconnect_all()
                await asyncio.sleep(1.0)
                await sim.disconnect_all()

            task = asyncio.create_task(script())
            await record_session(
                SYMBOLS, tmp_path, url=sim.url, duration=3.5, feed_options=FAST,
                on_event=capture,
            )  # fmt: skip
            await task
            return {s: sim.trades(s) for s in SYMBOLS}

    tapes = run(body(), timeout=30)
    trades = [e for e in live if type(e) is Trade]
    from recorder.reader import recording_files, summarize

    received = sum(summarize(path).trades for path in recording_files([tmp_path]))
    # the batches after the reconnects repeated trades: more received than put out
    assert len(trades) > 50 and received > len(trades)
    replayed = [e for e in Replay([tmp_path]).events() if type(e) in (Trade, StatusChanged)]
    assert replayed == live  # trades and statuses, one by one
    path, rows, _ = export([tmp_path], tmp_path / "trades.npz", trades=True)
    data = np.load(path)
    assert rows == len(trades) and data["trade_id"].tolist() == [t.trade_id for t in trades]
    for symbol in SYMBOLS:
        ids = data["trade_id"][data["symbol"] == symbol].tolist()
        assert ids == sorted(set(ids))  # unique and increasing per symbol
        truth = {t["tradeId"]: t["price"] for t in tapes[symbol]}
        prices = data["price"][data["symbol"] == symbol].tolist()
        assert prices == [truth[i] for i in ids]  # the simulator's touch prices


def test_books_and_trades_never_share_a_socket():
    from bookengine import ArgumentError

    with pytest.raises(ArgumentError, match="different sockets"):
        Feed(["BTC-USD"], url="ws://127.0.0.1:9/custom", trades=True)
    feed = Feed(["BTC-USD"], url="ws://127.0.0.1:9/ws/oss/spot", trades=True)
    assert sorted(url for _, url, _ in feed.connections) == [
        "ws://127.0.0.1:9/ws/oss/spot",
        "ws://127.0.0.1:9/ws/spot",
    ]


def test_a_quiet_trade_socket_is_of_use_once_acknowledged():
    """No trades at all (rate 0): the backoff must still restart after each good socket."""
    from bookengine import Reconnecting

    async def body():
        events = []
        async with Simulator(symbols=["BTC-USD"], rate=0) as sim:
            options = {**FAST, "backoff": (0.05, 2.0)}
            feed = Feed(["BTC-USD"], url=sim.url, trades=True, on_status=events.append,
                        **options)  # fmt: skip
            async with feed:
                trade_conn = next(i for i, url, _ in feed.connections if url.endswith("/ws/spot"))
                for _ in range(4):
                    await asyncio.sleep(0.5)
                    await sim.disconnect_all()
                await asyncio.sleep(0.5)
        retries = [e for e in events if type(e) is Reconnecting and e.conn_id == trade_conn]
        attempts = [e.attempt for e in retries]
        assert len(attempts) == 4 and set(attempts) == {1}

    run(body())


def test_a_seek_puts_out_no_trade_twice_and_keeps_order(tmp_path):
    live: list = []

    def capture(conn_id, event):
        if type(event) is Trade:
            live.append(event)

    async def body():
        async with Simulator(symbols=SYMBOLS, rate=200) as sim:

            async def script():
                await asyncio.sleep(1.8)
                await sim.disconnect_all()  # a reconnect batch inside the seek window

            task = asyncio.create_task(script())
            await record_session(
                SYMBOLS, tmp_path, url=sim.url, duration=3.0, feed_options=FAST,
                on_event=capture, checkpoint_interval=0.5,
            )  # fmt: skip
            await task

    run(body(), timeout=30)
    start = live[len(live) // 3].arrival_ns
    expected = [t for t in live if t.arrival_ns >= start]
    got = [e for e in Replay([tmp_path], start_ns=start).events() if type(e) is Trade]
    assert expected and got == expected
