"""`btse-recorder watch`: live books at a glance, in 80 columns.

On a terminal: a table redrawn every --refresh (symbol, sizes, bid, ask, spread in basis
points, age of the book, status), optionally an N-level ladder per symbol. Not on a
terminal: one line per symbol per --status-every, then the final state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from recorder.commands._live import add_source_arguments, check_source, run_loop, source_url
from recorder.commands._values import add_symbols_argument, chosen_topics, parse_duration
from recorder.exitcodes import CommandFailed, Exit, usage

HELP = "show live books: best bid/ask, spread, age and status per symbol, or a ladder"
WIDTH = 80
# what an operator calls a stream's state, in a 10-column cell
_STATUS = {
    None: "connecting",
    "waiting_for_snapshot": "waiting",
    "synced": "synced",
    "out_of_sync": "resyncing",
    "failing": "FAILING",
    "unsubscribed": "REJECTED",  # watch never unsubscribes: the exchange refused it
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_symbols_argument(parser, positional=True)
    add_source_arguments(parser)
    parser.add_argument(
        "--refresh", type=parse_duration, default=0.5, help="on a terminal: redraw this often"
    )
    parser.add_argument(
        "--status-every", type=parse_duration, default=60.0,
        help="not on a terminal: one line per symbol this often (default 60s)",
    )  # fmt: skip
    parser.add_argument(
        "--ladder", type=int, default=0, metavar="N", help="also show N levels per side"
    )
    parser.add_argument("--duration", type=parse_duration, default=None, help="e.g. 30s, 1h")
    parser.add_argument(
        "--trades",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also show each symbol's last trade (default: books only)",
    )
    parser.add_argument(
        "--redis", default=None, metavar="URL",
        help="follow the books a `publish` fans out (redis://HOST:6379/0) instead of BTSE",
    )  # fmt: skip
    parser.add_argument("--prefix", default="btse", help="with --redis: the key prefix")


def run(args: argparse.Namespace) -> int:
    topics = chosen_topics(args, "watch BTC-USD BTC-PERP")
    if not 0 <= args.ladder <= 50:
        raise usage("--ladder must be 0-50")
    if args.redis is not None:
        from recorder.commands.publish import check_redis_url

        if args.sim or args.url is not None or args.client is not None:
            raise usage("--redis is the source: no --url, --sim or --client with it")
        check_redis_url(args.redis)
    else:
        check_source(args, topics)
    return run_loop(lambda: _watch(args, topics))


@contextlib.asynccontextmanager
async def _open(args: argparse.Namespace, topics: list[str], url: str, on_error):  # noqa: ANN001, ANN202
    """The books to show: a Feed on BTSE (or the simulator), or a publisher's via Redis."""
    if args.redis is None:
        from bookengine.feed import Feed

        async with Feed(
            topics, url=url, on_error=on_error, trades=args.trades, client=args.client
        ) as feed:
            yield feed
        return
    from bookengine.fanout import RedisFeed

    streams = [t for t in topics if t.startswith(("update:", "snapshotL1:"))]
    async with RedisFeed(streams, args.redis, prefix=args.prefix, trades=args.trades,
                         on_error=on_error) as feed:  # fmt: skip
        yield _RedisView(feed)


def _redacted(url: str) -> str:
    from bookengine.fanout.publisher import redacted

    return redacted(url)


class _RedisView:
    """A RedisFeed as watch reads a Feed: holes count as gaps, rejoins as resyncs."""

    def __init__(self, feed) -> None:  # noqa: ANN001
        self.feed = feed
        self.book, self.status, self.last_trade = feed.book, feed.status, feed.last_trade

    def stats(self):  # noqa: ANN201
        s = self.feed.stats()
        return argparse.Namespace(
            frames=sum(f.frames for f in s.streams.values()), gaps=s.holes, resyncs=s.joins,
            reconnects=s.reconnects, bad_frames=s.bad_entries, error_frames=0,
        )  # fmt: skip


