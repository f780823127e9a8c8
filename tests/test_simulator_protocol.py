"""The simulator speaks PROTOCOL.md: checked with a plain websockets client on loopback."""

import asyncio
from decimal import Decimal

import pytest
from simclient import frames, open_client, parse, run, subscribe, unsubscribe, until
from websockets.exceptions import InvalidStatus

from bookengine.simulator import MarketModel, Simulator, realistic_frames

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC-USD", "ETH-USD", "BTC-PERP", "ETH-PERP"]


def is_book(msg, typ=None):
    return isinstance(msg, dict) and "data" in msg and (typ is None or msg["data"]["type"] == typ)


class RefBook:
    """PROTOCOL.md's rules, plainly: Decimal keys, one dict per side."""

    def __init__(self):
        self.bids, self.asks, self.last = {}, {}, None

    def apply(self, data):
        if data["type"] == "snapshot":
            self.bids = {Decimal(p): Decimal(s) for p, s in data["bids"]}
            self.asks = {Decimal(p): Decimal(s) for p, s in data["asks"]}
        else:
            assert data["prevSeqNum"] == self.last, "gap"
            for levels, side in ((data["bids"], self.bids), (data["asks"], self.asks)):
                for p, s in levels:
                    if Decimal(s):
                        side[Decimal(p)] = Decimal(s)
                    else:
                        side.pop(Decimal(p), None)
        self.last = data["seqNum"]

    def same_as(self, truth):
        bids, asks = truth
        return self.bids == {Decimal(p): Decimal(s) for p, s in bids.items()} and self.asks == {
            Decimal(p): Decimal(s) for p, s in asks.items()
        }


def test_subscribe_snapshot_ack_errors_and_ping():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=50) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(
                subscribe(
                    "update:BTC-PERP_0", "update:NOPE-PERP_0", "foo:BTC-PERP", "update:BTC-USD_0"
                )
            )
            msgs = [parse(r) for r in await frames(ws, 5)]
            errors = {
                e["errors"][0]["arg"]: e["errors"][0]["error"]["code"]
                for e in msgs
                if "errors" in e
            }
            # unknown market, unknown topic, spot symbol on the futures path
            assert errors == {
                "update:NOPE-PERP_0": 1000,
                "foo:BTC-PERP": 1005,
                "update:BTC-USD_0": 1000,
            }
            (ack,) = [m for m in msgs if m.get("event") == "subscribe"]
            assert ack["channel"] == ["update:BTC-PERP_0"]  # only what succeeded
            (snap,) = [m for m in msgs if is_book(m)]
            data = snap["data"]
            assert data["type"] == "snapshot" and len(data["bids"]) == len(data["asks"]) == 50
            bids = [Decimal(p) for p, _ in data["bids"]]
            asks = [Decimal(p) for p, _ in data["asks"]]
            assert bids == sorted(bids, reverse=True)  # best first
            assert asks == sorted(asks, reverse=True)  # worst first: best ask is last
            assert bids[0] < asks[-1]
            assert all("." in p for p, _ in data["bids"])  # "86626.0", never "86626"
            await ws.send("ping")
            pong, _ = await until(ws, lambda m: m == "pong")
            await ws.send("not json")
            err, _ = await until(ws, lambda m: isinstance(m, dict) and "errors" in m)
            assert err["errors"][0]["error"]["code"] == 1002
            await ws.send('{"op":"dance","args":["update:BTC-PERP_0"]}')
            err, _ = await until(ws, lambda m: isinstance(m, dict) and "errors" in m)
            assert err["errors"][0]["error"]["code"] == 1001
            await ws.close()

    run(body())


def test_subscribe_without_args_gets_no_reply():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=0) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send('{"op":"subscribe"}')
            await ws.send("ping")
            assert await frames(ws, 1) == [b"pong"]  # nothing came before the pong
            await ws.close()

    run(body())


def test_deltas_chain_window_and_true_book():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=400) as sim:
            ws = await open_client(sim.spot_url)
            await ws.send(subscribe("update:ETH-USD_0"))
            ref = RefBook()
            deletions = 0
            for raw in await frames(ws, 400):
                msg = parse(raw)
                if not is_book(msg):
                    continue
                ref.apply(msg["data"])
                deletions += sum(
                    1 for _, s in msg["data"]["bids"] + msg["data"]["asks"] if s == "0"
                )
                assert len(ref.bids) <= 50 and len(ref.asks) <= 50  # the 50-level window
                assert max(ref.bids) < min(ref.asks)
            assert deletions > 100
            assert ref.same_as(sim.book_at("ETH-USD", 0, ref.last))
            await ws.close()

    run(body())


