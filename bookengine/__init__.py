"""bookengine: exact L2 order books for BTSE's OSS stream, kept in sync by a sans-I/O core.

    from bookengine import Feed
    async with Feed(["BTC-PERP", "ETH-USD"], on_top=print) as feed:
        await feed.run_forever()

    from bookengine import BookSync          # the same core, no network
    sync = BookSync()
    sync.subscribe(["update:BTC-PERP_0"], now_ns)
    for event in sync.feed(arrival_ns, raw_frame):
        ...

Every public name is importable from here (`__all__`); recordings, replay and export live
in the `recorder` package.
"""

from bookengine import naming
from bookengine.auth import Credentials
from bookengine.book import BookSnapshot, OrderBook, to_number
from bookengine.errors import (
    ArgumentError,
    BookEngineError,
    CorruptBlock,
    ExchangeError,
    FrameError,
    IllegalTransition,
    LevelError,
    MissingExtra,
    NoRecordings,
    RecorderError,
    RecordingError,
    TopicError,
)
from bookengine.events import (
    BadFrame,
    BookUpdate,
    Event,
    ExchangeErrors,
    L1Quote,
    OrderNotification,
    OtcQuote,
    Pong,
    Reason,
    Resubscribe,
    StatusChanged,
    Subscribed,
    SyncStatus,
    TopOfBook,
    Trade,
    TradeGap,
    Unsubscribed,
)
from bookengine.feed import Connected, Feed, FeedEvent, FeedStats, FeedTap, Reconnecting
from bookengine.instruments import Instrument, Instruments, InstrumentsUnavailable
from bookengine.sync import BookSync, RecoveryPolicy, SyncStats, TopicStats, Units
from bookengine.trades import TradeSync
from bookengine.wire import Topic, book_topic, is_futures, l1_topic, stream_key

__version__ = "0.1.0"

__all__ = [
    "ArgumentError",
    "BadFrame",
    "BookEngineError",
    "BookSnapshot",
    "BookSync",
    "BookUpdate",
    "Connected",
    "Credentials",
    "CorruptBlock",
    "Event",
    "ExchangeError",
    "ExchangeErrors",
    "Feed",
    "FeedEvent",
    "FeedStats",
    "FeedTap",
    "FrameError",
    "IllegalTransition",
    "Instrument",
    "Instruments",
    "InstrumentsUnavailable",
    "L1Quote",
    "LevelError",
    "MissingExtra",
    "NoRecordings",
    "OrderNotification",
    "OrderBook",
    "OtcQuote",
    "Pong",
    "Reason",
    "Reconnecting",
    "RecorderError",
    "RecordingError",
    "RecoveryPolicy",
    "Resubscribe",
    "StatusChanged",
    "Subscribed",
    "SyncStats",
    "SyncStatus",
    "Topic",
    "TopOfBook",
    "TopicError",
    "TopicStats",
    "Trade",
    "TradeGap",
    "TradeSync",
    "Units",
    "Unsubscribed",
    "book_topic",
    "is_futures",
    "l1_topic",
    "naming",
    "stream_key",
    "to_number",
]