def describe_error(event: object) -> str:
    """An error event as a line an operator reads (never a tuple's repr)."""
    errors = getattr(event, "errors", None)
    if errors is not None:
        return "; ".join(
            f"exchange error {e.code}" + (f" on {e.arg}" if e.arg else "") + f": {e.message}"
            for e in errors
        )
    reason = getattr(event, "reason", None)
    topic = getattr(event, "topic", None)
    if reason is not None:
        return f"bad frame{f' on {topic}' if topic else ''}: {reason}"
    return str(event)


async def _watch(args: argparse.Namespace, topics: list[str]) -> int:
    from bookengine.feed import Feed

    tty = sys.stdout.isatty()
    errors: list[str] = []

    def on_error(event: object) -> None:
        line = describe_error(event)
        if not errors or errors[-1] != line:
            errors.append(line)
            if not tty:
                print(f"{_clock()} ! {line}", flush=True)  # whole: a log keeps every word

    books = [t for t in topics if t.startswith("update:")]

    def all_rejected(feed: Feed) -> bool:
        return bool(books) and all(str(feed.status(t, None)) == "unsubscribed" for t in books)

    async with source_url(args, topics) as source, _open(args, topics, source, on_error) as feed:
        url = source if args.redis is None else _redacted(args.redis)
        started = now = time.monotonic()
        interrupted = False  # Ctrl-C or SIGTERM: the usual way out, a success
        every = args.refresh if tty else args.status_every
        last_shown = started
        if not tty:
            print(f"{'time':<9}{HEADER}".rstrip(), flush=True)  # once: what the columns are
        try:
            while args.duration is None or now - started < args.duration:
                await asyncio.sleep(0.1)
                now = time.monotonic()
                if all_rejected(feed):
                    break  # as record does: nothing will ever come
                if now - last_shown >= every:
                    last_shown = now
                    _show(feed, topics, url, errors, tty, args.ladder, args.trades)
        except asyncio.CancelledError:
            interrupted = True
        if not tty:  # the last state, for a log or a pipe
            _show(feed, topics, url, errors, tty, args.ladder, args.trades)
        stats = feed.stats()
        print(
            f"{stats.frames} frames in {time.monotonic() - started:.1f}s; gaps {stats.gaps}, "
            f"resyncs {stats.resyncs}, reconnects {stats.reconnects}, "
            f"bad {stats.bad_frames}, errors {stats.error_frames}"
        )
        rejected = all_rejected(feed)
    if rejected:
        raise CommandFailed(Exit.REJECTED, f"the exchange rejected every topic: {', '.join(books)}")
    if stats.frames == 0 and not interrupted:
        where = "is the URL right?"
        if args.redis:
            error = feed.feed.stats().last_error if isinstance(feed, _RedisView) else ""
            where = f"Redis: {error}" if error else "is a publisher running?"
        raise CommandFailed(Exit.NOTHING_RECORDED, f"nothing received ({where})")
    return Exit.OK


def _show(feed, topics, url, errors, tty, ladder, trades) -> None:  # noqa: ANN001
    if tty:
        screen = table(feed, topics, url, errors[-3:], ladder, trades)
        sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
    else:
        sys.stdout.write("".join(f"{_clock()} {row}\n" for row in rows(feed, topics)))
        for line in [*ladders(feed, topics, ladder), *last_trades(feed, topics, trades)]:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()


def last_trades(feed, topics: list[str], trades: bool) -> list[str]:  # noqa: ANN001
    """With --trades: the newest trade of each symbol."""
    from bookengine.wire import Topic

    if not trades:
        return []
    lines = []
    for symbol in dict.fromkeys(Topic.parse(t).symbol for t in topics):
        trade = feed.last_trade(symbol)
        if trade is not None:
            lines.append(f"  {symbol} last trade: {trade.side} {_fit(trade.size, 12)} "
                         f"@ {_fit(trade.price, 12)}"[:WIDTH])  # fmt: skip
    return lines


