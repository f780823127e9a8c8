"""Every spelling of a BTSE instrument, and the endpoint it lives on.

Nothing else in the project parses symbol strings: topics, the Feed's routing and user
keys, BookSync's routing, the recorder's header, replay's and export's `--symbols` all ask
here. Sources for each rule are in docs/PROTOCOL.md ("Symbols").

The *socket name* is the one spelling the order book stream serves under (`data.symbol`
of its frames); every other spelling folds onto it:

    user spelling        socket name    why
    btc-usd              BTC-USD        input is case-insensitive; BTSE's names are upper-case
    BTC-PERP-USDT        BTC-PERP       the markets API's `symbol` of a perpetual (ccxt's id)
    BTCPFC, BTCPFC-USD   BTC-PERP       legacy perpetual names (before the 2022-23 migration)
    BTC-260925-USDT      BTC-260925     the markets API's name of a dated future
    K_PEIPEI-USDT        K_PEIPEI-USDT  spot with a K_/M_/B_ prefix: the prefix is the name
    1KFLOKI-PERP         1KFLOKI-PERP   thousand-unit contract: an ordinary name

Only the `-USDT` suffix of a *futures* name is folded (`BTC-USDT` is a spot market).
Legacy dated names (`BTCM23`: month code + year) are futures kept as spelled: they expired
long ago and map to no current name. Anything else is an opaque upper-case name.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal, NamedTuple

from bookengine.errors import TopicError

Market = Literal["spot", "futures"]

# BASE-QUOTE, BASE-PERP, BASE-YYMMDD, with an optional `K_`-style prefix on the base.
_NAME_RE = re.compile(r"[A-Z0-9]+(?:_[A-Z0-9]+)?(?:-[A-Z0-9]+)+\Z")
_DATED_RE = re.compile(r"-\d{6}\Z")
_LEGACY_PERP_RE = re.compile(r"([A-Z0-9]+)PFC(?:-USD)?\Z")  # BTCPFC; BTCPFC-USD (2021 docs)
_LEGACY_BASE_RE = re.compile(r"[A-Z][A-Z0-9]*\Z")  # bases that had a PFC name
_LEGACY_DATED_RE = re.compile(r"[A-Z0-9]+[FGHJKMNQUVXZ]\d{2}\Z")
_API_SUFFIX = "-USDT"
MAX_SYMBOL_LENGTH = 40  # BTSE's longest names are ~20 characters


class Names(NamedTuple):
    """Every spelling of one instrument."""

    socket: str  # what the order book stream serves: `BTC-PERP`
    markets_api: str  # the unified markets API's `symbol`: `BTC-PERP-USDT`
    legacy: str | None  # the pre-migration name, if it had one: `BTCPFC`
    market: Market  # which endpoint serves it


def canonical(symbol: str) -> str:
    """The socket name of any spelling; `TopicError` (naming the right form) if none."""
    if not isinstance(symbol, str):
        raise TopicError(f"a symbol must be a string, got {type(symbol).__name__}")
    if len(symbol) > MAX_SYMBOL_LENGTH:  # refused before the cache sees it
        raise TopicError(f"a symbol of {len(symbol)} characters: at most {MAX_SYMBOL_LENGTH}")
    return _canonical(symbol)


@lru_cache(maxsize=4096)
def _canonical(symbol: str) -> str:
    name = symbol.strip().upper()
    legacy = _LEGACY_PERP_RE.match(name)
    if legacy:
        return f"{legacy.group(1)}-PERP"
    if _LEGACY_DATED_RE.match(name):
        return name
    if not _NAME_RE.match(name):
        raise TopicError(
            f"bad symbol {symbol!r}: BTSE spells spot BASE-QUOTE (BTC-USD), perpetuals "
            "BASE-PERP (BTC-PERP or BTC-PERP-USDT), dated futures BASE-YYMMDD (BTC-260925)"
        )
    if name.endswith(_API_SUFFIX):
        base = name[: -len(_API_SUFFIX)]
        if _is_futures_name(base):
            return base
    return name


def _is_futures_name(name: str) -> bool:
    return name.endswith("-PERP") or bool(_DATED_RE.search(name))


def market(symbol: str) -> Market:
    """"futures" or "spot": which OSS endpoint serves `symbol` (any spelling)."""
    name = canonical(symbol)
    if _is_futures_name(name) or "-" not in name:  # dash-less names are legacy futures
        return "futures"
    return "spot"


def is_futures(symbol: str) -> bool:
    return market(symbol) == "futures"


def names(symbol: str) -> Names:
    """All spellings of `symbol` (any spelling in)."""
    socket = canonical(symbol)
    kind = market(socket)
    if kind == "futures" and "-" in socket:
        api = socket + _API_SUFFIX
    else:
        api = socket
    base = socket[: -len("-PERP")] if socket.endswith("-PERP") else ""
    legacy = base + "PFC" if _LEGACY_BASE_RE.match(base) else None
    return Names(socket, api, legacy, kind)


def same_instrument(a: str, b: str) -> bool:
    """Whether two spellings name one instrument."""
    return canonical(a) == canonical(b)
