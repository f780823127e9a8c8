"""One exact L2 order book.

Representation (measured: benchmarks/bench_book.py, profile notes in docs/PERFORMANCE.md):

- With the C accelerator, each side is a `_fastbook.Side`: a sorted array of (int64 key,
  size), the best level last, updated by binary search and a short memmove (BTSE keeps
  at most 50 levels a side), so depth comes out already ordered. On the pure-Python path
  a side is a plain dict with the best price kept incrementally (recomputed by an O(50)
  scan when the best level is deleted), ordered only when someone asks for depth. The
  Python functions work on either; the C ones need a Side.
- Keys are *integers*: the price in units of 10**-D, where D is the most decimals this
  book has seen (a price with more decimals rescales the book once). Integer keys are
  exact, order-preserving and hash to themselves. Float keys looked natural but Python's
  float hash puts decimal price grids into few dict slots (every price on a 0.01 grid
  collides in the low bits), which made each dict operation several times dearer.
- Prices are validated as plain decimals with at most 15 significant digits; the public
  API returns floats computed as key / 10**D, a correctly rounded division, so every
  price prints exactly as its decimal (`86626.0`, never `86625.99999999999`), and
  `"86626.0"`, `"86626"` and `"86626.00"` are one level.
- The per-level loop and the depth query run in a small optional C extension
  (`_fastbook.c`) when it was built; `_apply_levels_py` and `_side_levels_py` below are
  the fallbacks and the specification it must match (the tests run against both;
  BOOKENGINE_PURE=1 or `pure_python()` forces the fallback). The same extension holds
  the delta scanner BookSync uses to read in-sequence deltas without orjson.
"""

from __future__ import annotations

import hashlib
import os
import re
from array import array
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, localcontext
from itertools import chain, repeat
from math import inf
from operator import index, truediv

from bookengine.errors import ArgumentError, LevelError

try:
    if os.environ.get("BOOKENGINE_PURE"):
        raise ImportError("BOOKENGINE_PURE is set")
    from bookengine import _fastbook
except ImportError:
    _fastbook = None  # type: ignore[assignment]  # the optional accelerator is not built

_DECIMAL_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")
_MAX_DIGITS = 15  # DBL_DIG: decimals of <= 15 significant digits survive a float exactly
_MAX_DECIMALS = 22
_CACHE_MAX = 100_000  # distinct price strings remembered by the Python path
_CACHED_TEXT = 32  # longer price/size texts are parsed each time, never kept
_POW10 = [10**i for i in range(2 * _MAX_DECIMALS + 2)]
_MAX_KEY = 2**63 - 1  # keys are int64 in the C accelerator, so everywhere

Levels = list[tuple[float, float]]  # (price, size), best first
TopKeys = tuple[float, float | None, float, float | None]  # see OrderBook.top_keys
# One side: integer price key -> size: a dict on the pure-Python path, a `_fastbook.Side`
# (a sorted array) with the accelerator. Keys are ints; typed float because a side's best
# key is -inf/inf when it is empty, and an int is a float to the type checker.
Side = MutableMapping[float, float]

# price string -> (mantissa, exp10), shared by every book: price strings repeat constantly.
_parts_cache: dict[str, tuple[int, int]] = {}


def price_parts(text: object) -> tuple[int, int]:
    """Split a price into (mantissa, exp10), value = mantissa * 10**exp10, exactly.

    Raises `LevelError` for anything but a plain non-negative decimal of at most 15
    significant digits (JSON numbers are accepted if they print as one).
    """
    parts = _parts_cache.get(text) if type(text) is str else None
    if parts is not None:
        return parts
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise LevelError(f"price must be a decimal string, got {type(text).__name__}")
    spelled = text if isinstance(text, str) else repr(text)
    if not _DECIMAL_RE.match(spelled):
        raise LevelError(f"not a non-negative decimal number: {spelled[:40]!r}")
    whole, dot, frac = spelled.partition(".")
    digits = whole + frac
    if dot:
        stripped = digits.rstrip("0")
        exp10 = len(digits) - len(stripped) - len(frac)
    else:
        stripped, exp10 = digits, 0
    significant = stripped.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        raise LevelError(f"more than {_MAX_DIGITS} significant digits: {spelled[:40]!r}")
    if not significant:
        exp10 = 0
    parts = (int(significant or "0"), exp10)
    if isinstance(text, str) and len(text) <= _CACHED_TEXT:
        if len(_parts_cache) >= _CACHE_MAX:
            _parts_cache.clear()
        _parts_cache[text] = parts
    return parts


