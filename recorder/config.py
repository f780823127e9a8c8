"""`record --config recorder.toml`: the recorder's options as a file (stdlib tomllib).

Keys are the long options' names with `_` for `-` (`max_bytes`, `metrics_port`), plus
`symbols` (a list) and `output`. Values take the CLI's spellings ("1h", "2G") or plain
numbers (seconds, bytes). Unknown keys and wrong types are errors that name the key.
Relative paths are relative to the config file's directory. Flags on the command line
override the file.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bookengine.errors import ArgumentError
from recorder.commands._values import parse_duration, parse_file_size, parse_size
from recorder.logs import FORMATS


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise argparse.ArgumentTypeError("must be a non-empty string")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise argparse.ArgumentTypeError("must be true or false")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 0-65535")
    return value


def _positive(value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < float("inf")
    ):
        raise argparse.ArgumentTypeError("must be a number > 0")
    return float(value)


def _symbols(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise argparse.ArgumentTypeError('must be a non-empty list, e.g. ["BTC-USD", "BTC-PERP"]')
    for item in value:
        if not isinstance(item, str):
            raise argparse.ArgumentTypeError(f"must hold strings, not {item!r}")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(choices)}")
        return str(value)

    return check


def _sizes(value: Any) -> int:
    if isinstance(value, float):
        value = int(value)
    return parse_size(value)


# key -> converter; keys that are paths are resolved against the file's directory
RECORD_KEYS: dict[str, Callable[[Any], Any]] = {
    "symbols": _symbols,
    "output": _string,
    "url": _string,
    "client": _choice("websockets", "picows"),
    "sim": _boolean,
    "sim_rate": _positive,
    "sim_faults": lambda v: v if isinstance(v, str) else _string(v),
    "sim_symbols": _symbols,
    "duration": parse_duration,
    "rotate": parse_duration,
    "max_bytes": lambda v: parse_file_size(int(v) if isinstance(v, float) else v),
    "digest_interval": parse_duration,
    "trades": _boolean,
    "status_every": parse_duration,
    "metrics_port": _port,
    "metrics_host": _string,
    "keep": parse_duration,
    "min_free": _sizes,
    "on_low_disk": _choice("stop", "delete"),
    "startup_timeout": parse_duration,
    "stop_timeout": parse_duration,
    "health_grace": parse_duration,
    "log_format": _choice(*FORMATS),
    "log_file": _string,
    "otc": lambda v: [_string(x) for x in v] if isinstance(v, list) else [_string(v)],
    "notifications": _boolean,
    "credentials": _string,  # a path: the key and secret themselves never go in a config
}
PATH_KEYS = ("output", "log_file", "credentials")


def load_config(path: str | Path, keys: dict[str, Callable[[Any], Any]] = RECORD_KEYS) -> dict:
    """The file's options, checked and converted; ArgumentError names the file and key."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ArgumentError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ArgumentError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ArgumentError(f"{path}: not valid TOML: {exc}") from None
    options: dict[str, Any] = {}
    for key, value in raw.items():
        convert = keys.get(key)
        if convert is None:
            close = difflib.get_close_matches(key, list(keys), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(keys)})"
            raise ArgumentError(f"{path}: unknown key {key!r}{hint}")
        try:
            options[key] = convert(value)
        except argparse.ArgumentTypeError as exc:
            raise ArgumentError(f"{path}: {key}: {exc}") from None
        except (ValueError, OverflowError):  # inf, nan and their kin
            raise ArgumentError(f"{path}: {key}: not a usable value: {value!r}") from None
        if key in PATH_KEYS:
            options[key] = str((path.parent / Path(options[key]).expanduser()).resolve())
    return options


def merge(args: argparse.Namespace, options: dict, defaults: dict) -> None:
    """Fill `args`: a flag given on the command line (not None) wins, then the file, then
    `defaults`."""
    for key in set(options) | set(defaults):
        if getattr(args, key, None) is None:
            setattr(args, key, options.get(key, defaults.get(key)))
