"""Durations and sizes as every subcommand and the config file spell them."""

from __future__ import annotations

import argparse

_SIZE = {
    "": 1,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
}
_TIME = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float) -> float:
    """`90`, `90s`, `15m`, `1h`, `30d` (or a number of seconds) -> seconds (> 0)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = float(text)
    else:
        text = str(text).strip().lower()
        unit = text[-1] if text and text[-1] in _TIME else "s"
        number = text[:-1] if text and text[-1] in _TIME else text
        try:
            value = float(number) * _TIME[unit]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a duration: {text!r} (e.g. 30s, 15m, 1h, 30d)"
            ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"a duration must be > 0, got {text!r}")
    return value


def parse_size(text: str | int) -> int:
    """`500M`, `2G`, `1048576` (bytes; decimal units, as disks are sold) -> bytes (>= 0)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        text = str(text).strip().lower()
        number = text.rstrip("kmgtb")
        try:
            value = int(float(number) * _SIZE[text[len(number) :]])
        except (ValueError, KeyError, OverflowError):
            raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 2G)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a size must be >= 0, got {text!r}")
    return value


def parse_file_size(text: str | int) -> int:
    """A --max-bytes: a size of at least 4096 bytes."""
    value = parse_size(text)
    if value < 4096:
        raise argparse.ArgumentTypeError("--max-bytes must be at least 4096")
    return value
