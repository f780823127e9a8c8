"""`btse-recorder publish`: one BTSE connection, its books fanned out into Redis Streams.

Consumers anywhere (`bookengine.fanout.RedisFeed`, or `watch --redis`) follow the books
without opening sockets to BTSE. Redis may come and go: the publisher keeps reading BTSE,
counts what it could not publish, and checkpoints every book when Redis is back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from recorder.commands._live import add_source_arguments, check_source, run_loop, source_url
from recorder.commands._values import add_symbols_argument, chosen_topics, parse_duration
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "fan live books out into Redis Streams, for many consumer processes"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_symbols_argument(parser, positional=True)
    add_source_arguments(parser)
    parser.add_argument("--redis", default=DEFAULT_REDIS, metavar="URL",
                        help=f"where to publish (default {DEFAULT_REDIS})")  # fmt: skip
    parser.add_argument("--prefix", default="btse", help="key prefix (default btse)")
    parser.add_argument(
        "--maxlen", type=int, default=100_000, metavar="N",
        help="entries kept per raw stream, approximately (default 100000): a consumer "
        "further behind than this sees a hole and rejoins at a checkpoint",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint-every", type=parse_duration, default=5.0, metavar="DURATION",
        help="a checkpoint of every book this often (default 5s): where consumers join",
    )  # fmt: skip
    parser.add_argument(
        "--trades", action=argparse.BooleanOptionalAction, default=True,
        help="also publish each symbol's public trades (default: on)",
    )  # fmt: skip
    parser.add_argument("--duration", type=parse_duration, default=None, help="e.g. 30s, 1h")
    parser.add_argument(
        "--status-every", type=parse_duration, default=60.0,
        help="a status line this often (default 60s)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    topics = chosen_topics(args, "publish BTC-USD BTC-PERP --redis redis://host:6379/0")
    if args.maxlen < 100:
        raise usage("--maxlen must be >= 100")
    if args.checkpoint_every <= 0:
        raise usage("--checkpoint-every must be > 0")
    check_source(args, topics)
    check_redis_url(args.redis)
    from bookengine.fanout.publisher import import_redis

    import_redis()  # MissingExtra (exit 2) before any socket is opened
    return run_loop(lambda: _publish(args, topics))


def check_redis_url(url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise usage(f"--redis must be a redis:// URL (redis://host:6379/0), got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise usage(f"bad port in --redis {url!r}") from None
    if parts.scheme != "unix" and (not parts.hostname or port == 0):
        raise usage(f"--redis {url!r} names no host (e.g. redis://127.0.0.1:6379/0)")


async def _publish(args: argparse.Namespace, topics: list[str]) -> int:
    from bookengine.fanout import RedisPublisher
    from bookengine.fanout.publisher import redacted
    from bookengine.feed import Feed

    books = [t for t in topics if t.startswith("update:")]
    async with source_url(args, topics) as url:
        feed = Feed(topics, url=url, trades=args.trades, client=args.client)
        publisher = RedisPublisher(
            feed, args.redis, prefix=args.prefix, maxlen=args.maxlen,
            checkpoint_interval=args.checkpoint_every,
        )  # fmt: skip
        print(f"publishing {len(topics)} stream(s) from {url} to {redacted(args.redis)} "
              f"(prefix {args.prefix})", file=sys.stderr, flush=True)  # fmt: skip
        started = last = time.monotonic()
        async with publisher, feed:
            try:
                while args.duration is None or time.monotonic() - started < args.duration:
                    await asyncio.sleep(0.1)
                    if books and all(str(feed.status(t, None)) == "unsubscribed" for t in books):
                        break
                    if time.monotonic() - last >= args.status_every:
                        last = time.monotonic()
                        print(f"status: {status_line(feed, publisher)}", file=sys.stderr,
                              flush=True)  # fmt: skip
            except asyncio.CancelledError:
                pass
        rejected = bool(books) and all(str(feed.status(t, None)) == "unsubscribed" for t in books)
        stats = publisher.stats
        print(f"published {stats.published} records of {feed.stats().frames} frames in "
              f"{time.monotonic() - started:.1f}s: {status_line(feed, publisher)}")  # fmt: skip
    if rejected:
        raise CommandFailed(Exit.REJECTED, f"the exchange rejected every topic: {', '.join(books)}")
    if stats.published == 0:
        raise CommandFailed(
            Exit.NOTHING_RECORDED, f"nothing published (is Redis up at {redacted(args.redis)}?)"
        )
    return Exit.OK


def status_line(feed, publisher) -> str:  # noqa: ANN001
    s = publisher.stats
    books = [t for t in feed.topics if t.startswith("update:")]
    synced = sum(str(feed.status(t, None)) == "synced" for t in books)
    redis = "up" if s.connected else f"DOWN ({s.last_error})"
    return (
        f"{synced}/{len(books)} books synced; redis {redis}; checkpoints {s.checkpoints}, "
        f"unpublished {s.unpublished}, dropped {s.dropped}, redis reconnects {s.reconnects}"
    )
