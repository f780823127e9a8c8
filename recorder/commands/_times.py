"""Parsing the --from/--to/--interval options shared by replay and export."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from recorder.commands._values import add_symbols_argument, chosen_symbols, parse_duration
from recorder.exitcodes import usage


def parse_time(text: str, origin_ns: int | None) -> int:
    """ISO 8601 (`2026-11-25T00:37:10Z`), epoch seconds or ns, or `+30s`/`+5m` from the
    recording's start -> ns."""
    text = text.strip()
    if text.startswith("+"):
        if origin_ns is None:
            raise argparse.ArgumentTypeError("relative time, but the recording is empty")
        return origin_ns + int(parse_duration(text[1:]) * 1e9)
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return int(value) if value > 1e17 else int(value * 1e9)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601, epoch seconds, or +30s from the start)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1e9)


def parse_interval_ms(text: str) -> float:
    """`100ms`, `1s`, `250` (ms) -> milliseconds."""
    text = text.strip().lower()
    if text.endswith("ms"):
        value = float(text[:-2])
    elif text[-1:] in "smhd" and text[-1:]:
        value = parse_duration(text) * 1000
    else:
        value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("an interval must be > 0")
    return value


def add_range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="recording files or directories")
    parser.add_argument("--from", dest="start", default=None, help="ISO time, epoch, or +30s")
    parser.add_argument("--to", dest="end", default=None, help="ISO time, epoch, or +5m")
    add_symbols_argument(parser)


def resolve_range(args: argparse.Namespace) -> tuple[int | None, int | None, list[str] | None]:
    from recorder.exitcodes import CommandFailed, Exit
    from recorder.replay import recording_span

    first, last = recording_span(args.paths)
    try:
        start = None if args.start is None else parse_time(args.start, first)
        end = None if args.end is None else parse_time(args.end, first)
    except argparse.ArgumentTypeError as exc:
        raise usage(str(exc)) from None
    if start is not None and end is not None and end < start:
        raise usage("--to is before --from")
    if first is None or last is None:
        raise CommandFailed(Exit.NO_DATA, "the recordings hold no records")
    if (start is not None and start > last) or (end is not None and end < first):
        raise CommandFailed(
            Exit.NO_DATA,
            "the time window is outside the recordings, which span "
            f"{iso_time(first)} to {iso_time(last)}",
        )
    symbols = chosen_symbols(args) or None
    return start, end, symbols


def iso_time(ns: int) -> str:
    """ns since the epoch as ISO 8601 UTC, to the millisecond."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def add_sizes_argument(parser: argparse.ArgumentParser) -> None:
    """--sizes, as replay and export take it."""
    parser.add_argument(
        "--sizes",
        choices=("contracts", "base"),
        default="contracts",
        help="futures sizes as sent (contracts) or in base coin, with the instrument "
        "metadata stored in the recording",
    )


def require_selection(symbols: list[str] | None, stats) -> None:  # noqa: ANN001
    """Exit 3 when a selected symbol, or any frame, is missing from what was replayed:
    never a silent success on an empty selection (replay and export alike)."""
    from bookengine import naming
    from recorder.exitcodes import CommandFailed, Exit

    absent = sorted({naming.canonical(s) for s in symbols or ()} - stats.symbols_seen)
    if absent:
        raise CommandFailed(Exit.NO_DATA, f"not in the recordings (window): {', '.join(absent)}")
    if stats.selected_frames == 0:
        raise CommandFailed(Exit.NO_DATA, "no frame in the selected recordings and window")
