"""Every simulator fault, seen from a plain websockets client, matches what it recorded."""

import asyncio
import time

import orjson
import pytest
from simclient import frames, open_client, parse, run, subscribe, until
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bookengine.simulator import Faults, Simulator

pytestmark = pytest.mark.integration

T = "update:BTC-PERP_0"


async def collect(faults: Faults, count: int, rate: float = 800, **kw):
    """Subscribe to T with faults on; return (parsed frames, raw frames, simulator)."""
    sim = Simulator(symbols=["BTC-PERP"], rate=rate, faults=faults, seed=7, **kw)
    await sim.start()
    ws = await open_client(sim.futures_url)
    await ws.send(subscribe(T))
    raws = await frames(ws, count)
    await ws.close()
    await sim.stop()
    return [parse(r) for r in raws], raws, sim


def delta_seqs(msgs):
    return [
        m["data"]["seqNum"]
        for m in msgs
        if isinstance(m, dict) and m.get("data", {}).get("type") == "delta"
    ]


def injected(sim, kind):
    return [i for i in sim.injected if i.kind == kind]


def test_drop_makes_exactly_the_recorded_gaps():
    async def body():
        msgs, _, sim = await collect(Faults(drop=0.05), 600)
        seqs = delta_seqs(msgs)
        missing = set(range(seqs[0], seqs[-1] + 1)) - set(seqs)
        dropped = {i.seq for i in injected(sim, "drop") if seqs[0] <= i.seq <= seqs[-1]}
        assert missing and missing == dropped

    run(body())


def test_duplicate_and_reorder():
    async def body():
        msgs, _, sim = await collect(Faults(duplicate=0.05, reorder=0.05), 600)
        seqs = delta_seqs(msgs)
        dups = {s for s in seqs if seqs.count(s) > 1}
        assert dups and dups <= {i.seq for i in injected(sim, "duplicate")}
        swapped = {
            seqs[i] for i in range(len(seqs) - 1) if seqs[i] > seqs[i + 1] and seqs[i] not in dups
        }
        assert swapped
        reordered = {i.seq for i in injected(sim, "reorder")}
        # a held delta goes out right after the next one: seq+1 arrives before seq
        assert {s - 1 for s in swapped} <= reordered

    run(body())


def test_malformed_oversized_and_error_frames():
    async def body():
        faults = Faults(malformed=0.03, oversized=0.01, error_frame=0.03, oversized_bytes=200_000)
        msgs, raws, sim = await collect(faults, 800)
        junk = [m for m in msgs if isinstance(m, str) and m != "pong"]
        assert len(junk) == len(injected(sim, "malformed")) > 0
        huge = [r for r in raws if len(r) >= 200_000]
        assert len(huge) == len(injected(sim, "oversized")) > 0
        errors = [m for m in msgs if isinstance(m, dict) and "errors" in m]
        assert len(errors) == len(injected(sim, "error_frame")) > 0

    run(body())


def test_oversized_frame_beyond_client_limit_closes_with_1009():
    async def body():
        sim = Simulator(
            symbols=["BTC-PERP"], rate=200, faults=Faults(oversized=1.0, oversized_bytes=300_000)
        )
        await sim.start()
        ws = await open_client(sim.futures_url, max_size=100_000)
        await ws.send(subscribe(T))
        with pytest.raises(ConnectionClosed) as closed:
            await frames(ws, 50)
        assert closed.value.sent.code == 1009  # the client refused it: message too big
        await sim.stop()

    run(body())


