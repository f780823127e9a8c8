"""A local BTSE OSS exchange: a seeded market model, and a real WebSocket server on it.

    from bookengine.simulator import MarketModel, realistic_frames   # pure, no I/O
    async with Simulator(symbols=["BTC-USD", "BTC-PERP"], rate=200) as sim:
        sim.spot_url, sim.futures_url, sim.book_at(symbol, grouping, seq)

docs/SIMULATOR.md describes the protocol it speaks and the faults it injects.
"""

from bookengine.simulator.faults import Faults, Injected
from bookengine.simulator.market import MarketModel, price_text, realistic_frames
from bookengine.simulator.server import CATALOGUE, DEFAULT_SYMBOLS, Simulator

__all__ = [
    "CATALOGUE",
    "DEFAULT_SYMBOLS",
    "Faults",
    "Injected",
    "MarketModel",
    "Simulator",
    "price_text",
    "realistic_frames",
]
