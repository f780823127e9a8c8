"""hftbacktest and tardis.dev exports: a real hftbacktest backtest over them sees the books
our replay rebuilds, holes included (issue 19)."""

from __future__ import annotations

import asyncio
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


def levels_of(depth, n: int = 10) -> tuple[list, list]:  # noqa: ANN001
    """hftbacktest's top `n` levels per side, (price, qty), best first (an empty side: [])."""
    bids, asks = [], []
    if depth.best_bid_tick != -(2**63) and not math.isnan(depth.best_bid):
        tick = depth.best_bid_tick
        while len(bids) < n and tick > depth.best_bid_tick - 5000:
            qty = depth.bid_qty_at_tick(tick)
            if qty > 0:
                bids.append((round(tick * TICK, 1), qty))
            tick -= 1
    if not math.isnan(depth.best_ask):
        tick = depth.best_ask_tick
        while len(asks) < n and tick < depth.best_ask_tick + 5000:
            qty = depth.ask_qty_at_tick(tick)
            if qty > 0:
                asks.append((round(tick * TICK, 1), qty))
            tick += 1
    return bids, asks


def backtest_tops(data: np.ndarray, at: list[int], n: int = 10) -> list[tuple[int, list, list]]:
    """hftbacktest's own top `n` levels at each local time in `at` (ascending)."""
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
            seen.append((backtest.current_timestamp, *levels_of(backtest.depth(0), n)))
    finally:
        backtest.close()
    return seen


def replay_levels(paths: list[Path], at: list[int], n: int = 10) -> list[tuple | None]:
    """Our replay's top `n` levels at each time in `at`: None while out of sync (or before
    the first snapshot), a session's clean end included."""
    out: list[tuple | None] = []
    current: tuple | None = None
    i = 0
    replay = Replay(paths, symbols=[SYMBOL], book_updates=True)
    stops = 0
    for e in replay.events():
        while i < len(at) and e.arrival_ns > at[i]:
            out.append(current)
            i += 1
        if len(replay.stopped) > stops:
            if any(ns <= e.arrival_ns for ns, _ in replay.stopped[stops:]):
                current = None
            stops = len(replay.stopped)
        if type(e) is BookUpdate and e.grouping == 0:
            bids, asks = e.book.depth(n)
            current = ([(round(p, 1), q) for p, q in bids], [(round(p, 1), q) for p, q in asks])
        elif type(e) is StatusChanged and e.topic == f"update:{SYMBOL}_0" and e.status in (
            "out_of_sync", "failing", "unsubscribed", "waiting_for_snapshot"
        ):  # fmt: skip
            current = None
    out.extend([current] * (len(at) - i))
    return out


def samples(times: list[int], holes: list[int], step: int = 50_000_000) -> list[int]:
    grid = list(range(times[0] + step, times[-1], step))
    return sorted({*grid, *(h + 1_000 for h in holes)})  # and 1 us into every hole


def compare(seen, expected, skip_holes: bool = False) -> tuple[int, int, int]:  # noqa: ANN001
    """(equal, different, samples inside holes): every level, price and size."""
    same = differ = in_holes = 0
    assert len(seen) >= len(expected) - 1  # the backtest ran over (nearly) every sample
    for (_t, bids, asks), want in zip(seen, expected, strict=False):
        if want is None:
            if skip_holes:
                continue
            in_holes += 1
            ok = not bids and not asks  # an empty book, never a stale one
        else:
            ok = (bids, asks) == want
        same += ok
        differ += not ok
    return same, differ, in_holes


