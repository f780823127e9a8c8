"""hftbacktest and tardis.dev exports: a real hftbacktest backtest over them sees the books
our replay rebuilds, holes included (issue 19)."""

from __future__ import annotations

import bisect
import csv
import gzip
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need_extra
from simclient import FAST, run

from bookengine.events import BookUpdate, StatusChanged, TopOfBook, Trade
from bookengine.simulator import Faults, Simulator
from recorder.exitcodes import Exit
from recorder.replay import Replay
from recorder.session import record_session

hbt = need_extra("hftbacktest", "hftbacktest")
from hftbacktest.data.utils import tardis as hbt_tardis  # noqa: E402

from recorder.to_hftbacktest import to_hftbacktest  # noqa: E402
from recorder.to_tardis import to_tardis  # noqa: E402

pytestmark = pytest.mark.integration
SYMBOL = "BTC-PERP"
TICK, LOT = 0.1, 1.0  # the simulator's BTC-PERP: tick 0.1, sizes in whole contracts


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("backtest")

    async def body() -> None:
        async with Simulator(symbols=[SYMBOL, "ETH-USD"], rate=250,
                             faults=Faults(drop=0.004)) as sim:  # fmt: skip
            await record_session([SYMBOL, "ETH-USD"], out, url=sim.url, duration=6.0,
                                 feed_options=FAST)  # fmt: skip

    run(body(), timeout=60)
    return out


def reference(paths: list[Path]) -> tuple[list[int], list, list, list[int]]:
    """Our replay's best bid/ask over arrival time (None while out of sync), and the
    times the book left sync."""
    times, bids, asks, holes = [], [], [], []
    for e in Replay(paths, symbols=[SYMBOL]).events():
        if type(e) is TopOfBook and e.grouping == 0:
            times.append(e.arrival_ns)
            bids.append(e.bid_price)
            asks.append(e.ask_price)
        elif type(e) is StatusChanged and e.topic == f"update:{SYMBOL}_0" and (
            e.status == "out_of_sync"
        ):
            times.append(e.arrival_ns)
            bids.append(None)
            asks.append(None)
            holes.append(e.arrival_ns)
    return times, bids, asks, holes


def backtest_tops(data: np.ndarray, at: list[int]) -> list[tuple[int, float, float]]:
    """hftbacktest's own best bid/ask at each local time in `at` (ascending)."""
    asset = (
        hbt.BacktestAsset().data(data).linear_asset(1.0).constant_order_latency(0, 0)
        .risk_adverse_queue_model().no_partial_fill_exchange()
        .trading_value_fee_model(0.0, 0.0).tick_size(TICK).lot_size(LOT)
    )  # fmt: skip
    backtest = hbt.HashMapMarketDepthBacktest([asset])
    seen = []
    try:
        backtest.elapse(1)  # starts the clock at the data's first event
        for t in at:
            step = t - backtest.current_timestamp
            if step > 0 and backtest.elapse(step) != 0:
                break
            depth = backtest.depth(0)
            seen.append((backtest.current_timestamp, depth.best_bid, depth.best_ask))
    finally:
        backtest.close()
    return seen


def samples(times: list[int], holes: list[int], step: int = 50_000_000) -> list[int]:
    grid = list(range(times[0] + step, times[-1], step))
    return sorted({*grid, *(h + 1_000 for h in holes)})  # and 1 us into every hole


def compare(seen, times, bids, asks, skip_holes: bool = False) -> tuple[int, int, int]:
    same = differ = in_holes = 0
    for t, bid, ask in seen:
        i = bisect.bisect_right(times, t) - 1
        if i < 0:
            continue
        if bids[i] is None or asks[i] is None:
            if skip_holes:
                continue
            in_holes += 1
            ok = math.isnan(bid) and math.isnan(ask)  # an empty book, never a stale one
        else:
            ok = abs(bid - bids[i]) < 1e-9 and abs(ask - asks[i]) < 1e-9
        same += ok
        differ += not ok
    return same, differ, in_holes


def test_hftbacktest_sees_our_books_and_our_holes(recording, tmp_path):
    data, stats = to_hftbacktest([recording], SYMBOL, tmp_path / "btc.npz")
    assert stats.path == tmp_path / "btc.npz"
    assert np.array_equal(np.load(stats.path)["data"], data)
    assert data.dtype == hbt.event_dtype
    times, bids, asks, holes = reference([recording])
    assert holes, "the fixture's drops make gaps"
    assert stats.clears == len(holes)
    clears = (data["ev"] & 0xFF) == hbt.DEPTH_CLEAR_EVENT
    assert clears.sum() >= len(holes)  # each hole a clear (per side, on both streams)
    trades = (data["ev"] & 0xFF) == hbt.TRADE_EVENT
    replayed = [e for e in Replay([recording], symbols=[SYMBOL]).events() if type(e) is Trade]
    assert stats.trades == len(replayed) > 0
    # a trade's side flag is the taker's
    buys = sum(1 for t in replayed if t.side == "BUY")
    flagged = (data["ev"][trades] & hbt.BUY_EVENT) == hbt.BUY_EVENT
    assert flagged.sum() >= buys  # (order correction may duplicate rows: never lose one)
    at = samples(times, holes)
    same, differ, in_holes = compare(backtest_tops(data, at), times, bids, asks)
    assert differ == 0 and same > 100
    assert in_holes >= len(holes) - 1  # sampled inside (nearly) every hole: empty there


