"""Instrument metadata: the markets API, the cache, exact units, and the feed's fallback."""

import asyncio
import json
import logging
import sys
import time
from decimal import Decimal

import pytest
from simclient import FAST, run

from bookengine import Feed, TopOfBook
from bookengine.instruments import Instruments, InstrumentsUnavailable
from bookengine.simulator import Simulator
from recorder.replay import Replay
from recorder.session import record_session

# a perpetual row as BTSE's markets API sends it (PROTOCOL.md), and a spot one
PERP = {"symbol": "BTC-PERP-USDT", "type": "FuturesPerpetual", "tradeCurrency": "BTC-PERP",
        "baseCurrency": "BTC", "quoteCurrency": "USDT", "active": True,
        "minPriceIncrement": "0.1", "pricePrecision": 1, "minSizeIncrement": "1",
        "sizePrecision": 0, "contractSize": "0.00001"}  # fmt: skip
SPOT = {"symbol": "BTC-USD", "type": "Spot", "baseCurrency": "BTC", "quoteCurrency": "USD",
        "active": True, "minPriceIncrement": "0.5", "minSizeIncrement": "0.00001"}  # fmt: skip


def reply(*rows) -> bytes:
    return json.dumps({"data": {"symbols": list(rows)}, "code": 1, "msg": "Success"}).encode()


def test_lookup_by_any_spelling_and_exact_units():
    instruments = Instruments(reply(PERP, SPOT, {"symbol": "junk"}), 0.0, "test")
    perp = instruments["BTCPFC"]
    assert perp is instruments["BTC-PERP-USDT"] is instruments["btc-perp"]
    assert (perp.symbol, perp.kind, perp.contract_size) == ("BTC-PERP", "perpetual", "0.00001")
    assert repr(perp.to_base(60672.0)) == "0.60672"  # exact, not float drift
    assert perp.to_base(3.0) == float(Decimal(3) * Decimal("0.00001"))
    assert perp.round_price(86540.63) == 86540.6 and perp.round_price(86540.61, "up") == 86540.7
    spot = instruments["btc-usd"]
    assert spot.round_size(0.123456) == 0.12345 and spot.round_price("100.24") == 100.0
    assert spot.to_base(0.5) == 0.5 and len(instruments) == 2 and instruments.skipped
    with pytest.raises(KeyError, match="ETH-PERP"):
        instruments["ETH-PERP"]


@pytest.mark.parametrize("bad", [b"not json", b"{}", reply({"symbol": "X"}), b"[1, 2]"])
def test_a_reply_without_usable_markets_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="markets|JSON|market"):
        Instruments(bad, 0.0, "test")


def test_cache_round_trip_age_and_fallbacks(tmp_path):
    cache = tmp_path / "markets.json"
    Instruments(reply(PERP), time.time() - 7200, "test").save(cache)
    loaded = Instruments.load(cache)
    assert loaded["BTC-PERP"].contract_size == "0.00001" and 7100 < loaded.age_s < 7300
    # fresh enough: no network asked at all (the URL is unreachable)
    got = Instruments.get_or_cache("http://127.0.0.1:1", cache, max_age_s=3 * 3600, retries=1)
    assert got.source.startswith("cache")
    # too old and the API down: the stale cache, with a warning
    stale = Instruments.get_or_cache("http://127.0.0.1:1", cache, max_age_s=60, retries=1)
    assert stale["BTC-PERP"] is not None
    with pytest.raises(InstrumentsUnavailable, match="127.0.0.1:1"):
        Instruments.get_or_cache("http://127.0.0.1:1", tmp_path / "none.json", retries=1)


