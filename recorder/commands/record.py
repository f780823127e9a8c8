"""`btse-recorder record`: capture sessions to compressed, crash-safe, rotating files."""

from __future__ import annotations

import argparse
import sys

from recorder.commands._live import add_source_arguments, run_loop, source_url

HELP = "record order book streams to compressed, rotating files (see docs/FORMAT.md)"

_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "kb": 1e3, "mb": 1e6, "gb": 1e9}
_TIME = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `1d` -> seconds."""
    text = text.strip().lower()
    unit = text[-1] if text and text[-1] in _TIME else "s"
    number = text[:-1] if text and text[-1] in _TIME else text
    try:
        value = float(number) * _TIME[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 15m, 1h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a duration must be > 0")
    return value


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1048576` -> bytes."""
    text = text.strip().lower()
    number = text.rstrip("kmgb")
    try:
        value = int(float(number) * _UNITS[text[len(number) :]])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 2G)") from None
    if value < 4096:
        raise argparse.ArgumentTypeError("--max-bytes must be at least 4096")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbols", nargs="+", help="symbols (BTC-USD, BTC-PERP) or topics")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    add_source_arguments(parser)
    parser.add_argument("--duration", type=parse_duration, default=None, help="e.g. 30s, 2h")
    parser.add_argument(
        "--rotate", type=parse_duration, default=3600.0, help="aligned time rotation (default 1h)"
    )
    parser.add_argument("--max-bytes", type=parse_size, default=None, help="also rotate at size")
    parser.add_argument("--digest-interval", type=parse_duration, default=5.0)
    parser.add_argument("--quiet", action="store_true", help="no live status line")
    parser.add_argument(
        "--no-trades",
        dest="trades",
        action="store_false",
        help="books only (by default each symbol's public trades are recorded too)",
    )


def run(args: argparse.Namespace) -> int:
    from bookengine.errors import BookEngineError
    from bookengine.wire import to_topic

    try:
        topics = [to_topic(s) for s in args.symbols]
    except BookEngineError as exc:
        raise SystemExit(f"record: {exc}") from None
    return run_loop(lambda: _record(args, topics))


async def _record(args: argparse.Namespace, topics: list[str]) -> int:
    from recorder.session import SessionStats, record_session
    from recorder.writer import RecorderError

    tty = sys.stderr.isatty()
    shown_errors = 0

    def status(stats: SessionStats) -> None:
        nonlocal shown_errors
        for error in stats.exchange_errors[shown_errors:]:
            print(f"\nexchange error: {error}", file=sys.stderr)
        shown_errors = len(stats.exchange_errors)
        if args.quiet:
            return
        line = (
            f"{stats.elapsed_s:7.1f}s  frames {stats.frames:,}  in {stats.bytes_in / 1e6:,.1f} MB  "
            f"file {stats.compressed_bytes / 1e6:,.2f} MB (x{stats.ratio:.1f})  gaps {stats.gaps}  "
            f"resyncs {stats.resyncs}  lost {stats.lost}  files {len(stats.files) + 1}"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    async with source_url(args, topics) as url:
        try:
            stats = await record_session(
                topics,
                args.out,
                url=url,
                duration=args.duration,
                rotate_s=args.rotate,
                max_bytes=args.max_bytes,
                digest_interval=args.digest_interval,
                on_status=status,
                trades=args.trades,
            )
        except RecorderError as exc:
            print(f"\nrecord: {exc}", file=sys.stderr)
            return 3
    print(file=sys.stderr)
    print(
        f"recorded {stats.frames:,} frames in {stats.elapsed_s:.1f}s into {len(stats.files)} "
        f"file(s), x{stats.ratio:.1f} compression, gaps {stats.gaps}, resyncs {stats.resyncs}, "
        f"lost {stats.lost}"
    )
    for path in stats.files:
        print(f"  {path}")
    if stats.exchange_errors and stats.frames == 0:
        return 4
    return 0