HEADER = (
    f"{'symbol':<13}{'bid sz':>7} {'bid':>10} {'ask':<10}{'ask sz':<7}"
    f"{'bps':>5}{'age s':>6} {'status':<10}"
)


def rows(feed, topics: list[str], now_ms: float | None = None) -> list[str]:  # noqa: ANN001
    """One line per book: at most 80 columns."""
    from bookengine.wire import Topic

    now_ms = time.time() * 1000 if now_ms is None else now_ms
    out = []
    for topic in topics:
        parsed = Topic.parse(topic)
        if parsed.kind != "update":
            continue
        name = (
            parsed.symbol if parsed.grouping in (0, None) else f"{parsed.symbol}/{parsed.grouping}"
        )
        book = feed.book(parsed.symbol, parsed.grouping)
        status = feed.status(parsed.symbol, parsed.grouping)
        label = _STATUS.get(None if status is None else str(status), str(status))
        bid = book.best_bid if book else None
        ask = book.best_ask if book else None
        bps = None
        if bid and ask and bid[0] + ask[0] > 0:
            bps = (ask[0] - bid[0]) / ((ask[0] + bid[0]) / 2) * 1e4
        age = (
            None if book is None or book.exchange_ms is None else (now_ms - book.exchange_ms) / 1e3
        )
        out.append(
            f"{name[:13]:<13}{_fit(bid and bid[1], 7):>7} {_fit(bid and bid[0], 10):>10} "
            f"{_fit(ask and ask[0], 10):<10}{_fit(ask and ask[1], 7):<7}"
            f"{_fit(bps, 5, 2):>5}{_fit(age, 5, 1):>6} {label:<10}".rstrip()
        )
    return out


def ladders(feed, topics: list[str], depth: int) -> list[str]:  # noqa: ANN001
    """An N-level ladder per synced book, bids left, asks right."""
    from bookengine.wire import Topic

    lines: list[str] = []
    if depth <= 0:
        return lines
    for topic in topics:
        parsed = Topic.parse(topic)
        book = feed.book(parsed.symbol, parsed.grouping) if parsed.kind == "update" else None
        if book is None:
            continue
        bids, asks = book.depth(depth)
        lines.append(f"  {parsed.symbol}: {'size':>12} {'bid':>12} | {'ask':<12} size")
        for n in range(max(len(bids), len(asks))):
            b = bids[n] if n < len(bids) else None
            a = asks[n] if n < len(asks) else None
            left = f"{_fit(b and b[1], 12):>12} {_fit(b and b[0], 12):>12}" if b else " " * 25
            right = f"{_fit(a and a[0], 12):<12} {_fit(a and a[1], 12):<12}" if a else ""
            lines.append(f"  {'':<{len(parsed.symbol) + 1}} {left} | {right}".rstrip())
    return lines


def table(feed, topics, url, errors, ladder: int = 0, trades: bool = False) -> str:  # noqa: ANN001
    stats = feed.stats()
    head = (
        f"{url[:40]}  gaps {stats.gaps} resyncs {stats.resyncs} "
        f"reconnects {stats.reconnects} bad {stats.bad_frames}"
    )
    lines = [head[:WIDTH], HEADER, *rows(feed, topics), *ladders(feed, topics, ladder),
             *last_trades(feed, topics, trades)]  # fmt: skip
    lines.extend(f"! {error}"[:WIDTH] for error in errors)
    return "\n".join(lines)


def _fit(value: object, width: int, decimals: int | None = None) -> str:
    """A number in at most `width` characters: exact when it fits, else rounded."""
    if value is None:
        return "-"
    if not isinstance(value, int | float):
        return str(value)[:width]
    if decimals is not None:
        text = f"{value:.{decimals}f}"
        return text if len(text) <= width else f"{value:.{max(1, width - 4)}g}"
    text = repr(value)
    if len(text) <= width:
        return text
    for digits in range(width, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= width:
            return text
    return text


def _clock() -> str:
    return time.strftime("%H:%M:%S", time.gmtime())