def multiply_decimal(size: float, factor: str) -> float:
    """size * factor (a decimal string) as the float nearest the exact decimal product:
    60672 contracts x "0.00001" is 0.60672, never 0.6067200000000001."""
    mantissa, exp10 = price_parts(factor)
    if size == int(size) and abs(size) < 2**53:
        whole = int(size) * mantissa
        return float(whole * _POW10[exp10]) if exp10 >= 0 else whole / _POW10[-exp10]
    with localcontext() as context:  # exact whatever the caller's decimal context
        context.prec = 80
        return float(Decimal(repr(size)) * Decimal(factor))


def to_number(text: object) -> float:
    """A validated price or size as the float nearest its exact decimal value."""
    mantissa, exp10 = price_parts(text)
    return float(mantissa * _POW10[exp10]) if exp10 >= 0 else mantissa / _POW10[-exp10]


# size string -> float, for the Python path (sizes repeat as much as prices do)
_size_cache: dict[str, float] = {}
_MAX_SIZE_TEXT = 4096  # as the C accelerator: longer texts are refused


def size_value(size: object) -> float:
    """A size as a float, read exactly as the C accelerator reads it: a plain decimal string
    (`_DECIMAL_RE`: ASCII digits, no sign, exponent, space or underscore) or a JSON number
    (never a bool), finite and >= 0. A non-zero decimal too small for a float is refused,
    never turned into a deletion. Raises `LevelError` otherwise."""
    if type(size) is str:
        value = _size_cache.get(size)
        if value is not None:
            return value
        if len(size) > _MAX_SIZE_TEXT or not _DECIMAL_RE.match(size):
            raise LevelError(f"size must be a non-negative decimal number, got {size[:40]!r}")
        value = float(size)
        if value == inf or (value == 0.0 and size.strip("0.")):
            raise LevelError(f"size out of a float's range: {size[:40]!r}")
        if len(size) <= _CACHED_TEXT:
            if len(_size_cache) >= _CACHE_MAX:
                _size_cache.clear()
            _size_cache[size] = value
        return value
    if type(size) is int or type(size) is float:
        try:
            value = float(size)
        except OverflowError:
            value = inf
        if 0.0 <= value < inf:
            return value
        raise LevelError(f"size must be a finite non-negative number, got {str(size)[:40]}")
    raise LevelError(f"size must be a string, got {type(size).__name__}")


class _NeedsDecimalsPy(Exception):
    """A price has more decimals than the book's keys: rescale, then apply again."""


# One class on both paths (a book may be built in one mode and fed in the other).
NeedsDecimals: type[Exception] = _NeedsDecimalsPy if _fastbook is None else _fastbook.NeedsDecimals


def _apply_levels_py(
    side: Side,
    levels: list[object],
    best: float,
    is_bid: bool,
    decimals: int,
    parts_of: Callable[[object], tuple[int, int]],
) -> float:
    """Pure-Python twin of _fastbook.apply_levels: apply levels, return the new best key."""
    if not isinstance(levels, list):
        raise LevelError(f"levels must be a list, got {type(levels).__name__}")
    cache = _parts_cache
    pow10 = _POW10
    lost_best = False
    size_of = size_value
    for level in levels:
        if (type(level) is not list and type(level) is not tuple) or len(level) != 2:
            raise LevelError(f"each level must be a [price, size] pair, got {str(level)[:40]}")
        price, size = level
        parts = cache.get(price)
        mantissa, exp10 = parts if parts is not None else parts_of(price)
        shift = exp10 + decimals
        if shift < 0:
            raise NeedsDecimals(-exp10)
        key = mantissa * pow10[shift]
        if key > _MAX_KEY:
            raise LevelError(
                f"price {price!r} does not fit this book's precision ({decimals} decimals)"
            )
        amount = size_of(size)
        if amount:
            side[key] = amount
            if (key > best) if is_bid else (key < best):
                best = key
        elif side.pop(key, None) is not None and key == best:
            lost_best = True
    if lost_best:
        best = (max(side) if is_bid else min(side)) if side else (-inf if is_bid else inf)
    return best


def _dict_side(is_bid: bool) -> Side:
    """Pure-Python twin of _fastbook.Side(is_bid): a plain dict (unordered)."""
    return {}


