"""Record BTSE-like data, export it for hftbacktest, and backtest a grid market maker.

    pip install -e '.[hftbacktest]'
    python examples/backtest_market_maker.py              # 60 s from the built-in simulator
    python examples/backtest_market_maker.py --seconds 20 --keep rec/

1. records `--seconds` of BTC-PERP (book and trades) from the local simulator, exactly as
   `btse-recorder record` would;
2. exports it with `to_hftbacktest` (`btse-recorder export --format hftbacktest`);
3. runs hftbacktest's HashMapMarketDepthBacktest with a simple grid market maker: every
   100 ms it cancels its quotes and posts `--levels` bids and asks around the mid, one lot
   each, skewed against its position, within a position limit;
4. prints the fills, the position and the PnL (marked at the last mid, fees included).

A sketch of the workflow, not a strategy: the simulator's market is a random walk.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
from pathlib import Path

from hftbacktest import BUY, GTX, LIMIT, BacktestAsset, HashMapMarketDepthBacktest

from bookengine.instruments import Instruments
from bookengine.simulator import Simulator
from recorder.session import record_session
from recorder.to_hftbacktest import to_hftbacktest

SYMBOL = "BTC-PERP"


async def record(out: Path, seconds: float) -> tuple[float, float, float]:
    """Record from the simulator; -> the market's (tick, size increment, contract size)."""
    async with Simulator(symbols=[SYMBOL], rate=200) as sim:
        market = (await asyncio.to_thread(Instruments.fetch, sim.url))[SYMBOL]
        stats = await record_session([SYMBOL], out, url=sim.url, duration=seconds)
    print(f"recorded {stats.frames:,} frames in {stats.elapsed_s:.1f}s into {out}")
    return float(market.tick), float(market.size_increment), float(market.contract_size)


def grid_market_maker(data, tick, lot, contract, levels, max_position) -> None:  # noqa: ANN001
    asset = (
        BacktestAsset()
        .data(data)
        .linear_asset(contract)  # sizes are contracts: value = price x qty x contract size
        .constant_order_latency(1_000_000, 1_000_000)  # 1 ms each way
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(-0.00005, 0.0005)  # maker rebate, taker fee
        .tick_size(tick)
        .lot_size(lot)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    next_id = 1
    mid = math.nan
    steps = 0
    while hbt.elapse(100_000_000) == 0:  # every 100 ms
        steps += 1
        depth = hbt.depth(0)
        if math.isnan(depth.best_bid) or math.isnan(depth.best_ask):
            continue  # a hole in the recording: the book is empty until it resyncs
        mid = (depth.best_bid + depth.best_ask) / 2
        position = hbt.position(0)
        skew = -position / max_position * levels * tick  # lean against the inventory
        want_bids = set()
        want_asks = set()
        for n in range(1, levels + 1):
            if position < max_position:
                want_bids.add(round(math.floor((mid + skew - n * tick) / tick)))
            if position > -max_position:
                want_asks.add(round(math.ceil((mid + skew + n * tick) / tick)))
        # keep the quotes still on the grid, cancel the others (resting orders keep their
        # place in the queue: cancelling and re-posting every step would lose it)
        orders = hbt.orders(0).values()
        while orders.has_next():
            order = orders.get()
            if not order.cancellable:
                continue
            wanted = want_bids if order.side == BUY else want_asks
            if order.price_tick in wanted:
                wanted.discard(order.price_tick)
            else:
                hbt.cancel(0, order.order_id, False)
        for price_tick in sorted(want_bids):
            hbt.submit_buy_order(0, next_id, price_tick * tick, lot, GTX, LIMIT, False)
            next_id += 1
        for price_tick in sorted(want_asks):
            hbt.submit_sell_order(0, next_id, price_tick * tick, lot, GTX, LIMIT, False)
            next_id += 1
        hbt.clear_inactive_orders(0)
    state = hbt.state_values(0)
    position = hbt.position(0)
    hbt.close()
    pnl = state.balance + position * mid * contract - state.fee  # marked at the last mid
    print(f"backtest: {steps} steps of 100 ms, {next_id - 1} orders, {state.num_trades} fills, "
          f"traded {state.trading_volume:g} contracts")  # fmt: skip
    print(f"position {position:g} contracts, PnL {pnl:.4f} USD (fees {state.fee:.4f}, "
          "negative: rebates earned)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to record")
    parser.add_argument("--keep", default=None, help="keep the recording in this directory")
    parser.add_argument("--levels", type=int, default=3, help="quotes per side")
    parser.add_argument("--max-position", type=float, default=20.0, help="in lots")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp)
        tick, lot, contract = asyncio.run(record(out, args.seconds))
        data, stats = to_hftbacktest([out], SYMBOL)
        print(f"exported {stats.events:,} hftbacktest events: {stats.depth:,} depth, "
              f"{stats.trades:,} trades, {stats.clears} hole(s)")  # fmt: skip
        grid_market_maker(data, tick, lot, contract, args.levels, args.max_position * lot)


if __name__ == "__main__":
    main()
