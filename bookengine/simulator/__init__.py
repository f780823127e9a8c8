"""A local BTSE OSS exchange: a seeded market model, and a real WebSocket server on it.

    from bookengine.simulator import MarketModel, realistic_frames   # pure, no I/O
"""

from bookengine.simulator.market import MarketModel, price_text, realistic_frames

__all__ = ["MarketModel", "price_text", "realistic_frames"]
