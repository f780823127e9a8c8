"""One exact L2 order book.

Representation (measured, see benchmarks/bench_book.py): a plain dict per side keyed by
price, with the best price of each side kept incrementally. BTSE keeps at most 50 levels
per side, so recomputing the best after the best level is deleted is an O(50) `max`, and
ordering is done only when someone asks for depth. This was ~1.8x a SortedDict in
PERF-NOTES and keeps per-level work at a dict set/pop plus one compare.

Exactness: every price string is validated once (`to_number`, cached: prices repeat) as a
plain decimal with at most 15 significant digits and converted to a float. Sizes rarely
repeat, so they go straight through `float()` and a finite, non-negative check (a cache
miss per size cost more than the whole rest of the level update). Within 15 digits the
float conversion is injective and order-preserving, so `"86626.0"`, `"86626"` and
`"86626.00"` key the same level, distinct prices never collide, and `repr()` of the key
prints the exact decimal back (no float artefacts). Spread and mid are computed in
`Decimal` for the same reason.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from decimal import Decimal
from math import inf

from bookengine.errors import LevelError

_DECIMAL_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")
_MAX_DIGITS = 15  # DBL_DIG: decimals of <= 15 significant digits round-trip through a float
_CACHE_MAX = 250_000  # distinct strings kept (~35 MB); the cache is cleared when full

Levels = list[tuple[float, float]]  # (price, size), best first

# The conversion cache shared by every book: price strings repeat constantly.
_numbers: dict = {}


def to_number(text: str | int | float) -> float:
    """Exact key for a price or size; raise `LevelError` for anything not a plain decimal.

    Cached: each distinct string is validated once, then costs one dict lookup.
    """
    value = _numbers.get(text) if isinstance(text, str) else None
    if value is not None:
        return value
    return _convert(text)


def _convert(text: object) -> float:
    if isinstance(text, str):
        if not _DECIMAL_RE.match(text):
            raise LevelError(f"not a non-negative decimal number: {text[:40]!r}")
        digits = text.replace(".", "").lstrip("0")
        if "." in text:
            digits = digits.rstrip("0")
        if len(digits) > _MAX_DIGITS:
            raise LevelError(f"more than {_MAX_DIGITS} significant digits: {text[:40]!r}")
        value = float(text)
        if len(_numbers) >= _CACHE_MAX:
            _numbers.clear()
        _numbers[text] = value
        return value
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if 0 <= text < inf:
            return float(text)
        raise LevelError(f"not a finite non-negative number: {text!r}")
    raise LevelError(f"price/size must be a string, got {type(text).__name__}")


def _bad_size(size: object) -> LevelError:
    return LevelError(f"size must be a finite non-negative number: {size!r}")


def _level_error(exc: Exception) -> LevelError:
    """Malformed level lists (not [price, size] pairs, unhashable values) as a LevelError."""
    if isinstance(exc, LevelError):
        return exc
    return LevelError(f"levels must be [price, size] string pairs ({exc})")


def _levels_of(levels: object) -> list:
    if not isinstance(levels, list):
        raise LevelError(f"levels must be a list, got {type(levels).__name__}")
    return levels


class OrderBook:
    """An L2 book for one topic: two sides of price -> size, both exact floats.

    Prices and sizes come back as floats whose `repr` is the exact decimal sent.
    """

    __slots__ = ("symbol", "_bids", "_asks", "_best_bid", "_best_ask")

    def __init__(self, symbol: str = "") -> None:
        self.symbol = symbol
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self._best_bid = -inf  # -inf / +inf stand for an empty side: no None checks per level
        self._best_ask = inf

    # --- updates ----------------------------------------------------------------------

    def apply_snapshot(self, bids: list, asks: list) -> None:
        """Replace the whole book. Level order does not matter (asks arrive worst-first)."""
        try:
            new_bids = self._side_from(bids)
            new_asks = self._side_from(asks)
        except (TypeError, ValueError) as exc:
            raise _level_error(exc) from None
        self._bids, self._asks = new_bids, new_asks
        self._best_bid = max(new_bids) if new_bids else -inf
        self._best_ask = min(new_asks) if new_asks else inf

    @staticmethod
    def _side_from(levels: list) -> dict[float, float]:
        numbers = _numbers
        side: dict[float, float] = {}
        for price, size in _levels_of(levels):
            key = numbers.get(price)
            if key is None:
                key = _convert(price)
            amount = float(size)
            if 0.0 < amount < inf:
                side[key] = amount
            elif amount != 0.0:
                raise _bad_size(size)
        return side

    def apply_delta(self, bids: list, asks: list) -> None:
        """Apply `[price, size]` levels in any order; size 0 deletes (absent level: no-op).

        Each size is the new total at that price. On a `LevelError` the book may be half
        updated: the caller must treat it as invalid (BookSync resyncs the topic).
        """
        try:
            if bids:
                self._apply_bids(bids)
            if asks:
                self._apply_asks(asks)
        except (TypeError, ValueError) as exc:
            raise _level_error(exc) from None

    # The two sides are written out separately: a shared version with a comparison
    # parameter cost ~15% on the per-level hot path (benchmarks/bench_book.py).
    def _apply_bids(self, levels: list) -> None:
        numbers = _numbers
        side = self._bids
        best = self._best_bid
        lost_best = False
        for price, size in levels:
            key = numbers.get(price)
            if key is None:
                key = _convert(price)
            amount = float(size)
            if 0.0 < amount < inf:
                side[key] = amount
                if key > best:
                    best = key
            elif amount != 0.0:
                raise _bad_size(size)
            elif key == best:
                del side[key]
                lost_best = True
            else:
                side.pop(key, None)
        if lost_best:
            best = max(side) if side else -inf
        self._best_bid = best

    def _apply_asks(self, levels: list) -> None:
        numbers = _numbers
        side = self._asks
        best = self._best_ask
        lost_best = False
        for price, size in levels:
            key = numbers.get(price)
            if key is None:
                key = _convert(price)
            amount = float(size)
            if 0.0 < amount < inf:
                side[key] = amount
                if key < best:
                    best = key
            elif amount != 0.0:
                raise _bad_size(size)
            elif key == best:
                del side[key]
                lost_best = True
            else:
                side.pop(key, None)
        if lost_best:
            best = min(side) if side else inf
        self._best_ask = best

    def clear(self) -> None:
        self._bids = {}
        self._asks = {}
        self._best_bid = -inf
        self._best_ask = inf

    # --- queries ----------------------------------------------------------------------

    @property
    def best_bid(self) -> tuple[float, float] | None:
        """(price, size) of the highest bid, or None on an empty side."""
        best = self._best_bid
        return None if best == -inf else (best, self._bids[best])

    @property
    def best_ask(self) -> tuple[float, float] | None:
        best = self._best_ask
        return None if best == inf else (best, self._asks[best])

    def top(self) -> tuple[float | None, float | None, float | None, float | None]:
        """(bid price, bid size, ask price, ask size); None for an empty side."""
        bb, ba = self._best_bid, self._best_ask
        return (
            None if bb == -inf else bb,
            None if bb == -inf else self._bids[bb],
            None if ba == inf else ba,
            None if ba == inf else self._asks[ba],
        )

    @property
    def crossed(self) -> bool:
        """Best bid >= best ask: no real book looks like this; it means we missed something."""
        return self._best_bid >= self._best_ask

    @property
    def spread(self) -> float | None:
        """Exact ask - bid (computed in Decimal, so 0.1 is 0.1, not 0.09999999999)."""
        if self._best_bid == -inf or self._best_ask == inf:
            return None
        return float(Decimal(repr(self._best_ask)) - Decimal(repr(self._best_bid)))

    @property
    def mid(self) -> float | None:
        if self._best_bid == -inf or self._best_ask == inf:
            return None
        total = Decimal(repr(self._best_ask)) + Decimal(repr(self._best_bid))
        return float(total / 2)

    def depth(self, n: int | None = None) -> tuple[Levels, Levels]:
        """Top `n` levels per side, best first (all levels if n is None)."""
        return self.bids(n), self.asks(n)

    def bids(self, n: int | None = None) -> Levels:
        side = self._bids
        keys = sorted(side, reverse=True) if n is None else heapq.nlargest(n, side)
        return [(k, side[k]) for k in keys]

    def asks(self, n: int | None = None) -> Levels:
        side = self._asks
        keys = sorted(side) if n is None else heapq.nsmallest(n, side)
        return [(k, side[k]) for k in keys]

    def size_at(self, side: str, price: str | float) -> float:
        """Size resting at `price` on "bid" or "ask" (0.0 if none)."""
        book = {"bid": self._bids, "ask": self._asks}.get(side)
        if book is None:
            raise ValueError(f"side must be 'bid' or 'ask', got {side!r}")
        key = to_number(price) if isinstance(price, str) else float(price)
        return book.get(key, 0.0)

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
        text = repr((self.bids(n), self.asks(n))).encode()
        return hashlib.blake2b(text, digest_size=8).hexdigest()

    def as_dict(self) -> tuple[dict[float, float], dict[float, float]]:
        """Copies of both sides (price -> size), for comparisons with a reference."""
        return dict(self._bids), dict(self._asks)

    def __repr__(self) -> str:
        return f"<OrderBook {self.symbol} {len(self._bids)}x{len(self._asks)} top={self.top()}>"
