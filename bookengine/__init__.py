"""bookengine: exact L2 order books for BTSE's OSS stream, kept in sync by a sans-I/O core.

    from bookengine import BookSync, OrderBook
    sync = BookSync()
    for event in sync.feed(arrival_ns, raw_frame):
        ...

The live `Feed` (bookengine.feed) drives the same `BookSync` from a websocket.
"""

from bookengine.book import OrderBook, to_number
from bookengine.errors import BookEngineError, ExchangeError, FrameError, LevelError, TopicError
from bookengine.events import (
    BadFrame,
    BookUpdate,
    Event,
    ExchangeErrors,
    L1Quote,
    Pong,
    Reason,
    Resubscribe,
    StatusChanged,
    Subscribed,
    SyncStatus,
    TopOfBook,
    Unsubscribed,
)
from bookengine.sync import BookSync, SyncStats, TopicStats
from bookengine.wire import Topic, book_topic, is_futures, l1_topic

__version__ = "0.1.0"

__all__ = [
    "BadFrame",
    "BookEngineError",
    "BookSync",
    "BookUpdate",
    "Event",
    "ExchangeError",
    "ExchangeErrors",
    "FrameError",
    "L1Quote",
    "LevelError",
    "OrderBook",
    "Pong",
    "Reason",
    "Resubscribe",
    "StatusChanged",
    "Subscribed",
    "SyncStats",
    "SyncStatus",
    "Topic",
    "TopOfBook",
    "TopicError",
    "TopicStats",
    "Unsubscribed",
    "book_topic",
    "is_futures",
    "l1_topic",
    "to_number",
]
