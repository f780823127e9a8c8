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
        raise argparse.ArgumentTypeError(f"a duration must be finite and > 0, got {text!r}")
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


def symbol_list(values: list[str] | str | None) -> list[str]:
    """Symbols as every subcommand takes them: space- or comma-separated, or both
    (`BTC-USD ETH-USD`, `BTC-USD,ETH-USD`); empty items dropped, order kept."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def add_symbols_argument(
    parser: argparse.ArgumentParser, *, positional: bool = False, default: str | None = None
) -> None:
    """Symbols as every subcommand takes them: `-s/--symbols A B` or `-s A,B` (and, for
    the live commands, positionally). Read them with `chosen_symbols(args)`."""
    if positional:
        parser.add_argument(
            "symbols_positional", nargs="*", metavar="SYMBOL",
            help="symbols (any BTSE spelling: BTC-USD, BTC-PERP, BTCPFC) or topics",
        )  # fmt: skip
    parser.add_argument(
        "-s", "--symbols", nargs="+", action="extend", default=None, metavar="SYMBOL",
        help="symbols, space- or comma-separated" + (f" (default {default})" if default else ""),
    )  # fmt: skip


def chosen_symbols(args: argparse.Namespace) -> list[str]:
    """The symbols given positionally and with -s/--symbols, in order, once each."""
    positional = getattr(args, "symbols_positional", None) or []
    given = [*positional, *symbol_list(getattr(args, "symbols", None))]
    return list(dict.fromkeys(symbol_list(given)))


def chosen_topics(args: argparse.Namespace, example: str) -> list[str]:
    """The chosen symbols as the topics to subscribe; a bad or missing one is usage
    (exit 2), `example` shows how to give them."""
    from bookengine.errors import BookEngineError
    from bookengine.wire import to_topic
    from recorder.exitcodes import usage

    try:
        topics = [to_topic(s) for s in chosen_symbols(args)]
    except BookEngineError as exc:
        raise usage(str(exc)) from None
    if not topics:
        raise usage(f"no symbols: e.g. {example}")
    return topics


class Deprecated(argparse.Action):
    """An old spelling, accepted for one more release with a note on stderr, hidden from
    --help (docs/CLI.md lists them)."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs) -> None:  # noqa: ANN003
        kwargs["help"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        import sys

        print(f"{parser.prog}: {option_string} is deprecated, use {self.new} "
              "(accepted until 0.3)", file=sys.stderr)  # fmt: skip
        setattr(namespace, self.dest, values)