def test_hftbacktest_sees_our_books_and_our_holes(recording, tmp_path):
    data, stats = to_hftbacktest([recording], SYMBOL, tmp_path / "btc.npz")
    assert stats.path == tmp_path / "btc.npz"
    assert np.array_equal(np.load(stats.path)["data"], data)
    assert data.dtype == hbt.event_dtype
    times, _, _, holes = reference([recording])
    assert holes, "the fixture's drops make gaps"
    assert stats.clears == len(holes)
    # trades: each once on the exchange side, with the taker's side, BTSE's time in ns,
    # our arrival as local time, price and size as sent
    replayed = [e for e in Replay([recording], symbols=[SYMBOL]).events() if type(e) is Trade]
    exch = data[((data["ev"] & 0xFF) == hbt.TRADE_EVENT)
                & ((data["ev"] & hbt.EXCH_EVENT) == hbt.EXCH_EVENT)]  # fmt: skip
    assert stats.trades == len(replayed) == len(exch) > 0
    key = [(t.exchange_ms * 1_000_000, t.price, t.size, t.side == "BUY") for t in replayed]
    got = [(int(r["exch_ts"]), float(r["px"]), float(r["qty"]),
            bool(r["ev"] & hbt.BUY_EVENT)) for r in exch]  # fmt: skip
    assert sorted(got) == sorted(key)
    assert not any(r["ev"] & hbt.BUY_EVENT and r["ev"] & hbt.SELL_EVENT for r in exch)
    local = data[((data["ev"] & 0xFF) == hbt.TRADE_EVENT)
                 & ((data["ev"] & hbt.LOCAL_EVENT) == hbt.LOCAL_EVENT)]  # fmt: skip
    assert sorted(local["local_ts"].tolist()) == sorted(t.arrival_ns for t in replayed)
    # the books: every level of the top 10, price and size, at 50 ms samples and 1 us
    # into every hole
    at = samples(times, holes)
    same, differ, in_holes = compare(backtest_tops(data, at), replay_levels([recording], at))
    assert differ == 0 and same > 100
    assert in_holes >= len(holes) - 1  # sampled inside (nearly) every hole: empty there


def read_csv(path: Path) -> list[dict]:
    with gzip.open(path, "rt", newline="") as f:  # gzip, like tardis's downloads
        return list(csv.DictReader(f))