def test_crossed_delta_then_resubscribe_is_sane():
    async def body():
        sim = Simulator(symbols=["BTC-PERP"], rate=800, seed=3)
        await sim.start()
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T))
        snap, _ = await until(
            ws, lambda m: isinstance(m, dict) and m.get("data", {}).get("type") == "snapshot"
        )
        sim.set_faults(Faults(crossed=1.0), topic=T)
        crossed = False
        bids = {float(p): float(s) for p, s in snap["data"]["bids"]}
        asks = {float(p): float(s) for p, s in snap["data"]["asks"]}
        for raw in await frames(ws, 50):
            msg = parse(raw)
            if isinstance(msg, dict) and msg.get("data", {}).get("type") == "delta":
                for side, levels in ((bids, msg["data"]["bids"]), (asks, msg["data"]["asks"])):
                    for p, s in levels:
                        side[float(p)] = float(s) if float(s) else side.pop(float(p), 0)
                bids = {p: s for p, s in bids.items() if s}
                if max(bids) >= min(asks):
                    crossed = True
                    break
        assert crossed and injected(sim, "crossed")
        sim.set_faults(Faults(), topic=T)
        await ws.send(subscribe(T))
        snap, _ = await until(
            ws, lambda m: isinstance(m, dict) and m.get("data", {}).get("type") == "snapshot"
        )
        best_bid = max(float(p) for p, _ in snap["data"]["bids"])
        best_ask = min(float(p) for p, _ in snap["data"]["asks"])
        assert best_bid < best_ask  # the truth was never crossed
        await ws.close()
        await sim.stop()

    run(body())


def test_stale_snapshot_on_resubscribe():
    async def body():
        sim = Simulator(symbols=["BTC-PERP"], rate=500)
        await sim.start()
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T))
        delta, _ = await until(
            ws, lambda m: isinstance(m, dict) and m.get("data", {}).get("type") == "delta"
        )
        delta, _ = await until(
            ws,
            lambda m: (
                isinstance(m, dict)
                and m.get("data", {}).get("seqNum", 0) > delta["data"]["seqNum"] + 5
            ),
        )
        sim.set_faults(Faults(stale_snapshot=1.0))
        await ws.send(subscribe(T))
        snap, _ = await until(
            ws, lambda m: isinstance(m, dict) and m.get("data", {}).get("type") == "snapshot"
        )
        assert snap["data"]["seqNum"] < delta["data"]["seqNum"]
        assert injected(sim, "stale_snapshot")
        await ws.close()
        await sim.stop()

    run(body())


def test_stall_is_silence_then_nothing_lost():
    async def body():
        sim = Simulator(symbols=["BTC-PERP"], rate=300, faults=Faults(stall=1.0, stall_s=0.6))
        await sim.start()
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T))
        arrivals, seqs = [], []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            msg = parse(await asyncio.wait_for(ws.recv(decode=False), 3))
            arrivals.append(time.monotonic())
            if isinstance(msg, dict) and msg.get("data", {}).get("type") == "delta":
                seqs.append(msg["data"]["seqNum"])
        silences = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        assert injected(sim, "stall") and max(silences) >= 0.5
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # held, not dropped
        await ws.close()
        await sim.stop()

    run(body())


@pytest.mark.parametrize("kind, code", [("disconnect", 1006), ("close_1007", 1007)])
def test_connection_killers(kind, code):
    async def body():
        sim = Simulator(symbols=["BTC-PERP"], rate=100, faults=Faults(**{kind: 1.0}))
        await sim.start()
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T))
        last = None
        with pytest.raises(ConnectionClosed):
            while True:
                last = parse(await asyncio.wait_for(ws.recv(decode=False), 5))
        assert ws.close_code == code
        if code == 1007:
            assert last["errors"][0]["error"]["code"] == 1007
        assert injected(sim, kind)
        await sim.stop()

    run(body())


def test_slow_consumer_gets_1007():
    async def body():
        sim = Simulator(symbols=["BTC-PERP", "ETH-PERP"], rate=4000, max_queue=300)
        await sim.start()
        ws = await open_client(sim.futures_url, max_queue=4)  # reads almost nothing
        await ws.send(subscribe(T, "update:ETH-PERP_0"))
        for _ in range(100):
            if injected(sim, "slow_consumer"):
                break
            await asyncio.sleep(0.05)
        assert injected(sim, "slow_consumer")
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(decode=False), 5)
        assert ws.close_code in (1007, 1006)
        await sim.stop()

    run(body())