def _side_levels_py(side: Side, descending: bool, n: int, scale: int) -> Levels:
    """Pure-Python twin of _fastbook.levels: the top `n` (every level if n < 0), best first."""
    # One C-level sort of <= ~50 ints, then tuples built by zip/map (no Python loop).
    keys = sorted(side, reverse=descending)
    if n >= 0:
        keys = keys[:n]
    prices = map(truediv, keys, repeat(scale))
    return list(zip(prices, map(side.__getitem__, keys), strict=False))  # repeat() is endless


# The one switch point between the C accelerator and its Python twins. A book uses the
# functions of the mode it was built in: the Python twins work on a Side as on a dict,
# the C functions only on a Side (see _levels_fn).
Scanner: type[_fastbook.Scanner] | None = None  # None: BookSync parses every frame with orjson
_apply_levels: Callable[..., float] = _apply_levels_py
_side_levels: Callable[[Side, bool, int, int], Levels] = _side_levels_py
_new_side: Callable[[bool], Side] = _dict_side
if _fastbook is not None:
    Scanner = _fastbook.Scanner
    _apply_levels = _fastbook.apply_levels
    _side_levels = _fastbook.levels
    _new_side = _fastbook.Side
    MutableMapping.register(_fastbook.Side)

ACCELERATED = _apply_levels is not _apply_levels_py


@contextmanager
def pure_python() -> Iterator[None]:
    """Within this block, books and BookSyncs created run without the C accelerator, as
    with BOOKENGINE_PURE=1 (tests and benchmarks compare the two in one process)."""
    global _apply_levels, Scanner, _side_levels, _new_side
    saved = _apply_levels, Scanner, _side_levels, _new_side
    _apply_levels, Scanner = _apply_levels_py, None
    _side_levels, _new_side = _side_levels_py, _dict_side
    try:
        yield
    finally:
        _apply_levels, Scanner, _side_levels, _new_side = saved


def _levels_fn(side: Side) -> Callable[..., float]:
    """The level loop for this side: a dict (built under pure_python()) takes the Python
    twin whatever the mode now is."""
    return _apply_levels_py if type(side) is dict else _apply_levels


def _depth_fn(side: Side) -> Callable[[Side, bool, int, int], Levels]:
    return _side_levels_py if type(side) is dict else _side_levels


def _rescaled(side: Side, is_bid: bool, factor: int) -> Side:
    """A copy of `side` (a dict or a Side) with every key times `factor`."""
    scaled: Side = {} if type(side) is dict else type(side)(is_bid)  # type: ignore[call-arg]
    for key, size in side.items():
        scaled[key * factor] = size
    return scaled


def _level_error(exc: Exception) -> LevelError:
    """Malformed level lists (not [price, size] pairs, unhashable values) as a LevelError."""
    if isinstance(exc, LevelError):
        return exc
    return LevelError(f"bad level: {exc}")