@pytest.mark.integration
def test_base_units_equal_contracts_times_contract_size_exactly_and_replay_offline(tmp_path):
    async def body():
        tops: list[TopOfBook] = []
        async with Simulator(symbols=["BTC-USD", "BTC-PERP"], rate=200) as sim:
            instruments = await asyncio.to_thread(Instruments.fetch, sim.url)
            perp = instruments["BTC-PERP"]
            assert perp.futures and perp.tick == "0.1"
            feed = Feed(["BTC-PERP", "BTC-USD"], url=sim.url, sizes="base", on_top=tops.append,
                        **FAST)  # fmt: skip
            async with feed:
                await feed.wait_synced(5)
                await asyncio.sleep(0.5)
                book = feed.book("BTC-PERP")
                raw_bids, _ = book.as_dict()  # as sent: contracts
                for price, size in book.bids(5):
                    exact = Decimal(repr(raw_bids[price])) * Decimal(perp.contract_size)
                    assert size == float(exact)  # decimal-exact
                assert book.tick == "0.1" and feed.sizes == "base"
                spot = feed.book("BTC-USD")
                assert spot.best_bid[1] == spot.as_dict()[0][spot.best_bid[0]]  # spot: as is
            perp_tops = [t for t in tops if t.symbol == "BTC-PERP"]
            for top in perp_tops:  # whole contracts, exactly, in base coin
                contracts = Decimal(repr(top.bid_size)) / Decimal(perp.contract_size)
                assert contracts == contracts.to_integral_value() and perp_tops
            await record_session(["BTC-PERP"], tmp_path, url=sim.url, duration=1.5,
                                 feed_options=FAST, trades=False)  # fmt: skip
            return perp

    perp = run(body())
    # the simulator is gone: the recording's own metadata converts
    raw = [e for e in Replay([tmp_path]).events() if type(e) is TopOfBook]
    base = [e for e in Replay([tmp_path], sizes="base").events() if type(e) is TopOfBook]
    assert raw and len(base) == len(raw)
    for r, b in zip(raw, base, strict=True):
        assert b.bid_size == perp.to_base(r.bid_size) and b.ask_size == perp.to_base(r.ask_size)
        assert b.bid_price == r.bid_price and b.seq == r.seq


@pytest.mark.integration
def test_bad_metadata_gives_a_clear_warning_and_the_feed_runs_in_contracts(caplog):
    async def body():
        async with Simulator(symbols=["BTC-PERP"], rate=100) as sim:
            sim.markets_override = b"<html>maintenance</html>"
            with caplog.at_level(logging.WARNING, logger="bookengine.feed"):
                async with Feed(["BTC-PERP"], url=sim.url, sizes="base", **FAST) as feed:
                    await feed.wait_synced(8)
                    book = feed.book("BTC-PERP")
                    assert feed.sizes == "contracts" and book.size_factor is None
                    assert book.best_bid[1] == book.as_dict()[0][book.best_bid[0]]
        assert any("sizes stay in contracts" in r.getMessage() for r in caplog.records)

    run(body(), timeout=40)


@pytest.mark.integration
def test_instruments_cli_prints_the_table_from_the_simulator():
    async def body():
        async with Simulator(symbols=["BTC-USD", "BTC-PERP"]) as sim:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "recorder", "instruments", "--url", sim.url,
                "BTC-PERP-USDT", "btc-usd",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err
            text = out.decode()
            assert "BTC-PERP-USDT" in text and "0.001" in text and "2 of 2 markets" in text
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "recorder", "instruments", "--url", sim.url, "ETH-PERP",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await proc.communicate()
            assert proc.returncode == 3 and b"ETH-PERP" in err  # Exit.NO_DATA: not listed

    run(body(), timeout=60)


@pytest.mark.parametrize(
    "body", [b'{"data":null,"code":-1}', b'{"data":"down"}', b"[]", b'{"data":{"symbols":7}}']
)
def test_replies_of_the_wrong_shape_are_clear_errors_not_crashes(body, tmp_path):
    with pytest.raises(ValueError):
        Instruments(body, 0.0, "test")
    cache = tmp_path / "c.json"
    cache.write_bytes(b'{"fetched_at": 1, "source": "x"}\n' + body)
    with pytest.raises(InstrumentsUnavailable):
        Instruments.load(cache)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(InstrumentsUnavailable):
        Instruments.load(tmp_path / "dir.json")