def test_refuse_connections_then_accept_and_restart_on_same_port():
    async def body():
        sim = Simulator(symbols=["BTC-PERP"], rate=100)
        await sim.start()
        sim.refuse_connections(0.4)
        with pytest.raises(InvalidStatus, match="503"):
            await open_client(sim.futures_url)
        await asyncio.sleep(0.5)
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T))
        before, _ = await until(
            ws, lambda m: isinstance(m, dict) and m.get("data", {}).get("type") == "delta"
        )
        port = sim.port
        await sim.stop()
        with pytest.raises(ConnectionClosed):
            await frames(ws, 10_000)
        await sim.start()
        assert sim.port == port
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T))
        snap, _ = await until(
            ws, lambda m: isinstance(m, dict) and m.get("data", {}).get("type") == "snapshot"
        )
        assert snap["data"]["seqNum"] >= before["data"]["seqNum"]  # the market went on
        await ws.close()
        await sim.stop()

    run(body())


def test_faults_parse():
    f = Faults.parse("drop=0.01, duplicate=0.5,stall_s=1.5,oversized_bytes=10")
    assert (f.drop, f.duplicate, f.stall_s, f.oversized_bytes) == (0.01, 0.5, 1.5, 10)
    assert Faults.parse("all=0.1").crossed == 0.1
    for bad in ("drop", "drop=2", "bogus=1"):
        with pytest.raises(ValueError):
            Faults.parse(bad)
    assert orjson.dumps(Faults.parse("").any()) == b"false"


def test_faults_per_topic_stay_on_that_topic():
    async def body():
        sim = Simulator(symbols=["BTC-PERP", "ETH-PERP"], rate=600, seed=2)
        sim.set_faults(Faults(drop=0.2), topic=T)
        await sim.start()
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T, "update:ETH-PERP_0"))
        msgs = [parse(r) for r in await frames(ws, 600)]
        by_topic = {}
        for m in msgs:
            if isinstance(m, dict) and m.get("data", {}).get("type") == "delta":
                by_topic.setdefault(m["topic"], []).append(m["data"]["seqNum"])
        eth = by_topic["update:ETH-PERP_0"]
        assert eth == list(range(eth[0], eth[0] + len(eth)))  # untouched
        btc = by_topic[T]
        assert len(btc) < btc[-1] - btc[0] + 1  # gaps
        assert {i.topic for i in injected(sim, "drop")} == {T}
        await ws.close()
        await sim.stop()

    run(body())


def test_topic_stall_silences_one_topic_and_the_chain_continues():
    async def body():
        sim = Simulator(symbols=["BTC-PERP", "ETH-PERP"], rate=300)
        sim.set_faults(Faults(stall=1.0, stall_s=0.6), topic=T)
        await sim.start()
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T, "update:ETH-PERP_0"))
        last_btc = time.monotonic()
        longest = 0.0
        eth_during_silence = 0
        btc = []
        deadline = time.monotonic() + 2.2
        while time.monotonic() < deadline:
            msg = parse(await asyncio.wait_for(ws.recv(decode=False), 3))
            if not (isinstance(msg, dict) and msg.get("data", {}).get("type") == "delta"):
                continue
            now = time.monotonic()
            if msg["topic"] == T:
                longest = max(longest, now - last_btc)
                last_btc = now
                btc.append(msg["data"]["seqNum"])
            elif now - last_btc > 0.3:
                eth_during_silence += 1
        stalls = injected(sim, "stall")
        assert stalls and all(i.topic == T and i.conn_id is None for i in stalls)
        assert longest >= 0.5 and eth_during_silence > 0
        assert btc == list(range(btc[0], btc[0] + len(btc)))  # a quiet book, not a gap
        await ws.close()
        await sim.stop()

    run(body())


@pytest.mark.parametrize("code", [None, 1007, 1001])
def test_disconnect_all_and_record_sent(code):
    async def body():
        sim = Simulator(symbols=["BTC-PERP"], rate=200, record_sent=True)
        await sim.start()
        ws = await open_client(sim.futures_url)
        await ws.send(subscribe(T))
        got = await frames(ws, 20)
        await sim.disconnect_all(code=code)
        with pytest.raises(ConnectionClosed):
            while True:
                got.append(await asyncio.wait_for(ws.recv(decode=False), 5))
        assert ws.close_code == (1006 if code is None else code)
        # sim.sent is every frame the connection was sent, exactly, in order
        assert sim.sent[1] == got
        stats = sim.stats()
        assert stats["frames_sent"] == len(got) and stats["connections_total"] == 1
        assert stats["injected"] == {"disconnect_all": 1}
        await sim.stop()

    run(body())
