"""Fan-out over Redis Streams: one process keeps the BTSE connection and the books
(`RedisPublisher`, a Feed's tap), many processes on many hosts follow them
(`RedisFeed`, the same events as a local Feed). Needs the `fanout` extra (redis-py).

The entry layout and the follower rules are plain code (`entries`, `follower`): what a
consumer does with any sequence of entries is testable without Redis."""

from bookengine.fanout.consumer import RedisFeed, RedisFeedStats
from bookengine.fanout.entries import Entry, Keys
from bookengine.fanout.follower import FollowerStats, StreamFollower
from bookengine.fanout.publisher import PublisherStats, RedisPublisher

__all__ = [
    "Entry",
    "FollowerStats",
    "Keys",
    "PublisherStats",
    "RedisFeed",
    "RedisFeedStats",
    "RedisPublisher",
    "StreamFollower",
]