def test_folded_spelling_and_unsubscribe_either_spelling():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(subscribe("update:BTC-PERP-USDT_0"))
            snap, _ = await until(ws, lambda m: is_book(m, "snapshot"))
            assert (
                snap["topic"] == "update:BTC-PERP-USDT_0" and snap["data"]["symbol"] == "BTC-PERP"
            )
            delta, _ = await until(ws, lambda m: is_book(m, "delta"))
            assert delta["topic"] == "update:BTC-PERP_0"  # deltas on the other spelling
            await ws.send(unsubscribe("update:BTC-PERP_0"))
            ack, _ = await until(
                ws, lambda m: isinstance(m, dict) and m.get("event") == "unsubscribe"
            )
            await asyncio.sleep(0.1)
            await ws.send("ping")
            _, before = await until(ws, lambda m: m == "pong")
            assert not [m for m in before if is_book(m)] or all(
                m["data"]["seqNum"] <= delta["data"]["seqNum"] + 200 for m in before if is_book(m)
            )
            await asyncio.sleep(0.2)
            await ws.send("ping")
            _, after = await until(ws, lambda m: m == "pong")
            assert [m for m in after if is_book(m)] == []  # both spellings stopped
            await ws.close()

    run(body())


def test_groupings_have_own_chains_and_grouping_9_is_silent():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=200) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(
                subscribe(
                    "update:BTC-PERP_0", "update:BTC-PERP_3", "update:BTC-PERP", "update:BTC-PERP_9"
                )
            )
            msgs = [parse(r) for r in await frames(ws, 120)]
            ack = next(m for m in msgs if isinstance(m, dict) and m.get("event") == "subscribe")
            assert "update:BTC-PERP_9" in ack["channel"]
            topics = {m["topic"] for m in msgs if is_book(m)}
            assert topics == {"update:BTC-PERP_0", "update:BTC-PERP_3", "update:BTC-PERP"}
            seqs = {
                t: [m["data"]["seqNum"] for m in msgs if is_book(m) and m["topic"] == t]
                for t in topics
            }
            # `update:BTC-PERP` is a topic of its own with the same seqNums as _0
            deltas = {
                t: [m["data"]["seqNum"] for m in msgs if is_book(m, "delta") and m["topic"] == t]
                for t in topics
            }
            assert deltas["update:BTC-PERP"] and deltas["update:BTC-PERP_0"]
            bare, zero = deltas["update:BTC-PERP"], deltas["update:BTC-PERP_0"]
            assert len(set(bare) & set(zero)) >= min(len(bare), len(zero)) - 2
            assert not set(seqs["update:BTC-PERP_3"]) & set(seqs["update:BTC-PERP_0"])
            coarse = [
                m for m in msgs if is_book(m, "snapshot") and m["topic"] == "update:BTC-PERP_3"
            ][0]
            # _3 buckets are 10 ticks (1.0) wide, printed with the tick's decimals, and the
            # coarse book sits at the same price as the full-precision one
            assert all(p.endswith(".0") and Decimal(p) % 1 == 0 for p, _ in coarse["data"]["bids"])
            fine = [m for m in msgs if is_book(m, "snapshot") and m["topic"] == "update:BTC-PERP_0"]
            fine_bid = Decimal(fine[0]["data"]["bids"][0][0])
            assert abs(Decimal(coarse["data"]["bids"][0][0]) - fine_bid) < 20
            await ws.close()

    run(body())


def test_resubscribe_gives_fresh_snapshot_with_continuing_chain():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(subscribe("update:ETH-PERP_0"))
            delta, _ = await until(ws, lambda m: is_book(m, "delta"))
            await ws.send(subscribe("update:ETH-PERP_0"))
            snap, _ = await until(ws, lambda m: is_book(m, "snapshot"))
            assert snap["data"]["seqNum"] >= delta["data"]["seqNum"]
            nxt, _ = await until(ws, lambda m: is_book(m, "delta"))
            assert nxt["data"]["prevSeqNum"] == snap["data"]["seqNum"]
            await ws.close()

    run(body())


