"""A minimal strategy: print mid and spread on every top-of-book change.

python examples/print_mid.py                 # against the built-in simulator
python examples/print_mid.py --url production BTC-PERP ETH-PERP
"""

from __future__ import annotations

import argparse
import asyncio

from bookengine import Feed, StatusChanged, TopOfBook
from bookengine.simulator import Simulator


def on_top(top: TopOfBook) -> None:
    if top.bid_price is None or top.ask_price is None:
        return
    # Exact decimal arithmetic is in OrderBook.mid/spread; floats are fine for display.
    mid = (top.bid_price + top.ask_price) / 2
    spread = top.ask_price - top.bid_price
    print(f"{top.symbol:<10} seq {top.seq:<10} mid {mid:<12.6g} spread {spread:.6g}")


def on_status(event: object) -> None:
    if isinstance(event, StatusChanged):
        print(f"-- {event.topic}: {event.status} ({event.reason}) {event.detail}")


async def main(symbols: list[str], url: str | None, seconds: float) -> None:
    sim = None
    if url is None:
        sim = Simulator(symbols=symbols, rate=20)
        await sim.start()
        url = sim.url
    try:
        async with Feed(symbols, url=url, on_top=on_top, on_status=on_status) as feed:
            await asyncio.sleep(seconds)
            print(feed.stats())
    finally:
        if sim is not None:
            await sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("symbols", nargs="*", default=["BTC-PERP", "ETH-USD"])
    parser.add_argument("--url", default=None, help="default: an in-process simulator")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.symbols, args.url, args.seconds))