def test_tardis_files_read_back_to_our_books(recording, tmp_path):
    stats = to_tardis([recording], [SYMBOL], tmp_path)
    files = {key.split()[1]: path for key, path in stats.files.items()}
    assert set(files) == {"incremental_book_L2", "book_snapshot_25", "book_snapshot_5",
                          "trades", "quotes"}  # fmt: skip
    assert stats.missing == []
    for path in files.values():
        assert path.name.startswith("btse_") and path.name.endswith(f"_{SYMBOL}.csv.gz")
    # hftbacktest's own tardis reader rebuilds the same books, every level, holes
    # included (a hole deletes every held level: empty, never stale)
    data = hbt_tardis.convert([str(files["trades"]), str(files["incremental_book_L2"])])
    times, _, _, holes = reference([recording])
    at = samples(times, holes)
    same, differ, in_holes = compare(backtest_tops(data, at), replay_levels([recording], at))
    assert differ == 0 and same > 100 and in_holes >= len(holes) - 1

    # incremental_book_L2: a snapshot batch per (re)sync, each after the hole's deletions
    book = read_csv(files["incremental_book_L2"])
    assert list(book[0]) == ["exchange", "symbol", "timestamp", "local_timestamp",
                             "is_snapshot", "side", "price", "amount"]  # fmt: skip
    batches = sum(1 for prev, row in zip([{"is_snapshot": "false"}, *book], book, strict=False)
                  if row["is_snapshot"] == "true" and prev["is_snapshot"] == "false")  # fmt: skip
    assert batches == len(holes) + 1
    assert {row["side"] for row in book} == {"bid", "ask"}

    # book_snapshot_25 and _5: every row is our book's top N after that update, in
    # tardis's column order (asks[i] then bids[i], level by level), microsecond stamps
    after: dict[int, tuple] = {}
    for e in Replay([recording], symbols=[SYMBOL], book_updates=True).events():
        if type(e) is BookUpdate and e.grouping == 0:
            after[e.arrival_ns // 1000] = (e.book.bids(25), e.book.asks(25), e.exchange_ms)
    for depth in (25, 5):
        rows = read_csv(files[f"book_snapshot_{depth}"])
        assert list(rows[0])[:8] == ["exchange", "symbol", "timestamp", "local_timestamp",
                                     "asks[0].price", "asks[0].amount", "bids[0].price",
                                     "bids[0].amount"]  # fmt: skip
        assert len(rows[0]) == 4 + 4 * depth
        for row in rows:
            b, a, exchange_ms = after[int(row["local_timestamp"])]
            assert int(row["timestamp"]) == exchange_ms * 1000
            for n in range(depth):
                for side, levels in (("bids", b), ("asks", a)):
                    level = levels[n] if n < len(levels) else None
                    assert row[f"{side}[{n}].price"] == (repr(level[0]) if level else "")
                    assert row[f"{side}[{n}].amount"] == (repr(level[1]) if level else "")
    # quotes and trades: one row per top-of-book change and per trade, every column
    tops = [e for e in Replay([recording], symbols=[SYMBOL]).events()
            if type(e) is TopOfBook and e.grouping == 0]  # fmt: skip
    quotes = read_csv(files["quotes"])
    assert [(int(q["timestamp"]), int(q["local_timestamp"]), float(q["bid_price"]),
             float(q["bid_amount"]), float(q["ask_price"]), float(q["ask_amount"]))
            for q in quotes] == [(t.exchange_ms * 1000, t.arrival_ns // 1000, t.bid_price,
                                  t.bid_size, t.ask_price, t.ask_size) for t in tops]  # fmt: skip
    trades = read_csv(files["trades"])
    replayed = [e for e in Replay([recording], symbols=[SYMBOL]).events() if type(e) is Trade]
    assert [(int(t["id"]), t["side"], float(t["price"]), float(t["amount"]), int(t["timestamp"]),
             int(t["local_timestamp"])) for t in trades] == [
        (t.trade_id, t.side.lower(), t.price, t.size, t.exchange_ms * 1000, t.arrival_ns // 1000)
        for t in replayed
    ]  # fmt: skip


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory) -> tuple[Path, list[int]]:
    """Two recording sessions 1.5 s apart from one simulator (a restarted recorder)."""
    out = tmp_path_factory.mktemp("sessions")

    async def body() -> None:
        async with Simulator(symbols=[SYMBOL], rate=200) as sim:
            for _ in range(2):
                await record_session([SYMBOL], out, url=sim.url, duration=2.0,
                                     feed_options=FAST)  # fmt: skip
                await asyncio.sleep(1.5)

    run(body(), timeout=60)
    return out


def test_a_restart_between_sessions_is_a_hole_never_a_splice(two_sessions, tmp_path):
    data, stats = to_hftbacktest([two_sessions], SYMBOL)
    assert stats.snapshots == 2 and stats.clears >= 1
    replayed = [e for e in Replay([two_sessions], symbols=[SYMBOL]).events() if type(e) is Trade]
    ids = [t.trade_id for t in replayed]
    assert len(ids) > len(set(ids))  # the second session's batch repeats trades...
    exch = data[((data["ev"] & 0xFF) == hbt.TRADE_EVENT)
                & ((data["ev"] & hbt.EXCH_EVENT) == hbt.EXCH_EVENT)]  # fmt: skip
    assert stats.trades == len(exch) == len(set(ids))  # ...exported once each
    # in the pause between the sessions the backtest's book is empty
    replay = Replay([two_sessions], symbols=[SYMBOL])
    tops = [e.arrival_ns for e in replay.events() if type(e) is TopOfBook]
    gap = max(range(1, len(tops)), key=lambda i: tops[i] - tops[i - 1])
    middle = (tops[gap - 1] + tops[gap]) // 2
    ((_, bids, asks),) = backtest_tops(data, [middle])
    assert bids == [] and asks == []
    tardis = to_tardis([two_sessions], [SYMBOL], tmp_path)
    trades = read_csv(next(p for k, p in tardis.files.items() if " trades " in k))
    assert len(trades) == len({t["id"] for t in trades}) == len(set(ids))


def test_export_cli_formats(recording, tmp_path):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "recorder", "export", str(recording), *args],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    ok = cli("--format", "hftbacktest", "-s", SYMBOL, "-o", str(tmp_path / "b.npz"))
    assert ok.returncode == 0, ok.stderr
    assert "hole(s) as clears" in ok.stdout and (tmp_path / "b.npz").exists()
    two = cli("--format", "hftbacktest", "-s", SYMBOL, "ETH-USD", "-o", str(tmp_path / "c.npz"))
    assert two.returncode == Exit.USAGE and "one symbol" in two.stderr
    grouped = cli("--format", "hftbacktest", "-s", SYMBOL, "--grouping", "3", "-o",
                  str(tmp_path / "g.npz"))  # fmt: skip
    assert grouped.returncode == Exit.NO_DATA and "grouping 3" in grouped.stderr
    assert not (tmp_path / "g.npz").exists()  # never a file without a book
    absent = cli("--format", "tardis", "-s", SYMBOL, "SOL-USD", "-o", str(tmp_path / "a"))
    assert absent.returncode == Exit.NO_DATA and "SOL-USD" in absent.stderr
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