def test_rounding_is_exact_whatever_the_float_noise_or_decimal_context():
    import decimal

    instruments = Instruments(reply(PERP, SPOT), 0.0, "test")
    spot, perp = instruments["BTC-USD"], instruments["BTC-PERP"]
    assert spot.round_size(0.7 + 0.1) == 0.8 and spot.round_size(0.1 + 0.2, "up") == 0.3
    assert perp.round_price(-0.01) == 0.0 and str(perp.round_price(-0.01)) == "0.0"
    exact = float(Decimal(2**60) * Decimal("0.00001"))  # in the default context
    with decimal.localcontext() as context:
        context.prec = 6  # a caller's coarse context changes nothing
        assert perp.to_base(2**60 + 0.0) == exact
    with pytest.raises(ValueError):
        spot.round_price("abc")
    with pytest.raises(ValueError):
        spot.round_size(-1.0)


def test_numeric_fields_of_older_endpoints_are_read_plainly():
    old = {**PERP, "contractSize": 0.00001, "minPriceIncrement": 0.1, "active": "false"}
    perp = Instruments(reply(old), 0.0, "test")["BTC-PERP"]
    assert perp.contract_size == "0.00001" and perp.tick == "0.1" and perp.active is False


@pytest.mark.integration
def test_a_trickling_or_broken_server_cannot_hold_the_fetch():
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def trickle():
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(40):  # one byte every 0.1 s: each read succeeds, never finishes
            try:
                conn.sendall(b"x")
            except OSError:
                break
            time.sleep(0.1)
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    began = time.monotonic()
    with pytest.raises(InstrumentsUnavailable):
        Instruments.fetch(f"http://127.0.0.1:{port}", timeout=1.0, retries=1)
    assert time.monotonic() - began < 3.5  # bounded by the total timeout, not 4 s of trickle
    server.close()


@pytest.mark.integration
def test_a_recording_made_in_base_units_seeks_exactly(tmp_path):
    """Checkpoints hold sizes as sent, whatever units the live feed handed out."""

    async def body():
        async with Simulator(symbols=["BTC-PERP"], rate=200) as sim:
            await record_session(
                ["BTC-PERP"], tmp_path, url=sim.url, duration=2.5, checkpoint_interval=0.5,
                digest_interval=0.3, feed_options={**FAST, "sizes": "base"}, trades=False,
            )  # fmt: skip

    run(body())
    from recorder import format as fmt
    from recorder.reader import iter_records

    checkpoints = [r for r in iter_records([tmp_path]) if r.kind == fmt.CHECKPOINT]
    import orjson

    for record in checkpoints:  # BTC-PERP sizes as sent are whole contracts
        data = orjson.loads(record.payload)["data"]
        assert all(float(s).is_integer() for _, s in data["bids"] + data["asks"])
    assert checkpoints
    full = Replay([tmp_path])
    tops = [e for e in full.events() if type(e) is TopOfBook]
    seek = Replay([tmp_path], start_ns=tops[len(tops) // 2].arrival_ns)
    list(seek.events())
    assert full.stats.mismatches == [] and seek.stats.mismatches == []
    assert seek.stats.digests_checked > 0


def test_the_markets_url_of_every_kind_of_feed_url():
    from bookengine.instruments import markets_url

    path = "/public-api/market/v1/markets"
    assert markets_url("production") == "https://api.btse.com" + path
    assert markets_url("wss://ws.btse.com/ws/oss/futures") == "https://api.btse.com" + path
    assert markets_url("wss://testws.btse.io/ws/oss/spot") == "https://testapi.btse.io" + path
    assert markets_url("ws://127.0.0.1:8765") == "http://127.0.0.1:8765" + path
    with pytest.raises(ValueError, match="url must be"):
        markets_url("prod")
