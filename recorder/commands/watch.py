"""`btse-recorder watch`: a live top-of-book table, refreshed in place."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from recorder.commands._live import add_source_arguments, check_source, run_loop, source_url
from recorder.commands._values import add_symbols_argument, chosen_symbols, parse_duration
from recorder.exitcodes import Exit, usage

HELP = "show a live top-of-book table (status, spread, rates, gaps, latency)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_symbols_argument(parser, positional=True)
    add_source_arguments(parser)
    parser.add_argument(
        "--refresh", type=parse_duration, default=0.5, help="on a terminal: redraw this often"
    )
    parser.add_argument(
        "--status-every", type=parse_duration, default=60.0,
        help="not on a terminal: print the table this often (default 60s)",
    )  # fmt: skip
    parser.add_argument("--duration", type=parse_duration, default=None, help="e.g. 30s, 1h")
    parser.add_argument(
        "--no-trades", dest="trades", action="store_false", help="books only (no last trade)"
    )


def run(args: argparse.Namespace) -> int:
    from bookengine.errors import BookEngineError
    from bookengine.wire import to_topic

    try:
        topics = [to_topic(s) for s in chosen_symbols(args)]
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    if not topics:
        raise usage("no symbols: e.g. watch BTC-USD BTC-PERP")
    check_source(args, topics)
    return run_loop(lambda: _watch(args, topics))


async def _watch(args: argparse.Namespace, topics: list[str]) -> int:
    from bookengine.feed import Feed

    tty = sys.stdout.isatty()
    errors: list[str] = []

    def on_error(event) -> None:  # noqa: ANN001
        errors.append(str(getattr(event, "reason", None) or getattr(event, "errors", event)))

    async with source_url(args, topics) as url:
        async with Feed(topics, url=url, on_error=on_error, trades=args.trades) as feed:
            started = now = time.monotonic()
            last_frames, last_time = 0, started
            every = args.refresh if tty else args.status_every
            try:
                while args.duration is None or now - started < args.duration:
                    left = None if args.duration is None else args.duration - (now - started)
                    await asyncio.sleep(every if left is None else max(0.0, min(every, left)))
                    now = time.monotonic()
                    if now - last_time < every * 0.99:
                        continue  # cut short by the end of --duration: the final table shows it
                    last_frames, last_time = _show(feed, topics, url, errors, tty,
                                                   last_frames, last_time, now)  # fmt: skip
            except asyncio.CancelledError:
                pass
            if not tty:  # the last state, for a log or a pipe
                _show(feed, topics, url, errors, tty, last_frames, last_time, time.monotonic())
            stats = feed.stats()
            print(
                f"\n{stats.frames} frames in {time.monotonic() - started:.1f}s; gaps {stats.gaps}, "
                f"resyncs {stats.resyncs}, reconnects {stats.reconnects}, "
                f"bad frames {stats.bad_frames}, exchange errors {stats.error_frames}"
            )
    return Exit.OK


def _show(feed, topics, url, errors, tty, last_frames, last_time, now):  # noqa: ANN001, ANN202
    stats = feed.stats()
    rate = (stats.frames - last_frames) / max(now - last_time, 1e-9)
    screen = _table(feed, topics, rate, stats, url, errors[-3:])
    if tty:
        sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
    else:
        sys.stdout.write(screen + "\n\n")
    sys.stdout.flush()
    return stats.frames, now


def _table(feed, topics: list[str], rate: float, stats, url: str, errors: list[str]) -> str:  # noqa: ANN001
    from bookengine.wire import Topic

    per_topic = feed.topic_stats()
    lines = [
        f"{url}  {rate:,.0f} frames/s  gaps {stats.gaps}  resyncs {stats.resyncs}  "
        f"reconnects {stats.reconnects}  bad {stats.bad_frames}",
        f"{'topic':<22} {'status':<21} {'bid size':>12} {'bid':>12} {'ask':>12} "
        f"{'ask size':>12} {'spread':>9} {'gaps':>5} {'lat ms':>7}  last trade",
    ]
    for topic in topics:
        if not topic.startswith("update:"):
            continue
        parsed = Topic.parse(topic)
        book = feed.book(parsed.symbol, parsed.grouping)
        status = feed.status(parsed.symbol, parsed.grouping)
        tstats = per_topic.get(topic)
        latency = stats.latency.get(topic, {}).get("exchange_ms_p50")
        bid = book.best_bid if book else None
        ask = book.best_ask if book else None
        trade = feed.last_trade(parsed.symbol)
        last = "-" if trade is None else f"{trade.side} {_num(trade.size)} @ {_num(trade.price)}"
        lines.append(
            f"{topic:<22} {str(status or 'connecting'):<21} "
            f"{_num(bid and bid[1]):>12} {_num(bid and bid[0]):>12} "
            f"{_num(ask and ask[0]):>12} {_num(ask and ask[1]):>12} "
            f"{_num(book.spread if book else None):>9} {tstats.gaps if tstats else 0:>5} "
            f"{_num(latency and round(latency, 1)):>7}  {last}"
        )
    for error in errors:
        lines.append(f"! {error[:120]}")
    return "\n".join(lines)


def _num(value: object) -> str:
    return "-" if value is None else repr(value) if isinstance(value, float) else str(value)