def test_l1_topic():
    async def body():
        async with Simulator(symbols=SYMBOLS, rate=300) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(subscribe("snapshotL1:BTC-PERP", "update:BTC-PERP_0"))
            l1s, book = [], RefBook()
            for raw in await frames(ws, 150):
                msg = parse(raw)
                if is_book(msg, "snapshotL1"):
                    l1s.append(msg)
                    assert "seqNum" not in msg["data"]
                    if not book.bids:
                        continue  # the first L1 may come before the snapshot
                    # the best bid/ask of the book as of the last delta sent before it
                    assert msg["data"]["bids"][0][0] == str(max(book.bids))
                    assert msg["data"]["asks"][0][0] == str(min(book.asks))
                elif is_book(msg):
                    book.apply(msg["data"])
            assert len(l1s) > 5 and l1s[0]["topic"] == "snapshotL1:BTC-PERP"
            assert all(len(m["data"]["bids"]) == len(m["data"]["asks"]) == 1 for m in l1s)
            await ws.send(unsubscribe("snapshotL1:BTC-PERP", "update:BTC-PERP_0"))
            await until(ws, lambda m: isinstance(m, dict) and m.get("event") == "unsubscribe")
            await ws.send("ping")
            _, before = await until(ws, lambda m: m == "pong")
            await asyncio.sleep(0.1)
            await ws.send("ping")
            _, after = await until(ws, lambda m: m == "pong")
            assert [m for m in after if is_book(m)] == []
            await ws.close()

    run(body())


def test_cli_prints_the_url_and_serves_until_interrupted():
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder", "simulate", "--port", "0", "--symbols", "BTC-PERP"],
        stdout=subprocess.PIPE,
        text=True,
        # a shell without job control starts background jobs with SIGINT ignored, and a
        # child inherits that: give it the default so Python turns it into Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = proc.stdout.readline()
        url = next(w for w in line.split() if w.endswith("/ws/oss/futures"))

        async def body():
            ws = await open_client(url)
            await ws.send(subscribe("update:BTC-PERP_0"))
            snap, _ = await until(ws, lambda m: is_book(m, "snapshot"))
            assert snap["data"]["symbol"] == "BTC-PERP"
            await ws.close()

        run(body())
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "stopped: 1 connections" in out
    finally:
        proc.kill()
        proc.wait()


def test_topic_limit_per_connection():
    async def body():
        symbols = [f"C{i}-PERP" for i in range(60)]
        async with Simulator(symbols=symbols, rate=0) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(subscribe(*[f"update:{s}_{g}" for s in symbols for g in (0, 1)]))
            msgs = [parse(r) for r in await frames(ws, 121, timeout=10)]
            ack = next(m for m in msgs if isinstance(m, dict) and m.get("event") == "subscribe")
            errors = [m for m in msgs if isinstance(m, dict) and "errors" in m]
            assert len(ack["channel"]) == 100 and len(errors) == 20
            await ws.close()

    run(body(), timeout=40)


def test_idle_connection_is_dropped_without_close_frame():
    async def body():
        async with Simulator(symbols=SYMBOLS, idle_timeout=0.3) as sim:
            ws = await open_client(sim.spot_url)
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1006  # abnormal: no close frame
            assert [i.kind for i in sim.injected] == ["idle_close"]

    run(body())


def test_unknown_path_is_refused():
    async def body():
        async with Simulator(symbols=SYMBOLS) as sim:
            with pytest.raises(InvalidStatus, match="404"):
                await open_client(sim.url + "/ws/nope")  # /ws/spot is served: trades

    run(body())


def test_market_model_is_seeded_and_realistic():
    assert realistic_frames(n=50, seed=3) == realistic_frames(n=50, seed=3)
    assert realistic_frames(n=50, seed=3) != realistic_frames(n=50, seed=4)
    model = MarketModel("BTC-PERP", seed=1)
    first = model.seq
    for _ in range(200):
        model.next_delta_frame()
    assert model.seq == first + 200
    bids, asks = model.true_book()
    assert len(bids) == len(asks) == 50 and all(s.isdigit() for s in bids.values())  # contracts
    spot = MarketModel("ETH-USD", seed=1)
    assert any("." in s for s in spot.true_book()[0].values())  # base coin decimals
    with pytest.raises(KeyError, match="outside the kept history"):
        model.book_at(first - 1)


