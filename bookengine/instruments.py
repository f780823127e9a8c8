"""Instrument metadata from BTSE's markets API: tick sizes, size increments, contract sizes.

    instruments = Instruments.get_or_cache("production", cache="~/.cache/bookengine/markets.json")
    perp = instruments["BTC-PERP-USDT"]          # any spelling (bookengine.naming)
    perp.contract_size                            # "0.00001": one contract is 0.00001 BTC
    perp.to_base(60672.0)                         # 0.60672, exactly (not 0.6067200000000001)
    perp.round_price(86540.63)                    # 86540.6, on the 0.1 tick

Futures books and trades carry sizes in contracts; spot sizes are in base coin. Converting
is exact: a size times a decimal contract size is computed in integers and divided once,
so the float is the one nearest the exact decimal product, as every price is.

HTTP uses the standard library (`urllib`): one GET of ~470 KB now and then, from a thread,
needs no client dependency. Requests time out, are retried with backoff, and a failure
falls back to the cache file; with neither, `InstrumentsUnavailable` says so.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from bookengine import naming
from bookengine.book import multiply_decimal, price_parts
from bookengine.errors import ArgumentError, BookEngineError, TopicError

log = logging.getLogger(__name__)

MARKETS_PATH = "/public-api/market/v1/markets"
API_HOSTS = {"production": "https://api.btse.com", "testnet": "https://testapi.btse.io"}
_API_OF_SOCKET_HOST = {"ws.btse.com": "api.btse.com", "testws.btse.io": "testapi.btse.io"}


class InstrumentsUnavailable(BookEngineError):
    """Neither the markets API nor a cache file gave instrument metadata."""


def _decimal_text(value: object, name: str) -> str:
    """A positive decimal as text (the API sends strings; older endpoints numbers, which
    are spelled out plainly: 0.00001, never 1e-05)."""
    if isinstance(value, float) and math.isfinite(value):
        text = format(Decimal(repr(value)), "f")
    else:
        text = str(value)
    try:
        mantissa, _ = price_parts(text)
    except ValueError:
        raise ArgumentError(f"{name} must be a positive decimal, got {value!r}") from None
    if mantissa <= 0:
        raise ArgumentError(f"{name} must be > 0, got {value!r}")
    return text


@dataclass(frozen=True, slots=True)
class Instrument:
    """One market as the markets API describes it. Decimals stay strings (exact)."""

    symbol: str  # the socket name: BTC-PERP, BTC-USD
    markets_api: str  # the API's symbol: BTC-PERP-USDT
    kind: str  # "spot" | "perpetual" | "dated"
    base: str
    quote: str
    tick: str  # minPriceIncrement
    size_increment: str  # minSizeIncrement
    contract_size: str  # coins per contract; "1" for spot
    active: bool
    row: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def futures(self) -> bool:
        return self.kind != "spot"

    def to_base(self, size: float) -> float:
        """A size in contracts as base coin, exactly (the float nearest the decimal)."""
        return multiply_decimal(size, self.contract_size)

    def round_price(self, price: float | str, mode: str = "nearest") -> float:
        """`price` on the tick grid: "nearest" (halves away from zero), "down" or "up"."""
        return _round_to(price, self.tick, mode)

    def round_size(self, size: float | str, mode: str = "down") -> float:
        """`size` (>= 0) on the size-increment grid ("down" by default: never more than
        asked)."""
        if _exact(size) < 0:
            raise ArgumentError(f"a size is >= 0, got {size!r}")
        return _round_to(size, self.size_increment, mode)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Instrument:
        """One row of the markets reply; `ArgumentError` if it is not usable."""
        if not isinstance(row, dict):
            raise ArgumentError(f"a market must be an object, got {type(row).__name__}")
        kind = {"Spot": "spot", "FuturesPerpetual": "perpetual", "FuturesTimeBased": "dated"}
        market = kind.get(str(row.get("type")))
        if market is None:
            raise ArgumentError(f"unknown market type {row.get('type')!r} in {row.get('symbol')!r}")
        api_name = row.get("symbol")
        socket = row.get("tradeCurrency") if market != "spot" else api_name
        if not isinstance(api_name, str) or not isinstance(socket, str):
            raise ArgumentError(f"a market without its names: {str(row)[:120]}")
        try:
            socket = naming.canonical(socket)
        except TopicError as exc:
            raise ArgumentError(str(exc)) from None
        contract = row.get("contractSize") if market != "spot" else "1"
        return cls(
            symbol=socket,
            markets_api=api_name,
            kind=market,
            base=str(row.get("baseCurrency", "")),
            quote=str(row.get("quoteCurrency", "")),
            tick=_decimal_text(row.get("minPriceIncrement"), "minPriceIncrement"),
            size_increment=_decimal_text(row.get("minSizeIncrement"), "minSizeIncrement"),
            contract_size=_decimal_text(contract if contract is not None else "", "contractSize"),
            active=_flag(row.get("active", True)),
            row=row,
        )


class Instruments:
    """Every market of one markets reply, looked up by any spelling.

    `fetched_at` (unix s) says how old it is; `source` where it came from (a URL or a
    cache file); `reply` is the exact JSON fetched, which the recorder keeps."""

    def __init__(self, reply: bytes, fetched_at: float, source: str) -> None:
        try:
            parsed = json.loads(reply)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArgumentError(f"the markets reply is not JSON: {exc}") from None
        rows: object = parsed
        if isinstance(parsed, dict):
            data = parsed.get("data")
            rows = data.get("symbols") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ArgumentError("the markets reply has no list of markets (data.symbols)")
        self.reply = reply
        self.fetched_at = fetched_at
        self.source = source
        self.skipped: list[str] = []  # rows that were not usable, and why
        self._by_symbol: dict[str, Instrument] = {}
        for row in rows:
            try:
                instrument = Instrument.from_row(row)
            except ArgumentError as exc:
                self.skipped.append(str(exc))
                continue
            self._by_symbol[instrument.symbol] = instrument
        if not self._by_symbol:
            raise ArgumentError(f"no usable market in the reply ({len(rows)} rows)")

    def __getitem__(self, spelling: str) -> Instrument:
        instrument = self.get(spelling)
        if instrument is None:
            raise KeyError(f"{spelling!r}: not among the {len(self)} markets of {self.source}")
        return instrument

    def get(self, spelling: str) -> Instrument | None:
        """The market of `spelling` (any spelling), or None."""
        try:
            return self._by_symbol.get(naming.canonical(spelling))
        except TopicError:
            return None

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_symbol.values())

    def __len__(self) -> int:
        return len(self._by_symbol)

    @property
    def age_s(self) -> float:
        return max(0.0, time.time() - self.fetched_at)

    # --- fetching and caching ----------------------------------------------------------

    @classmethod
    def fetch(
        cls, url: str = "production", *, timeout: float = 10.0, retries: int = 3
    ) -> Instruments:
        """GET the markets API: `url` is "production", "testnet", or a base URL
        (http(s)://host:port; ws(s):// means the same host over http(s), as the
        simulator serves both). Retries with backoff; raises `InstrumentsUnavailable`."""
        endpoint = markets_url(url)
        delay = 0.5
        last: Exception | None = None
        for attempt in range(1, retries + 1):
            try:
                return cls(_get(endpoint, timeout), time.time(), endpoint)
            except _HTTP_ERRORS as exc:
                last = exc  # URLError, timeouts and ArgumentError (a ValueError) included
                if attempt < retries:
                    time.sleep(delay)
                    delay *= 2
        raise InstrumentsUnavailable(f"markets API {endpoint}: {last}")

    def save(self, path: str | Path) -> None:
        """Write the cache file (the reply as fetched, with its fetch time and source)."""
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        envelope = {"fetched_at": self.fetched_at, "source": self.source}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(json.dumps(envelope).encode() + b"\n" + self.reply)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Instruments:
        """Read a cache file written by `save`."""
        path = Path(path).expanduser()
        try:
            head, _, reply = path.read_bytes().partition(b"\n")
            envelope = json.loads(head)
            fetched_at = float(envelope["fetched_at"])
            if not math.isfinite(fetched_at) or fetched_at > time.time() + 60:
                raise ValueError(f"fetched_at {fetched_at!r} is not a past time")
            return cls(reply, fetched_at, f"cache {path}")
        except FileNotFoundError:
            raise InstrumentsUnavailable(f"no instrument cache at {path}") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = f"the instrument cache {path} is unreadable: {exc}"
            raise InstrumentsUnavailable(why) from None

    @classmethod
    def get_or_cache(
        cls,
        url: str = "production",
        cache: str | Path | None = None,
        *,
        max_age_s: float = 24 * 3600.0,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> Instruments:
        """A fresh enough cache, else the API (and refresh the cache), else a stale cache
        (with a warning); `InstrumentsUnavailable` when neither is there."""
        cached: Instruments | None = None
        if cache is not None:
            try:
                cached = cls.load(cache)
            except InstrumentsUnavailable:
                cached = None
            if cached is not None and cached.age_s <= max_age_s:
                return cached
        try:
            fresh = cls.fetch(url, timeout=timeout, retries=retries)
        except InstrumentsUnavailable as exc:
            if cached is None:
                raise
            log.warning("%s; using the cache from %.0f s ago", exc, cached.age_s)
            return cached
        if cache is not None:
            try:
                fresh.save(cache)
            except OSError as exc:  # a read-only cache never costs the fresh data
                log.warning("could not write the instrument cache %s: %s", cache, exc)
        return fresh


def markets_url(url: str) -> str:
    """The markets endpoint of "production", "testnet" or a base URL."""
    if url in API_HOSTS:
        return API_HOSTS[url] + MARKETS_PATH
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https", "ws", "wss"):
        raise ArgumentError(f"url must be 'production', 'testnet' or http(s)://..., got {url!r}")
    host = rest.split("/", 1)[0]
    if host in _API_OF_SOCKET_HOST:  # BTSE's sockets and its REST API are on other hosts
        return "https://" + _API_OF_SOCKET_HOST[host] + MARKETS_PATH
    return {"ws": "http", "wss": "https"}.get(scheme, scheme) + "://" + host + MARKETS_PATH


MAX_REPLY_BYTES = 32 << 20  # the real reply is ~470 KB
_HTTP_ERRORS = (OSError, ValueError, http.client.HTTPException)


def _get(url: str, timeout: float) -> bytes:
    """The body of a GET, within `timeout` seconds in all (a server that trickles bytes
    cannot hold the caller) and `MAX_REPLY_BYTES`."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        chunks, size = [], 0
        while chunk := response.read1(65536):  # what has come: the deadline is checked
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_REPLY_BYTES:
                raise ValueError(f"reply larger than {MAX_REPLY_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"reply not complete within {timeout}s")
    return b"".join(chunks)


def _flag(value: object) -> bool:
    """JSON true/false, or the strings "true"/"false" some endpoints send."""
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "")
    return bool(value)


# --- exact arithmetic on floats that stand for decimals -----------------------------------


def _exact(value: float | str) -> Fraction:
    """A float as the decimal of <= 15 significant digits it stands for (0.1 + 0.2 is
    0.3), or a decimal string, as an exact fraction."""
    if isinstance(value, bool) or not isinstance(value, float | int | str):
        raise ArgumentError(f"expected a number or a decimal string, got {value!r}")
    text = format(value, ".15g") if isinstance(value, float) else str(value)
    try:
        return Fraction(Decimal(text))
    except (ArithmeticError, ValueError):
        raise ArgumentError(f"not a finite decimal: {value!r}") from None


def _round_to(value: float | str, step: str, mode: str) -> float:
    if mode not in ("nearest", "down", "up"):
        raise ArgumentError(f"mode must be 'nearest', 'down' or 'up', got {mode!r}")
    units = _exact(value) / _exact(step)
    if mode == "down":
        whole = math.floor(units)
    elif mode == "up":
        whole = math.ceil(units)
    else:  # halves away from zero
        whole = math.floor(abs(units) + Fraction(1, 2)) * (1 if units >= 0 else -1)
    return float(whole * _exact(step)) + 0.0  # + 0.0: never -0.0