class OrderBook:
    """An L2 book for one topic. Prices and sizes come back as floats whose `repr` is the
    exact decimal that was sent."""

    __slots__ = (
        "symbol",
        "seq",
        "exchange_ms",
        "tick",
        "size_factor",
        "_bids",
        "_asks",
        "_best_bid",
        "_best_ask",
        "_decimals",
        "_scale",
    )

    def __init__(self, symbol: str = "") -> None:
        self.symbol = symbol
        self.seq: int | None = None  # the seqNum of the last snapshot/delta (BookSync sets it)
        self.exchange_ms: int | None = None  # its exchange timestamp, if it carried one
        self.tick: str | None = None  # the price grid, when instruments are known
        # sizes are handed out times this (a contract size: base coin); None: as sent
        self.size_factor: str | None = None
        self._bids: Side = _new_side(True)
        self._asks: Side = _new_side(False)
        self._best_bid: float = -inf  # a key (int), or -inf / +inf for an empty side
        self._best_ask: float = inf
        self._decimals = 0
        self._scale = 1  # 10 ** _decimals

    # --- updates ----------------------------------------------------------------------

    def apply_snapshot(self, bids: list[object], asks: list[object]) -> None:
        """Replace the whole book. Level order does not matter (asks arrive worst-first).

        The snapshot sets the book's precision afresh (the fewest decimals its prices
        need), so one odd price in an earlier book never outlives that book. On a
        `LevelError` the book is unchanged."""
        decimals = 0
        while True:
            new_bids = _new_side(True)
            new_asks = _new_side(False)
            try:
                best_bid = _apply_levels(new_bids, bids, -inf, True, decimals, price_parts)
                best_ask = _apply_levels(new_asks, asks, inf, False, decimals, price_parts)
            except NeedsDecimals as exc:
                if exc.args[0] > _MAX_DECIMALS:
                    raise LevelError(f"prices with more than {_MAX_DECIMALS} decimals") from None
                decimals = exc.args[0]
                continue
            except (TypeError, ValueError) as exc:
                raise _level_error(exc) from None
            break
        self._bids, self._asks = new_bids, new_asks
        self._best_bid, self._best_ask = best_bid, best_ask
        self._decimals = decimals
        self._scale = _POW10[decimals]

    def apply_delta(self, bids: list[object], asks: list[object]) -> None:
        """Apply `[price, size]` levels in any order; size 0 deletes (absent level: no-op).

        Each size is the new total at that price. On a `LevelError` the book may be half
        updated: the caller must treat it as invalid (BookSync resyncs the topic).
        """
        apply = _levels_fn(self._bids)
        try:
            if bids:
                self._best_bid = apply(
                    self._bids, bids, self._best_bid, True, self._decimals, price_parts
                )
            if asks:
                self._best_ask = apply(
                    self._asks, asks, self._best_ask, False, self._decimals, price_parts
                )
        except NeedsDecimals as exc:
            # Finer prices than seen so far: rescale, then apply everything again
            # (applying a level twice is harmless: sizes are totals).
            self._rescale(exc.args[0])
            self.apply_delta(bids, asks)
        except (TypeError, ValueError) as exc:
            raise _level_error(exc) from None

    def top_keys(self) -> TopKeys:
        """(best bid key, its size, best ask key, its size): keys are exact integers
        (-inf/inf and None for an empty side), cheap to compare for "did the top change";
        `price_of(key)` turns a key into its price."""
        bid, ask = self._best_bid, self._best_ask
        return (bid, self._bids.get(bid), ask, self._asks.get(ask))

    def _rescale(self, decimals: int) -> None:
        if decimals > _MAX_DECIMALS:
            raise LevelError(f"prices with more than {_MAX_DECIMALS} decimals")
        if decimals <= self._decimals:
            return
        factor = _POW10[decimals - self._decimals]
        largest = max(max(self._bids, default=0), max(self._asks, default=0))
        if largest * factor > _MAX_KEY:
            # Keys stay int64 (what the C accelerator works in): such a book would mix
            # prices ~10**18 apart, which no real book does.
            raise LevelError(
                f"prices with {decimals} decimals do not fit this book's largest price "
                f"{largest / self._scale!r} in {_MAX_KEY.bit_length()} bits"
            )
        self._bids = _rescaled(self._bids, True, factor)
        self._asks = _rescaled(self._asks, False, factor)
        self._decimals = decimals
        self._scale = _POW10[decimals]
        # A half-applied pass may have moved the best: recompute from the contents.
        self._best_bid = max(self._bids) if self._bids else -inf
        self._best_ask = min(self._asks) if self._asks else inf

    def clear(self) -> None:
        """Empty the book (and forget its precision: the next snapshot sets it)."""
        self.seq = None
        self.exchange_ms = None
        self._bids = _new_side(True)
        self._asks = _new_side(False)
        self._best_bid = -inf
        self._best_ask = inf
        self._decimals = 0
        self._scale = 1

    # --- queries ----------------------------------------------------------------------

    def price_of(self, key: int) -> float:
        """The price a key stands for (exact: a correctly rounded int division)."""
        return key / self._scale

    @property
    def best_bid(self) -> tuple[float, float] | None:
        """(price, size) of the highest bid, or None on an empty side."""
        best = self._best_bid
        if best == -inf:
            return None
        size = self._bids[best]
        return best / self._scale, size if self.size_factor is None else self._size(size)

    @property
    def best_ask(self) -> tuple[float, float] | None:
        best = self._best_ask
        if best == inf:
            return None
        size = self._asks[best]
        return best / self._scale, size if self.size_factor is None else self._size(size)

    def _size(self, size: float) -> float:
        return size if self.size_factor is None else multiply_decimal(size, self.size_factor)

    @property
    def top(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(bid price, bid size, ask price, ask size); None for an empty side."""
        bid, ask = self.best_bid, self.best_ask
        return (*(bid or (None, None)), *(ask or (None, None)))

    @property
    def crossed(self) -> bool:
        """Best bid >= best ask: no real book looks like this; it means we missed something."""
        return self._best_bid >= self._best_ask

    @property
    def spread(self) -> float | None:
        """Exact ask - bid (integer keys: 0.1 is 0.1, not 0.09999999999)."""
        if self._best_bid == -inf or self._best_ask == inf:
            return None
        return (self._best_ask - self._best_bid) / self._scale

    @property
    def mid(self) -> float | None:
        if self._best_bid == -inf or self._best_ask == inf:
            return None
        return (self._best_ask + self._best_bid) / (2 * self._scale)

    def depth(self, n: int | None = None) -> tuple[Levels, Levels]:
        """Top `n` levels per side, best first (all levels if n is None); `ArgumentError`
        for a negative n."""
        return self.bids(n), self.asks(n)

    def bids(self, n: int | None = None, *, as_sent: bool = False) -> Levels:
        """The top `n` bids, best first; sizes in the units handed out (`size_factor`),
        or `as_sent` (contracts for futures)."""
        levels = self._levels(self._bids, True, n)
        return levels if as_sent else self._converted(levels)

    def asks(self, n: int | None = None, *, as_sent: bool = False) -> Levels:
        levels = self._levels(self._asks, False, n)
        return levels if as_sent else self._converted(levels)

    def _converted(self, levels: Levels) -> Levels:
        factor = self.size_factor
        if factor is None:
            return levels
        return [(price, multiply_decimal(size, factor)) for price, size in levels]

    def _levels(self, side: Side, descending: bool, n: int | None) -> Levels:
        # Sorted only when asked: a few microseconds for n <= 50 (benchmarks/bench_book.py).
        if n is None:
            n = -1
        else:
            n = index(n)  # any integer (numpy's too), never a float
            if n < 0:
                raise ArgumentError(f"depth must be >= 0, got {n}")
            if n > len(side):
                n = -1  # every level (keeps huge counts out of C)
        return _depth_fn(side)(side, descending, n, self._scale)

    def size_at(self, side: str, price: str | float) -> float:
        """Size resting at `price` on "bid" or "ask" (0.0 if none)."""
        levels = {"bid": self._bids, "ask": self._asks}.get(side)
        if levels is None:
            raise ArgumentError(f"side must be 'bid' or 'ask', got {side!r}")
        mantissa, exp10 = price_parts(price)
        shift = exp10 + self._decimals
        if shift < 0:
            return 0.0  # finer than any price in the book
        return self._size(levels.get(mantissa * _POW10[shift], 0.0))

    @property
    def bid_levels(self) -> int:
        return len(self._bids)

    @property
    def ask_levels(self) -> int:
        return len(self._asks)

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)

    def digest(self, n: int = 10) -> str:
        """Short deterministic hash of the top `n` levels: equal books give equal digests,
        whatever spelling or update order built them. Used to prove replay == live."""
        # of the sizes as sent, whatever units they are handed out in
        packed = array("d", chain.from_iterable(self._levels(self._bids, True, n)))
        packed.append(-1.0)  # separates the sides: no real price or size is negative
        packed.extend(chain.from_iterable(self._levels(self._asks, False, n)))
        return hashlib.blake2b(packed.tobytes(), digest_size=8).hexdigest()

    def snapshot(self) -> BookSnapshot:
        """An immutable copy (every level, seq, exchange time) to keep past a callback:
        the book itself keeps changing with every delta. Sizes in the units the book
        hands out (base coin under `Feed(sizes="base")`, else as sent)."""
        return BookSnapshot(
            self.symbol, self.seq, self.exchange_ms, tuple(self.bids()), tuple(self.asks())
        )

    def as_dict(self) -> tuple[dict[float, float], dict[float, float]]:
        """Copies of both sides (price -> size as sent), for comparisons with a reference."""
        scale = self._scale
        return (
            {k / scale: v for k, v in self._bids.items()},
            {k / scale: v for k, v in self._asks.items()},
        )

    def __repr__(self) -> str:
        return f"<OrderBook {self.symbol} {len(self._bids)}x{len(self._asks)} top={self.top}>"


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """An immutable copy of an `OrderBook` at one seqNum (`OrderBook.snapshot()`)."""

    symbol: str
    seq: int | None
    exchange_ms: int | None
    bids: tuple[tuple[float, float], ...]  # (price, size), best first
    asks: tuple[tuple[float, float], ...]

    @property
    def best_bid(self) -> tuple[float, float] | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> tuple[float, float] | None:
        return self.asks[0] if self.asks else None

    @property
    def mid(self) -> float | None:
        """(best bid + best ask) / 2; float arithmetic on the exact prices."""
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) / 2