def test_tardis_files_read_back_to_our_books(recording, tmp_path):
    stats = to_tardis([recording], [SYMBOL], tmp_path)
    files = {key.split()[1]: path for key, path in stats.files.items()}
    assert set(files) == {"incremental_book_L2", "book_snapshot_25", "book_snapshot_5",
                          "trades", "quotes"}  # fmt: skip
    for path in files.values():
        assert path.name.startswith("btse_") and path.name.endswith(f"_{SYMBOL}.csv.gz")
        with gzip.open(path, "rt") as f:  # gzip, like tardis's downloads
            f.readline()
    # hftbacktest's own tardis reader rebuilds the same books (holes aside: tardis has no
    # "clear"; the book resets at the next snapshot)
    data = hbt_tardis.convert([str(files["trades"]), str(files["incremental_book_L2"])])
    times, bids, asks, holes = reference([recording])
    seen = backtest_tops(data, samples(times, []))
    same, differ, _ = compare(seen, times, bids, asks, skip_holes=True)
    assert differ == 0 and same > 100

    # book_snapshot_25: every row is our book's top 25 after that update, in tardis's
    # column order (asks[i] then bids[i], level by level), microsecond stamps
    after: dict[int, tuple] = {}
    for e in Replay([recording], symbols=[SYMBOL], book_updates=True).events():
        if type(e) is BookUpdate and e.grouping == 0:
            after[e.arrival_ns // 1000] = (e.book.bids(25), e.book.asks(25), e.exchange_ms)
    with gzip.open(files["book_snapshot_25"], "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0])[:8] == ["exchange", "symbol", "timestamp", "local_timestamp",
                                          "asks[0].price", "asks[0].amount", "bids[0].price",
                                          "bids[0].amount"]  # fmt: skip
    for row in rows:
        b, a, exchange_ms = after[int(row["local_timestamp"])]
        assert int(row["timestamp"]) == exchange_ms * 1000
        for n in range(25):
            assert row[f"bids[{n}].price"] == (repr(b[n][0]) if n < len(b) else "")
            assert row[f"asks[{n}].amount"] == (repr(a[n][1]) if n < len(a) else "")
    # quotes and trades: one row per top-of-book change and per trade
    tops = [e for e in Replay([recording], symbols=[SYMBOL]).events()
            if type(e) is TopOfBook and e.grouping == 0]  # fmt: skip
    with gzip.open(files["quotes"], "rt", newline="") as f:
        quotes = list(csv.DictReader(f))
    assert [float(q["bid_price"]) for q in quotes] == [t.bid_price for t in tops]
    with gzip.open(files["trades"], "rt", newline="") as f:
        trades = list(csv.DictReader(f))
    replayed = [e for e in Replay([recording], symbols=[SYMBOL]).events() if type(e) is Trade]
    assert [int(t["id"]) for t in trades] == [t.trade_id for t in replayed]
    assert {t["side"] for t in trades} <= {"buy", "sell"}


def test_export_cli_formats(recording, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "recorder", "export", str(recording), *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    ok = cli("--format", "hftbacktest", "-s", SYMBOL, "-o", str(tmp_path / "b.npz"))
    assert ok.returncode == 0, ok.stderr
    assert "hole(s) as clears" in ok.stdout and (tmp_path / "b.npz").exists()
    two = cli("--format", "hftbacktest", "-s", SYMBOL, "ETH-USD", "-o", str(tmp_path / "c.npz"))
    assert two.returncode == Exit.USAGE and "one symbol" in two.stderr
    mixed = cli("--format", "tardis", "-s", SYMBOL, "--depth", "5", "-o", str(tmp_path / "t"))
    assert mixed.returncode == Exit.USAGE
    tardis = cli("--format", "tardis", "-s", SYMBOL, "ETH-USD", "-o", str(tmp_path / "t"))
    assert tardis.returncode == 0, tardis.stderr
    assert len(list((tmp_path / "t").glob("*.csv.gz"))) == 10
    helped = subprocess.run([sys.executable, "-m", "recorder", "export", "--help"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "hftbacktest" in helped.stdout and "tardis" in helped.stdout
    assert "contracts" in helped.stdout  # the units' limits are documented


def test_the_market_maker_example_runs_end_to_end():
    example = Path(__file__).resolve().parent.parent / "examples" / "backtest_market_maker.py"
    result = subprocess.run([sys.executable, str(example), "--seconds", "4"],
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr
    orders, fills = map(int, re.search(r"(\d+) orders, (\d+) fills", result.stdout).groups())
    assert 0 < fills <= orders  # it quoted, and the backtest filled some of it
    assert re.search(r"PnL -?\d+\.\d+ USD", result.stdout)