def test_same_seed_same_market():
    async def first_frames(seed):
        async with Simulator(symbols=SYMBOLS, rate=300, seed=seed) as sim:
            ws = await open_client(sim.spot_url)
            await ws.send(subscribe("update:BTC-USD_0"))
            out = []
            while len(out) < 20:
                msg = parse(await asyncio.wait_for(ws.recv(decode=False), 5))
                if is_book(msg):
                    del msg["data"]["timestamp"]  # exchange time is the wall clock
                    out.append(msg)
            await ws.close()
            return out

    async def body():
        assert await first_frames(4) == await first_frames(4)
        assert await first_frames(4) != await first_frames(5)

    run(body())


def test_deflate_only_when_enabled_and_offered():
    from websockets.asyncio.client import connect

    async def negotiated(compression, offer):
        async with Simulator(symbols=SYMBOLS, rate=0, compression=compression) as sim:
            ws = await connect(
                sim.spot_url, proxy=None, compression="deflate" if offer else None
            )
            names = [e.name for e in ws.protocol.extensions]
            await ws.send(subscribe("update:BTC-USD_0"))
            snap, _ = await until(ws, lambda m: is_book(m, "snapshot"))
            await ws.close()
            return names

    async def body():
        assert await negotiated(None, True) == []
        assert await negotiated("deflate", False) == []
        assert await negotiated("deflate", True) == ["permessage-deflate"]

    run(body())


def test_every_spelling_btse_serves_and_grouped_l1():
    """Legacy BTCPFC, a K_ prefixed spot market, a dated future (both spellings),
    snapshotL1:SYM_G; case matters, as on a strict exchange."""

    async def body():
        listed = ["BTC-PERP", "BTC-260925", "K_PEIPEI-USDT"]
        async with Simulator(symbols=listed, rate=200) as sim:
            fut = await open_client(sim.futures_url)
            await fut.send(subscribe("update:BTCPFC_0", "update:BTC-260925-USDT_0"))
            ack, _ = await until(fut, lambda m: isinstance(m, dict) and m.get("event"))
            assert sorted(ack["channel"]) == ["update:BTC-260925-USDT_0", "update:BTCPFC_0"]
            seen = set()
            for raw in await frames(fut, 60):
                msg = parse(raw)
                if is_book(msg):
                    seen.add(msg["data"]["symbol"])
            assert seen == {"BTC-PERP", "BTC-260925"}
            await fut.send(subscribe("snapshotL1:BTC-PERP_2", "update:btc-perp_0"))
            l1, before = await until(fut, lambda m: is_book(m, "snapshotL1"))
            assert l1["topic"] == "snapshotL1:BTC-PERP_2"  # echoed as subscribed
            errors = [m for m in before if isinstance(m, dict) and "errors" in m]
            if not errors:
                err, _ = await until(fut, lambda m: isinstance(m, dict) and "errors" in m)
                errors = [err]
            assert errors[0]["errors"][0]["error"]["code"] == 1000  # lower case is unknown
            assert errors[0]["errors"][0]["arg"] == "update:btc-perp_0"
            spot = await open_client(sim.spot_url)
            await spot.send(subscribe("update:K_PEIPEI-USDT_0"))
            snap, _ = await until(spot, lambda m: is_book(m, "snapshot"))
            assert snap["data"]["symbol"] == "K_PEIPEI-USDT"
            await fut.close()
            await spot.close()

    run(body())


def test_a_sequence_restart_starts_a_new_lower_chain():
    async def body():
        async with Simulator(symbols=["BTC-PERP"], rate=300) as sim:
            ws = await open_client(sim.futures_url)
            await ws.send(subscribe("update:BTC-PERP_0"))
            snap, _ = await until(ws, lambda m: is_book(m, "snapshot"))
            before = snap["data"]["seqNum"]
            restarted = sim.restart_sequence("BTC-PERP")
            assert restarted < before
            delta, _ = await until(
                ws, lambda m: is_book(m, "delta") and m["data"]["seqNum"] < before
            )
            assert delta["data"]["prevSeqNum"] == restarted  # a gap for the client
            await ws.send(unsubscribe("update:BTC-PERP_0"))
            await ws.send(subscribe("update:BTC-PERP_0"))
            fresh, _ = await until(ws, lambda m: is_book(m, "snapshot"))
            assert restarted <= fresh["data"]["seqNum"] < before  # the new chain's
            assert sim.stats()["injected"]["seq_restart"] == 1
            await ws.close()

    run(body())
